//! Kafka helpers for integration tests: a mock cluster with atowatch's topics, producing,
//! reading a topic back whole, running the pipeline in-process, scraping HTTP.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use atowatch::config::Config;
use atowatch::engine::Engine;
use atowatch::kafka::{self, Health, RunOptions, RunSummary};
use atowatch::metrics::Metrics;

pub const EVENTS: &str = "auth-events";
pub const SIGNALS: &str = "ato-signals";
pub const DLQ: &str = "auth-events-dlq";
pub const DECISIONS: &str = "atowatch-decisions";

pub struct Cluster {
    pub mock: MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    pub brokers: String,
    pub partitions: i32,
}

impl Cluster {
    pub fn new(partitions: i32) -> Cluster {
        let mock = MockCluster::new(1).expect("mock cluster");
        mock.create_topic(EVENTS, partitions, 1).expect("topic");
        mock.create_topic(SIGNALS, 1, 1).expect("topic");
        mock.create_topic(DLQ, 1, 1).expect("topic");
        mock.create_topic(DECISIONS, 1, 1).expect("topic");
        let brokers = mock.bootstrap_servers();
        Cluster {
            mock,
            brokers,
            partitions,
        }
    }
}

static GROUP: AtomicU64 = AtomicU64::new(0);

/// A config pointing at `brokers`, with a group of its own and quick commits.
pub fn config(brokers: &str) -> Config {
    let mut cfg = Config::default();
    cfg.kafka.brokers = brokers.to_string();
    cfg.kafka.group_id = format!(
        "atowatch-test-{}-{}",
        std::process::id(),
        GROUP.fetch_add(1, Ordering::Relaxed)
    );
    cfg.kafka.commit_interval = atowatch::config::Dur(200);
    cfg
}

#[derive(Default)]
struct CountFailures {
    failed: AtomicU64,
}
impl ClientContext for CountFailures {}
impl ProducerContext for CountFailures {
    type DeliveryOpaque = ();
    fn delivery(&self, r: &DeliveryResult<'_>, _: ()) {
        if r.is_err() {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// `minutes` of simulated traffic (every attack that fits) with about `benign_events`
/// benign ones, as native JSON lines. 12,000 over two hours (~25k events in all) keeps a
/// whole input within the mock broker's per-partition retention (5 MiB).
pub fn simulated(seed: u64, minutes: i64, benign_events: u64) -> Vec<Vec<u8>> {
    let opts = atowatch::simulate::SimOptions {
        benign_events: Some(benign_events),
        accounts: 2_000,
        ips: 1_500,
        ..atowatch::simulate::SimOptions::for_duration(seed, minutes * crate::common::MIN)
    };
    let sim = atowatch::simulate::generate(&opts).expect("simulate");
    (0..sim.len())
        .map(|i| {
            let mut b = Vec::new();
            sim.write_event_json(i, &mut b);
            b
        })
        .collect()
}

/// Sends `rec`, serving delivery reports while the producer's queue is full.
pub fn send_waiting<C: ProducerContext<DeliveryOpaque = ()>>(
    p: &BaseProducer<C>,
    mut rec: BaseRecord<'_, [u8], [u8]>,
) {
    loop {
        match p.send(rec) {
            Ok(()) => return,
            Err((_, r)) => {
                rec = r;
                p.poll(Duration::from_millis(10));
            }
        }
    }
}

/// Produces payloads in order, each keyed by `key_of` (None: no key), and waits until
/// all are acknowledged.
pub fn produce<'a>(
    brokers: &str,
    topic: &str,
    payloads: impl IntoIterator<Item = &'a [u8]>,
    partition: Option<i32>,
) -> u64 {
    let p: BaseProducer<CountFailures> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "1")
        // The mock broker keeps only the newest 5 MiB of each partition; compressed
        // batches let a test's whole input stay readable (for warm-up re-reads too).
        .set("compression.type", "lz4")
        .create_with_context(CountFailures::default())
        .expect("producer");
    let mut n = 0;
    for payload in payloads {
        let mut rec: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic).payload(payload);
        if let Some(part) = partition {
            rec = rec.partition(part);
        }
        let key = atowatch::kafka::produce::event_key(payload);
        if !key.is_empty() {
            rec = rec.key(key);
        }
        send_waiting(&p, rec);
        n += 1;
    }
    p.flush(Duration::from_secs(30)).expect("flush");
    assert_eq!(
        p.context().failed.load(Ordering::Relaxed),
        0,
        "deliveries failed"
    );
    n
}

#[derive(Clone, Debug)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: BTreeMap<String, String>,
}

impl Record {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }
}

/// Every record in `topic`, by partition then offset, up to the high watermarks.
pub fn read_all(brokers: &str, topic: &str) -> Vec<Record> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "atowatch-test-reader")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let md = c
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let parts: Vec<i32> = md.topics()[0].partitions().iter().map(|p| p.id()).collect();
    let mut tpl = TopicPartitionList::new();
    let mut remaining = 0;
    let mut highs = BTreeMap::new();
    for &p in &parts {
        let (lo, hi) = c
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .expect("watermarks");
        if hi > lo {
            tpl.add_partition_offset(topic, p, Offset::Beginning)
                .unwrap();
            remaining += 1;
            highs.insert(p, hi);
        }
    }
    let mut out = Vec::new();
    if remaining == 0 {
        return out;
    }
    c.assign(&tpl).expect("assign");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut done = BTreeMap::new();
    while done.len() < highs.len() {
        assert!(Instant::now() < deadline, "reading {topic} timed out");
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            let headers = record_headers(&m);
            let (p, o) = (m.partition(), m.offset());
            out.push(Record {
                partition: p,
                offset: o,
                key: m.key().map(<[u8]>::to_vec),
                payload: m.payload().unwrap_or_default().to_vec(),
                headers,
            });
            if o + 1 >= highs[&p] {
                done.insert(p, true);
            }
        }
    }
    out.sort_by_key(|r| (r.partition, r.offset));
    out
}

/// The signal JSON lines in the signals topic.
pub fn signals(brokers: &str) -> Vec<String> {
    read_all(brokers, SIGNALS)
        .iter()
        .map(Record::text)
        .collect()
}

/// The group's committed offset for each partition of `topic` (-1: none).
pub fn committed(brokers: &str, group: &str, topic: &str, partitions: i32) -> Vec<i64> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let got = c
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("committed offsets");
    (0..partitions)
        .map(|p| match got.find_partition(topic, p).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => o,
            _ => -1,
        })
        .collect()
}

/// Runs the pipeline in-process until it has handled `n` live messages, then stops it
/// gracefully. Panics after `limit`.
pub fn run_until(cfg: Config, n: u64, limit: Duration) -> (RunSummary, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::default());
    let opts = RunOptions {
        stop_after: Some(n),
        ..RunOptions::default()
    };
    let stop = opts.stop.clone();
    let m = metrics.clone();
    let h = std::thread::spawn(move || kafka::run(cfg, m, health, opts));
    let deadline = Instant::now() + limit;
    while !h.is_finished() {
        if Instant::now() > deadline {
            stop.store(true, Ordering::Relaxed);
            let _ = h.join();
            panic!(
                "pipeline did not handle {n} messages within {limit:?} (handled {})",
                metrics.messages.get()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let summary = h.join().expect("pipeline thread").expect("pipeline");
    (summary, metrics)
}

/// The signals `replay` finds on the same payloads, as JSON lines.
pub fn replay(cfg: &Config, payloads: &[Vec<u8>]) -> Vec<String> {
    let mut engine = Engine::new(cfg.clone());
    let mut out = Vec::new();
    for p in payloads {
        engine.process_json(p, &mut out);
    }
    out.iter().map(|s| s.to_json()).collect()
}

/// Serves atowatch's HTTP endpoints on a loopback port; keep the runtime alive.
pub fn serve_http(
    metrics: &Arc<Metrics>,
    health: &Arc<Health>,
) -> (tokio::runtime::Runtime, String) {
    let rt = http_runtime();
    let state = atowatch::http::HttpState::new(metrics.clone(), health.clone());
    let addr = rt
        .block_on(atowatch::http::serve("127.0.0.1:0", state))
        .expect("bind")
        .to_string();
    (rt, addr)
}

/// A runtime for atowatch's HTTP server, as `run` builds one (one worker thread).
pub fn http_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Whether the decisions topic holds a decision under `id` and, after it, its tombstone.
pub fn ended_on_topic(brokers: &str, id: &str) -> bool {
    let recs = read_all(brokers, DECISIONS);
    let mine: Vec<_> = recs
        .iter()
        .filter(|r| r.key.as_deref() == Some(id.as_bytes()))
        .collect();
    mine.len() >= 2 && mine.last().unwrap().payload.is_empty()
}

/// The token bouncers read decisions with, and the admin token that adds and lifts them,
/// in `DecisionsInstance`.
pub const READ_TOKEN: &str = "reader-token-0123456789";
pub const ADMIN_TOKEN: &str = "admin-token-0123456789";

/// `run` in a thread over `cfg`, with its decisions API served at `addr` (`READ_TOKEN`,
/// `ADMIN_TOKEN`) and at `no_admin` (adding and lifting off), over the run's table.
pub struct DecisionsInstance {
    pub addr: String,
    pub no_admin: String,
    pub metrics: Arc<Metrics>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    run: std::thread::JoinHandle<Result<RunSummary, atowatch::kafka::KafkaError>>,
    _rt: tokio::runtime::Runtime,
}

impl DecisionsInstance {
    pub fn start(cfg: Config) -> DecisionsInstance {
        let metrics = Arc::new(Metrics::new());
        let decisions = Arc::new(atowatch::decisions::DecisionTable::new());
        let rt = http_runtime();
        let addr = serve_decisions(
            &rt,
            &metrics,
            &decisions,
            Some(READ_TOKEN),
            Some(ADMIN_TOKEN),
        );
        let no_admin = serve_decisions(&rt, &metrics, &decisions, Some(READ_TOKEN), None);
        let opts = RunOptions {
            decisions,
            ..RunOptions::default()
        };
        let stop = opts.stop.clone();
        let m = metrics.clone();
        let run = std::thread::spawn(move || kafka::run(cfg, m, Arc::new(Health::default()), opts));
        DecisionsInstance {
            addr,
            no_admin,
            metrics,
            stop,
            run,
            _rt: rt,
        }
    }

    /// The decisions in force, as a bouncer reads them.
    pub fn active(&self) -> Vec<serde_json::Value> {
        let (status, body) = http_request(&self.addr, "GET", "/v1/decisions", Some(READ_TOKEN));
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["decisions"].as_array().unwrap().clone()
    }

    /// A decisions counter scraped from `/metrics`, for IP bans.
    pub fn ip_bans_counted(&self, name: &str) -> f64 {
        let scraped = parse_metrics(&http_get(&self.addr, "/metrics").1);
        metric_sum(&scraped, name, &[("action", "ban"), ("scope", "ip")])
    }

    /// Stops the run gracefully; it must have succeeded.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        self.run.join().unwrap().expect("run");
    }
}

/// The decisions API as `run` serves it, over one table, with these tokens; serves on
/// `rt` (keep it alive) and returns the address. Call it twice for two configurations.
pub fn serve_decisions(
    rt: &tokio::runtime::Runtime,
    metrics: &Arc<Metrics>,
    decisions: &Arc<atowatch::decisions::DecisionTable>,
    token: Option<&str>,
    admin_token: Option<&str>,
) -> String {
    let state = atowatch::http::HttpState {
        metrics: metrics.clone(),
        health: Arc::new(Health::default()),
        decisions: decisions.clone(),
        token: token.map(Into::into),
        admin_token: admin_token.map(Into::into),
        lowercase_accounts: true,
        allowlist: Default::default(),
    };
    rt.block_on(atowatch::http::serve("127.0.0.1:0", state))
        .expect("bind")
        .to_string()
}

/// A plain HTTP/1.1 GET: (status, body).
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    http_request(addr, "GET", path, None)
}

/// A plain HTTP/1.1 request, with a bearer token if given: (status, body).
pub fn http_request(addr: &str, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
    http_request_body(addr, method, path, token, "")
}

/// `http_request` with a JSON body (none when empty).
pub fn http_request_body(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let content = if body.is_empty() {
        String::new()
    } else {
        format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        )
    };
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}{content}Connection: close\r\n\r\n{body}"
    )
    .unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).expect("read response");
    let status = buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status line");
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    // Chunked bodies: keep the lines that are not chunk sizes.
    (status, dechunk(&body))
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    loop {
        let Some((size, after)) = rest.split_once("\r\n") else {
            return body.to_string();
        };
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            return body.to_string();
        };
        if n == 0 {
            return out;
        }
        if after.len() < n {
            return body.to_string();
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
}

/// Prometheus text format to `name{labels}` -> value (label order as printed).
pub fn parse_metrics(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

/// Sum of every sample of a metric whose labels include all of `labels`.
pub fn metric_sum(m: &BTreeMap<String, f64>, name: &str, labels: &[(&str, &str)]) -> f64 {
    m.iter()
        .filter(|(k, _)| {
            let (n, l) = k.split_once('{').unwrap_or((k.as_str(), ""));
            n == name
                && labels
                    .iter()
                    .all(|(lk, lv)| l.contains(&format!("{lk}=\"{lv}\"")))
        })
        .map(|(_, v)| v)
        .sum()
}

/// A record's headers as text, by name.
pub fn record_headers(m: &impl Message) -> BTreeMap<String, String> {
    m.headers()
        .map(|h| {
            h.iter()
                .map(|h| {
                    (
                        h.key.to_string(),
                        String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The `atowatch run` binary as a user starts it: configured through `ATOWATCH_*`, its
/// HTTP on a free port, stderr collected line by line.
pub struct RunProc {
    child: Child,
    lines: mpsc::Receiver<String>,
    pub log: Vec<String>,
}

impl RunProc {
    /// Starts `atowatch run` in `dir`, with `--config config` when given.
    pub fn spawn(brokers: &str, group: &str, config: Option<&Path>, dir: &Path) -> RunProc {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_atowatch"));
        cmd.arg("run");
        if let Some(c) = config {
            cmd.arg("--config").arg(c);
        }
        let mut child = cmd
            .current_dir(dir)
            .env("ATOWATCH_BROKERS", brokers)
            .env("ATOWATCH_GROUP_ID", group)
            .env("ATOWATCH_HTTP_BIND", "127.0.0.1:0")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn atowatch run");
        let (tx, rx) = mpsc::channel();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        RunProc {
            child,
            lines: rx,
            log: Vec::new(),
        }
    }

    fn drain(&mut self) {
        while let Ok(l) = self.lines.try_recv() {
            self.log.push(l);
        }
    }

    /// Everything it wrote to stderr so far.
    pub fn stderr(&mut self) -> String {
        self.drain();
        self.log.join("\n")
    }

    /// Waits for a stderr line containing `needle`; returns it.
    pub fn expect_line(&mut self, needle: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.log.push(l.clone());
                    if l.contains(needle) {
                        return l;
                    }
                }
                Err(_) => panic!(
                    "no line containing {needle:?} within {limit:?}; stderr so far:\n{}",
                    self.log.join("\n")
                ),
            }
        }
    }

    /// The address from `serving /metrics, /healthz, /readyz on http://ADDR`.
    pub fn http_addr(&mut self, limit: Duration) -> String {
        let l = self.expect_line("serving /metrics", limit);
        l.rsplit("http://").next().unwrap().trim().to_string()
    }

    /// Polls `done` until it holds, panicking with the process's stderr after `limit`
    /// or if the process exits first.
    pub fn wait_for(&mut self, what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + limit;
        while !done() {
            if let Some(s) = self.child.try_wait().unwrap() {
                panic!(
                    "atowatch exited ({s}) while waiting for {what}; stderr:\n{}",
                    self.stderr()
                );
            }
            if Instant::now() >= deadline {
                panic!("timed out waiting for {what}; stderr:\n{}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `kill -SIG`: `TERM`, `KILL`.
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill -{sig} {}", self.child.id());
    }

    pub fn wait(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            self.drain();
            if let Some(s) = self.child.try_wait().unwrap() {
                while let Ok(l) = self.lines.recv_timeout(Duration::from_millis(200)) {
                    self.log.push(l);
                }
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "did not exit within {limit:?}; stderr:\n{}",
                self.log.join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RunProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
