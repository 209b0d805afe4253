//! Self-test of the tansu test broker (tests/common/tansu.rs): the Kafka features the runtime
//! relies on work end to end. Skips (passes, with a `SKIP:` line on stderr) when tansu is not
//! installed.

mod common;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{DeliveryResult, Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use rdkafka::{Offset, TopicPartitionList};

use common::tansu::{self, Tansu};

const N: usize = 100;
const TIMEOUT: Duration = Duration::from_secs(30);

/// Records every delivery report as `(partition, offset)` or the error.
#[derive(Default)]
struct Deliveries(Mutex<Vec<Result<(i32, i64), String>>>);

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        let report = match result {
            Ok(msg) => Ok((msg.partition(), msg.offset())),
            Err((e, _)) => Err(e.to_string()),
        };
        self.0.lock().unwrap().push(report);
    }
}

fn key(i: usize) -> String {
    format!("user-{i:03}")
}

fn payload(i: usize) -> String {
    format!(r#"{{"seq":{i},"kind":"login"}}"#)
}

/// Produces `range` records (key, payload, two headers) to partition 0 of `topic`, flushes,
/// and returns the delivery reports.
fn produce(tansu: &Tansu, topic: &str, range: std::ops::Range<usize>) -> Vec<(i32, i64)> {
    let producer: BaseProducer<Deliveries> = tansu
        .client_config()
        .set("linger.ms", "5")
        .create_with_context(Deliveries::default())
        .expect("producer");
    for i in range.clone() {
        let (k, v, seq) = (key(i), payload(i), i.to_string());
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "seq",
                value: Some(seq.as_bytes()),
            })
            .insert(Header {
                key: "empty",
                value: None::<&[u8]>,
            });
        producer
            .send(
                BaseRecord::to(topic)
                    .partition(0)
                    .key(&k)
                    .payload(&v)
                    .headers(headers),
            )
            .map_err(|(e, _)| e)
            .expect("enqueue");
    }
    producer.flush(TIMEOUT).expect("flush");
    let reports = std::mem::take(&mut *producer.context().0.lock().unwrap());
    assert_eq!(reports.len(), range.len(), "one delivery report per record");
    reports
        .into_iter()
        .map(|r| r.unwrap_or_else(|e| panic!("delivery failed: {e}\n{}", tansu.logs())))
        .collect()
}

fn group_consumer(tansu: &Tansu, group: &str) -> BaseConsumer {
    tansu
        .client_config()
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .create()
        .expect("consumer")
}

/// Polls until `n` messages arrived (panics on a consumer error or after [`TIMEOUT`]).
fn poll_n(tansu: &Tansu, consumer: &BaseConsumer, n: usize) -> Vec<OwnedMessage> {
    let deadline = Instant::now() + TIMEOUT;
    let mut got = Vec::new();
    while got.len() < n {
        assert!(
            Instant::now() < deadline,
            "only {} of {n} records consumed after {TIMEOUT:?}\n{}",
            got.len(),
            tansu.logs()
        );
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(msg)) => got.push(msg.detach()),
            Some(Err(e)) => panic!("consumer error: {e}\n{}", tansu.logs()),
            None => {}
        }
    }
    got
}

fn header_pairs(msg: &OwnedMessage) -> Vec<(String, Option<Vec<u8>>)> {
    msg.headers()
        .map(|h| {
            h.iter()
                .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn tansu_broker_round_trips_a_record() {
    let Some(tansu) = tansu::start() else {
        return;
    };
    let topic = "auth-events";
    tansu.create_topic(topic, 1);

    let delivered = produce(&tansu, topic, 0..N);
    let want: Vec<(i32, i64)> = (0..N as i64).map(|o| (0, o)).collect();
    assert_eq!(delivered, want, "offsets assigned in order from 0");

    let consumer = group_consumer(&tansu, "atowatch-smoke");
    consumer.subscribe(&[topic]).expect("subscribe");
    let got = poll_n(&tansu, &consumer, N);
    for (i, msg) in got.iter().enumerate() {
        assert_eq!(msg.topic(), topic);
        assert_eq!((msg.partition(), msg.offset()), (0, i as i64));
        assert_eq!(msg.key(), Some(key(i).as_bytes()), "key of record {i}");
        assert_eq!(
            msg.payload(),
            Some(payload(i).as_bytes()),
            "payload of record {i}"
        );
        assert_eq!(
            header_pairs(msg),
            vec![
                ("seq".to_owned(), Some(i.to_string().into_bytes())),
                ("empty".to_owned(), None),
            ],
            "headers of record {i}"
        );
    }

    // Commit "next offset to read" = N and read it back through the group coordinator.
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Offset(N as i64))
        .unwrap();
    consumer.commit(&tpl, CommitMode::Sync).expect("commit");
    let mut ask = TopicPartitionList::new();
    ask.add_partition(topic, 0);
    let committed = consumer
        .committed_offsets(ask, TIMEOUT)
        .expect("committed_offsets");
    assert_eq!(
        committed.find_partition(topic, 0).map(|p| p.offset()),
        Some(Offset::Offset(N as i64)),
        "committed offset read back"
    );
    drop(consumer);

    // A new member of the same group resumes from the committed offset.
    let delivered = produce(&tansu, topic, N..N + 1);
    assert_eq!(delivered, vec![(0, N as i64)]);
    let consumer = group_consumer(&tansu, "atowatch-smoke");
    consumer.subscribe(&[topic]).expect("subscribe");
    let got = poll_n(&tansu, &consumer, 1);
    assert_eq!(
        got[0].offset(),
        N as i64,
        "resumed from the committed offset"
    );
    assert_eq!(got[0].key(), Some(key(N).as_bytes()));
}

// ---------------- TEMPORARY PROBES ----------------
use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

fn produce_batch(tansu: &Tansu, topic: &str, part: i32, range: std::ops::Range<usize>, extra: &[(&str, &str)], ts: Option<i64>) -> Vec<Result<(i32, i64), String>> {
    let mut cfg = tansu.client_config();
    cfg.set("linger.ms", "5");
    for (k, v) in extra { cfg.set(*k, *v); }
    let producer: BaseProducer<Deliveries> = cfg.create_with_context(Deliveries::default()).expect("producer");
    for i in range.clone() {
        let (k, v) = (key(i), payload(i));
        let mut rec = BaseRecord::to(topic).partition(part).key(&k).payload(&v);
        if let Some(ts) = ts { rec = rec.timestamp(ts + i as i64); }
        if let Err((e, _)) = producer.send(rec) { return vec![Err(format!("enqueue: {e}"))]; }
    }
    let f = producer.flush(Duration::from_secs(15));
    let mut r = std::mem::take(&mut *producer.context().0.lock().unwrap());
    if let Err(e) = f { r.push(Err(format!("flush: {e}"))); }
    r
}

#[test]
fn probe_features() {
    let Some(tansu) = tansu::start() else { return };
    eprintln!("== bootstrap {}", tansu.bootstrap);
    tansu.create_topic("p", 4);
    let t0 = chrono::Utc::now().timestamp_millis();
    // produce in 3 separate batches to partition 0, with explicit old record timestamps
    let old = 1_700_000_000_000i64;
    let a = produce_batch(&tansu, "p", 0, 0..10, &[], Some(old));
    std::thread::sleep(Duration::from_millis(1500));
    let t1 = chrono::Utc::now().timestamp_millis();
    let b = produce_batch(&tansu, "p", 0, 10..20, &[], Some(old + 1_000_000));
    std::thread::sleep(Duration::from_millis(1500));
    let c = produce_batch(&tansu, "p", 0, 20..30, &[], None);
    eprintln!("== deliveries a={:?}\n b={:?}\n c={:?}", a.iter().take(2).collect::<Vec<_>>(), b.iter().take(2).collect::<Vec<_>>(), c.iter().take(2).collect::<Vec<_>>());
    let probe: BaseConsumer = tansu.client_config().set("group.id", "probe").create().unwrap();
    for p in 0..4 {
        eprintln!("== watermarks p/{p}: {:?}", probe.fetch_watermarks("p", p, Duration::from_secs(5)));
    }
    for (name, ts) in [("old-1", old - 1), ("old+5", old + 5), ("between batches (t1)", t1), ("t0-1h", t0 - 3_600_000), ("future", t0 + 3_600_000)] {
        let mut q = TopicPartitionList::new();
        q.add_partition_offset("p", 0, Offset::Offset(ts)).unwrap();
        q.add_partition_offset("p", 1, Offset::Offset(ts)).unwrap();
        let r = probe.offsets_for_times(q, Duration::from_secs(5));
        eprintln!("== offsets_for_times {name} ({ts}): {:?}", r.map(|r| r.elements().iter().map(|e| (e.partition(), e.offset(), e.error())).collect::<Vec<_>>()));
    }
    // seek into middle of a batch via assign
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("p", 0, Offset::Offset(13)).unwrap();
    probe.assign(&tpl).unwrap();
    let got = poll_n(&tansu, &probe, 5);
    eprintln!("== assign at 13: offsets {:?} ts {:?}", got.iter().map(|m| m.offset()).collect::<Vec<_>>(), got.iter().map(|m| m.timestamp()).collect::<Vec<_>>());
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("p", 0, Offset::Offset(27)).unwrap();
    probe.assign(&tpl).unwrap();
    let got = poll_n(&tansu, &probe, 3);
    eprintln!("== assign at 27: offsets {:?}", got.iter().map(|m| m.offset()).collect::<Vec<_>>());
    probe.seek("p", 0, Offset::Offset(5), Duration::from_secs(5)).map_err(|e| eprintln!("== seek err {e}")).ok();
    let got = poll_n(&tansu, &probe, 2);
    eprintln!("== after seek 5: {:?}", got.iter().map(|m| m.offset()).collect::<Vec<_>>());
    drop(probe);

    // compression
    for codec in ["gzip", "snappy", "lz4", "zstd"] {
        let topic = format!("z-{codec}");
        tansu.create_topic(&topic, 1);
        let r = produce_batch(&tansu, &topic, 0, 0..20, &[("compression.type", codec)], None);
        let ok = r.iter().filter(|r| r.is_ok()).count();
        let first_err = r.iter().find(|r| r.is_err()).cloned();
        let c: BaseConsumer = tansu.client_config().set("group.id", "z").create().unwrap();
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&topic, 0, Offset::Offset(3)).unwrap();
        c.assign(&tpl).unwrap();
        let mut got = vec![];
        let dl = Instant::now() + Duration::from_secs(5);
        while got.len() < 17 && Instant::now() < dl {
            match c.poll(Duration::from_millis(200)) { Some(Ok(m)) => got.push(m.offset()), Some(Err(e)) => { eprintln!("== {codec} consume err {e}"); break; } None => {} }
        }
        eprintln!("== compression {codec}: delivered ok {ok} err {first_err:?}; consumed from 3: {} first {:?}", got.len(), got.first());
    }

    // idempotent producer
    tansu.create_topic("idem", 1);
    let r = produce_batch(&tansu, "idem", 0, 0..50, &[("enable.idempotence", "true")], None);
    eprintln!("== idempotent: ok {} first err {:?} last {:?}", r.iter().filter(|r| r.is_ok()).count(), r.iter().find(|r| r.is_err()), r.last());

    // auto-create on produce and on metadata
    let r = produce_batch(&tansu, "auto-created", -1, 0..3, &[("message.timeout.ms", "5000")], None);
    eprintln!("== produce to missing topic: {:?}", r);
    let probe: BaseConsumer = tansu.client_config().create().unwrap();
    let md = probe.fetch_metadata(Some("never-created"), Duration::from_secs(5));
    eprintln!("== metadata missing topic: {:?}", md.map(|m| m.topics().iter().map(|t| (t.name().to_owned(), t.error(), t.partitions().len())).collect::<Vec<_>>()));

    // compacted topic + describe configs
    let admin: AdminClient<DefaultClientContext> = tansu.client_config().create().unwrap();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| tansu.create_topic_with_config("compacted", 1, &[("cleanup.policy", "compact"), ("retention.ms", "60000")])));
    eprintln!("== create compacted: {:?}", r.is_ok());
    let d = rt().block_on(admin.describe_configs([&ResourceSpecifier::Topic("compacted")], &AdminOptions::new()));
    match d {
        Ok(v) => for r in v { match r { Ok(cr) => eprintln!("== describe_configs compacted: {:?}", cr.entries.iter().map(|e| (e.name.clone(), e.value.clone())).collect::<Vec<_>>()), Err(e) => eprintln!("== describe_configs err {e:?}") } },
        Err(e) => eprintln!("== describe_configs err {e}"),
    }
    let r = produce_batch(&tansu, "compacted", 0, 0..3, &[], None);
    eprintln!("== produce compacted: {:?}", r);
    // tombstone / null-key
    let d = rt().block_on(admin.delete_topics(&["idem"], &AdminOptions::new()));
    eprintln!("== delete_topics: {:?}", d);
    // groups list
    eprintln!("== fetch_group_list: {:?}", probe.fetch_group_list(None, Duration::from_secs(5)).map(|g| g.groups().iter().map(|g| (g.name().to_owned(), g.state().to_owned(), g.protocol().to_owned(), g.members().len())).collect::<Vec<_>>()));
}

fn group_run(tansu: &Tansu, topic: &str, strategy: &str, extra: &[(&str, &str)]) {
    eprintln!("===== group strategy {strategy} {extra:?}");
    let mk = |name: &str| -> BaseConsumer {
        let mut cfg = tansu.client_config();
        cfg.set("group.id", format!("g-{strategy}-{}", extra.len())).set("auto.offset.reset", "earliest").set("enable.auto.commit", "false")
            .set("partition.assignment.strategy", strategy).set("session.timeout.ms", "6000").set("heartbeat.interval.ms", "500").set("client.id", name);
        for (k, v) in extra { cfg.set(*k, *v); }
        cfg.create().unwrap()
    };
    let c1 = mk("c1");
    if let Err(e) = c1.subscribe(&[topic]) { eprintln!("== subscribe err {e}"); return; }
    let start = Instant::now();
    let mut n1 = 0;
    while start.elapsed() < Duration::from_secs(15) {
        match c1.poll(Duration::from_millis(100)) { Some(Ok(_)) => n1 += 1, Some(Err(e)) => { eprintln!("== c1 err {e}"); break; } None => {} }
        if n1 >= 40 { break; }
    }
    eprintln!("== c1 alone got {n1} in {:?}; assignment {:?}", start.elapsed(), c1.assignment().map(|a| a.elements().iter().map(|e| e.partition()).collect::<Vec<_>>()));
    let c2 = mk("c2");
    c2.subscribe(&[topic]).unwrap();
    let start = Instant::now();
    let (mut n1b, mut n2) = (0, 0);
    let mut a1 = vec![]; let mut a2 = vec![];
    while start.elapsed() < Duration::from_secs(20) {
        if let Some(r) = c1.poll(Duration::from_millis(50)) { match r { Ok(_) => n1b += 1, Err(e) => eprintln!("== c1 err {e}") } }
        if let Some(r) = c2.poll(Duration::from_millis(50)) { match r { Ok(_) => n2 += 1, Err(e) => eprintln!("== c2 err {e}") } }
        a1 = c1.assignment().map(|a| a.elements().iter().map(|e| e.partition()).collect::<Vec<_>>()).unwrap_or_default();
        a2 = c2.assignment().map(|a| a.elements().iter().map(|e| e.partition()).collect::<Vec<_>>()).unwrap_or_default();
        if !a1.is_empty() && !a2.is_empty() && a1.len() + a2.len() == 4 { break; }
    }
    eprintln!("== after c2 joined ({:?}): c1 {a1:?} c2 {a2:?}; msgs c1 {n1b} c2 {n2}", start.elapsed());
    drop(c1);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        let _ = c2.poll(Duration::from_millis(100));
        a2 = c2.assignment().map(|a| a.elements().iter().map(|e| e.partition()).collect::<Vec<_>>()).unwrap_or_default();
        if a2.len() == 4 { break; }
    }
    eprintln!("== after c1 left ({:?}): c2 {a2:?}", start.elapsed());
}

#[test]
fn probe_groups() {
    let Some(tansu) = tansu::start() else { return };
    tansu.create_topic("g", 4);
    for p in 0..4 { produce_batch(&tansu, "g", p, 0..10, &[], None); }
    group_run(&tansu, "g", "range", &[]);
    group_run(&tansu, "g", "roundrobin", &[]);
    group_run(&tansu, "g", "cooperative-sticky", &[]);
    group_run(&tansu, "g", "range", &[("group.instance.id", "static-1")]);
    group_run(&tansu, "g", "range", &[("group.protocol", "consumer")]);
}
