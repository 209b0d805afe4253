//! The Kafka runtime end to end, against librdkafka's in-process mock broker (the real
//! Kafka protocol over TCP on loopback), with a bare consumer as the same-run baseline.
//!
//! `cargo bench --bench kafka` simulates traffic (ATOWATCH_BENCH_EVENTS benign logins,
//! default 1,000,000, plus the attacks: about 1.8M events), produces it to
//! `auth-events`, then alternates R rounds of
//!
//! - a bare `BaseConsumer` in a fresh group that only reads every message with `poll`
//!   (the baseline of the target),
//! - the same reading in batches (`rd_kafka_consume_batch_queue`, as atowatch does),
//!   reported for comparison, and
//! - `atowatch::kafka::run` in a fresh group with `stop_after`: every event through the
//!   engine, signals produced to `ato-signals`, offsets committed,
//!
//! timing each from its first message to its last (group join reported apart), and
//! reports medians: the machines this runs on are small and noisy, so the three are
//! interleaved in one run rather than compared across runs. Last, it runs the pipeline
//! on fresh topics while producing at a steady rate and measures event-to-signal
//! latency twice: from atowatch's own histogram (bucket-interpolated) and exactly, by
//! reading the signals back and matching each to its source record's timestamp.
//!
//! The mock broker keeps only the newest 5 MiB of each partition (rdkafka_mock.c), so
//! the setup checks the low watermarks and, when anything was dropped, starts over with
//! more partitions; when a single client IP alone outgrows a partition, events are
//! spread round-robin (still keyed by IP) instead of placed by key.
//!
//! Environment (all optional):
//! - ATOWATCH_BENCH_EVENTS: benign events (1,000,000)
//! - ATOWATCH_BENCH_PARTITIONS: `auth-events` partitions to start from (16)
//! - ATOWATCH_BENCH_ROUNDS: rounds of each side (3)
//! - ATOWATCH_BENCH_RATE, ATOWATCH_BENCH_SECONDS: the latency phase's steady rate
//!   (20,000 events/s) and length (10 s; 2 s when fewer than 100,000 events, the CI
//!   smoke setting)
//! - ATOWATCH_BENCH_LINGER_MS: the latency phase's producer linger.ms (5; see LINGER_NOTE)
//! - ATOWATCH_BENCH_FETCH_WAIT_MS: fetch.wait.max.ms of the latency phase's consumers
//!   (1; see FETCH_WAIT_NOTE)
//! - ATOWATCH_BENCH_CONFIG: a config file instead of the defaults (Kafka names aside)
//! - ATOWATCH_BENCH_CONSUMER_PROPS: `k=v,k=v` librdkafka properties for both consumers,
//!   for experiments
//! - ATOWATCH_BENCH_PROFILE: `atowatch`, `bare` or `bare-batch` runs R rounds of that
//!   side alone
//!   after the setup, `latency` the latency phase alone (for profilers)
//! - ATOWATCH_BENCH_REPORT_ONLY: accepted; this bench only reports anyway

use std::collections::HashMap;
use std::hint::black_box;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prometheus::core::Metric as _;
use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Headers, Message};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{
    BaseProducer, BaseRecord, DefaultProducerContext, DeliveryResult, Producer, ProducerContext,
};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use atowatch::config::{Config, PropValue};
use atowatch::engine::Engine;
use atowatch::kafka::produce::event_key;
use atowatch::kafka::{self, Health, RunOptions, RunSummary};
use atowatch::metrics::Metrics;
use atowatch::simulate::{SimOptions, Simulation, generate};

const EVENTS: &str = "auth-events";
const SIGNALS: &str = "ato-signals";
const DLQ: &str = "auth-events-dlq";
/// The latency phase runs on topics of its own, so its signals are its alone.
const LAT_EVENTS: &str = "auth-events-latency";
const LAT_SIGNALS: &str = "ato-signals-latency";
const SIGNAL_PARTITIONS: i32 = 4;
/// A whole measured run that takes longer than this is a hang, not a result.
const RUN_LIMIT: Duration = Duration::from_secs(600);

type Mock = MockCluster<'static, DefaultProducerContext>;

/// Why the latency phase's producer lingers 5 ms (ATOWATCH_BENCH_LINGER_MS) rather than 1.
const LINGER_NOTE: &str = "the mock broker returns at most one record batch per partition \
per fetch (rdkafka_mock_handlers.c: 'FIXME: Multiple messageSets ?'), so at linger.ms=1 \
(batches of 1-2 events per partition) a consumer that falls behind catches up one tiny \
batch per round trip and p99 swings between 20 and 600 ms from run to run on 2 cores; \
linger counts against the measured latency, which starts at the send";

/// Why the latency phase sets `fetch.wait.max.ms` (ATOWATCH_BENCH_FETCH_WAIT_MS,
/// default 1) for atowatch's consumer and the signal reader.
const FETCH_WAIT_NOTE: &str = "the mock broker answers a fetch that finds no new data only \
after the full fetch.wait.max.ms, even if data arrives meanwhile (rdkafka_mock_handlers.c: \
'we should cut the wait short ... too much of a hassle'); a real broker answers as soon as \
fetch.min.bytes (1) arrive. At librdkafka's default 500 ms a steady stream on the mock \
waits most of 500 ms per fetch, so the latency phase sets it low for both consumers";

fn env_or<T: FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v
            .replace(['_', ','], "")
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v} is not a number")),
        Err(_) => default,
    }
}

/// 1234567 -> "1,234,567".
fn sep(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn rate(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(1e-9)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn pass(ok: bool) -> &'static str {
    if ok { "PASS" } else { "FAIL" }
}

fn wall_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
        * 1000.0
}

static GROUP: AtomicU64 = AtomicU64::new(0);

fn fresh_group(what: &str) -> String {
    format!(
        "atowatch-bench-{what}-{}-{}",
        std::process::id(),
        GROUP.fetch_add(1, Ordering::Relaxed)
    )
}

/// Simulated events rendered once, so producing measures producing.
struct Payloads {
    bytes: Vec<u8>,
    spans: Vec<(usize, usize)>,
}

impl Payloads {
    fn render(sim: &Simulation) -> Payloads {
        let mut bytes = Vec::with_capacity(sim.len() * 512);
        let mut spans = Vec::with_capacity(sim.len());
        for i in 0..sim.len() {
            let start = bytes.len();
            sim.write_event_json(i, &mut bytes);
            spans.push((start, bytes.len()));
        }
        Payloads { bytes, spans }
    }

    fn len(&self) -> usize {
        self.spans.len()
    }

    fn get(&self, i: usize) -> &[u8] {
        let (a, b) = self.spans[i];
        &self.bytes[a..b]
    }
}

/// Counts failed deliveries and, when asked, notes where each record landed: its
/// partition and offset by its index (the delivery opaque).
#[derive(Default)]
struct Acks {
    failed: AtomicU64,
    record: bool,
    acked: Mutex<Vec<(i32, i64, usize)>>,
}

impl ClientContext for Acks {}

impl ProducerContext for Acks {
    type DeliveryOpaque = usize;

    fn delivery(&self, r: &DeliveryResult<'_>, index: usize) {
        match r {
            Ok(m) if self.record => {
                self.acked
                    .lock()
                    .expect("acks")
                    .push((m.partition(), m.offset(), index));
            }
            Ok(_) => {}
            Err(_) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn producer(brokers: &str, linger_ms: &str, ctx: Acks) -> BaseProducer<Acks> {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", linger_ms)
        .set("compression.type", "lz4")
        .set("queue.buffering.max.messages", "1000000")
        // Applications (often one Lambda invocation per sign-in) send small batches; a
        // backlog produced in 10,000-event batches would be fetched a whole partition at
        // a time and read mostly as late (see the late count in the report).
        .set("batch.num.messages", batch_messages())
        .create_with_context(ctx)
        .expect("producer")
}

/// Events per producer batch (ATOWATCH_BENCH_BATCH, default 100).
fn batch_messages() -> String {
    std::env::var("ATOWATCH_BENCH_BATCH").unwrap_or_else(|_| "100".into())
}

/// Sends, waiting for room while librdkafka's queue is full.
fn send(p: &BaseProducer<Acks>, mut rec: BaseRecord<'_, [u8], [u8], usize>) {
    loop {
        match p.send(rec) {
            Ok(()) => return,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                rec = r;
                p.poll(Duration::from_millis(1));
            }
            Err((e, _)) => panic!("produce failed: {e}"),
        }
    }
}

fn flush(p: &BaseProducer<Acks>) {
    p.flush(Duration::from_secs(120)).expect("flush");
    let failed = p.context().failed.load(Ordering::Relaxed);
    assert_eq!(failed, 0, "{failed} deliveries failed");
}

/// Where the events go: by key (librdkafka's partitioner on the client IP, as
/// `simulate --brokers` does), or spread round-robin, still keyed, when one key alone
/// outgrows what the mock broker keeps of a partition.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Placement {
    Keyed,
    RoundRobin,
}

/// Produces the payloads (all, or those `only` lists) to `topic`; returns the time
/// from the first send to the last acknowledgement.
fn produce_all(
    brokers: &str,
    topic: &str,
    data: &Payloads,
    only: Option<&[usize]>,
    placement: Placement,
    partitions: i32,
) -> Duration {
    let p = producer(brokers, "5", Acks::default());
    let all: Vec<usize>;
    let indexes = match only {
        Some(ix) => ix,
        None => {
            all = (0..data.len()).collect();
            &all
        }
    };
    let t = Instant::now();
    for (n, &i) in indexes.iter().enumerate() {
        let payload = data.get(i);
        let mut rec = BaseRecord::with_opaque_to(topic, i)
            .key(event_key(payload))
            .payload(payload);
        if placement == Placement::RoundRobin {
            rec = rec.partition(n as i32 % partitions);
        }
        send(&p, rec);
        if n % 1024 == 0 {
            p.poll(Duration::ZERO);
        }
    }
    flush(&p);
    t.elapsed()
}

/// Produces the events of the busiest key to a one-partition scratch topic; returns
/// the key, its event count, and how many of them the mock broker kept.
fn hottest_key_probe(mock: &Mock, brokers: &str, data: &Payloads) -> (String, usize, usize) {
    let mut by_key: HashMap<&[u8], (usize, Vec<usize>)> = HashMap::new();
    for i in 0..data.len() {
        let payload = data.get(i);
        let e = by_key.entry(event_key(payload)).or_default();
        e.0 += payload.len();
        e.1.push(i);
    }
    let (key, (_, ix)) = by_key
        .into_iter()
        .max_by_key(|(_, (bytes, _))| *bytes)
        .expect("events");
    let topic = "bench-hottest-key";
    mock.create_topic(topic, 1, 1).expect("topic");
    produce_all(brokers, topic, data, Some(&ix), Placement::Keyed, 1);
    let (lo, hi) = watermarks(brokers, topic, 1)[0];
    (
        String::from_utf8_lossy(key).into_owned(),
        ix.len(),
        (hi - lo) as usize,
    )
}

/// (low, high) watermarks of every partition of `topic`.
fn watermarks(brokers: &str, topic: &str, partitions: i32) -> Vec<(i64, i64)> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("consumer");
    (0..partitions)
        .map(|p| {
            c.fetch_watermarks(topic, p, Duration::from_secs(10))
                .expect("watermarks")
        })
        .collect()
}

/// The dead-letter topic and, when the config publishes decisions, their topic: both
/// phases write to them.
fn create_shared_topics(mock: &Mock) {
    mock.create_topic(DLQ, 1, 1).expect("topic");
    let decisions = config("", EVENTS, SIGNALS).decisions.topic;
    if !decisions.is_empty() {
        mock.create_topic(&decisions, 1, 1).expect("topic");
    }
}

struct Setup {
    mock: Mock,
    brokers: String,
    partitions: i32,
    placement: Placement,
    produce: Duration,
}

/// The next power of two at or above what holding `n` events takes, when a partition
/// held `held` of `tried` (a quarter more for luck).
fn partitions_for(n: i64, held: i64, tried: i32) -> i32 {
    let need = (tried as f64 * n as f64 / held.max(1) as f64 * 1.25).ceil() as i32;
    let next = (need.max(tried + 1) as u32).next_power_of_two() as i32;
    assert!(
        next <= 4096,
        "the mock broker cannot hold {n} events; lower ATOWATCH_BENCH_EVENTS"
    );
    next
}

/// A mock cluster holding every event. The mock broker drops a partition's oldest
/// batches past 5 MiB (librdkafka's rdkafka_mock.c): when the busiest client IP alone
/// does not fit in one partition (tried first, on a scratch topic), events are spread
/// round-robin over enough partitions; when anything was dropped anyway, the cluster
/// is rebuilt with enough partitions for what each held.
fn setup(data: &Payloads, mut partitions: i32) -> Setup {
    let n = data.len() as i64;
    let mut placement = Placement::Keyed;
    let mut probed = false;
    loop {
        let mock = MockCluster::new(1).expect("mock cluster");
        mock.create_topic(EVENTS, partitions, 1).expect("topic");
        mock.create_topic(SIGNALS, SIGNAL_PARTITIONS, 1)
            .expect("topic");
        create_shared_topics(&mock);
        let brokers = mock.bootstrap_servers();
        if !probed {
            probed = true;
            let (key, count, held) = hottest_key_probe(&mock, &brokers, data);
            if held < count {
                placement = Placement::RoundRobin;
                let need = partitions_for(n, held as i64, 1).max(partitions);
                println!(
                    "client IP {key} alone has {} events and the mock broker keeps {} of them in a partition (5 MiB): \
                     spreading events round-robin (each still keyed by IP) over {need} partitions",
                    sep(count as u64),
                    sep(held as u64)
                );
                if need != partitions {
                    partitions = need;
                    continue;
                }
            }
        }
        let produce = produce_all(&brokers, EVENTS, data, None, placement, partitions);
        let marks = watermarks(&brokers, EVENTS, partitions);
        let dropped: i64 = marks.iter().map(|&(lo, _)| lo).sum();
        let held: i64 = marks.iter().map(|&(lo, hi)| hi - lo).sum();
        if dropped == 0 && held == n {
            println!(
                "produced {} events to {partitions} partitions ({}) in {:.2}s ({:.0} events/s)",
                sep(n as u64),
                match placement {
                    Placement::Keyed => "keyed by client IP",
                    Placement::RoundRobin => "round-robin, keyed by client IP",
                },
                produce.as_secs_f64(),
                rate(n as u64, produce)
            );
            return Setup {
                mock,
                brokers,
                partitions,
                placement,
                produce,
            };
        }
        println!(
            "the mock broker dropped {} of {} events in {partitions} partitions ({placement:?}); it keeps the newest 5 MiB of each",
            sep(dropped as u64),
            sep(n as u64)
        );
        let next = partitions_for(n, held, partitions);
        println!("  retrying with {next} partitions");
        drop(mock);
        partitions = next;
    }
}

struct Round {
    /// From subscribe to the first message.
    join: Duration,
    /// From the first message to the N-th.
    read: Duration,
    /// CPU time of the whole process (every thread, the mock broker's too) over `read`.
    cpu: Duration,
}

/// CPU time this process has used, all threads (utime + stime of /proc/self/stat).
/// On a noisy host the time per event moves less than the rate: a thread waiting for a
/// core uses none.
fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    // utime and stime are fields 14 and 15, i.e. 11 and 12 after the state (field 3).
    let ticks: u64 = f[11].parse::<u64>().expect("utime") + f[12].parse::<u64>().expect("stime");
    Duration::from_secs_f64(ticks as f64 / clock_ticks())
}

fn cpu_per_event(r: &Round, n: u64) -> f64 {
    r.cpu.as_secs_f64() * 1e6 / (n - 1) as f64
}

fn clock_ticks() -> f64 {
    // _SC_CLK_TCK is 100 on every Linux this runs on; getconf says so without libc.
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// How a bare consumer takes messages from librdkafka.
#[derive(Clone, Copy, PartialEq)]
enum Read {
    /// `BaseConsumer::poll`, one message per call: rdkafka's consumer API, the baseline
    /// the target is set against.
    Poll,
    /// `rd_kafka_consume_batch_queue` on the consumer's queue, as `atowatch run` takes
    /// them (from its own queue; `src/kafka/fetch.rs`): reported beside it, so the
    /// share of atowatch's rate that comes from reading in batches is on view.
    Batch,
}

/// Only reads: every message, touching its payload length.
fn bare_round(brokers: &str, n: u64, read: Read) -> Round {
    let mut cc = ClientConfig::new();
    cc.set("bootstrap.servers", brokers)
        .set("group.id", fresh_group("bare"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false");
    for (k, v) in extra_consumer_props() {
        cc.set(k, v);
    }
    let c: BaseConsumer = cc.create().expect("consumer");
    let t0 = Instant::now();
    c.subscribe(&[EVENTS]).expect("subscribe");
    let mut first = None;
    let mut count = 0u64;
    let mut bytes = 0usize;
    let mut poll_one = |count: &mut u64, bytes: &mut usize| match c.poll(Duration::from_millis(100))
    {
        Some(Ok(m)) => {
            if *count == 0 {
                first = Some((Instant::now(), process_cpu()));
            }
            *bytes += m.payload_len();
            *count += 1;
        }
        Some(Err(e)) => eprintln!("bare consumer: {e}"),
        None => assert!(
            t0.elapsed() < RUN_LIMIT,
            "bare consumer read {count} of {n} in {RUN_LIMIT:?}"
        ),
    };
    if read == Read::Batch {
        // The group is joined through `poll`: met by a batch read, the assignment would
        // be answered with an unassign. One member, so no rebalance follows.
        while count == 0 {
            poll_one(&mut count, &mut bytes);
        }
        use rdkafka::bindings as rd;
        // SAFETY: a handle to the live consumer's queue, released below; each message
        // returned is destroyed once, after its length is read.
        unsafe {
            let q = rd::rd_kafka_queue_get_consumer(c.client().native_ptr());
            let mut buf = vec![std::ptr::null_mut::<rd::rd_kafka_message_t>(); 1024];
            while count < n {
                // Never more than remain: a short batch waits out the timeout.
                let want = buf.len().min((n - count) as usize);
                let got = rd::rd_kafka_consume_batch_queue(q, 100, buf.as_mut_ptr(), want);
                for &m in &buf[..got.max(0) as usize] {
                    bytes += (*m).len;
                    count += 1;
                    rd::rd_kafka_message_destroy(m);
                }
                assert!(
                    t0.elapsed() < RUN_LIMIT,
                    "bare batch consumer read {count} of {n} in {RUN_LIMIT:?}"
                );
            }
            rd::rd_kafka_queue_destroy(q);
        }
    }
    while count < n {
        poll_one(&mut count, &mut bytes);
    }
    let (end, end_cpu) = (Instant::now(), process_cpu());
    black_box(bytes);
    let (first, first_cpu) = first.expect("read something");
    Round {
        join: first - t0,
        read: end - first,
        cpu: end_cpu - first_cpu,
    }
}

/// Extra consumer properties for experiments, `k=v,k=v` in ATOWATCH_BENCH_CONSUMER_PROPS,
/// given to the bare consumer and to atowatch's alike.
fn extra_consumer_props() -> Vec<(String, String)> {
    std::env::var("ATOWATCH_BENCH_CONSUMER_PROPS")
        .unwrap_or_default()
        .split(',')
        .filter(|kv| !kv.trim().is_empty())
        .map(|kv| {
            let (k, v) = kv
                .split_once('=')
                .unwrap_or_else(|| panic!("ATOWATCH_BENCH_CONSUMER_PROPS: {kv} is not k=v"));
            (k.trim().to_string(), v.trim().to_string())
        })
        .collect()
}

/// Defaults, or the file in ATOWATCH_BENCH_CONFIG (as `benches/engine.rs` takes it);
/// the Kafka names and addresses are the bench's either way.
fn config(brokers: &str, topic: &str, signals: &str) -> Config {
    let mut cfg = match std::env::var_os("ATOWATCH_BENCH_CONFIG").filter(|p| !p.is_empty()) {
        Some(p) => Config::load(Some(std::path::Path::new(&p))).expect("bench config"),
        None => Config::default(),
    };
    for (k, v) in extra_consumer_props() {
        cfg.kafka.consumer_properties.insert(k, PropValue(v));
    }
    cfg.kafka.brokers = brokers.to_string();
    cfg.kafka.group_id = fresh_group("atowatch");
    cfg.kafka.topics = vec![topic.to_string()];
    cfg.kafka.signals_topic = signals.to_string();
    cfg.kafka.dead_letter_topic = DLQ.to_string();
    cfg
}

struct AtoRound {
    round: Round,
    /// From spawning the run to its return (join, processing, drain, commit, leave).
    total: Duration,
    summary: RunSummary,
    /// Events dropped as older than the watermark.
    late: u64,
}

/// `kafka::run` with `stop_after: n`, timed by a watcher on the messages counter.
fn atowatch_round(brokers: &str, n: u64) -> AtoRound {
    let cfg = config(brokers, EVENTS, SIGNALS);
    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::default());
    let opts = RunOptions {
        stop_after: Some(n),
        ..RunOptions::default()
    };
    let stop = opts.stop.clone();
    let m = metrics.clone();
    let t0 = Instant::now();
    let h = thread::spawn(move || kafka::run(cfg, m, health, opts));
    // The rate's span comes from the run itself (`RunSummary::live`); this loop only
    // reads the CPU clock near its ends, and stops a stuck run. It wakes rarely, since
    // each wake-up takes a core from the run.
    let mut first_cpu = None;
    let last_cpu = loop {
        let seen = metrics.messages.get();
        if first_cpu.is_none() && seen > 0 {
            first_cpu = Some(process_cpu());
        }
        if seen >= n {
            break process_cpu();
        }
        if h.is_finished() || t0.elapsed() > RUN_LIMIT {
            stop.store(true, Ordering::Relaxed);
            let r = h.join();
            panic!("atowatch handled {seen} of {n} messages and stopped ({r:?})");
        }
        thread::sleep(Duration::from_millis(10));
    };
    let summary = h.join().expect("pipeline thread").expect("pipeline");
    let total = t0.elapsed();
    let (first, last) = summary.live.expect("read something");
    assert_eq!(summary.unacknowledged, 0, "outputs left unacknowledged");
    AtoRound {
        round: Round {
            join: first - t0,
            read: last - first,
            cpu: last_cpu - first_cpu.expect("read something"),
        },
        total,
        summary,
        late: metrics.late.get(),
    }
}

/// Prometheus' histogram_quantile: linear interpolation within the bucket holding the
/// rank; the lowest bucket starts at 0, and a rank in +Inf gets the highest bound.
fn histogram_quantile(q: f64, buckets: &[(f64, u64)], count: u64) -> Option<(f64, f64, f64)> {
    if count == 0 {
        return None;
    }
    let rank = q * count as f64;
    let (mut lo, mut below) = (0.0, 0u64);
    for &(upper, cum) in buckets {
        if cum as f64 >= rank {
            let inside = (cum - below) as f64;
            let v = if inside > 0.0 {
                lo + (upper - lo) * (rank - below as f64) / inside
            } else {
                upper
            };
            return Some((v, lo, upper));
        }
        (lo, below) = (upper, cum);
    }
    Some((lo, lo, f64::INFINITY))
}

fn exact_quantile(sorted: &[f64], q: f64) -> f64 {
    let i = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

struct Latency {
    rate: f64,
    linger_ms: String,
    produced: u64,
    produce_secs: f64,
    signals: u64,
    exact: Vec<f64>,
    /// The slowest signals: (latency ms, when their event was produced, s into the run).
    worst: Vec<(f64, f64)>,
    unmatched: usize,
    hist_count: u64,
    /// atowatch_batch_processing_seconds: (upper bound s, batches in that bucket).
    batches: Vec<(f64, u64)>,
    hist_p50: Option<(f64, f64, f64)>,
    hist_p99: Option<(f64, f64, f64)>,
}

impl Latency {
    fn print_run(&self) {
        println!(
            "latency: produced {} events at {:.0}/s in {:.2}s; {} signals, {} read back, {} histogram samples; slowest: {}",
            sep(self.produced),
            self.rate,
            self.produce_secs,
            sep(self.signals),
            sep(self.exact.len() as u64 + self.unmatched as u64),
            sep(self.hist_count),
            self.worst
                .iter()
                .map(|(l, at)| format!("{l:.1} ms (event sent at +{at:.2}s)"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        println!(
            "  atowatch batch processing times (bucket <= s: batches): {}",
            self.batches
                .iter()
                .filter(|(_, n)| *n > 0)
                .map(|(b, n)| format!("{b}: {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
}

/// Reads `LAT_SIGNALS` from the start until `stop`, noting when each signal arrived
/// and which source record it names.
fn read_signals(
    fetch_wait_ms: u32,
    brokers: String,
    stop: Arc<AtomicBool>,
    seen: Arc<AtomicU64>,
) -> Vec<(i32, i64, f64)> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", fresh_group("signal-reader"))
        .set("enable.auto.commit", "false")
        // See FETCH_WAIT_NOTE: the reader adds up to this much to what it measures.
        .set("fetch.wait.max.ms", fetch_wait_ms.to_string())
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..SIGNAL_PARTITIONS {
        tpl.add_partition_offset(LAT_SIGNALS, p, Offset::Beginning)
            .expect("partition");
    }
    c.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(20)) {
            let at = wall_ms();
            let (mut topic, mut part, mut off) = (None, None, None);
            if let Some(h) = m.headers() {
                for h in h.iter() {
                    let v = std::str::from_utf8(h.value.unwrap_or_default()).unwrap_or("");
                    match h.key {
                        "atowatch.source.topic" => topic = Some(v == LAT_EVENTS),
                        "atowatch.source.partition" => part = v.parse().ok(),
                        "atowatch.source.offset" => off = v.parse().ok(),
                        _ => {}
                    }
                }
            }
            if let (Some(true), Some(p), Some(o)) = (topic, part, off) {
                out.push((p, o, at));
                seen.fetch_add(1, Ordering::Relaxed);
            } else {
                eprintln!("signal without source headers at offset {}", m.offset());
            }
        }
    }
    out
}

/// The pipeline consuming `LAT_EVENTS` while events are produced at `rate`/s, each
/// stamped with the wall clock as its Kafka timestamp.
fn latency(
    mock: &Mock,
    brokers: &str,
    partitions: i32,
    rate: f64,
    secs: f64,
    fetch_wait_ms: u32,
) -> Latency {
    mock.create_topic(LAT_EVENTS, partitions, 1).expect("topic");
    mock.create_topic(LAT_SIGNALS, SIGNAL_PARTITIONS, 1)
        .expect("topic");
    let target = (rate * secs) as u64;
    let sim = generate(&SimOptions {
        benign_events: Some(target),
        ..SimOptions::for_duration(7, 2 * 3_600_000)
    })
    .expect("simulate");
    let data = Payloads::render(&sim);
    // The simulation holds attacks on top of the benign target; keep the run to
    // `secs` of wall time, attacks included, whatever the simulated time span.
    let total = data.len().min(target as usize);

    let mut cfg = config(brokers, LAT_EVENTS, LAT_SIGNALS);
    cfg.kafka.consumer_properties.insert(
        "fetch.wait.max.ms".to_string(),
        PropValue(fetch_wait_ms.to_string()),
    );
    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::default());
    let opts = RunOptions::default();
    let stop = opts.stop.clone();
    let (m, hl) = (metrics.clone(), health.clone());
    let pipeline = thread::spawn(move || kafka::run(cfg, m, hl, opts));
    let reader_stop = Arc::new(AtomicBool::new(false));
    let reader_seen = Arc::new(AtomicU64::new(0));
    let reader = {
        let (b, s, n) = (
            brokers.to_string(),
            reader_stop.clone(),
            reader_seen.clone(),
        );
        thread::spawn(move || read_signals(fetch_wait_ms, b, s, n))
    };
    let t0 = Instant::now();
    while !health.joined.load(Ordering::Relaxed) {
        assert!(t0.elapsed() < RUN_LIMIT, "atowatch never joined its group");
        assert!(!pipeline.is_finished(), "atowatch stopped before joining");
        thread::sleep(Duration::from_millis(5));
    }
    // Let both consumers reach the (empty) partitions' ends before the clock starts.
    thread::sleep(Duration::from_millis(500));

    let ctx = Acks {
        record: true,
        ..Acks::default()
    };
    let linger = std::env::var("ATOWATCH_BENCH_LINGER_MS").unwrap_or_else(|_| "5".into());
    let p = producer(brokers, &linger, ctx);
    let mut stamps: Vec<i64> = Vec::with_capacity(total);
    let started = Instant::now();
    let mut sent = 0usize;
    while sent < total {
        let due = ((started.elapsed().as_secs_f64() * rate) as usize).min(total);
        while sent < due {
            let payload = data.get(sent);
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .expect("clock")
                .as_millis() as i64;
            stamps.push(now);
            send(
                &p,
                BaseRecord::with_opaque_to(LAT_EVENTS, sent)
                    .key(event_key(payload))
                    .payload(payload)
                    .timestamp(now),
            );
            sent += 1;
        }
        p.poll(Duration::ZERO);
        thread::sleep(Duration::from_millis(1));
    }
    flush(&p);
    let produce_secs = started.elapsed().as_secs_f64();

    // Everything read and every signal acknowledged, then a graceful stop.
    let t = Instant::now();
    while metrics.messages.get() < total as u64 {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "atowatch read {} of {total}",
            metrics.messages.get()
        );
        thread::sleep(Duration::from_millis(10));
    }
    thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let summary = pipeline.join().expect("pipeline thread").expect("pipeline");
    let t = Instant::now();
    while reader_seen.load(Ordering::Relaxed) < summary.signals
        && t.elapsed() < Duration::from_secs(10)
    {
        thread::sleep(Duration::from_millis(10));
    }
    reader_stop.store(true, Ordering::Relaxed);
    let received = reader.join().expect("reader thread");

    let acked: HashMap<(i32, i64), i64> = p
        .context()
        .acked
        .lock()
        .expect("acks")
        .iter()
        .map(|&(part, off, i)| ((part, off), stamps[i]))
        .collect();
    let mut exact = Vec::with_capacity(received.len());
    let mut worst = Vec::with_capacity(received.len());
    let mut unmatched = 0;
    let t0 = stamps.first().copied().unwrap_or(0);
    for (part, off, at) in received {
        match acked.get(&(part, off)) {
            Some(&ts) => {
                exact.push(at - ts as f64);
                worst.push((at - ts as f64, (ts - t0) as f64 / 1000.0));
            }
            None => unmatched += 1,
        }
    }
    exact.sort_by(f64::total_cmp);
    worst.sort_by(|a, b| b.0.total_cmp(&a.0));
    worst.truncate(5);

    let h = metrics.latency.metric();
    let h = h.get_histogram();
    let buckets: Vec<(f64, u64)> = h
        .get_bucket()
        .iter()
        .map(|b| (b.upper_bound(), b.cumulative_count()))
        .collect();
    let count = h.get_sample_count();
    let bh = metrics.batch_seconds.metric();
    let bh = bh.get_histogram();
    let mut below = 0;
    let mut batches: Vec<(f64, u64)> = bh
        .get_bucket()
        .iter()
        .map(|b| {
            let n = b.cumulative_count() - below;
            below = b.cumulative_count();
            (b.upper_bound(), n)
        })
        .collect();
    batches.push((f64::INFINITY, bh.get_sample_count() - below));
    let ms3 = |t: Option<(f64, f64, f64)>| t.map(|(v, lo, hi)| (v * 1e3, lo * 1e3, hi * 1e3));
    Latency {
        rate,
        linger_ms: linger,
        produced: total as u64,
        produce_secs,
        signals: summary.signals,
        exact,
        worst,
        unmatched,
        hist_count: count,
        batches,
        hist_p50: ms3(histogram_quantile(0.5, &buckets, count)),
        hist_p99: ms3(histogram_quantile(0.99, &buckets, count)),
    }
}

fn main() {
    // SAFETY: the first statement of main, before any thread exists (no client, no
    // mock cluster yet), so nothing can read the environment concurrently.
    unsafe {
        std::env::set_var("ATOWATCH_LOG", "warn");
    }
    let bench_start = Instant::now();
    let events: u64 = env_or("ATOWATCH_BENCH_EVENTS", 1_000_000);
    let partitions: i32 = env_or("ATOWATCH_BENCH_PARTITIONS", 16);
    let rounds: usize = env_or("ATOWATCH_BENCH_ROUNDS", 3).max(1);
    let lat_rate: f64 = env_or("ATOWATCH_BENCH_RATE", 20_000.0);
    let lat_secs: f64 = env_or(
        "ATOWATCH_BENCH_SECONDS",
        if events < 100_000 { 2.0 } else { 10.0 },
    );
    let fetch_wait_ms: u32 = env_or("ATOWATCH_BENCH_FETCH_WAIT_MS", 1);
    let cores = thread::available_parallelism().map_or(0, |n| n.get());
    let profile = std::env::var("ATOWATCH_BENCH_PROFILE").ok();

    if profile.as_deref() == Some("latency") {
        let mock = MockCluster::new(1).expect("mock cluster");
        create_shared_topics(&mock);
        let brokers = mock.bootstrap_servers();
        let lat = latency(
            &mock,
            &brokers,
            partitions,
            lat_rate,
            lat_secs,
            fetch_wait_ms,
        );
        lat.print_run();
        if !lat.exact.is_empty() {
            println!(
                "exact p50 {:.1} ms, p99 {:.1} ms; histogram p99 {:.1} ms",
                exact_quantile(&lat.exact, 0.5),
                exact_quantile(&lat.exact, 0.99),
                lat.hist_p99.map_or(f64::NAN, |t| t.0)
            );
        }
        return;
    }

    let sim = generate(&SimOptions {
        seed: 42,
        accounts: 100_000,
        ips: 50_000,
        benign_events: Some(events),
        ..SimOptions::default()
    })
    .expect("simulate");
    let data = Payloads::render(&sim);
    drop(sim);
    let n = data.len() as u64;
    println!(
        "{} simulated events ({} MiB of JSON; benign target {})",
        sep(n),
        data.bytes.len() >> 20,
        sep(events)
    );

    // What the engine finds in the same events read in produce order: the reference
    // for the signal counts of the rounds, which read 16 partitions interleaved.
    let replay_signals = {
        let mut engine = Engine::new(config("", EVENTS, SIGNALS));
        let mut out = Vec::new();
        let mut n = 0u64;
        for i in 0..data.len() {
            engine.process_json(data.get(i), &mut out);
            n += out.len() as u64;
            out.clear();
        }
        n
    };

    let s = setup(&data, partitions);
    drop(data);

    // For profilers: one side alone, after the setup.
    if let Some(which) = profile {
        for r in 1..=rounds {
            if which == "bare" || which == "bare-batch" {
                let read = if which == "bare" {
                    Read::Poll
                } else {
                    Read::Batch
                };
                let b = bare_round(&s.brokers, n, read);
                println!(
                    "profile round {r}: bare {:.0} events/s, {:.2} µs CPU/event",
                    rate(n - 1, b.read),
                    cpu_per_event(&b, n)
                );
            } else {
                let a = atowatch_round(&s.brokers, n);
                println!(
                    "profile round {r}: atowatch {:.0} events/s, {:.2} µs CPU/event",
                    rate(n - 1, a.round.read),
                    cpu_per_event(&a.round, n)
                );
            }
        }
        return;
    }

    let (mut bare, mut batch, mut ato) = (Vec::new(), Vec::new(), Vec::new());
    for r in 1..=rounds {
        let b = bare_round(&s.brokers, n, Read::Poll);
        println!(
            "round {r}: bare consumer {:>10.0} events/s ({:.2}s; join {:.0} ms), {:.2} µs CPU/event",
            rate(n - 1, b.read),
            b.read.as_secs_f64(),
            ms(b.join),
            cpu_per_event(&b, n)
        );
        let bb = bare_round(&s.brokers, n, Read::Batch);
        println!(
            "round {r}: bare, batches {:>10.0} events/s ({:.2}s), {:.2} µs CPU/event",
            rate(n - 1, bb.read),
            bb.read.as_secs_f64(),
            cpu_per_event(&bb, n)
        );
        batch.push(bb);
        let a = atowatch_round(&s.brokers, n);
        println!(
            "round {r}: atowatch run  {:>10.0} events/s ({:.2}s; join {:.0} ms; {:.2}s in all), {:.2} µs CPU/event, {} signals, {} dead letters, {} late",
            rate(n - 1, a.round.read),
            a.round.read.as_secs_f64(),
            ms(a.round.join),
            a.total.as_secs_f64(),
            cpu_per_event(&a.round, n),
            sep(a.summary.signals),
            sep(a.summary.dead_letters),
            sep(a.late)
        );
        bare.push(b);
        ato.push(a);
    }

    let lat = latency(
        &s.mock,
        &s.brokers,
        partitions,
        lat_rate,
        lat_secs,
        fetch_wait_ms,
    );
    let exact_n = lat.exact.len();
    lat.print_run();

    let bare_rate = median(bare.iter().map(|b| rate(n - 1, b.read)).collect());
    let bare_join = median(bare.iter().map(|b| ms(b.join)).collect());
    let batch_rate = median(batch.iter().map(|b| rate(n - 1, b.read)).collect());
    let ato_rate = median(ato.iter().map(|a| rate(n - 1, a.round.read)).collect());
    let ato_join = median(ato.iter().map(|a| ms(a.round.join)).collect());
    let ato_total = median(ato.iter().map(|a| a.total.as_secs_f64()).collect());
    let signals: Vec<u64> = ato.iter().map(|a| a.summary.signals).collect();
    let (smin, smax) = (
        *signals.iter().min().expect("a round"),
        *signals.iter().max().expect("a round"),
    );
    let ratio = ato_rate / bare_rate;

    println!();
    println!(
        "kafka bench: {} events, {} partitions{}, lz4, mock broker on loopback ({cores} cores)",
        sep(n),
        s.partitions,
        match s.placement {
            Placement::Keyed => "",
            Placement::RoundRobin => " (round-robin: one IP outgrows a mock partition)",
        }
    );
    println!("  produce:            {:.0} events/s", rate(n, s.produce));
    println!(
        "  bare consumer:      {bare_rate:.0} events/s (median of {rounds}; group join {bare_join:.0} ms): BaseConsumer::poll"
    );
    println!(
        "  bare, batches:      {batch_rate:.0} events/s (median of {rounds}): rd_kafka_consume_batch_queue, as atowatch reads"
    );
    println!(
        "  atowatch run:       {ato_rate:.0} events/s (median of {rounds}; group join {ato_join:.0} ms; {ato_total:.2}s to return, with drain and commit), {} signals, with commits",
        if smin == smax {
            sep(smin)
        } else {
            format!("{}..{}", sep(smin), sep(smax))
        }
    );
    let late = median(ato.iter().map(|a| a.late as f64).collect()) as u64;
    println!(
        "  late:               {} of {} events dropped as late (median); the same events in produce order: {} signals{}",
        sep(late),
        sep(n),
        sep(replay_signals),
        if late * 100 > n {
            "  WARNING: most of the run measured dropping, not detecting"
        } else {
            ""
        }
    );
    println!(
        "  ratio:              {ratio:.2} of bare (target >= 0.70)   {}",
        pass(ratio >= 0.70)
    );
    println!(
        "                      {:.2} of bare reading in batches (no target; for comparison)",
        ato_rate / batch_rate
    );
    println!(
        "  absolute:           {ato_rate:.0} events/s (target >= 300,000)  {}",
        pass(ato_rate >= 300_000.0)
    );
    let rate_label = format!("latency @ {}/s:", sep(lat.rate as u64));
    if exact_n > 0 {
        let (p50, p99, max) = (
            exact_quantile(&lat.exact, 0.5),
            exact_quantile(&lat.exact, 0.99),
            lat.exact[exact_n - 1],
        );
        println!(
            "  {rate_label:<19} p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms (exact, {} signals{}; target p99 <= 50 ms)   {}",
            sep(exact_n as u64),
            if lat.unmatched > 0 {
                format!(", {} unmatched", lat.unmatched)
            } else {
                String::new()
            },
            pass(p99 <= 50.0)
        );
    } else {
        println!("  {rate_label:<19} no signals read back   FAIL");
    }
    match (lat.hist_p50, lat.hist_p99) {
        (Some((p50, ..)), Some((p99, lo, hi))) => println!(
            "  {:<19} p50 {p50:.1} ms, p99 {p99:.1} ms: histogram, bucket-interpolated (p99 in ({lo:.0}, {hi:.0}] ms), {} samples   {}",
            "",
            sep(lat.hist_count),
            pass(p99 <= 50.0)
        ),
        _ => println!("  {:<19} histogram empty   FAIL", ""),
    }
    let extra = extra_consumer_props();
    if !extra.is_empty() || std::env::var_os("ATOWATCH_BENCH_CONFIG").is_some() {
        println!(
            "  not the defaults:   consumer properties {extra:?}, config {:?}",
            std::env::var_os("ATOWATCH_BENCH_CONFIG")
        );
    }
    println!(
        "  notes: rates run from each side's first message to its last. The exact latency \
         runs from the send to the signal's arrival at a reader, the histogram to the \
         delivery report as atowatch serves it. The latency phase uses its own topics \
         ({partitions} partitions, keyed), a producer with linger.ms={} and \
         fetch.wait.max.ms={fetch_wait_ms} for atowatch's consumer and the reader: {FETCH_WAIT_NOTE}. \
         On linger: {LINGER_NOTE}.",
        lat.linger_ms
    );
    println!(
        "  bench runtime:      {:.1}s",
        bench_start.elapsed().as_secs_f64()
    );
}
