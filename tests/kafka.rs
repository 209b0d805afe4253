//! The Kafka runtime against librdkafka's mock cluster: the real protocol over TCP on
//! loopback, in-process (`kafka::run`) and as the `atowatch run` binary.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use atowatch::kafka::{self, Health, RunOptions};
use atowatch::metrics::Metrics;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use common::kafka::*;
use common::{ATTACKER, Ev, MIN, SEC, T0};

/// A bruteforce on one account: 12 failures in 2 minutes from one IP, then a success.
fn bruteforce_events() -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = (0..12)
        .map(|i| {
            Ev::failure(T0 + i * 10 * SEC, ATTACKER, "victim@example.com")
                .json()
                .into_bytes()
        })
        .collect();
    v.push(
        Ev::success(T0 + 3 * MIN, ATTACKER, "victim@example.com")
            .json()
            .into_bytes(),
    );
    v
}

fn signal_id(json: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(json).expect("signal JSON");
    v["signal_id"].as_str().expect("signal_id").to_string()
}

#[test]
fn an_attack_produced_to_the_topic_comes_out_as_a_signal() {
    let c = Cluster::new(1);
    let events = bruteforce_events();
    produce(&c.brokers, EVENTS, events.iter().map(Vec::as_slice), None);
    let cfg = config(&c.brokers);
    let group = cfg.kafka.group_id.clone();
    let (summary, _) = run_until(cfg, events.len() as u64, Duration::from_secs(60));
    assert_eq!(summary.messages, events.len() as u64);

    let out = read_all(&c.brokers, SIGNALS);
    let bf: Vec<&Record> = out
        .iter()
        .filter(|r| r.headers.get("atowatch.rule").map(String::as_str) == Some("bruteforce"))
        .collect();
    assert_eq!(bf.len(), 1, "one bruteforce signal: {out:?}");
    let v: serde_json::Value = serde_json::from_slice(&bf[0].payload).unwrap();
    assert_eq!(v["entity"]["value"], "victim@example.com");
    assert_eq!(v["evidence"]["failures"], 10);
    assert_eq!(
        bf[0].key.as_deref(),
        Some(&b"victim@example.com"[..]),
        "signals are keyed by entity"
    );
    assert_eq!(bf[0].headers["atowatch.source.topic"], EVENTS);
    assert_eq!(
        bf[0].headers["atowatch.source.offset"], "9",
        "the 10th failure"
    );
    assert!(
        out.iter()
            .any(|r| r.text().contains("\"account_takeover\"")),
        "the success after the attack is a takeover: {out:?}"
    );
    assert_eq!(
        committed(&c.brokers, &group, EVENTS, 1),
        vec![events.len() as i64],
        "everything acknowledged is committed on stop"
    );
}

#[test]
fn run_finds_the_same_signals_as_replay_on_the_same_events() {
    let c = Cluster::new(1);
    let events = simulated(11, 120, 12_000);
    produce(&c.brokers, EVENTS, events.iter().map(Vec::as_slice), None);
    let cfg = config(&c.brokers);
    let expected = replay(&cfg, &events);
    assert!(expected.len() > 5, "the simulation has attacks");
    let (summary, _) = run_until(cfg, events.len() as u64, Duration::from_secs(120));
    assert_eq!(summary.signals, expected.len() as u64);
    let got = signals(&c.brokers);
    assert_eq!(got, expected, "byte-identical signals, in the same order");
}

/// Catching up on a backlog, each fetch brings one partition's megabyte: here the whole
/// two hours of a partition before the next partition's. One watermark for the process
/// made three quarters of such a backlog late; one per partition makes none of it late,
/// and finds what reading in produce order finds.
#[test]
fn a_backlog_over_four_partitions_loses_nothing_as_late_and_finds_what_replay_finds() {
    backlog_finds_what_replay_finds(None);
}

/// While one partition's backlog is read, the others wait their turn and deliver
/// nothing. They must not count as idle (the watermark would run past them and expire
/// state their events still need). With a 1 ms idle bound this failed in two runs of
/// five before partitions with unread messages were kept live, and passed in eight of
/// eight after; it then failed once in CI until partitions assigned but not yet heard
/// from held the watermark too (`tests/partition_order.rs` pins that down without
/// Kafka).
#[test]
fn partitions_waiting_their_turn_in_a_backlog_are_not_idle() {
    backlog_finds_what_replay_finds(Some(atowatch::config::Dur(1)));
}

fn backlog_finds_what_replay_finds(idle_after: Option<atowatch::config::Dur>) {
    let c = Cluster::new(4);
    let events = simulated(12, 120, 12_000);
    produce(&c.brokers, EVENTS, events.iter().map(Vec::as_slice), None);
    let mut cfg = config(&c.brokers);
    if let Some(d) = idle_after {
        cfg.kafka.partition_idle_after = d;
    }
    let key = |json: &String| {
        let v: serde_json::Value = serde_json::from_str(json).expect("signal JSON");
        format!("{} {}", v["rule"], v["entity"]["value"])
    };
    let expected: BTreeSet<String> = replay(&cfg, &events).iter().map(key).collect();
    assert!(expected.len() > 5, "the simulation has attacks");
    let (summary, metrics) = run_until(cfg, events.len() as u64, Duration::from_secs(120));
    assert_eq!(summary.late, 0);
    assert_eq!(metrics.late.get(), 0);
    let got: BTreeSet<String> = signals(&c.brokers).iter().map(key).collect();
    assert_eq!(
        got.symmetric_difference(&expected).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "the same rules fire on the same entities"
    );
}

/// The pipeline hands signals to the webhook, and its counters are what /metrics serves.
#[test]
fn signals_reach_the_webhook_and_its_counters_are_exported() {
    use std::io::{BufRead, BufReader, Read, Write};
    let c = Cluster::new(1);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let posts = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen = posts.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut r = BufReader::new(stream.try_clone().unwrap());
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; len];
            let _ = r.read_exact(&mut body);
            seen.lock()
                .unwrap()
                .push(String::from_utf8_lossy(&body).into_owned());
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
        }
    });
    let events = bruteforce_events();
    produce(&c.brokers, EVENTS, events.iter().map(Vec::as_slice), None);
    let mut cfg = config(&c.brokers);
    cfg.webhook.url = url;
    let (summary, metrics) = run_until(cfg, events.len() as u64, Duration::from_secs(60));
    assert!(summary.signals >= 2, "bruteforce and takeover");
    let posts = posts.lock().unwrap().clone();
    assert!(
        posts.iter().any(|p| p.contains("account_takeover")),
        "the critical takeover was posted: {posts:?}"
    );
    assert_eq!(
        metrics.webhook.with_label_values(&["sent"]).get(),
        posts.len() as u64
    );
}

#[test]
fn invalid_events_land_in_the_dead_letter_topic_with_reason_headers() {
    let c = Cluster::new(1);
    let good = Ev::failure(T0, ATTACKER, "a@example.com")
        .json()
        .into_bytes();
    let inputs: Vec<(Vec<u8>, &str)> = vec![
        (b"this is not json".to_vec(), "invalid_json"),
        (good.clone(), ""),
        (br#"["an","array"]"#.to_vec(), "not_an_object"),
        (
            br#"{"type":"user.login","ts":"2026-11-21T10:00:00Z","ip":"203.0.113.9","user":{"login":"x"}}"#
                .to_vec(),
            "missing_field",
        ),
        (
            br#"{"type":"user.logout","outcome":"success","ts":"2026-11-21T10:00:00Z","ip":"203.0.113.9","user":{"login":"x"}}"#
                .to_vec(),
            "unknown_event_type",
        ),
        (
            br#"{"type":"user.login","outcome":"failure","ts":"2026-11-21T10:00:00Z","ip":"not-an-ip","user":{"login":"x"}}"#
                .to_vec(),
            "invalid_ip",
        ),
        (vec![0xff, 0xfe, b'{'], "invalid_json"),
        (good, ""),
    ];
    produce(
        &c.brokers,
        EVENTS,
        inputs.iter().map(|(p, _)| p.as_slice()),
        None,
    );
    let cfg = config(&c.brokers);
    let (summary, metrics) = run_until(cfg, inputs.len() as u64, Duration::from_secs(60));
    assert_eq!(summary.dead_letters, 6);
    let dlq = read_all(&c.brokers, DLQ);
    let expected: Vec<(usize, &(Vec<u8>, &str))> = inputs
        .iter()
        .enumerate()
        .filter(|(_, (_, r))| !r.is_empty())
        .collect();
    assert_eq!(dlq.len(), expected.len());
    for (rec, (offset, (payload, reason))) in dlq.iter().zip(&expected) {
        assert_eq!(&rec.payload, payload, "dead letters are byte for byte");
        assert_eq!(rec.headers["atowatch.reason"], *reason);
        assert!(!rec.headers["atowatch.detail"].is_empty());
        assert_eq!(rec.headers["atowatch.source.topic"], EVENTS);
        assert_eq!(rec.headers["atowatch.source.partition"], "0");
        assert_eq!(rec.headers["atowatch.source.offset"], offset.to_string());
    }
    assert_eq!(metrics.dead_letters.get(), 6, "all acknowledged");
}

#[test]
fn broker_down_then_up_loses_nothing() {
    let c = Cluster::new(1);
    let events = simulated(5, 120, 12_000);
    let half = events.len() / 2;
    produce(
        &c.brokers,
        EVENTS,
        events[..half].iter().map(Vec::as_slice),
        None,
    );
    let cfg = config(&c.brokers);
    let expected = replay(&cfg, &events);

    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::default());
    let opts = RunOptions {
        stop_after: Some(events.len() as u64),
        ..RunOptions::default()
    };
    let (m, h) = (metrics.clone(), health.clone());
    let run = std::thread::spawn(move || kafka::run(cfg, m, h, opts));
    wait_for("the first half", Duration::from_secs(60), || {
        metrics.messages.get() >= half as u64
    });
    c.mock.broker_down(1).expect("broker down");
    wait_for("/readyz to turn not ready", Duration::from_secs(30), || {
        !health.ready()
    });
    std::thread::sleep(Duration::from_secs(2));
    c.mock.broker_up(1).expect("broker up");
    produce(
        &c.brokers,
        EVENTS,
        events[half..].iter().map(Vec::as_slice),
        None,
    );
    wait_for("the pipeline to finish", Duration::from_secs(120), || {
        run.is_finished()
    });
    let summary = run.join().unwrap().expect("run");
    assert_eq!(summary.messages, events.len() as u64);
    assert_eq!(summary.unacknowledged, 0);
    let got: BTreeSet<String> = signals(&c.brokers).into_iter().collect();
    let want: BTreeSet<String> = expected.into_iter().collect();
    assert_eq!(got, want, "every signal arrives, none twice-different");
}

fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A partition that goes quiet stops holding the watermark back (else state would never
/// expire behind an idle partition), and when it speaks again its first event starts it
/// afresh instead of being late; within a partition, order still counts.
#[test]
fn a_quiet_partition_stops_holding_the_watermark_back_and_comes_back_without_loss() {
    let c = Cluster::new(2);
    let mut cfg = config(&c.brokers);
    cfg.kafka.partition_idle_after = atowatch::config::Dur::secs(1);
    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::default());
    let (_rt, addr) = serve_http(&metrics, &health);
    let opts = RunOptions::default();
    let stop = opts.stop.clone();
    let (m, h) = (metrics.clone(), health.clone());
    let run = std::thread::spawn(move || kafka::run(cfg, m, h, opts));
    wait_for("/readyz", Duration::from_secs(30), || {
        http_get(&addr, "/readyz").0 == 200
    });
    let scrape = |name: &str| metric_sum(&parse_metrics(&http_get(&addr, "/metrics").1), name, &[]);
    let events = |from: i64, n: i64| -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| {
                Ev::success(from + i * SEC, &common::nth_ip(i as u32), "member1")
                    .json()
                    .into_bytes()
            })
            .collect()
    };
    let send = |part: i32, evs: Vec<Vec<u8>>| {
        produce(
            &c.brokers,
            EVENTS,
            evs.iter().map(Vec::as_slice),
            Some(part),
        );
    };
    let secs = |ms: i64| ms.div_euclid(1000) as f64;

    send(0, events(T0, 5));
    send(1, events(T0, 5));
    wait_for("10 messages", Duration::from_secs(30), || {
        scrape("atowatch_messages_total") == 10.0
    });
    wait_for("both partitions idle", Duration::from_secs(30), || {
        scrape("atowatch_watermark_partitions") == 0.0
    });
    // Idle partitions hold nothing back, and nothing moves the watermark either.
    assert_eq!(
        scrape("atowatch_watermark_timestamp_seconds"),
        secs(T0 + 2 * SEC - MIN)
    );

    // Partition 0 moves ten minutes on; quiet partition 1 does not hold it back.
    send(0, events(T0 + 10 * MIN, 5));
    wait_for(
        "the watermark ten minutes on",
        Duration::from_secs(30),
        || scrape("atowatch_watermark_timestamp_seconds") == secs(T0 + 10 * MIN + 2 * SEC - MIN),
    );

    // Partition 1 speaks again, minutes behind: it starts afresh, nothing is late.
    send(1, events(T0 + 5 * SEC, 3));
    wait_for("18 messages", Duration::from_secs(30), || {
        scrape("atowatch_messages_total") == 18.0
    });
    assert_eq!(scrape("atowatch_late_events_total"), 0.0);

    // Within a partition, an event minutes behind its own stream time is late.
    wait_for(
        "both partitions idle again",
        Duration::from_secs(30),
        || scrape("atowatch_watermark_partitions") == 0.0,
    );
    let mut evs = events(T0 + 20 * MIN, 5);
    evs.extend(events(T0, 1));
    send(0, evs);
    wait_for("one late event", Duration::from_secs(30), || {
        scrape("atowatch_late_events_total") == 1.0
    });
    stop.store(true, Ordering::Relaxed);
    let summary = run.join().unwrap().expect("run");
    assert_eq!((summary.messages, summary.late), (24, 1));
}

#[test]
fn metrics_scraped_over_http_match_what_was_sent() {
    let c = Cluster::new(2);
    let mut events = bruteforce_events();
    events.push(b"garbage".to_vec());
    events.push(br#"{"type":"user.login"}"#.to_vec());
    let cfg = config(&c.brokers);
    let group = cfg.kafka.group_id.clone();

    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::default());
    let (_rt, addr) = serve_http(&metrics, &health);
    assert_eq!(http_get(&addr, "/healthz").0, 200);
    assert_eq!(
        http_get(&addr, "/readyz").0,
        503,
        "not ready before joining"
    );

    let opts = RunOptions {
        stop_after: Some(events.len() as u64),
        ..RunOptions::default()
    };
    let (m, h) = (metrics.clone(), health.clone());
    let run = std::thread::spawn(move || kafka::run(cfg, m, h, opts));
    wait_for("/readyz", Duration::from_secs(30), || {
        http_get(&addr, "/readyz").0 == 200
    });
    produce(&c.brokers, EVENTS, events.iter().map(Vec::as_slice), None);
    wait_for("the run", Duration::from_secs(60), || run.is_finished());
    let summary = run.join().unwrap().expect("run");

    let (status, body) = http_get(&addr, "/metrics");
    assert_eq!(status, 200);
    let m = parse_metrics(&body);
    let get = |name: &str, labels: &[(&str, &str)]| metric_sum(&m, name, labels);
    assert_eq!(get("atowatch_messages_total", &[]), 15.0);
    assert_eq!(
        get(
            "atowatch_events_total",
            &[("type", "user.login"), ("outcome", "failure")]
        ),
        12.0
    );
    assert_eq!(
        get(
            "atowatch_events_total",
            &[("type", "user.login"), ("outcome", "success")]
        ),
        1.0
    );
    assert_eq!(
        get(
            "atowatch_invalid_events_total",
            &[("reason", "invalid_json")]
        ),
        1.0
    );
    assert_eq!(
        get(
            "atowatch_invalid_events_total",
            &[("reason", "missing_field")]
        ),
        1.0
    );
    assert_eq!(get("atowatch_dead_letters_total", &[]), 2.0);
    let in_topic = signals(&c.brokers).len() as f64;
    assert_eq!(get("atowatch_signals_total", &[]), in_topic);
    assert_eq!(
        get(
            "atowatch_signals_total",
            &[("rule", "bruteforce"), ("severity", "medium")]
        ),
        1.0
    );
    assert_eq!(
        get("atowatch_event_to_signal_latency_seconds_count", &[]),
        in_topic
    );
    let committed_now = committed(&c.brokers, &group, EVENTS, 2);
    assert_eq!(
        get("atowatch_committed_offset", &[]),
        committed_now.iter().filter(|&&o| o > 0).sum::<i64>() as f64
    );
    // Unkeyed messages land on a random partition, so one of the two may hold none and
    // have no committed offset (-1): every message is committed either way.
    assert_eq!(
        committed_now.iter().filter(|&&o| o > 0).sum::<i64>(),
        15,
        "{committed_now:?}"
    );
    assert_eq!(get("atowatch_tracked_keys", &[("kind", "ip")]), 1.0);
    assert_eq!(
        get(
            "atowatch_service_logins_total",
            &[("service", "web"), ("outcome", "failure")]
        ),
        12.0
    );
    assert_eq!(
        get(
            "atowatch_service_logins_total",
            &[("service", "web"), ("outcome", "success")]
        ),
        1.0
    );
    assert!(get("atowatch_state_bytes", &[]) > 0.0);
    assert_eq!(get("atowatch_rebalances_total", &[("kind", "assign")]), 1.0);
    assert_eq!(get("atowatch_build_info", &[]), 1.0);
    assert!(
        m.keys()
            .any(|k| k.starts_with("atowatch_batch_processing_seconds_bucket"))
    );
    assert!(m.contains_key("atowatch_producer_queue_messages"));
    assert!(m.contains_key("atowatch_pending_outputs"));
    assert_eq!(summary.messages, 15);
    let (status, body) = http_get(&addr, "/readyz");
    assert_eq!((status, body.trim()), (503, "not ready: shutting down"));
}

// ---------------------------------------------------------------------------------------
// The binary, as a user runs it.

/// `atowatch run` with a config whose short session lets a restart take over a killed
/// member's partitions within the test's patience.
fn start_run(brokers: &str, group: &str) -> RunProc {
    let dir = common::scratch_dir(&format!("kafka-run-{group}"));
    let cfg = dir.join(format!("{group}.toml"));
    std::fs::write(
        &cfg,
        "[kafka]\ncommit_interval = \"200ms\"\n\n[kafka.consumer_properties]\n\
         \"auto.offset.reset\" = \"earliest\"\n\"session.timeout.ms\" = 6000\n\
         \"heartbeat.interval.ms\" = 500\n",
    )
    .unwrap();
    RunProc::spawn(brokers, group, Some(&cfg), &dir)
}

fn scrape(addr: &str, name: &str) -> f64 {
    metric_sum(&parse_metrics(&http_get(addr, "/metrics").1), name, &[])
}

#[test]
fn sigterm_drains_commits_and_exits_zero() {
    let c = Cluster::new(2);
    let events = simulated(3, 120, 12_000);
    produce(&c.brokers, EVENTS, events.iter().map(Vec::as_slice), None);
    let group = "atowatch-sigterm";
    let mut p = start_run(&c.brokers, group);
    let addr = p.http_addr(Duration::from_secs(30));
    wait_for("all events consumed", Duration::from_secs(60), || {
        scrape(&addr, "atowatch_messages_total") >= events.len() as f64
    });
    let started = Instant::now();
    p.signal("TERM");
    let status = p.wait(Duration::from_secs(30));
    assert!(
        status.success(),
        "exit status {status:?}; stderr:\n{}",
        p.log.join("\n")
    );
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "within kafka.shutdown_timeout"
    );
    assert!(p.log.iter().any(|l| l.contains("stopped:")), "{:?}", p.log);
    let committed = committed(&c.brokers, group, EVENTS, 2);
    assert_eq!(
        committed.iter().sum::<i64>(),
        events.len() as i64,
        "every partition committed to its end"
    );
}

#[test]
fn a_killed_consumer_restarts_redelivers_and_misses_no_signal() {
    let c = Cluster::new(1);
    let events = simulated(21, 120, 12_000);
    let cfg = config(&c.brokers);
    let expected: BTreeSet<String> = replay(&cfg, &events).iter().map(|s| signal_id(s)).collect();
    assert!(expected.len() > 10);
    let group = "atowatch-sigkill";
    let mut p = start_run(&c.brokers, group);
    let addr = p.http_addr(Duration::from_secs(30));
    // The first 60% is processed and committed; the kill lands while the rest is being
    // processed, after outputs were published and before their offsets are committed.
    let first = events.len() * 6 / 10;
    produce(
        &c.brokers,
        EVENTS,
        events[..first].iter().map(Vec::as_slice),
        None,
    );
    wait_for("the first commit", Duration::from_secs(60), || {
        committed(&c.brokers, group, EVENTS, 1)[0] == first as i64
    });
    produce(
        &c.brokers,
        EVENTS,
        events[first..].iter().map(Vec::as_slice),
        None,
    );
    wait_for("more progress", Duration::from_secs(60), || {
        scrape(&addr, "atowatch_messages_total") > first as f64
    });
    p.signal("KILL");
    p.wait(Duration::from_secs(10));
    let before = committed(&c.brokers, group, EVENTS, 1)[0];
    assert!(
        before >= first as i64 && before < events.len() as i64,
        "killed after the first commit and before the last (committed {before})"
    );

    let mut p = start_run(&c.brokers, group);
    let addr = p.http_addr(Duration::from_secs(30));
    p.wait_for(
        "the restart to commit to the end",
        Duration::from_secs(60),
        || committed(&c.brokers, group, EVENTS, 1)[0] == events.len() as i64,
    );
    let warm = scrape(&addr, "atowatch_warmup_events_total");
    eprintln!(
        "killed with {before} of {} committed; restart re-read {warm} events to warm state",
        events.len()
    );

    p.signal("TERM");
    assert!(p.wait(Duration::from_secs(30)).success());
    assert_eq!(
        warm, before as f64,
        "state was warmed from everything committed before the kill"
    );

    let got = signals(&c.brokers);
    let mut by_id: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for s in &got {
        by_id.entry(signal_id(s)).or_default().insert(s.clone());
    }
    let ids: BTreeSet<String> = by_id.keys().cloned().collect();
    assert_eq!(ids, expected, "no signal missed, none invented");
    for (id, versions) in by_id {
        assert_eq!(versions.len(), 1, "redelivered signal {id} differs");
    }
}

#[test]
fn an_unknown_librdkafka_property_stops_start_up_naming_the_key() {
    let dir = common::scratch_dir("bad-property");
    let cfg = dir.join("bad.toml");
    std::fs::write(
        &cfg,
        "[kafka.consumer_properties]\n\"sesion.timeout.ms\" = 6000\n",
    )
    .unwrap();
    for cmd in ["check-config", "run"] {
        let mut c = Command::new(env!("CARGO_BIN_EXE_atowatch"));
        if cmd == "run" {
            c.args(["run", "--config"]);
        } else {
            c.arg(cmd);
        }
        let out = c
            .arg(&cfg)
            .env("ATOWATCH_BROKERS", "127.0.0.1:1")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{cmd}: {err}");
        assert!(
            err.contains("bad.toml")
                && err.contains("kafka.consumer_properties.\"sesion.timeout.ms\""),
            "{cmd}: {err}"
        );
    }
}

#[test]
fn the_demo_runs_the_real_pipeline_and_finds_every_labelled_attack() {
    let out = Command::new(env!("CARGO_BIN_EXE_atowatch"))
        .args(["demo", "--duration", "3s", "--rate", "4000", "--json"])
        .args(["--http", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .output()
        .expect("run demo");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let rules: BTreeSet<String> = stdout
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("--json prints signal JSON");
            v["rule"].as_str().unwrap().to_string()
        })
        .collect();
    for rule in [
        "bruteforce",
        "credential_stuffing",
        "distributed_credential_stuffing",
        "account_takeover",
    ] {
        assert!(rules.contains(rule), "{rule} missing from {rules:?}");
    }
    assert!(err.contains("metrics at http://127.0.0.1:"), "{err}");
    assert!(err.contains("demo: lift one:  curl -X DELETE"), "{err}");
    let produced = err
        .lines()
        .find(|l| l.starts_with("Summary:"))
        .expect("summary");
    let nums: Vec<&str> = produced.split_whitespace().collect();
    assert_eq!(
        nums[1], nums[4],
        "every produced event processed: {produced}"
    );
    // Three partitions are fetched tens of milliseconds apart, minutes of the demo's
    // compressed event time: per-partition watermarks keep that from making any late.
    assert!(produced.contains(" 0 late in "), "{produced}");
    assert!(
        err.contains("Attacks in the labels: 10 of 10 detected"),
        "{err}"
    );
    assert!(!err.contains("MISSED"), "{err}");
}

/// Two members of one group: the second joining makes the first revoke partitions
/// (committing what it published) and the newcomer warm up from those commits. Every
/// event is then handled live exactly once across the two, and the group ends committed
/// to the end of every partition.
fn rebalance_hands_over_partitions(strategy: &str) {
    let c = Cluster::new(4);
    let events = simulated(9, 120, 12_000);
    let half = events.len() / 2;
    let mut cfg = config(&c.brokers);
    let group = cfg.kafka.group_id.clone();
    for (k, v) in [
        ("partition.assignment.strategy", strategy),
        ("session.timeout.ms", "6000"),
        ("heartbeat.interval.ms", "500"),
    ] {
        cfg.kafka
            .consumer_properties
            .insert(k.into(), atowatch::config::PropValue(v.into()));
    }
    let start = |cfg: atowatch::config::Config| {
        let metrics = Arc::new(Metrics::new());
        let health = Arc::new(Health::default());
        let opts = RunOptions::default();
        let stop = opts.stop.clone();
        let (m, h) = (metrics.clone(), health.clone());
        let t = std::thread::spawn(move || kafka::run(cfg, m, h, opts));
        (t, stop, metrics, health)
    };
    let (a, stop_a, ma, ha) = start(cfg.clone());
    produce(
        &c.brokers,
        EVENTS,
        events[..half].iter().map(Vec::as_slice),
        None,
    );
    wait_for("the first member", Duration::from_secs(60), || {
        ma.messages.get() == half as u64
    });
    wait_for("its commits", Duration::from_secs(30), || {
        committed(&c.brokers, &group, EVENTS, 4).iter().sum::<i64>() == half as i64
    });
    let (b, stop_b, mb, hb) = start(cfg);
    wait_for("the rebalance", Duration::from_secs(60), || {
        let (pa, pb) = (
            ha.partitions.load(Ordering::Relaxed),
            hb.partitions.load(Ordering::Relaxed),
        );
        pa > 0 && pb > 0 && pa + pb == 4
    });
    produce(
        &c.brokers,
        EVENTS,
        events[half..].iter().map(Vec::as_slice),
        None,
    );
    wait_for("both members", Duration::from_secs(60), || {
        ma.messages.get() + mb.messages.get() >= events.len() as u64
    });
    wait_for("the final commits", Duration::from_secs(30), || {
        committed(&c.brokers, &group, EVENTS, 4).iter().sum::<i64>() == events.len() as i64
    });
    stop_a.store(true, Ordering::Relaxed);
    stop_b.store(true, Ordering::Relaxed);
    let sa = a.join().unwrap().expect("member a");
    let sb = b.join().unwrap().expect("member b");
    assert_eq!(
        sa.messages + sb.messages,
        events.len() as u64,
        "each event handled live exactly once"
    );
    assert!(
        mb.warmup_events.get() > 0,
        "the newcomer warmed its partitions"
    );
    assert!(
        metric_sum(
            &parse_metrics(&ma.render()),
            "atowatch_rebalances_total",
            &[("kind", "revoke")]
        ) >= 1.0
    );
}

#[test]
fn a_rebalance_with_eager_assignment_hands_over_without_loss_or_repeats() {
    rebalance_hands_over_partitions("range");
}

#[test]
fn a_rebalance_with_cooperative_assignment_hands_over_without_loss_or_repeats() {
    rebalance_hands_over_partitions("cooperative-sticky");
}

#[test]
fn a_refused_publish_is_counted_retried_and_holds_back_the_commit() {
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
    let c = Cluster::new(1);
    let events = bruteforce_events();
    produce(&c.brokers, EVENTS, events.iter().map(Vec::as_slice), None);
    // The next three produce requests (atowatch's signals) are refused as unauthorized:
    // a permanent error for librdkafka, so atowatch must keep the record and retry.
    c.mock.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED; 3],
    );
    let cfg = config(&c.brokers);
    let group = cfg.kafka.group_id.clone();
    let metrics = Arc::new(Metrics::new());
    let opts = RunOptions::default();
    let stop = opts.stop.clone();
    let m = metrics.clone();
    let run = std::thread::spawn(move || kafka::run(cfg, m, Arc::new(Health::default()), opts));
    let errors = || {
        metric_sum(
            &parse_metrics(&metrics.render()),
            "atowatch_delivery_errors_total",
            &[("kind", "TopicAuthorizationFailed")],
        )
    };
    wait_for("a refused delivery", Duration::from_secs(30), || {
        errors() >= 1.0
    });
    // The 10th failure (offset 9) caused the bruteforce signal: nothing from it on may
    // be committed while its signal is unacknowledged.
    std::thread::sleep(Duration::from_millis(500));
    let during = committed(&c.brokers, &group, EVENTS, 1)[0];
    assert!(
        during <= 9,
        "committed {during} past an unacknowledged signal"
    );
    wait_for(
        "the retries to get through",
        Duration::from_secs(30),
        || committed(&c.brokers, &group, EVENTS, 1)[0] == events.len() as i64,
    );
    // The running pipeline learns of its own asynchronous commits (the gauge moves and
    // broker-side failures would be counted) before any shutdown commit.
    wait_for(
        "the committed-offset gauge",
        Duration::from_secs(10),
        || {
            metric_sum(
                &parse_metrics(&metrics.render()),
                "atowatch_committed_offset",
                &[("partition", "0")],
            ) == events.len() as f64
        },
    );
    stop.store(true, Ordering::Relaxed);
    let summary = run.join().unwrap().expect("run");
    assert_eq!(summary.unacknowledged, 0);
    // Three refused requests; each refuses every record it carried (one or two here).
    assert!((3.0..=6.0).contains(&errors()), "{}", errors());
    let out = signals(&c.brokers);
    assert!(out.iter().any(|s| s.contains("\"bruteforce\"")), "{out:?}");
    assert!(
        out.iter().any(|s| s.contains("\"account_takeover\"")),
        "{out:?}"
    );
}

#[test]
fn simulate_produces_into_a_real_topic_keyed_by_client_ip() {
    let c = Cluster::new(2);
    let out = Command::new(env!("CARGO_BIN_EXE_atowatch"))
        .args(["simulate", "--duration", "1h", "--attacks", "none"])
        .args([
            "--events",
            "2000",
            "--brokers",
            &c.brokers,
            "--topic",
            EVENTS,
        ])
        .stdin(Stdio::null())
        .output()
        .expect("simulate");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let file = Command::new(env!("CARGO_BIN_EXE_atowatch"))
        .args(["simulate", "--duration", "1h", "--attacks", "none"])
        .args(["--events", "2000"])
        .output()
        .expect("simulate to stdout");
    let lines: Vec<&[u8]> = file
        .stdout
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let records = read_all(&c.brokers, EVENTS);
    assert_eq!(records.len(), lines.len(), "{err}");
    let mut got: Vec<&[u8]> = records.iter().map(|r| r.payload.as_slice()).collect();
    let mut want = lines.clone();
    got.sort();
    want.sort();
    assert_eq!(got, want, "the same events as the file, byte for byte");
    for r in &records {
        assert_eq!(
            r.key.as_deref(),
            Some(atowatch::kafka::produce::event_key(&r.payload)),
            "keyed by client IP"
        );
    }
}

#[test]
fn decisions_are_served_with_a_bearer_token_and_published_to_the_compacted_topic() {
    let c = Cluster::new(1);
    let mut events = bruteforce_events();
    // Credential stuffing from another IP: 20 accounts in 4 minutes.
    for i in 0..20 {
        events.push(
            Ev::failure(
                T0 + 5 * MIN + i * 12 * SEC,
                "203.0.113.50",
                &format!("u{i}@example.com"),
            )
            .json()
            .into_bytes(),
        );
    }
    // The same from an allowlisted network: never a decision.
    for i in 0..20 {
        events.push(
            Ev::failure(
                T0 + 5 * MIN + i * 12 * SEC,
                "198.51.100.9",
                &format!("v{i}@example.com"),
            )
            .json()
            .into_bytes(),
        );
    }
    produce(&c.brokers, EVENTS, events.iter().map(Vec::as_slice), None);
    let mut cfg = config(&c.brokers);
    cfg.normalize.allowlist = vec!["198.51.100.0/24".into()];
    let token = "test-token-0123456789";
    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::default());
    let decisions = Arc::new(atowatch::decisions::DecisionTable::new());
    let rt = http_runtime();
    let addr = serve_decisions(&rt, &metrics, &decisions, Some(token), None);
    let off = serve_decisions(&rt, &metrics, &decisions, None, None);
    let opts = RunOptions {
        stop_after: Some(events.len() as u64),
        decisions: decisions.clone(),
        ..RunOptions::default()
    };
    let (m, h) = (metrics.clone(), health.clone());
    let started = atowatch::event::format_ts(chrono::Utc::now().timestamp_millis() - 1000);
    kafka::run(cfg, m, h, opts).expect("run");

    let get = |addr: &str, path: &str, auth: Option<&str>| -> (u16, String) {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        use std::io::{Read, Write};
        let auth = auth
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n"
        )
        .unwrap();
        let mut buf = String::new();
        s.read_to_string(&mut buf).unwrap();
        let status = buf.split_whitespace().nth(1).unwrap().parse().unwrap();
        (status, buf.split_once("\r\n\r\n").unwrap().1.to_string())
    };
    assert_eq!(
        get(&off, "/v1/decisions", Some(token)).0,
        404,
        "off without a token"
    );
    assert_eq!(get(&addr, "/v1/decisions", None).0, 401);
    assert_eq!(get(&addr, "/v1/decisions", Some("wrong-token")).0, 403);
    let (status, body) = get(&addr, "/v1/decisions", Some(token));
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let all = v["decisions"].as_array().unwrap();
    let find = |id: &str| all.iter().find(|d| d["id"] == id).cloned();
    let victim = find("account:victim@example.com").expect("account decision");
    assert_eq!(
        victim["type"], "ban",
        "the takeover outranks the bruteforce challenge"
    );
    assert_eq!(victim["rule"], "account_takeover");
    let stuffer = find("ip:203.0.113.50").expect("IP decision");
    assert_eq!(
        (stuffer["type"].as_str(), stuffer["duration_s"].as_i64()),
        (Some("ban"), Some(900))
    );
    assert!(find("ip:198.51.100.9").is_none(), "allowlisted: {body}");
    let (_, one) = get(&addr, "/v1/decisions?ip=203.0.113.50", Some(token));
    let one: serde_json::Value = serde_json::from_str(&one).unwrap();
    assert_eq!(one["decisions"].as_array().unwrap().len(), 1);
    // The name as a bouncer has it (typed), keyed as the engine keys accounts.
    let (_, acct) = get(
        &addr,
        "/v1/decisions?account=Victim%40Example.COM",
        Some(token),
    );
    let acct: serde_json::Value = serde_json::from_str(&acct).unwrap();
    assert_eq!(
        acct["decisions"][0]["id"], "account:victim@example.com",
        "{acct}"
    );
    let (_, since) = get(
        &addr,
        &format!("/v1/decisions?since={started}"),
        Some(token),
    );
    let since: serde_json::Value = serde_json::from_str(&since).unwrap();
    assert_eq!(since["decisions"].as_array().unwrap().len(), all.len());
    assert!(since["deleted"].as_array().unwrap().is_empty());
    assert_eq!(get(&addr, "/v1/decisions?ip=nope", Some(token)).0, 400);

    let published = read_all(&c.brokers, DECISIONS);
    let keys: BTreeSet<String> = published
        .iter()
        .map(|r| String::from_utf8_lossy(r.key.as_deref().unwrap()).into_owned())
        .collect();
    assert!(keys.contains("account:victim@example.com"), "{keys:?}");
    assert!(keys.contains("ip:203.0.113.50"), "{keys:?}");
    let m = parse_metrics(&metrics.render());
    assert!(
        metric_sum(
            &m,
            "atowatch_decisions_total",
            &[("action", "ban"), ("scope", "ip")]
        ) >= 1.0
    );
}

#[test]
fn signals_can_be_published_as_ocsf_detection_findings() {
    let c = Cluster::new(1);
    let events = bruteforce_events();
    produce(&c.brokers, EVENTS, events.iter().map(Vec::as_slice), None);
    let mut cfg = config(&c.brokers);
    let native = replay(&cfg, &events);
    cfg.signals.output_format = atowatch::config::SignalFormat::Ocsf;
    run_until(cfg, events.len() as u64, Duration::from_secs(60));
    let got = signals(&c.brokers);
    assert_eq!(got.len(), native.len());
    for (f, n) in got.iter().zip(&native) {
        let f: serde_json::Value = serde_json::from_str(f).unwrap();
        let n: serde_json::Value = serde_json::from_str(n).unwrap();
        assert_eq!(f["class_uid"], 2004);
        assert_eq!(f["metadata"]["uid"], n["signal_id"]);
        assert_eq!(f["finding_info"]["analytic"]["name"], n["rule"]);
        assert_eq!(f["resources"][0]["name"], n["entity"]["value"]);
        assert_eq!(f["message"], n["summary"]);
    }
}

#[test]
fn a_topic_configured_as_ocsf_or_ecs_gives_the_signals_of_its_native_twin() {
    let native = simulated(13, 120, 12_000);
    for (format, convert) in [
        (
            atowatch::config::InputFormat::Ocsf,
            atowatch::formats::native_to_ocsf as fn(&[u8]) -> Option<Vec<u8>>,
        ),
        (
            atowatch::config::InputFormat::Ecs,
            atowatch::formats::native_to_ecs,
        ),
    ] {
        let c = Cluster::new(1);
        let events: Vec<Vec<u8>> = native
            .iter()
            .map(|e| convert(e).expect("converts"))
            .collect();
        produce(&c.brokers, EVENTS, events.iter().map(Vec::as_slice), None);
        let mut cfg = config(&c.brokers);
        let expected = replay(&cfg, &native);
        cfg.input.topic_formats.insert(EVENTS.into(), format);
        run_until(cfg, events.len() as u64, Duration::from_secs(60));
        assert_eq!(signals(&c.brokers), expected, "{format:?}");
    }
}

#[test]
fn with_pseudonymization_no_account_name_leaves_the_pipeline() {
    let c = Cluster::new(1);
    let events = bruteforce_events();
    produce(&c.brokers, EVENTS, events.iter().map(Vec::as_slice), None);
    let dir = common::scratch_dir("pseudonym-key");
    let key = dir.join("key");
    std::fs::write(&key, "0123456789abcdef0123456789abcdef\n").unwrap();
    let mut cfg = config(&c.brokers);
    cfg.privacy.pseudonymize_accounts = true;
    cfg.privacy.key_file = key.display().to_string();
    let decisions = Arc::new(atowatch::decisions::DecisionTable::new());
    let opts = RunOptions {
        stop_after: Some(events.len() as u64),
        decisions: decisions.clone(),
        ..RunOptions::default()
    };
    kafka::run(
        cfg,
        Arc::new(Metrics::new()),
        Arc::new(Health::default()),
        opts,
    )
    .expect("run");
    let out = read_all(&c.brokers, SIGNALS);
    assert!(out.len() >= 2, "bruteforce and takeover");
    for r in out.iter().chain(&read_all(&c.brokers, DECISIONS)) {
        let text = r.text() + &String::from_utf8_lossy(r.key.as_deref().unwrap_or_default());
        assert!(!text.contains("victim"), "raw account in {text}");
        assert!(text.contains("acct_"), "{text}");
    }
    let (active, _) = decisions.query(&Default::default(), chrono::Utc::now().timestamp_millis());
    assert!(active.iter().all(|d| !d.value.contains("victim")));
}

#[test]
fn decisions_published_by_another_instance_are_served_here_until_their_tombstone() {
    let c = Cluster::new(1);
    let now = chrono::Utc::now().timestamp_millis();
    let other = serde_json::json!({
        "id": "ip:192.0.2.77", "scope": "ip", "value": "192.0.2.77", "type": "ban",
        "duration_s": 900, "created": atowatch::event::format_ts(now),
        "until": atowatch::event::format_ts(now + 900_000), "rule": "credential_stuffing",
        "severity": "high", "signal_id": "0123", "offence": 1, "reason": "elsewhere"
    })
    .to_string();
    produce(&c.brokers, DECISIONS, [other.as_bytes()], None);
    let cfg = config(&c.brokers);
    let decisions = Arc::new(atowatch::decisions::DecisionTable::new());
    let opts = RunOptions {
        decisions: decisions.clone(),
        ..RunOptions::default()
    };
    let stop = opts.stop.clone();
    let run = std::thread::spawn(move || {
        kafka::run(
            cfg,
            Arc::new(Metrics::new()),
            Arc::new(Health::default()),
            opts,
        )
    });
    let served = |ip: &str| {
        let q = atowatch::decisions::Query {
            ip: ip.parse().ok(),
            ..Default::default()
        };
        decisions
            .query(&q, chrono::Utc::now().timestamp_millis())
            .0
            .len()
    };
    wait_for(
        "the other instance's decision",
        Duration::from_secs(30),
        || served("192.0.2.77") == 1,
    );
    // The other instance's decision ends: a tombstone under its key.
    let p: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &c.brokers)
        .create()
        .unwrap();
    p.send(BaseRecord::<[u8], [u8]>::to(DECISIONS).key(b"ip:192.0.2.77".as_slice()))
        .map_err(|(e, _)| e)
        .unwrap();
    p.flush(Duration::from_secs(10)).unwrap();
    wait_for("the tombstone", Duration::from_secs(30), || {
        served("192.0.2.77") == 0
    });
    stop.store(true, Ordering::Relaxed);
    run.join().unwrap().expect("run");
}

#[test]
fn a_decision_lifted_by_hand_ends_at_once_on_the_topic_and_its_offences_are_forgiven() {
    let c = Cluster::new(1);
    // Credential stuffing: 20 accounts in 4 minutes, then again an hour later.
    let burst = |from: i64, tag: &str| -> Vec<Vec<u8>> {
        (0..20)
            .map(|i| {
                Ev::failure(
                    from + i * 12 * SEC,
                    "203.0.113.50",
                    &format!("{tag}{i}@example.com"),
                )
                .json()
                .into_bytes()
            })
            .collect()
    };
    produce(
        &c.brokers,
        EVENTS,
        burst(T0, "u").iter().map(Vec::as_slice),
        None,
    );
    let (token, admin) = (READ_TOKEN, ADMIN_TOKEN);
    let inst = DecisionsInstance::start(config(&c.brokers));
    let (addr, no_admin) = (&inst.addr, &inst.no_admin);
    let id = "ip:203.0.113.50";
    let active = || inst.active();
    wait_for("the stuffing ban", Duration::from_secs(30), || {
        active().iter().any(|d| d["id"] == id)
    });
    let path = format!("/v1/decisions/{id}");
    assert_eq!(
        http_request(no_admin, "DELETE", &path, Some(admin)).0,
        404,
        "lifting off"
    );
    assert_eq!(http_request(addr, "DELETE", &path, None).0, 401);
    let (status, body) = http_request(addr, "DELETE", &path, Some(token));
    assert_eq!(status, 403, "the bouncers' token cannot lift: {body}");
    assert!(body.contains("admin token"), "{body}");
    assert_eq!(
        http_request(addr, "DELETE", "/v1/decisions/ip:192.0.2.1", Some(admin)).0,
        404,
        "no such decision"
    );
    let before = chrono::Utc::now().timestamp_millis() - 1000;
    let (status, body) = http_request(addr, "DELETE", &path, Some(admin));
    assert_eq!(status, 200, "{body}");
    let lifted: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(lifted["lifted"]["id"], id);
    assert!(active().iter().all(|d| d["id"] != id), "ended here at once");
    let (_, since) = http_request(
        addr,
        "GET",
        &format!("/v1/decisions?since={before}"),
        Some(token),
    );
    assert!(
        since.contains("\"deleted\":[{") && since.contains(id),
        "{since}"
    );
    assert_eq!(
        http_request(addr, "DELETE", &path, Some(admin)).0,
        404,
        "lifted once"
    );

    // Every instance reading the topic ends it: a tombstone follows the ban.
    wait_for("the tombstone", Duration::from_secs(30), || {
        ended_on_topic(&c.brokers, id)
    });
    assert_eq!(inst.ip_bans_counted("atowatch_decisions_lifted_total"), 1.0);

    // The same IP attacks again an hour later: a first offence again (15 minutes), not
    // a repeat (30).
    produce(
        &c.brokers,
        EVENTS,
        burst(T0 + 60 * MIN, "w").iter().map(Vec::as_slice),
        None,
    );
    wait_for("the new ban", Duration::from_secs(30), || {
        active().iter().any(|d| d["id"] == id)
    });
    let again = active().into_iter().find(|d| d["id"] == id).unwrap();
    assert_eq!(
        (again["offence"].as_i64(), again["duration_s"].as_i64()),
        (Some(1), Some(900)),
        "{again}"
    );
    inst.stop();
}

#[test]
fn a_full_decisions_table_ends_its_weakest_on_the_topic_and_counts_them() {
    let c = Cluster::new(1);
    // Credential stuffing from three IPs, one after another: 20 accounts each.
    let ips = ["203.0.113.50", "203.0.113.51", "203.0.113.52"];
    let events: Vec<Vec<u8>> = ips
        .iter()
        .enumerate()
        .flat_map(|(n, ip)| {
            (0..20).map(move |i| {
                Ev::failure(
                    T0 + n as i64 * 10 * MIN + i * 12 * SEC,
                    ip,
                    &format!("u{n}-{i}@example.com"),
                )
                .json()
                .into_bytes()
            })
        })
        .collect();
    produce(&c.brokers, EVENTS, events.iter().map(Vec::as_slice), None);
    let mut cfg = config(&c.brokers);
    cfg.decisions.max_active = 2;
    let inst = DecisionsInstance::start(cfg);
    // The first ban ends soonest, so it is the one ended to make room for the third.
    let first = format!("ip:{}", ips[0]);
    wait_for("the first ban's tombstone", Duration::from_secs(30), || {
        ended_on_topic(&c.brokers, &first)
    });
    let active = inst.active();
    let mut held: Vec<&str> = active.iter().map(|d| d["id"].as_str().unwrap()).collect();
    held.sort();
    assert_eq!(held, ["ip:203.0.113.51", "ip:203.0.113.52"], "{active:?}");
    assert_eq!(
        inst.ip_bans_counted("atowatch_decisions_evicted_total"),
        1.0
    );
    assert_eq!(inst.ip_bans_counted("atowatch_decisions_total"), 3.0);
    inst.stop();
}

#[test]
fn a_decision_added_by_hand_is_served_at_once_and_published_for_every_instance() {
    let c = Cluster::new(1);
    let (token, admin) = (READ_TOKEN, ADMIN_TOKEN);
    let inst = DecisionsInstance::start(config(&c.brokers));
    let (addr, no_admin) = (inst.addr.as_str(), inst.no_admin.as_str());
    let post = |to: &str, tok: Option<&str>, body: &str| {
        http_request_body(to, "POST", "/v1/decisions", tok, body)
    };
    let ban = r#"{"ip":"203.0.113.77","duration":"4h","reason":"SOC ticket 42"}"#;
    assert_eq!(post(no_admin, Some(admin), ban).0, 404, "adding off");
    assert_eq!(post(addr, None, ban).0, 401);
    assert_eq!(
        post(addr, Some(token), ban).0,
        403,
        "not with the bouncers' token"
    );
    let (status, body) = post(
        addr,
        Some(admin),
        r#"{"ip":"nope","duration":"4h","reason":"r"}"#,
    );
    assert_eq!(status, 400);
    assert!(body.contains("ip: `nope` is not an IP address"), "{body}");
    let (status, body) = post(addr, Some(admin), "not json");
    assert_eq!(status, 400);
    assert!(body.contains("body:"), "{body}");

    let (status, body) = post(addr, Some(admin), ban);
    assert_eq!(status, 201, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["added"]["id"], "ip:203.0.113.77");
    assert_eq!(v["added"]["rule"], "manual");
    assert_eq!(v["added"]["duration_s"], 4 * 3600);
    // Served here at once, to a bouncer asking about the address.
    let (_, got) = http_request(addr, "GET", "/v1/decisions?ip=203.0.113.77", Some(token));
    assert!(got.contains("SOC ticket 42"), "{got}");
    // A weaker one on the same IP leaves the ban as it is.
    let (status, body) = post(
        addr,
        Some(admin),
        r#"{"ip":"203.0.113.77","type":"challenge","duration":"1h","reason":"r"}"#,
    );
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("\"in_force\"") && body.contains("SOC ticket 42"),
        "{body}"
    );

    // Published on the decisions topic, for every other instance.
    wait_for(
        "the manual decision on the topic",
        Duration::from_secs(30),
        || {
            read_all(&c.brokers, DECISIONS).iter().any(|r| {
                r.key.as_deref() == Some(b"ip:203.0.113.77".as_slice())
                    && String::from_utf8_lossy(&r.payload).contains("SOC ticket 42")
            })
        },
    );
    assert_eq!(inst.ip_bans_counted("atowatch_decisions_added_total"), 1.0);
    inst.stop();
}
