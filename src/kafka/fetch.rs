//! Fetched messages taken from librdkafka a batch at a time.
//!
//! rdkafka's `BaseConsumer::poll` hands over one message per call, and each call reads
//! the clock (librdkafka three times, rdkafka once), locks the queue, wraps the message
//! in an event and allocates a reference count for it. In `benches/kafka.rs`, a bare
//! reader taking batches with `rd_kafka_consume_batch_queue` uses about a quarter less
//! CPU per message than one polling (its "bare, batches" rounds).
//!
//! Batch consumption cannot take the consumer's own queue: met there, a rebalance is not
//! handed to the application but answered by librdkafka with an unassign. So each
//! partition's fetch queue is forwarded, before it is assigned, to a queue of our own
//! ([`FetchQueue`]) that only ever holds messages, while rebalances, commit results,
//! statistics and errors stay on the consumer's queue and are served by `poll` as
//! before. A partition assigned without the forward (none should be) still delivers
//! through `poll`.

use std::ffi::{CStr, c_void};
use std::marker::PhantomData;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use rdkafka::bindings as rd;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::{BorrowedMessage, Message};

/// Set when either queue goes from empty to not, so the polling thread can sleep until
/// there is something to take. librdkafka calls it from its own threads with the
/// queue's lock held, so it only sets a flag.
#[derive(Default)]
pub struct Wake {
    ready: Mutex<bool>,
    cv: Condvar,
}

impl Wake {
    pub fn notify(&self) {
        *self.ready.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.cv.notify_one();
    }

    /// Returns at once if notified since the last wait, else after a notification or
    /// `timeout`.
    pub fn wait(&self, timeout: Duration) {
        let mut ready = self.ready.lock().unwrap_or_else(|p| p.into_inner());
        if !*ready {
            ready = self
                .cv
                .wait_timeout(ready, timeout)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        *ready = false;
    }
}

unsafe extern "C" fn on_nonempty(_rk: *mut rd::rd_kafka_t, opaque: *mut c_void) {
    // SAFETY: `opaque` is the `Wake` of the `FetchQueue` that registered this callback;
    // the queue unregisters it before dropping its reference to the `Wake`.
    let wake = unsafe { &*(opaque as *const Wake) };
    wake.notify();
}

/// A librdkafka queue that assigned partitions deliver their messages to.
pub struct FetchQueue {
    rk: *mut rd::rd_kafka_t,
    q: *mut rd::rd_kafka_queue_t,
    /// The consumer's own queue, to see whether it holds events to serve.
    consumer_q: *mut rd::rd_kafka_queue_t,
    wake: Arc<Wake>,
}

// SAFETY: librdkafka's queue and client handles may be used from any thread; the
// pointers are only handed to librdkafka.
unsafe impl Send for FetchQueue {}
unsafe impl Sync for FetchQueue {}

/// Why a partition could not be forwarded.
#[derive(Debug, thiserror::Error)]
#[error("cannot take {topic}/{partition}'s messages in batches: {reason}")]
pub struct ForwardError {
    topic: String,
    partition: i32,
    reason: &'static str,
}

impl FetchQueue {
    /// Creates the queue for `consumer`, which must outlive it (the pipeline drops the
    /// queue first), and has `wake` notified when it receives something. The consumer's
    /// own queue is rdkafka's: the caller has it notify the same `Wake`
    /// (`BaseConsumer::set_nonempty_callback`).
    pub fn new<C: ConsumerContext>(consumer: &BaseConsumer<C>, wake: Arc<Wake>) -> FetchQueue {
        let rk = consumer.client().native_ptr();
        // SAFETY: `rk` is a live consumer handle. Both queues are released in `drop`.
        // The callback's opaque is the `Wake` this struct keeps alive, and `drop`
        // unregisters the callback before releasing it.
        unsafe {
            let q = rd::rd_kafka_queue_new(rk);
            let consumer_q = rd::rd_kafka_queue_get_consumer(rk);
            rd::rd_kafka_queue_cb_event_enable(
                q,
                Some(on_nonempty),
                Arc::as_ptr(&wake) as *mut c_void,
            );
            FetchQueue {
                rk,
                q,
                consumer_q,
                wake,
            }
        }
    }

    /// Sends `topic`/`partition`'s fetched messages here. Must be called before the
    /// partition is assigned: assigning keeps a forward set by the application, where
    /// one set later would leave messages fetched meanwhile on the consumer's queue.
    /// Unassigning clears it, so every assignment needs it again.
    pub fn forward(&self, topic: &str, partition: i32) -> Result<(), ForwardError> {
        let err = |reason| ForwardError {
            topic: topic.to_string(),
            partition,
            reason,
        };
        let name = std::ffi::CString::new(topic).map_err(|_| err("NUL in topic name"))?;
        // SAFETY: `rk` is live (see `new`); the partition queue handle is released
        // right away, and the forward it set holds its own reference to our queue.
        unsafe {
            let pq = rd::rd_kafka_queue_get_partition(self.rk, name.as_ptr(), partition);
            if pq.is_null() {
                return Err(err("librdkafka has no such partition"));
            }
            rd::rd_kafka_queue_forward(pq, self.q);
            rd::rd_kafka_queue_destroy(pq);
        }
        Ok(())
    }

    /// Whether the consumer's own queue holds events (rebalances, commit results,
    /// statistics, errors) for `poll` to serve.
    pub fn consumer_events(&self) -> bool {
        // SAFETY: `consumer_q` is a live handle until `drop`.
        unsafe { rd::rd_kafka_queue_length(self.consumer_q) > 0 }
    }

    /// Moves up to `max` fetched messages onto `out` without waiting, and hands each
    /// consume error (a "message" that is only an error) to `on_error`. Returns how
    /// many were taken, errors included.
    pub fn take<'c>(
        &'c self,
        out: &mut Vec<Msg<'c>>,
        max: usize,
        mut on_error: impl FnMut(RDKafkaErrorCode),
    ) -> usize {
        let mut buf = [std::ptr::null_mut::<rd::rd_kafka_message_t>(); 256];
        let mut total = 0;
        while total < max {
            let want = (max - total).min(buf.len());
            // SAFETY: `buf` has room for `want` pointers; each message returned is then
            // owned by the `Fetched` wrapping it, which destroys it.
            let n = unsafe { rd::rd_kafka_consume_batch_queue(self.q, 0, buf.as_mut_ptr(), want) };
            let n = n.max(0) as usize;
            for &m in &buf[..n] {
                let f = Fetched { m, _q: PhantomData };
                match f.error() {
                    None => out.push(Msg::Fetched(f)),
                    Some(e) => on_error(e),
                }
            }
            total += n;
            if n < want {
                break;
            }
        }
        total
    }

    /// Sleeps until either queue receives something, or `timeout`.
    pub fn wait(&self, timeout: Duration) {
        self.wake.wait(timeout);
    }
}

impl Drop for FetchQueue {
    fn drop(&mut self) {
        // SAFETY: the handles were created in `new` and are released once. Partitions
        // still forwarding hold their own references; librdkafka disables the queue, so
        // what they deliver after this is discarded (they are being unassigned anyway).
        unsafe {
            rd::rd_kafka_queue_cb_event_enable(self.q, None, std::ptr::null_mut());
            rd::rd_kafka_queue_destroy(self.q);
            rd::rd_kafka_queue_destroy(self.consumer_q);
        }
    }
}

/// One message from a [`FetchQueue`], or a consume error. It cannot outlive the queue,
/// which cannot outlive the consumer.
pub struct Fetched<'c> {
    m: *mut rd::rd_kafka_message_t,
    _q: PhantomData<&'c FetchQueue>,
}

// SAFETY: a message is not changed once handed over, and may be read and destroyed on
// any thread.
unsafe impl Send for Fetched<'_> {}
unsafe impl Sync for Fetched<'_> {}

impl Fetched<'_> {
    fn raw(&self) -> &rd::rd_kafka_message_t {
        // SAFETY: `m` is a live message owned by `self`.
        unsafe { &*self.m }
    }

    /// The consume error this "message" stands for, if it is one.
    pub fn error(&self) -> Option<RDKafkaErrorCode> {
        let e = self.raw().err;
        (e != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR).then(|| e.into())
    }

    /// The payload or key at `p`: librdkafka's buffer, owned by the message.
    fn bytes(&self, p: *mut c_void, len: usize) -> Option<&[u8]> {
        // SAFETY: `p` is this message's payload or key, `len` bytes that stay unchanged
        // until the message is destroyed, which the borrow of `self` prevents.
        (!p.is_null()).then(|| unsafe { std::slice::from_raw_parts(p as *const u8, len) })
    }

    /// The topic object, to recognise a message's topic without reading its name.
    pub fn topic_handle(&self) -> *const c_void {
        self.raw().rkt as *const c_void
    }
}

/// A message as the pipeline handles it: taken in a batch (the rule), or polled one at
/// a time from the consumer's queue (a partition assigned without a forward).
pub enum Msg<'c> {
    Fetched(Fetched<'c>),
    Polled(BorrowedMessage<'c>),
}

impl Msg<'_> {
    pub fn payload(&self) -> Option<&[u8]> {
        match self {
            Msg::Fetched(f) => f.bytes(f.raw().payload, f.raw().len),
            Msg::Polled(m) => m.payload(),
        }
    }

    pub fn key(&self) -> Option<&[u8]> {
        match self {
            Msg::Fetched(f) => f.bytes(f.raw().key, f.raw().key_len),
            Msg::Polled(m) => m.key(),
        }
    }

    /// The topic's name. Kafka's are ASCII (`[a-zA-Z0-9._-]`).
    pub fn topic(&self) -> &str {
        match self {
            // SAFETY: the message holds a reference to its topic object, whose name
            // never changes.
            Msg::Fetched(f) => unsafe {
                CStr::from_ptr(rd::rd_kafka_topic_name(f.raw().rkt))
                    .to_str()
                    .unwrap_or_default()
            },
            Msg::Polled(m) => m.topic(),
        }
    }

    pub fn partition(&self) -> i32 {
        match self {
            Msg::Fetched(f) => f.raw().partition,
            Msg::Polled(m) => m.partition(),
        }
    }

    pub fn offset(&self) -> i64 {
        match self {
            Msg::Fetched(f) => f.raw().offset,
            Msg::Polled(m) => m.offset(),
        }
    }

    /// The message's timestamp in milliseconds, if it has one.
    pub fn timestamp_ms(&self) -> Option<i64> {
        match self {
            Msg::Fetched(f) => {
                let mut kind = rd::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
                // SAFETY: the message is live; `kind` is written by librdkafka.
                let ts = unsafe { rd::rd_kafka_message_timestamp(f.m, &mut kind) };
                // As rdkafka's `Timestamp::to_millis`: -1 is "none" too.
                (kind != rd::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE
                    && ts != -1)
                    .then_some(ts)
            }
            Msg::Polled(m) => m.timestamp().to_millis(),
        }
    }
}

impl Drop for Fetched<'_> {
    fn drop(&mut self) {
        // SAFETY: owned since `take`, destroyed once.
        unsafe { rd::rd_kafka_message_destroy(self.m) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::ClientConfig;
    use rdkafka::mocking::MockCluster;
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

    #[test]
    fn forwarded_partitions_deliver_every_message_here_and_none_to_poll() {
        let cluster = MockCluster::new(1).expect("mock cluster");
        cluster.create_topic("events", 2, 1).expect("topic");
        let brokers = cluster.bootstrap_servers();
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .create()
            .expect("producer");
        for i in 0..20i64 {
            let (key, payload) = (format!("k{i}"), format!("event {i}"));
            producer
                .send(
                    BaseRecord::to("events")
                        .partition((i % 2) as i32)
                        .key(key.as_bytes())
                        .payload(payload.as_bytes())
                        .timestamp(1_000 + i),
                )
                .expect("queued");
        }
        producer.flush(Duration::from_secs(10)).expect("flushed");

        let mut consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("group.id", "fetch-test")
            .set("enable.auto.commit", "false")
            .create()
            .expect("consumer");
        let wake = Arc::new(Wake::default());
        let w = wake.clone();
        consumer.set_nonempty_callback(move || w.notify());
        let q = FetchQueue::new(&consumer, wake);
        let mut tpl = TopicPartitionList::new();
        for p in 0..2 {
            q.forward("events", p).expect("forwarded");
            tpl.add_partition_offset("events", p, Offset::Beginning)
                .expect("partition");
        }
        assert!(
            q.forward("events\0", 0).is_err(),
            "a NUL in the name is refused"
        );
        consumer.assign(&tpl).expect("assigned");

        let mut got = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while got.len() < 20 && std::time::Instant::now() < deadline {
            if q.take(&mut got, 7, |e| panic!("consume error {e}")) == 0 {
                q.wait(Duration::from_millis(100));
            }
            if let Some(Ok(m)) = consumer.poll(Duration::ZERO) {
                panic!("{}/{} came through poll", m.partition(), m.offset());
            }
        }
        let mut seen: Vec<(i32, i64, String, String, Option<i64>)> = got
            .iter()
            .map(|m| {
                assert_eq!(m.topic(), "events");
                let text = |b: Option<&[u8]>| String::from_utf8(b.unwrap().to_vec()).unwrap();
                (
                    m.partition(),
                    m.offset(),
                    text(m.key()),
                    text(m.payload()),
                    m.timestamp_ms(),
                )
            })
            .collect();
        seen.sort();
        let want: Vec<_> = (0..20i64)
            .map(|i| {
                (
                    (i % 2) as i32,
                    i / 2,
                    format!("k{i}"),
                    format!("event {i}"),
                    Some(1_000 + i),
                )
            })
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        assert_eq!(seen, want);
    }
}
