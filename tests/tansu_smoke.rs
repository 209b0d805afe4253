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

/// Produces `range` records (key, payload, two headers) to partition 0 of `topic`, one per
/// batch (see `Tansu::producer_config`), flushes, and returns the delivery reports.
fn produce(tansu: &Tansu, topic: &str, range: std::ops::Range<usize>) -> Vec<(i32, i64)> {
    let producer: BaseProducer<Deliveries> = tansu
        .producer_config()
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

    // Commit "next offset to read" as if only the first half were processed, read it back
    // through the group coordinator, and check a new member of the group resumes there.
    let half = N / 2;
    commit(&tansu, &consumer, topic, half as i64);
    drop(consumer);
    let consumer = group_consumer(&tansu, "atowatch-smoke");
    consumer.subscribe(&[topic]).expect("subscribe");
    let got = poll_n(&tansu, &consumer, N - half);
    let offsets: Vec<i64> = got.iter().map(|m| m.offset()).collect();
    assert_eq!(
        offsets,
        (half as i64..N as i64).collect::<Vec<_>>(),
        "resumed at the commit"
    );
    for msg in &got {
        assert_eq!(msg.key(), Some(key(msg.offset() as usize).as_bytes()));
    }
    commit(&tansu, &consumer, topic, N as i64);

    // Later records reach the live member.
    let delivered = produce(&tansu, topic, N..N + 1);
    assert_eq!(delivered, vec![(0, N as i64)]);
    let got = poll_n(&tansu, &consumer, 1);
    assert_eq!(
        (got[0].offset(), got[0].key()),
        (N as i64, Some(key(N).as_bytes()))
    );
}

/// Commits `offset` (the next to read) for partition 0 and reads it back.
fn commit(tansu: &Tansu, consumer: &BaseConsumer, topic: &str, offset: i64) {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Offset(offset))
        .unwrap();
    consumer
        .commit(&tpl, CommitMode::Sync)
        .unwrap_or_else(|e| panic!("commit {offset}: {e}\n{}", tansu.logs()));
    let mut ask = TopicPartitionList::new();
    ask.add_partition(topic, 0);
    let committed = consumer
        .committed_offsets(ask, TIMEOUT)
        .unwrap_or_else(|e| panic!("committed_offsets: {e}\n{}", tansu.logs()));
    assert_eq!(
        committed.find_partition(topic, 0).map(|p| p.offset()),
        Some(Offset::Offset(offset)),
        "committed offset read back"
    );
}
