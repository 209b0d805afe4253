//! `atowatch demo`: the whole pipeline with nothing to install.
//!
//! An embedded Kafka cluster (librdkafka's mock broker, the real protocol over TCP on
//! loopback) gets three topics; the simulator produces benign traffic with attacks woven
//! in at a steady pace; the real `run` pipeline consumes it as a consumer group; and a
//! second consumer reads the signals topic and prints each signal as one line. At the
//! end: events, signals by rule, and which labelled attacks were found.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use serde_json::Value;

use crate::config::Config;
use crate::kafka::produce::{ProduceOptions, produce_simulation};
use crate::kafka::{self, Health, RunOptions};
use crate::metrics::Metrics;
use crate::simulate::{self, AttackKind, Labels, SimOptions};

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("embedded Kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error(transparent)]
    Simulate(#[from] simulate::SimError),
    #[error(transparent)]
    Produce(#[from] kafka::produce::ProduceError),
    #[error(transparent)]
    Pipeline(#[from] kafka::KafkaError),
    #[error(transparent)]
    Http(#[from] crate::http::HttpError),
}

pub struct DemoOptions {
    pub seed: u64,
    /// Wall-clock length of the traffic.
    pub duration: Duration,
    /// Average events per second.
    pub rate: u64,
    /// Simulated time the traffic spans (compressed into `duration`).
    pub span_ms: i64,
    pub attacks: Vec<AttackKind>,
    pub json: bool,
    pub color: bool,
    pub partitions: i32,
    pub http_bind: String,
    pub stop: Arc<AtomicBool>,
}

/// One signal as read back from the signals topic.
#[derive(Clone, Debug)]
pub struct SeenSignal {
    pub rule: String,
    pub severity: String,
    pub entity_type: String,
    pub entity: String,
}

pub struct DemoReport {
    pub produced: u64,
    /// Decisions in force at the end, by (action, scope).
    pub decisions: Vec<(String, i64)>,
    pub run: kafka::RunSummary,
    pub signals: Vec<SeenSignal>,
    pub labels: Labels,
    pub metrics_url: String,
}

const EVENTS: &str = "auth-events";
const SIGNALS: &str = "ato-signals";
const DLQ: &str = "auth-events-dlq";

/// Runs the demo; signal lines go to `out`, progress to stderr.
pub fn run(opts: DemoOptions, out: &mut (dyn Write + Send)) -> Result<DemoReport, DemoError> {
    let cluster = MockCluster::new(1)?;
    cluster.create_topic(EVENTS, opts.partitions, 1)?;
    cluster.create_topic(SIGNALS, opts.partitions, 1)?;
    cluster.create_topic(DLQ, 1, 1)?;
    cluster.create_topic(&Config::default().decisions.topic, 1, 1)?;
    let brokers = cluster.bootstrap_servers();

    let now_ms = chrono::Utc::now().timestamp_millis();
    let secs = opts.duration.as_secs_f64().max(1.0);
    let mut sim_opts = SimOptions::for_duration(opts.seed, opts.span_ms);
    // Events stamped so the span ends about now: signals read as recent.
    sim_opts.start_ms = (now_ms - opts.span_ms).div_euclid(60_000) * 60_000;
    sim_opts.benign_events = Some(((opts.rate as f64 * secs) * 0.9) as u64);
    sim_opts.attacks = opts.attacks.clone();
    let sim = simulate::generate(&sim_opts)?;
    let pace = sim.len() as f64 / secs;

    let mut cfg = Config::default();
    cfg.kafka.brokers = brokers.clone();
    cfg.kafka.topics = vec![EVENTS.into()];
    cfg.kafka.signals_topic = SIGNALS.into();
    cfg.kafka.dead_letter_topic = DLQ.into();
    cfg.kafka.group_id = "atowatch-demo".into();

    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::default());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");
    // The demo serves the decisions API too, with throwaway tokens it prints: one to
    // read (as a bouncer would), one to lift a decision.
    let throwaway = |kind: &str| -> String {
        use std::hash::BuildHasher;
        // RandomState is keyed from the OS's randomness: good enough for a demo token.
        let r = std::collections::hash_map::RandomState::new();
        format!(
            "demo-{kind}-{:016x}{:016x}",
            r.hash_one(1u8),
            r.hash_one(2u8)
        )
    };
    let (token, admin) = (throwaway("read"), throwaway("admin"));
    let decisions = Arc::new(crate::decisions::DecisionTable::new());
    let state = crate::http::HttpState {
        metrics: metrics.clone(),
        health: health.clone(),
        decisions: decisions.clone(),
        token: Some(token.clone().into()),
        admin_token: Some(admin.clone().into()),
        lowercase_accounts: cfg.normalize.lowercase_accounts,
        allowlist: cfg.allowlist(),
    };
    let addr = rt.block_on(async {
        match crate::http::serve(&opts.http_bind, state.clone()).await {
            Ok(a) => Ok(a),
            // The usual port is taken (another demo?): any free one will do.
            Err(_) => crate::http::serve("127.0.0.1:0", state).await,
        }
    })?;
    let metrics_url = format!("http://{addr}/metrics");
    eprintln!(
        "demo: embedded Kafka at {brokers}; {} events ({} of simulated traffic, {} attacks) at {:.0}/s for {:.0}s",
        sim.len(),
        simulate_span(opts.span_ms),
        sim.labels.attacks.len(),
        pace,
        secs
    );
    eprintln!("demo: metrics at {metrics_url} (also /healthz, /readyz)");
    eprintln!(
        "demo: decisions: curl -H 'Authorization: Bearer {token}' http://{addr}/v1/decisions"
    );
    eprintln!(
        "demo: add one:   curl -H 'Authorization: Bearer {admin}' -d '{{\"ip\":\"192.0.2.1\",\"duration\":\"1h\",\"reason\":\"test\"}}' http://{addr}/v1/decisions"
    );
    eprintln!(
        "demo: lift one:  curl -X DELETE -H 'Authorization: Bearer {admin}' http://{addr}/v1/decisions/<id>"
    );

    let pipeline_stop = Arc::new(AtomicBool::new(false));
    let run_opts = RunOptions {
        stop: pipeline_stop.clone(),
        decisions: decisions.clone(),
        ..RunOptions::default()
    };
    let (m2, h2) = (metrics.clone(), health.clone());
    let pipeline = std::thread::Builder::new()
        .name("pipeline".into())
        .spawn(move || kafka::run(cfg, m2, h2, run_opts))
        .expect("spawn pipeline");

    let printer_stop = Arc::new(AtomicBool::new(false));
    let printer = {
        let brokers = brokers.clone();
        let stop = printer_stop.clone();
        let (json, color) = (opts.json, opts.color);
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let handle = std::thread::Builder::new()
            .name("printer".into())
            .spawn(move || read_signals(&brokers, &stop, tx))
            .expect("spawn printer");
        (handle, rx, json, color)
    };

    // Produce only once the group has its partitions: the embedded broker keeps just the
    // newest 5 MiB of each partition, so a head start could age events out unread.
    let joined_by = Instant::now() + Duration::from_secs(30);
    while !health.joined.load(Ordering::Relaxed) && Instant::now() < joined_by {
        std::thread::sleep(Duration::from_millis(20));
    }
    let produce_stop = opts.stop.clone();
    let sent_total = sim.len() as u64;
    let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let labels = sim.labels.clone();
    let producer = {
        let (brokers, sent) = (brokers.clone(), sent.clone());
        std::thread::Builder::new()
            .name("producer".into())
            .spawn(move || {
                produce_simulation(
                    &brokers,
                    EVENTS,
                    &sim,
                    ProduceOptions {
                        rate: Some(pace),
                        stop: produce_stop,
                        progress: Some(Box::new(move |n| sent.store(n, Ordering::Relaxed))),
                    },
                )
            })
            .expect("spawn producer")
    };
    let (handle, rx, json, color) = printer;
    let mut seen = Vec::new();
    let mut shown = Shown::default();
    let mut print = |line: String, seen: &mut Vec<SeenSignal>, out: &mut (dyn Write + Send)| {
        if let Ok(v) = serde_json::from_str::<Value>(&line) {
            let s = SeenSignal {
                rule: str_at(&v, &["rule"]),
                severity: str_at(&v, &["severity"]),
                entity_type: str_at(&v, &["entity", "type"]),
                entity: str_at(&v, &["entity", "value"]),
            };
            if json {
                let _ = writeln!(out, "{line}");
            } else if shown.admit(&s.rule) {
                let _ = writeln!(out, "{}", render(&v, color));
            }
            seen.push(s);
        }
    };
    // Print signals as they arrive, with a progress line every few seconds, until the
    // producer is done and the pipeline has caught up (or a stop).
    let mut last_change = Instant::now();
    let mut last_count = 0;
    let mut next_progress = Instant::now() + Duration::from_secs(5);
    loop {
        while let Ok(line) = rx.try_recv() {
            print(line, &mut seen, out);
            last_change = Instant::now();
        }
        let processed = metrics.messages.get();
        if processed != last_count {
            last_count = processed;
            last_change = Instant::now();
        }
        if Instant::now() >= next_progress {
            eprintln!(
                "demo: {}/{sent_total} events produced, {processed} processed, {} signals",
                sent.load(Ordering::Relaxed),
                metrics.signals_total_value()
            );
            next_progress = Instant::now() + Duration::from_secs(5);
        }
        let done_producing = producer.is_finished();
        let caught_up = done_producing && processed >= sent.load(Ordering::Relaxed);
        if opts.stop.load(Ordering::Relaxed)
            || (caught_up && last_change.elapsed() > Duration::from_secs(2))
            || (done_producing && last_change.elapsed() > Duration::from_secs(30))
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let produced = producer.join().expect("producer thread");
    pipeline_stop.store(true, Ordering::Relaxed);
    let run = pipeline.join().expect("pipeline thread")?;
    // Signals published during shutdown, then stop reading.
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => print(line, &mut seen, out),
            Err(_) if seen.len() as u64 >= run.signals => break,
            Err(_) => {}
        }
    }
    printer_stop.store(true, Ordering::Relaxed);
    let _ = handle.join();
    while let Ok(line) = rx.try_recv() {
        print(line, &mut seen, out);
    }
    if shown.hidden > 0 {
        let _ = writeln!(
            out,
            "         ({} more campaign_participant signals, one per IP of a flagged campaign; --json prints every signal)",
            shown.hidden
        );
    }
    let produced = produced?;
    drop(cluster);
    let mut decision_counts: Vec<(String, i64)> = decisions
        .counts()
        .into_iter()
        .map(|((a, s), n)| (format!("{} {}", a.as_str(), s.as_str()), n))
        .collect();
    decision_counts.sort();
    Ok(DemoReport {
        produced,
        decisions: decision_counts,
        run,
        signals: seen,
        labels,
        metrics_url,
    })
}

/// A distributed campaign flags each of its thousands of IPs: the readable view shows
/// the first few and counts the rest.
#[derive(Default)]
struct Shown {
    participants: usize,
    hidden: usize,
}

const PARTICIPANTS_SHOWN: usize = 5;

impl Shown {
    fn admit(&mut self, rule: &str) -> bool {
        if rule != "campaign_participant" {
            return true;
        }
        self.participants += 1;
        if self.participants > PARTICIPANTS_SHOWN {
            self.hidden += 1;
            false
        } else {
            true
        }
    }
}

fn simulate_span(ms: i64) -> String {
    crate::config::Dur(ms).to_string()
}

fn read_signals(brokers: &str, stop: &AtomicBool, tx: std::sync::mpsc::Sender<String>) {
    let consumer: BaseConsumer = match ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "atowatch-demo-printer")
        .set("auto.offset.reset", "earliest")
        .create()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("demo: cannot read signals: {e}");
            return;
        }
    };
    if consumer.subscribe(&[SIGNALS]).is_err() {
        return;
    }
    while !stop.load(Ordering::Relaxed) {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            if let Some(p) = m.payload() {
                let _ = tx.send(String::from_utf8_lossy(p).into_owned());
            }
        }
    }
}

fn str_at(v: &Value, path: &[&str]) -> String {
    let mut cur = v;
    for p in path {
        cur = &cur[*p];
    }
    match cur {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// One line a person can read: time, severity, rule, entity, the evidence that matters.
pub fn render(v: &Value, color: bool) -> String {
    let sev = str_at(v, &["severity"]);
    let paint = |code: &str, s: &str| {
        if color {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    };
    let sev_col = match sev.as_str() {
        "critical" => paint("1;41;97", &format!("{sev:<8}")),
        "high" => paint("1;31", &format!("{sev:<8}")),
        "medium" => paint("33", &format!("{sev:<8}")),
        _ => paint("36", &format!("{sev:<8}")),
    };
    let ts = str_at(v, &["ts"]);
    let time = ts.get(11..19).unwrap_or(&ts).to_string();
    let e = &v["evidence"];
    let mut facts = Vec::new();
    for (k, label) in [
        ("failures", "failures"),
        ("attempts", "attempts"),
        ("distinct_accounts", "accounts"),
        ("distinct_ips", "IPs"),
    ] {
        if let Some(n) = e[k].as_u64().filter(|n| *n > 0) {
            facts.push(format!("{n} {label}"));
        }
    }
    if let Some(r) = e["failure_ratio"].as_f64() {
        facts.push(format!("{:.0}% failed", r * 100.0));
    }
    let because = str_at(&v["evidence"], &["because"]);
    if !because.is_empty() {
        let from = v["evidence"]["sample_ips"][0].as_str().unwrap_or("?");
        facts.push(format!("signed in from {from} after {because}"));
    }
    let window = str_at(v, &["window"]);
    if !window.is_empty() {
        facts.push(format!("in {window}"));
    }
    let service = str_at(v, &["service"]);
    if !service.is_empty() {
        facts.push(format!("on {service}"));
    }
    format!(
        "{time} {sev_col} {:<32} {:<7} {:<28} {}",
        paint("1", &str_at(v, &["rule"])),
        str_at(v, &["entity", "type"]),
        str_at(v, &["entity", "value"]),
        facts.join(", ")
    )
}

/// Per labelled attack: found by each of its expected rules on one of its entities?
pub fn score(labels: &Labels, signals: &[SeenSignal]) -> Vec<(String, Vec<(String, bool)>)> {
    labels
        .attacks
        .iter()
        .map(|a| {
            let rules = a
                .expected_rules
                .iter()
                .map(|rule| {
                    let found = signals.iter().any(|s| {
                        &s.rule == rule
                            && match s.entity_type.as_str() {
                                "ip" => a.ips.contains(&s.entity),
                                "account" => a.accounts.contains(&s.entity),
                                _ => s.entity == a.service,
                            }
                    });
                    (rule.clone(), found)
                })
                .collect();
            let note: String = a.note.chars().take(72).collect();
            let more = if note.len() < a.note.len() { "…" } else { "" };
            (format!("{}: {note}{more}", a.kind.as_str()), rules)
        })
        .collect()
}

impl DemoReport {
    pub fn render_summary(&self) -> String {
        let mut s = String::new();
        let r = &self.run;
        s.push_str(&format!(
            "\nSummary: {} events produced, {} processed, {} signals, {} dead letters, {} late in {:.1}s\n",
            self.produced,
            r.messages,
            self.signals.len(),
            r.dead_letters,
            r.late,
            r.elapsed.as_secs_f64()
        ));
        let mut by_rule: BTreeMap<&str, usize> = BTreeMap::new();
        for sig in &self.signals {
            *by_rule.entry(sig.rule.as_str()).or_default() += 1;
        }
        s.push_str("Signals by rule:\n");
        for (rule, n) in &by_rule {
            s.push_str(&format!("  {rule:<34} {n}\n"));
        }
        let scored = score(&self.labels, &self.signals);
        let detected = scored
            .iter()
            .filter(|(_, rules)| rules.iter().all(|(_, f)| *f))
            .count();
        s.push_str(&format!(
            "Attacks in the labels: {} of {} detected\n",
            detected,
            scored.len()
        ));
        for (name, rules) in &scored {
            for (rule, found) in rules {
                s.push_str(&format!(
                    "  {} {name}: {rule}\n",
                    if *found { "found " } else { "MISSED" }
                ));
            }
        }
        s.push_str(&format!(
            "Decisions in force: {}\n",
            if self.decisions.is_empty() {
                "none".to_string()
            } else {
                self.decisions
                    .iter()
                    .map(|(k, n)| format!("{n} {k}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        ));
        s.push_str(&format!("Metrics were served at {}\n", self.metrics_url));
        s
    }
}
