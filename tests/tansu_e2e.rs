//! The Kafka runtime end to end against tansu, an independent Kafka-compatible broker
//! (tests/common/tansu.rs): in-process (`kafka::run`) and as the `atowatch run` binary.
//! Where tests/kafka.rs checks the pipeline against librdkafka's own mock cluster, these
//! check it against someone else's implementation of the protocol (group coordinator,
//! offset commits, fetch, produce with headers).
//!
//! Skips (passes, with a `SKIP:` line on stderr) when tansu is not installed.
//!
//! tansu 0.6 quirks these tests work around (see tests/common/tansu.rs):
//! - a fetch from inside a record batch skips the rest of that batch, so input is produced
//!   one record per batch (`Tansu::producer_config`) and output is read from offset 0;
//! - its "latest" offset (high watermark) is too low for multi-record batches, so topics
//!   are read back until the expected number of records arrived, never up to a watermark.

mod common;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use atowatch::config::Config;
use atowatch::engine::{Engine, Processed};

use common::kafka::{
    DECISIONS, DLQ, EVENTS, Record, RunProc, SIGNALS, config, http_get, metric_sum, parse_metrics,
    record_headers, run_until, send_waiting, simulated,
};
use common::tansu::{self, Tansu};

/// Patience for producing, reading back and committed-offset lookups.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Invalid input mixed into the simulated events, with the reason the engine gives.
const INVALID: [(&[u8], &str); 3] = [
    (b"this is not json", "invalid_json"),
    (br#"{"type":"user.login"}"#, "missing_field"),
    (&[0xff, 0xfe, b'{'], "invalid_json"),
];

/// `events` with the [`INVALID`] payloads spliced in at the start, the middle and the end.
fn with_invalid(mut events: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    let mid = events.len() / 2;
    events.insert(0, INVALID[0].0.to_vec());
    events.insert(mid, INVALID[1].0.to_vec());
    events.push(INVALID[2].0.to_vec());
    events
}

/// What replay (`Engine::process_json`, in order) makes of `payloads`: the signal JSON
/// lines, and (index, reason) of each invalid payload.
fn replay(cfg: &Config, payloads: &[Vec<u8>]) -> (Vec<String>, Vec<(usize, String)>) {
    let mut engine = Engine::new(cfg.clone());
    let mut signals = Vec::new();
    let mut invalid = Vec::new();
    for (i, p) in payloads.iter().enumerate() {
        if let Processed::Invalid(e) = engine.process_json(p, &mut signals) {
            invalid.push((i, e.reason.as_str().to_string()));
        }
    }
    (signals.iter().map(|s| s.to_json()).collect(), invalid)
}

/// Counts failed deliveries and remembers the offsets of successful ones.
#[derive(Default)]
struct Deliveries {
    offsets: Mutex<Vec<i64>>,
    failed: Mutex<Vec<String>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, r: &DeliveryResult<'_>, _: ()) {
        match r {
            Ok(m) => self.offsets.lock().unwrap().push(m.offset()),
            Err((e, _)) => self.failed.lock().unwrap().push(e.to_string()),
        }
    }
}

/// Produces `payloads` in order to partition 0 of `topic`, one record per batch (tansu
/// serves a batch only to fetches at or before its base offset, and the pipeline resumes
/// from arbitrary committed offsets), keyed like `atowatch simulate`. Returns the count
/// after checking every record was acknowledged at offsets 0, 1, 2, ...
fn produce(tansu: &Tansu, topic: &str, payloads: &[Vec<u8>]) -> u64 {
    let p: BaseProducer<Deliveries> = tansu
        .producer_config()
        .set("queue.buffering.max.messages", "1000000")
        .create_with_context(Deliveries::default())
        .expect("producer");
    for payload in payloads {
        let mut rec: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic)
            .partition(0)
            .payload(payload.as_slice());
        let key = atowatch::kafka::produce::event_key(payload);
        if !key.is_empty() {
            rec = rec.key(key);
        }
        send_waiting(&p, rec);
    }
    p.flush(TIMEOUT)
        .unwrap_or_else(|e| panic!("flush to {topic}: {e}\n{}", tansu.logs()));
    let failed = p.context().failed.lock().unwrap().clone();
    assert!(
        failed.is_empty(),
        "deliveries to {topic} failed: {failed:?}"
    );
    let offsets = p.context().offsets.lock().unwrap().clone();
    assert_eq!(
        offsets,
        (0..payloads.len() as i64).collect::<Vec<_>>(),
        "{topic}: one record per offset, in order"
    );
    payloads.len() as u64
}

/// Reads partition 0 of `topic` from offset 0 until `want` records arrived (tansu's high
/// watermark cannot be trusted), then a little longer to catch any extra ones.
fn read_back(tansu: &Tansu, topic: &str, want: usize) -> Vec<Record> {
    let c: BaseConsumer = tansu
        .client_config()
        .set("group.id", "atowatch-tansu-reader")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Offset(0))
        .unwrap();
    c.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let deadline = Instant::now() + TIMEOUT;
    let mut grace_until: Option<Instant> = None;
    loop {
        let now = Instant::now();
        if out.len() >= want {
            let until = *grace_until.get_or_insert(now + Duration::from_millis(500));
            if now >= until {
                break;
            }
        } else {
            assert!(
                now < deadline,
                "only {} of {want} records read back from {topic} within {TIMEOUT:?}\n{}",
                out.len(),
                tansu.logs()
            );
        }
        match c.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                let headers = record_headers(&m);
                out.push(Record {
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m.key().map(<[u8]>::to_vec),
                    payload: m.payload().unwrap_or_default().to_vec(),
                    headers,
                });
            }
            Some(Err(e)) => panic!("reading {topic}: {e}\n{}", tansu.logs()),
            None => {}
        }
    }
    let offsets: Vec<i64> = out.iter().map(|r| r.offset).collect();
    assert_eq!(
        offsets,
        (0..out.len() as i64).collect::<Vec<_>>(),
        "{topic} read back without gaps or repeats"
    );
    out
}

/// The group's committed offset for partition 0 of `topic` (-1: none), through tansu's
/// group coordinator.
fn committed(tansu: &Tansu, group: &str, topic: &str) -> i64 {
    let c: BaseConsumer = tansu
        .client_config()
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, 0);
    let got = c
        .committed_offsets(tpl, TIMEOUT)
        .unwrap_or_else(|e| panic!("committed offsets of {group}: {e}\n{}", tansu.logs()));
    match got.find_partition(topic, 0).map(|e| e.offset()) {
        Some(Offset::Offset(o)) => o,
        _ => -1,
    }
}

/// tansu creates no topic on first use: every topic atowatch writes must exist, the
/// decisions topic included (a missing one holds back commits, as it should).
fn create_topics(tansu: &Tansu) {
    for topic in [EVENTS, SIGNALS, DLQ, DECISIONS] {
        tansu.create_topic(topic, 1);
    }
}

#[test]
fn run_against_tansu_finds_the_same_signals_as_replay() {
    let Some(tansu) = tansu::start() else {
        return;
    };
    let t0 = Instant::now();
    create_topics(&tansu);
    let events = with_invalid(simulated(11, 120, 12_000));
    let total = produce(&tansu, EVENTS, &events);
    let produced_in = t0.elapsed();

    let mut cfg = config(&tansu.bootstrap);
    cfg.kafka.properties.insert(
        "broker.address.family".into(),
        atowatch::config::PropValue("v4".into()),
    );
    let group = cfg.kafka.group_id.clone();
    let (expected, invalid) = replay(&cfg, &events);
    assert!(expected.len() > 5, "the simulation has attacks");
    let want_invalid: Vec<(usize, String)> = INVALID
        .iter()
        .map(|(bad, reason)| {
            let at = events.iter().position(|e| e == bad).expect("spliced in");
            (at, reason.to_string())
        })
        .collect();
    assert_eq!(
        invalid, want_invalid,
        "replay rejects exactly the spliced-in lines"
    );

    let t1 = Instant::now();
    let (summary, metrics) = run_until(cfg, total, TIMEOUT);
    let ran_in = t1.elapsed();
    assert_eq!(summary.messages, total);
    assert_eq!(
        summary.warmup_messages, 0,
        "no committed offsets, no warm-up"
    );
    assert_eq!(summary.signals, expected.len() as u64);
    assert_eq!(summary.dead_letters, invalid.len() as u64);
    assert_eq!(summary.unacknowledged, 0, "tansu acknowledged every output");
    assert_eq!(metrics.dead_letters.get(), invalid.len() as u64);

    // Signals: what replay finds, in the same order, each keyed by its entity and
    // pointing back at the event that raised it.
    let t2 = Instant::now();
    let out = read_back(&tansu, SIGNALS, expected.len());
    let got: Vec<String> = out.iter().map(Record::text).collect();
    if got != expected {
        let first = got.iter().zip(&expected).position(|(g, e)| g != e);
        panic!(
            "signals in {SIGNALS} differ from replay: {} vs {} lines, first difference at {first:?}:\n got: {:?}\nwant: {:?}",
            got.len(),
            expected.len(),
            first.map(|i| &got[i]),
            first.map(|i| &expected[i]),
        );
    }
    for r in &out {
        let v: serde_json::Value = serde_json::from_slice(&r.payload).expect("signal JSON");
        assert_eq!(
            r.key.as_deref(),
            v["entity"]["value"].as_str().map(str::as_bytes),
            "signals are keyed by entity"
        );
        assert_eq!(
            Some(r.headers["atowatch.rule"].as_str()),
            v["rule"].as_str()
        );
        assert_eq!(r.headers["atowatch.source.topic"], EVENTS);
        assert_eq!(r.headers["atowatch.source.partition"], "0");
        let src: usize = r.headers["atowatch.source.offset"].parse().expect("offset");
        assert!(src < events.len(), "source offset {src} was produced");
    }

    // Dead letters: the invalid payloads byte for byte, with why and where from.
    let dlq = read_back(&tansu, DLQ, invalid.len());
    assert_eq!(dlq.len(), invalid.len());
    for (rec, (index, reason)) in dlq.iter().zip(&invalid) {
        assert_eq!(
            rec.payload, events[*index],
            "dead letters are byte for byte"
        );
        assert_eq!(rec.headers["atowatch.reason"], *reason);
        assert!(!rec.headers["atowatch.detail"].is_empty());
        assert_eq!(rec.headers["atowatch.source.topic"], EVENTS);
        assert_eq!(rec.headers["atowatch.source.partition"], "0");
        assert_eq!(rec.headers["atowatch.source.offset"], index.to_string());
    }
    let read_in = t2.elapsed();

    assert_eq!(
        committed(&tansu, &group, EVENTS),
        total as i64,
        "everything acknowledged is committed on stop"
    );
    assert_eq!(
        summary.committed,
        vec![(EVENTS.to_string(), 0, total as i64)],
        "the run's own account of its commit"
    );
    eprintln!(
        "tansu e2e: {total} events ({} signals, {} dead letters); produced in {produced_in:.1?}, \
         run in {ran_in:.1?}, read back in {read_in:.1?}, total {:.1?}",
        expected.len(),
        invalid.len(),
        t0.elapsed()
    );
}

#[test]
fn a_restart_against_tansu_resumes_at_the_commit_warms_up_and_misses_nothing() {
    let Some(tansu) = tansu::start() else {
        return;
    };
    let t0 = Instant::now();
    create_topics(&tansu);
    let events = with_invalid(simulated(21, 120, 12_000));
    let total = produce(&tansu, EVENTS, &events);
    let mut cfg = config(&tansu.bootstrap);
    cfg.kafka.properties.insert(
        "broker.address.family".into(),
        atowatch::config::PropValue("v4".into()),
    );
    let group = cfg.kafka.group_id.clone();
    let (expected, _) = replay(&cfg, &events);

    // The first run stops after 60% (committing it); the second resumes there, re-reads
    // what came before to rebuild state without publishing, and goes on to the end.
    let first = total * 6 / 10;
    let (one, _) = run_until(cfg.clone(), first, TIMEOUT);
    assert_eq!((one.messages, one.unacknowledged), (first, 0));
    assert_eq!(committed(&tansu, &group, EVENTS), first as i64);
    let (two, metrics) = run_until(cfg, total - first, TIMEOUT);
    assert_eq!(two.messages, total - first, "resumed at the commit");
    assert_eq!(two.unacknowledged, 0);
    // Within warmup_max_events and the rule windows (the broker appended everything
    // moments ago), so the whole committed prefix is re-read.
    assert_eq!(
        two.warmup_messages, first,
        "warm-up re-read everything before the commit"
    );
    assert_eq!(metrics.warmup_events.get(), first);
    assert_eq!(committed(&tansu, &group, EVENTS), total as i64);
    assert_eq!(one.signals + two.signals, expected.len() as u64);

    let got: Vec<String> = read_back(&tansu, SIGNALS, expected.len())
        .iter()
        .map(Record::text)
        .collect();
    if got != expected {
        let first = got.iter().zip(&expected).position(|(g, e)| g != e);
        panic!(
            "signals across the restart differ from replay: {} vs {} lines, first difference at {first:?}:\n got: {:?}\nwant: {:?}",
            got.len(),
            expected.len(),
            first.map(|i| &got[i]),
            first.map(|i| &expected[i]),
        );
    }
    eprintln!(
        "tansu restart: {total} events, {first} before the restart ({} signals) and {} after \
         ({} signals, {} re-read for warm-up) in {:.1?}",
        one.signals,
        two.messages,
        two.signals,
        two.warmup_messages,
        t0.elapsed()
    );
}

// ---------------------------------------------------------------------------------------
// The binary, as a user runs it (configured from the environment alone).

/// `atowatch run` with no config file: the embedded defaults plus `ATOWATCH_*`
/// overrides, from a scratch directory so nothing in the working tree can be picked up.
fn start_run(brokers: &str, group: &str) -> RunProc {
    let dir = common::scratch_dir(&format!("tansu-run-{group}"));
    RunProc::spawn(brokers, group, None, &dir)
}

fn scrape(addr: &str) -> BTreeMap<String, f64> {
    let (status, body) = http_get(addr, "/metrics");
    assert_eq!(status, 200, "/metrics: {body}");
    parse_metrics(&body)
}

#[test]
fn the_binary_runs_against_tansu_and_stops_on_sigterm() {
    let Some(tansu) = tansu::start() else {
        return;
    };
    create_topics(&tansu);
    let events = with_invalid(simulated(3, 120, 6_000));
    let total = produce(&tansu, EVENTS, &events);
    let group = format!("atowatch-tansu-sigterm-{}", std::process::id());

    let t0 = Instant::now();
    let mut p = start_run(&tansu.bootstrap, &group);
    let addr = p.http_addr(TIMEOUT);
    assert_eq!(http_get(&addr, "/healthz").0, 200);
    p.wait_for("/readyz to return 200", TIMEOUT, || {
        http_get(&addr, "/readyz").0 == 200
    });
    p.wait_for("every event to be consumed", TIMEOUT, || {
        metric_sum(&scrape(&addr), "atowatch_messages_total", &[]) >= total as f64
    });
    let m = scrape(&addr);
    let get = |name: &str| metric_sum(&m, name, &[]);
    assert_eq!(
        get("atowatch_messages_total"),
        total as f64,
        "no event twice"
    );
    let signals = get("atowatch_signals_total");
    assert!(signals > 5.0, "the simulation has attacks");
    assert_eq!(get("atowatch_invalid_events_total"), INVALID.len() as f64);

    // Lag comes from librdkafka's statistics (fetch responses' high watermark), which
    // tansu gets right even though its ListOffsets "latest" is off.
    p.wait_for("consumer lag 0 (statistics every second)", TIMEOUT, || {
        let m = scrape(&addr);
        metric_sum(&m, "atowatch_consumer_lag_messages", &[("topic", EVENTS)]) == 0.0
            && m.keys()
                .any(|k| k.starts_with("atowatch_consumer_lag_messages{"))
    });

    let stopping = Instant::now();
    p.signal("TERM");
    let status = p.wait(TIMEOUT);
    let stopped_in = stopping.elapsed();
    assert!(
        status.success(),
        "exit status {status:?}; stderr:\n{}",
        p.log.join("\n")
    );
    assert!(
        p.log.iter().any(|l| l.contains("stopped:")),
        "the exit summary is logged; stderr:\n{}",
        p.log.join("\n")
    );
    assert_eq!(
        committed(&tansu, &group, EVENTS),
        total as i64,
        "SIGTERM commits to the end; stderr:\n{}",
        p.log.join("\n")
    );
    let out = read_back(&tansu, SIGNALS, signals as usize);
    assert_eq!(
        out.len() as f64,
        signals,
        "every counted signal is in {SIGNALS}"
    );
    let dlq = read_back(&tansu, DLQ, INVALID.len());
    let payloads: Vec<&[u8]> = dlq.iter().map(|r| r.payload.as_slice()).collect();
    let want: Vec<&[u8]> = INVALID.iter().map(|(p, _)| *p).collect();
    assert_eq!(payloads, want, "dead letters are byte for byte");
    eprintln!(
        "tansu binary: {total} events, {signals} signals; consumed in {:.1?}, stopped in {stopped_in:.1?}",
        stopping.duration_since(t0)
    );
}
