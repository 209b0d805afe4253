//! `atowatch run`: the consumer-group loop.
//!
//! Per message: decide its handling (live, warm-up, skip), feed it to the engine,
//! publish its signals, their decisions and, when invalid, the message itself to the
//! dead-letter topic, and note how many outputs it awaits. Delivery reports release
//! those; the commit timer commits what is released. Revoke and shutdown flush first, so
//! a rebalance or SIGTERM commits everything that was published; SIGKILL commits nothing
//! new and the restart re-reads from the last commit, producing the same `signal_id`s.
//!
//! Two threads share the work. One polls (and so runs the rebalance callbacks), takes
//! fetched messages in batches (`fetch`) and decodes them (`Batch`); the other runs the
//! engine and publishes, a batch behind. A message whose partition is revoked while it
//! is in the engine is published but holds no offset: the new owner re-reads it from the
//! commit (a duplicate with the same `signal_id`, never a gap).
//!
//! Messages are handled in the order librdkafka hands them over: partition by partition,
//! one fetched chunk at a time. Live, partitions interleave finely; catching up on a
//! backlog they do not, and one partition's chunk can be minutes of event time ahead of
//! another's. So each partition is its own source of event time for the engine, and the
//! watermark is the least of them (`engine::clock`): that skew makes nothing late. A
//! partition that delivers nothing for `kafka.partition_idle_after` while fetching runs
//! stops holding the watermark back.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::{KafkaError as RdError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;

use crate::config::Config;
use crate::decisions::{Decider, Decision, DecisionTable};
use crate::engine::{Engine, Keyed, Keyer, Prepared, Processed};
use crate::logging::{self, Level};
use crate::metrics::{EngineSync, Metrics};
use crate::signal::Signal;

use super::fetch::{FetchQueue, Msg, Wake};
use super::offsets::{Handling, Origin, Tracker};
use super::{Health, KafkaError, consumer_config, producer_config, property_error};

const LOG: &str = "kafka";
/// Messages handled per batch before the loop looks at the clock, commits and metrics.
const BATCH: usize = 1024;
/// How long one poll waits when there is nothing to read.
const IDLE_POLL: Duration = Duration::from_millis(100);

/// An event decoded and keyed on the polling thread, or why it is invalid.
type Decoded<'a> = Result<Keyed<'a>, crate::event::InvalidEvent>;

/// Polled messages and their events, decoded and keyed (client IP, account, hashes) on
/// the polling thread a batch ahead of the engine's: that is about half the per-event
/// work, the engine's thread is the one that limits throughput, and the bytes they read
/// are in the polling thread's cache (the engine's thread stalled on them). Decoding on
/// a helper thread started per batch cost more: a spawn and a join per batch, and the
/// engine's thread decoding the first chunk itself while the helper started, since
/// waiting for it cost more still.
struct Batch<'c> {
    // Declared first, so dropped first: the events borrow the messages' payloads, the
    // positions their topic names.
    decoded: Vec<Decoded<'c>>,
    pos: Vec<MsgPos<'c>>,
    msgs: Vec<Msg<'c>>,
}

/// Where a message sits, read on the polling thread with the rest of it: the engine's
/// thread then leaves librdkafka's message alone on the common path, where loading it (a
/// line last written on the other core) and its topic's name (checked as UTF-8 on
/// every call) were a few per cent of that thread's time.
#[derive(Clone, Copy)]
struct MsgPos<'c> {
    topic: &'c str,
    partition: i32,
    offset: i64,
}

/// A batch's buffers, emptied for reuse.
type Spare<'c> = (Vec<Msg<'c>>, Vec<Decoded<'c>>, Vec<MsgPos<'c>>);

impl<'c> Batch<'c> {
    /// Decodes `msgs` into `decoded` (emptied first; passed in to reuse its buffer).
    fn decode(
        (msgs, mut decoded, mut pos): Spare<'c>,
        input: &crate::config::InputConfig,
        keyer: &Keyer,
    ) -> Batch<'c> {
        decoded.clear();
        pos.clear();
        let mut scratch = crate::event::AuthEvent::default();
        // Messages of one topic share its object: its name is read once per run of them.
        let mut last_topic: (*const std::ffi::c_void, &'c str) = (std::ptr::null(), "");
        for m in &msgs {
            // SAFETY: the name belongs to librdkafka's topic object, which the message
            // holds a reference to until it is dropped; `pos` is dropped or emptied
            // before `msgs`, as the events below.
            let topic: &'c str = match m {
                Msg::Fetched(f) if f.topic_handle() == last_topic.0 => last_topic.1,
                Msg::Fetched(f) => {
                    let t: &'c str = unsafe { &*(m.topic() as *const str) };
                    last_topic = (f.topic_handle(), t);
                    t
                }
                Msg::Polled(_) => unsafe { &*(m.topic() as *const str) },
            };
            pos.push(MsgPos {
                topic,
                partition: m.partition(),
                offset: m.offset(),
            });
            let p = m.payload().unwrap_or_default();
            // SAFETY: a payload is librdkafka's buffer, owned by the message's C object,
            // not by the `Msg` value: it stays where it is and unchanged until
            // the message is dropped, however the value moves. Events borrowing it live in
            // `scratch`, dropped when this returns, and in `decoded`, which is dropped
            // before `msgs` (field order) or emptied before `msgs` is handed out
            // (`into_parts`), and `msgs` is never changed meanwhile.
            let p: &'c [u8] = unsafe { std::slice::from_raw_parts(p.as_ptr(), p.len()) };
            decoded.push(crate::formats::decode_keyed(
                input.format_of(topic),
                p,
                input.max_event_bytes,
                keyer,
                &mut scratch,
            ));
        }
        Batch { decoded, pos, msgs }
    }

    /// The messages, and the emptied buffers for reuse.
    fn into_parts(self) -> Spare<'c> {
        let Batch {
            mut decoded,
            mut pos,
            msgs,
        } = self;
        decoded.clear();
        pos.clear();
        (msgs, decoded, pos)
    }
}

/// How the caller controls a run.
#[derive(Clone)]
pub struct RunOptions {
    /// Set to stop gracefully (SIGTERM/SIGINT in the binary).
    pub stop: Arc<AtomicBool>,
    /// Stop gracefully after this many live messages (benchmarks and tests).
    pub stop_after: Option<u64>,
    /// Where decisions go; the HTTP API reads the same table.
    pub decisions: Arc<DecisionTable>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            stop: Arc::new(AtomicBool::new(false)),
            stop_after: None,
            decisions: Arc::new(DecisionTable::new()),
        }
    }
}

/// What a run did, for the exit summary.
#[derive(Clone, Debug, Default)]
pub struct RunSummary {
    pub messages: u64,
    pub warmup_messages: u64,
    pub signals: u64,
    pub dead_letters: u64,
    /// Events older than the watermark, dropped (live and warm-up).
    pub late: u64,
    /// Outputs still unacknowledged at exit (their offsets were not committed).
    pub unacknowledged: usize,
    pub committed: Vec<(String, i32, i64)>,
    pub elapsed: Duration,
    /// From the start of handling the first batch with a live message to the end of the
    /// last such batch: the span a rate is measured over, kept here so that measuring
    /// it needs no thread watching a counter (which, waking every millisecond, took CPU
    /// from the run it measured).
    pub live: Option<(Instant, Instant)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OutKind {
    Signal,
    DeadLetter,
    Decision,
    /// A null record ending an expired decision on the compacted topic.
    Tombstone,
}

/// Counts a decision under its action and scope.
fn count_decision(counter: &prometheus::IntCounterVec, d: &Decision) {
    counter
        .with_label_values(&[d.action.as_str(), d.scope.as_str()])
        .inc();
}

/// Rides with each record as its delivery opaque.
pub struct OutMeta {
    /// The event whose offset waits for this record; none for tombstones and for
    /// decisions added by hand.
    origin: Option<Origin>,
    kind: OutKind,
    /// Kafka timestamp of the event that caused the output, for the latency histogram.
    source_ts_ms: Option<i64>,
    attempts: u32,
}

/// A record whose delivery failed, to be sent again after `due`.
struct Retry {
    topic: String,
    key: Option<Vec<u8>>,
    /// None for tombstones.
    payload: Option<Vec<u8>>,
    headers: Vec<(String, Vec<u8>)>,
    meta: Box<OutMeta>,
    due: Instant,
}

/// State the callbacks reach through `&self`.
struct Shared {
    cfg: Config,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    tracker: Mutex<Tracker>,
    retries: Mutex<Vec<Retry>>,
    producer: OnceLock<Arc<BaseProducer<ProducerCtx>>>,
    warmup_ms: i64,
    decisions: Arc<DecisionTable>,
    /// Where assigned partitions deliver (`ConsumerCtx::on_assign` forwards them).
    fetchq: Mutex<Option<Arc<FetchQueue>>>,
}

impl Shared {
    fn tracker(&self) -> MutexGuard<'_, Tracker> {
        self.tracker.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A record the broker refused, or librdkafka would not take: counted by `kind`, kept
    /// (headers included) and sent again after a backoff that grows with its attempts.
    /// Returns the backoff. Its offset stays held until it is acknowledged.
    fn retry_later(
        &self,
        kind: &str,
        topic: &str,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
        headers: Option<&impl Headers>,
        mut meta: Box<OutMeta>,
    ) -> Duration {
        self.metrics
            .delivery_errors
            .with_label_values(&[kind])
            .inc();
        meta.attempts += 1;
        let wait = backoff(meta.attempts);
        let headers = headers
            .map(|h| {
                h.iter()
                    .map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec()))
                    .collect()
            })
            .unwrap_or_default();
        self.retries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Retry {
                topic: topic.to_string(),
                key: key.map(<[u8]>::to_vec),
                payload: payload.map(<[u8]>::to_vec),
                headers,
                meta,
                due: Instant::now() + wait,
            });
        wait
    }
}

fn rd_log(level: RDKafkaLogLevel, fac: &str, msg: &str) {
    let l = match level {
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error => Level::Error,
        RDKafkaLogLevel::Warning => Level::Warn,
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => Level::Info,
        RDKafkaLogLevel::Debug => Level::Debug,
    };
    logging::log_limited(
        l,
        "librdkafka",
        fac,
        Duration::from_secs(10),
        format_args!("{fac}: {msg}"),
    );
}

pub struct ConsumerCtx {
    shared: Arc<Shared>,
}

impl ClientContext for ConsumerCtx {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, msg: &str) {
        rd_log(level, fac, msg);
    }

    fn stats(&self, s: Statistics) {
        let m = &self.shared.metrics;
        let up = s
            .brokers
            .values()
            .filter(|b| b.nodeid >= 0 && b.state == "UP")
            .count() as i64;
        self.shared.health.brokers_up.store(up, Ordering::Relaxed);
        m.brokers_up.set(up);
        let mut fetchq = 0;
        let mut tracker = self.shared.tracker();
        for (topic, t) in &s.topics {
            for (p, ps) in &t.partitions {
                if *p < 0 || !ps.desired {
                    continue;
                }
                fetchq += ps.fetchq_cnt.max(0);
                // Fetched and not handed over, or not fetched yet: up to the last stable
                // offset (the high watermark outside transactions), which is as far as a
                // consumer can read.
                let end = if ps.ls_offset >= 0 {
                    ps.ls_offset
                } else {
                    ps.hi_offset
                };
                let unread = ps.fetchq_cnt > 0 || (ps.app_offset >= 0 && end > ps.app_offset);
                tracker.set_unread(topic, *p, unread);
                if ps.consumer_lag >= 0 {
                    m.consumer_lag
                        .with_label_values(&[topic.as_str(), &p.to_string()])
                        .set(ps.consumer_lag);
                }
            }
        }
        drop(tracker);
        m.fetch_queue.set(fetchq);
        m.ready.set(self.shared.health.ready() as i64);
    }

    fn error(&self, e: RdError, reason: &str) {
        if e.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            self.shared.health.brokers_up.store(0, Ordering::Relaxed);
            self.shared.metrics.brokers_up.set(0);
            self.shared.metrics.ready.set(0);
        }
        logging::log_limited(
            Level::Warn,
            LOG,
            &format!("consumer:{e}"),
            Duration::from_secs(10),
            format_args!("consumer: {e}: {reason}"),
        );
    }
}

impl ConsumerContext for ConsumerCtx {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                self.on_assign(consumer, tpl, cooperative)
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                self.on_revoke(consumer, tpl, cooperative)
            }
            other => {
                let code: RDKafkaErrorCode = other.into();
                self.shared
                    .metrics
                    .rebalances
                    .with_label_values(&["error"])
                    .inc();
                crate::warn!(LOG, "rebalance error: {code}; giving up the assignment");
                let _ = consumer.unassign();
            }
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        match result {
            Ok(()) => self.committed(offsets),
            Err(e) => {
                commit_failed(
                    &self.shared,
                    format_args!("offset commit failed (will retry next interval): {e}"),
                );
            }
        }
    }
}

fn tpl_entries(tpl: &TopicPartitionList) -> Vec<(String, i32, Offset)> {
    tpl.elements()
        .iter()
        .map(|e| (e.topic().to_string(), e.partition(), e.offset()))
        .collect()
}

impl ConsumerCtx {
    fn committed(&self, offsets: &TopicPartitionList) {
        let mut tracker = self.shared.tracker();
        for (topic, p, off) in tpl_entries(offsets) {
            if let Offset::Offset(o) = off {
                if let Some(slot) = tracker.slot(&topic, p) {
                    tracker.set_committed(slot, o);
                }
                // Only forward: an asynchronous commit's result can arrive after a later
                // synchronous one (at shutdown or revoke) has already moved the gauge.
                let g = self
                    .shared
                    .metrics
                    .committed_offset
                    .with_label_values(&[topic.as_str(), &p.to_string()]);
                if o > g.get() {
                    g.set(o);
                }
            }
        }
    }

    fn on_assign(
        &self,
        consumer: &BaseConsumer<Self>,
        tpl: &mut TopicPartitionList,
        cooperative: bool,
    ) {
        let sh = &self.shared;
        sh.metrics.rebalances.with_label_values(&["assign"]).inc();
        let parts = tpl_entries(tpl);
        let timeout = sh.cfg.kafka.revoke_timeout.ms().max(1000) as u64;
        let committed: Vec<i64> = match consumer
            .committed_offsets(tpl.clone(), Duration::from_millis(timeout))
        {
            Ok(c) => parts
                .iter()
                .map(
                    |(t, p, _)| match c.find_partition(t, *p).map(|e| e.offset()) {
                        Some(Offset::Offset(o)) => o,
                        _ => -1,
                    },
                )
                .collect(),
            Err(e) => {
                crate::warn!(
                    LOG,
                    "cannot read committed offsets ({e}); starting from the stored position without warm-up"
                );
                vec![-1; parts.len()]
            }
        };
        let warm_from: Vec<i64> = if sh.cfg.kafka.warmup && committed.iter().any(|&c| c > 0) {
            let since = chrono::Utc::now().timestamp_millis() - sh.warmup_ms;
            let mut q = TopicPartitionList::new();
            for (t, p, _) in &parts {
                let _ = q.add_partition_offset(t, *p, Offset::Offset(since));
            }
            match consumer.offsets_for_times(q, Duration::from_millis(timeout)) {
                Ok(r) => parts
                    .iter()
                    .map(
                        |(t, p, _)| match r.find_partition(t, *p).map(|e| e.offset()) {
                            Some(Offset::Offset(o)) => o,
                            _ => -1,
                        },
                    )
                    .collect(),
                Err(e) => {
                    crate::warn!(LOG, "cannot look up warm-up offsets ({e}); no warm-up");
                    vec![-1; parts.len()]
                }
            }
        } else {
            vec![-1; parts.len()]
        };
        // Bound the re-read by count too, and fall back to the log start when the broker
        // cannot look offsets up by time (librdkafka's mock broker answers -1).
        let cap = sh.cfg.kafka.warmup_max_events as i64;
        let warm_from: Vec<i64> = parts
            .iter()
            .zip(&warm_from)
            .zip(&committed)
            .map(|(((t, p, _), &w), &c)| {
                if !sh.cfg.kafka.warmup || c <= 0 {
                    return -1;
                }
                let w = if w >= 0 {
                    w
                } else {
                    match consumer.fetch_watermarks(t, *p, Duration::from_millis(timeout)) {
                        Ok((low, _)) => low,
                        Err(e) => {
                            crate::warn!(LOG, "cannot read {t}/{p} watermarks ({e}); no warm-up");
                            return -1;
                        }
                    }
                };
                w.max(c - cap)
            })
            .collect();
        let mut assign = TopicPartitionList::new();
        let mut tracker = sh.tracker();
        let mut notes = Vec::new();
        for (i, (t, p, _)) in parts.iter().enumerate() {
            let c = committed[i];
            let seen = tracker.seen_through(t, *p);
            let warm = warm_from[i].max(seen + 1);
            let (start, suppress_until) = if c >= 0 && warm_from[i] >= 0 && warm < c {
                notes.push(format!("{t}/{p}: warm-up from {warm} to {c}"));
                (Offset::Offset(warm), c)
            } else if c >= 0 {
                (Offset::Offset(c), -1)
            } else {
                (Offset::Stored, -1)
            };
            let _ = assign.add_partition_offset(t, *p, start);
            tracker.assign(t, *p, c, suppress_until);
            if c >= 0 {
                sh.metrics
                    .committed_offset
                    .with_label_values(&[t.as_str(), &p.to_string()])
                    .set(c);
            }
        }
        let active = tracker.active().count() as i64;
        drop(tracker);
        if let Some(q) = &*sh.fetchq.lock().unwrap_or_else(|p| p.into_inner()) {
            for (t, p, _) in &parts {
                if let Err(e) = q.forward(t, *p) {
                    crate::warn!(LOG, "{e}; its messages are polled one at a time");
                }
            }
        }
        let r = if cooperative {
            consumer.incremental_assign(&assign)
        } else {
            consumer.assign(&assign)
        };
        if let Err(e) = r {
            crate::error!(LOG, "assign failed: {e}");
        }
        sh.health.partitions.store(active, Ordering::Relaxed);
        sh.health.joined.store(true, Ordering::Relaxed);
        sh.metrics.ready.set(sh.health.ready() as i64);
        crate::info!(
            LOG,
            "assigned {} partition(s): {}{}",
            parts.len(),
            parts
                .iter()
                .map(|(t, p, _)| format!("{t}/{p}"))
                .collect::<Vec<_>>()
                .join(", "),
            if notes.is_empty() {
                String::new()
            } else {
                format!(" ({})", notes.join("; "))
            }
        );
    }

    fn on_revoke(
        &self,
        consumer: &BaseConsumer<Self>,
        tpl: &mut TopicPartitionList,
        cooperative: bool,
    ) {
        let sh = &self.shared;
        sh.metrics.rebalances.with_label_values(&["revoke"]).inc();
        let parts: Vec<(String, i32)> = tpl_entries(tpl)
            .into_iter()
            .map(|(t, p, _)| (t, p))
            .collect();
        if consumer.assignment_lost() {
            crate::warn!(
                LOG,
                "assignment lost (session timed out); not committing for {} partition(s)",
                parts.len()
            );
        } else {
            // Drain: what is in flight gets until the deadline to be acknowledged, then
            // whatever is acknowledged is committed.
            if let Some(p) = sh.producer.get() {
                let _ = p.flush(Duration::from_millis(
                    sh.cfg.kafka.revoke_timeout.ms() as u64
                ));
            }
            let list = sh.tracker().to_commit(Some(&parts));
            commit_sync(consumer, sh, &list, "revoke");
        }
        let mut tracker = sh.tracker();
        for (t, p) in &parts {
            tracker.revoke(t, *p);
            let _ = sh
                .metrics
                .consumer_lag
                .remove_label_values(&[t.as_str(), &p.to_string()]);
        }
        let active = tracker.active().count() as i64;
        drop(tracker);
        let r = if cooperative {
            consumer.incremental_unassign(tpl)
        } else {
            consumer.unassign()
        };
        if let Err(e) = r {
            crate::warn!(LOG, "unassign failed: {e}");
        }
        sh.health.partitions.store(active, Ordering::Relaxed);
        crate::info!(LOG, "revoked {} partition(s)", parts.len());
    }
}

/// Counts a failed commit and warns, at most every 10 seconds.
fn commit_failed(sh: &Shared, what: std::fmt::Arguments<'_>) {
    sh.metrics.commit_errors.inc();
    logging::log_limited(Level::Warn, LOG, "commit", Duration::from_secs(10), what);
}

/// An asynchronous commit whose result comes back through `commit_callback`.
///
/// rust-rdkafka's `commit(.., CommitMode::Async)` passes no reply queue, so with the
/// event API its result is never delivered (rust-rdkafka issue #856): failures would go
/// unseen and the committed-offset gauge would never move. Passing the consumer queue,
/// as the proposed fix does, routes the result to `BaseConsumer::poll`, which calls
/// `commit_callback` on this thread.
fn commit_async_with_callback<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    tpl: &TopicPartitionList,
) -> Result<(), RDKafkaErrorCode> {
    use rdkafka::bindings as rd;
    let rk = consumer.client().native_ptr();
    // SAFETY: `rk` is the live consumer handle; the queue handle returned is released
    // below; librdkafka copies `tpl` before returning, so the borrow suffices.
    let err = unsafe {
        let queue = rd::rd_kafka_queue_get_consumer(rk);
        let err = rd::rd_kafka_commit_queue(rk, tpl.ptr(), queue, None, std::ptr::null_mut());
        if !queue.is_null() {
            rd::rd_kafka_queue_destroy(queue);
        }
        err
    };
    if err == RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR {
        Ok(())
    } else {
        Err(err.into())
    }
}

/// Commits `(slot, topic, partition, offset)` entries and waits for the answer.
fn commit_sync<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    sh: &Shared,
    list: &[(u32, String, i32, i64)],
    why: &str,
) -> bool {
    if list.is_empty() {
        return true;
    }
    let mut tpl = TopicPartitionList::new();
    for (_, t, p, o) in list {
        let _ = tpl.add_partition_offset(t, *p, Offset::Offset(*o));
    }
    match consumer.commit(&tpl, CommitMode::Sync) {
        Ok(()) => {
            let mut tracker = sh.tracker();
            for (slot, t, p, o) in list {
                tracker.set_committed(*slot, *o);
                sh.metrics
                    .committed_offset
                    .with_label_values(&[t.as_str(), &p.to_string()])
                    .set(*o);
            }
            crate::debug!(LOG, "committed on {why}: {list:?}");
            true
        }
        Err(e) => {
            sh.metrics.commit_errors.inc();
            crate::warn!(LOG, "commit on {why} failed: {e}");
            false
        }
    }
}

pub struct ProducerCtx {
    shared: Arc<Shared>,
}

impl ClientContext for ProducerCtx {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, msg: &str) {
        rd_log(level, fac, msg);
    }

    fn error(&self, e: RdError, reason: &str) {
        logging::log_limited(
            Level::Warn,
            LOG,
            &format!("producer:{e}"),
            Duration::from_secs(10),
            format_args!("producer: {e}: {reason}"),
        );
    }
}

/// librdkafka error codes as metric label values.
fn error_kind(e: &RdError) -> String {
    match e.rdkafka_error_code() {
        Some(code) => format!("{code:?}"),
        None => "other".to_string(),
    }
}

impl ProducerContext for ProducerCtx {
    type DeliveryOpaque = Box<OutMeta>;

    fn delivery(&self, r: &DeliveryResult<'_>, meta: Box<OutMeta>) {
        let sh = &self.shared;
        match r {
            Ok(_) => {
                if let Some(o) = meta.origin {
                    sh.tracker().acked(o);
                }
                match meta.kind {
                    OutKind::Signal => {
                        if let Some(ts) = meta.source_ts_ms {
                            let now = chrono::Utc::now().timestamp_millis();
                            sh.metrics
                                .latency
                                .observe((now - ts).max(0) as f64 / 1000.0);
                        }
                    }
                    OutKind::DeadLetter => sh.metrics.dead_letters.inc(),
                    OutKind::Decision | OutKind::Tombstone => {}
                }
            }
            Err((e, msg)) => {
                let kind = error_kind(e);
                let offset = meta.origin.map_or(-1, |o| o.offset);
                let backoff = sh.retry_later(
                    &kind,
                    msg.topic(),
                    msg.key(),
                    msg.payload(),
                    msg.headers(),
                    meta,
                );
                logging::log_limited(
                    Level::Error,
                    LOG,
                    &format!("delivery:{}:{kind}", msg.topic()),
                    Duration::from_secs(10),
                    format_args!(
                        "delivery to {} failed: {e}; retrying in {backoff:?}; the source offset {offset} stays uncommitted until it succeeds",
                        msg.topic(),
                    ),
                );
            }
        }
    }
}

fn backoff(attempts: u32) -> Duration {
    Duration::from_millis((500u64 << attempts.min(7)).min(60_000))
}

/// The consumer loop. Owns the engine; returns when stopped and drained.
pub struct Pipeline {
    // Before the consumer, so dropped first (see `FetchQueue::new`).
    fetchq: Arc<FetchQueue>,
    consumer: BaseConsumer<ConsumerCtx>,
    w: Worker,
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        // The context outlives the consumer; its copy must not keep the queue past it.
        self.w
            .shared
            .fetchq
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
    }
}

/// Everything but the consumer, so a polled message (which borrows the consumer) can be
/// handled through `&mut self.w`.
struct Worker {
    engine: Engine,
    producer: Arc<BaseProducer<ProducerCtx>>,
    shared: Arc<Shared>,
    sync: EngineSync,
    signals: Vec<Signal>,
    decider: Decider,
    pseudo: Option<crate::privacy::Pseudonymizer>,
    webhook: Option<crate::webhook::Webhook>,
    /// Decisions of the event in hand, to publish (reused buffer).
    decisions: Vec<Decision>,
    summary: RunSummary,
    /// By tracker slot: when each partition last delivered, for idleness.
    sources: Vec<SourceSeen>,
    /// `Tracker::assignments` when this thread last looked (`expect_assigned`).
    assignments_seen: u64,
    /// Fetching is paused by backpressure.
    paused: bool,
    /// librdkafka reports statistics (`statistics.interval.ms` > 0), so a partition's
    /// unread messages are known (`idle_sources`).
    stats_on: bool,
}

#[derive(Clone, Copy)]
struct SourceSeen {
    /// Delivered since the last idleness check (set per message, so it is just a flag).
    delivered: bool,
    last: Instant,
    idle: bool,
}

/// Takes batches of up to `BATCH` messages (`FetchQueue`) and hands them over until
/// `reading` is cleared or the receiver is gone. A batch is what has arrived; with
/// nothing there the thread sleeps until something does, so a quiet stream is handed
/// over message by message. A rebalance while polling leaves the messages taken before
/// it to the tracker: those of revoked partitions are skipped (the new owner reads them
/// from the commit), the others handled as usual.
///
/// Each batch is decoded here (`Batch`). Handled batches come back on `done` to be freed
/// here: releasing a message is librdkafka work (a reference count, a free per message)
/// that cost the engine's thread, the one that limits throughput, a tenth of its time.
fn read_batches<'c>(
    consumer: &'c BaseConsumer<ConsumerCtx>,
    fetchq: &'c FetchQueue,
    input: &crate::config::InputConfig,
    keyer: &Keyer,
    reading: &AtomicBool,
    tx: &std::sync::mpsc::SyncSender<Batch<'c>>,
    done: &std::sync::mpsc::Receiver<Batch<'c>>,
) {
    let consume_error = |e: &dyn std::fmt::Display| {
        logging::log_limited(
            Level::Warn,
            LOG,
            "poll",
            Duration::from_secs(10),
            format_args!("consume error: {e}"),
        )
    };
    let mut spare: Option<Spare<'c>> = None;
    while reading.load(Ordering::Relaxed) {
        while let Ok(old) = done.try_recv() {
            let (mut msgs, decoded, pos) = old.into_parts();
            msgs.clear();
            spare = Some((msgs, decoded, pos));
        }
        let (mut batch, decoded, pos) = spare.take().unwrap_or_else(|| {
            (
                Vec::with_capacity(BATCH),
                Vec::with_capacity(BATCH),
                Vec::with_capacity(BATCH),
            )
        });
        // Events first (rebalances run here), then what was fetched. A `poll` that
        // serves an event returns nothing, so it is repeated while events remain; the
        // bound keeps a stream of them from starving the messages.
        for _ in 0..64 {
            if batch.len() >= BATCH || !fetchq.consumer_events() {
                break;
            }
            match consumer.poll(Duration::ZERO) {
                Some(Ok(msg)) => batch.push(Msg::Polled(msg)),
                Some(Err(e)) => consume_error(&e),
                None => {}
            }
        }
        let room = BATCH - batch.len();
        fetchq.take(&mut batch, room, |e| consume_error(&e));
        if batch.is_empty() {
            spare = Some((batch, decoded, pos));
            fetchq.wait(IDLE_POLL);
        } else if tx
            .send(Batch::decode((batch, decoded, pos), input, keyer))
            .is_err()
        {
            return;
        }
    }
}

/// Runs `atowatch run` until `opts.stop` is set (or `stop_after` messages), then drains,
/// commits and returns. Broker trouble is retried, never returned.
pub fn run(
    cfg: Config,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    opts: RunOptions,
) -> Result<RunSummary, KafkaError> {
    // Before the follower starts: what it reads back from the topic is held to the cap.
    opts.decisions.set_max_active(cfg.decisions.max_active);
    let follow_stop = Arc::new(AtomicBool::new(false));
    let follower = super::follow::start(&cfg, opts.decisions.clone(), follow_stop.clone());
    let mut p = Pipeline::new(cfg, metrics, health, opts.decisions.clone())?;
    p.run(&opts);
    let summary = p.shutdown();
    follow_stop.store(true, Ordering::Relaxed);
    if let Some(f) = follower {
        let _ = f.join();
    }
    Ok(summary)
}

impl Pipeline {
    pub fn new(
        cfg: Config,
        metrics: Arc<Metrics>,
        health: Arc<Health>,
        decisions: Arc<DecisionTable>,
    ) -> Result<Pipeline, KafkaError> {
        let engine = Engine::new(cfg.clone());
        let decider = Decider::new(&cfg.decisions, cfg.allowlist());
        let pseudo =
            crate::privacy::Pseudonymizer::from_config(&cfg.privacy, |k| std::env::var(k).ok())?;
        if let Some(p) = &pseudo {
            crate::info!(LOG, "account names are pseudonymized (key {})", p.key_id());
        }
        let hook_metrics = metrics.clone();
        let hook: crate::webhook::MetricsHook = Arc::new(move |e, n| {
            let kind = match e {
                crate::webhook::WebhookEvent::Sent => "sent",
                crate::webhook::WebhookEvent::Failed => "failed",
                crate::webhook::WebhookEvent::Retried => "retried",
                crate::webhook::WebhookEvent::Suppressed => "suppressed",
                crate::webhook::WebhookEvent::Dropped => "dropped",
            };
            hook_metrics.webhook.with_label_values(&[kind]).inc_by(n);
        });
        let webhook = crate::webhook::Webhook::start(&cfg.webhook, Some(hook))?;
        if let Some(w) = &webhook {
            crate::info!(LOG, "posting signals to the webhook at {}", w.host());
        }
        let warmup_ms = if cfg.kafka.warmup_window.ms() > 0 {
            cfg.kafka.warmup_window.ms()
        } else {
            engine.max_window_ms()
        };
        let shared = Arc::new(Shared {
            cfg,
            metrics,
            health,
            tracker: Mutex::new(Tracker::new()),
            retries: Mutex::new(Vec::new()),
            producer: OnceLock::new(),
            warmup_ms,
            decisions,
            fetchq: Mutex::new(None),
        });
        let kcfg = &shared.cfg.kafka;
        let ccfg = consumer_config(kcfg);
        let stats_on = ccfg
            .get("statistics.interval.ms")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .is_some_and(|ms| ms > 0);
        let producer: BaseProducer<ProducerCtx> = producer_config(kcfg)
            .create_with_context(ProducerCtx {
                shared: shared.clone(),
            })
            .map_err(|e| property_error(kcfg, "producer", e))?;
        let producer = Arc::new(producer);
        let _ = shared.producer.set(producer.clone());
        let mut consumer: BaseConsumer<ConsumerCtx> = ccfg
            .create_with_context(ConsumerCtx {
                shared: shared.clone(),
            })
            .map_err(|e| property_error(kcfg, "consumer", e))?;
        let topics: Vec<&str> = kcfg.topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topics)
            .map_err(|source| KafkaError::Subscribe {
                topics: kcfg.topics.join(","),
                source,
            })?;
        crate::info!(
            LOG,
            "consuming {} as group {} from {}; signals to {}, dead letters to {}",
            kcfg.topics.join(","),
            kcfg.group_id,
            kcfg.brokers,
            kcfg.signals_topic,
            kcfg.dead_letter_topic
        );
        // Last, with nothing left to fail: from here `Pipeline`'s drop releases the queue
        // before the consumer (an early return would drop the consumer while `shared`
        // still held it).
        let wake = Arc::new(Wake::default());
        let w = wake.clone();
        consumer.set_nonempty_callback(move || w.notify());
        let fetchq = Arc::new(FetchQueue::new(&consumer, wake));
        *shared.fetchq.lock().unwrap_or_else(|p| p.into_inner()) = Some(fetchq.clone());
        Ok(Pipeline {
            fetchq,
            consumer,
            w: Worker {
                engine,
                producer,
                shared,
                sync: EngineSync::default(),
                signals: Vec::new(),
                decider,
                pseudo,
                webhook,
                decisions: Vec::new(),
                summary: RunSummary::default(),
                sources: Vec::new(),
                assignments_seen: 0,
                paused: false,
                stats_on,
            },
        })
    }

    pub fn run(&mut self, opts: &RunOptions) {
        let started = Instant::now();
        let commit_every =
            Duration::from_millis(self.w.shared.cfg.kafka.commit_interval.ms() as u64);
        let mut next_commit = Instant::now() + commit_every;
        let mut next_gauges = Instant::now();
        let mut next_bytes = Instant::now() + Duration::from_secs(15);
        let mut next_progress = Instant::now() + Duration::from_secs(10);
        let mut last_progress = (0u64, Instant::now());
        let mut was_warming = false;
        let reading = AtomicBool::new(true);
        std::thread::scope(|scope| {
            // Polling runs on a thread of its own, a batch ahead of the engine: this
            // thread is the one that limits throughput, and polling was about a seventh
            // of its work. Rebalance callbacks run there too; they reach only `Shared`,
            // and the tracker keeps a message whose partition is revoked mid-handling
            // from holding or releasing offsets (see `Tracker::processed`).
            let (tx, rx) = std::sync::mpsc::sync_channel::<Batch<'_>>(1);
            let (done_tx, done_rx) = std::sync::mpsc::channel::<Batch<'_>>();
            let consumer = &self.consumer;
            let fetchq = &*self.fetchq;
            let reading = &reading;
            let shared = self.w.shared.clone();
            let keyer = self.w.engine.keyer().clone();
            let reader = std::thread::Builder::new()
                .name("poll".into())
                .spawn_scoped(scope, move || {
                    read_batches(
                        consumer,
                        fetchq,
                        &shared.cfg.input,
                        &keyer,
                        reading,
                        &tx,
                        &done_rx,
                    )
                });
            if let Err(e) = reader {
                crate::error!(LOG, "cannot start the polling thread: {e}");
                return;
            }
            loop {
                if opts.stop.load(Ordering::Relaxed)
                    || opts
                        .stop_after
                        .is_some_and(|n| self.w.summary.messages >= n)
                {
                    break;
                }
                self.w.serve_deliveries();
                self.w.resend_due();
                self.w.backpressure(&self.consumer);
                let batch = match rx.recv_timeout(IDLE_POLL) {
                    Ok(b) => Some(b),
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => None,
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                };
                let t0 = Instant::now();
                // Each message yields at most one live one, so handling never runs past
                // `stop_after`; the rest of the batch is not fed, so not committed, and
                // the next consumer reads it.
                let len = batch.as_ref().map_or(0, |b| b.msgs.len());
                let n = opts.stop_after.map_or(len, |s| {
                    len.min(s.saturating_sub(self.w.summary.messages) as usize)
                });
                let before = self.w.summary.messages;
                if let Some(b) = batch {
                    self.w
                        .handle_batch(&b.msgs[..n], &b.pos[..n], &b.decoded[..n]);
                    // The reader frees it; gone (stopping), it is freed here.
                    let _ = done_tx.send(b);
                }
                let now = Instant::now();
                if self.w.summary.messages > before {
                    let first = self.w.summary.live.map_or(t0, |(first, _)| first);
                    self.w.summary.live = Some((first, now));
                }
                let m = &self.w.shared.metrics;
                if n > 0 {
                    m.batch_seconds.observe((now - t0).as_secs_f64());
                    self.w.sync.stats(m, self.w.engine.stats());
                    self.w
                        .shared
                        .health
                        .brokers_up
                        .fetch_max(1, Ordering::Relaxed);
                }
                self.w.idle_sources(now);
                if now >= next_commit {
                    self.w.commit_async(&self.consumer);
                    next_commit = now + commit_every;
                }
                if now >= next_gauges {
                    self.w.gauges(now >= next_bytes);
                    if now >= next_bytes {
                        next_bytes = now + Duration::from_secs(15);
                    }
                    next_gauges = now + Duration::from_secs(1);
                    let warming = self.w.shared.tracker().warming();
                    if was_warming && !warming {
                        crate::info!(
                            LOG,
                            "warm-up done: {} events re-read, {} signals suppressed",
                            self.w.summary.warmup_messages,
                            self.w.engine.stats().suppressed
                        );
                    }
                    was_warming = warming;
                }
                if now >= next_progress {
                    let (before, at) = last_progress;
                    let rate = (self.w.summary.messages - before) as f64
                        / now.duration_since(at).as_secs_f64().max(1e-9);
                    crate::info!(
                        LOG,
                        "{} events ({:.0}/s), {} signals, {} dead letters, {} outputs awaiting ack",
                        self.w.summary.messages,
                        rate,
                        self.w.summary.signals,
                        self.w.summary.dead_letters,
                        self.w.shared.tracker().outstanding()
                    );
                    last_progress = (self.w.summary.messages, now);
                    next_progress = now + Duration::from_secs(10);
                }
            }
            reading.store(false, Ordering::Relaxed);
            // Dropping the receiver ends a reader blocked on a full channel.
            drop(rx);
        });
        self.w.summary.elapsed = started.elapsed();
    }

    /// Stops fetching, gives in-flight outputs until `kafka.shutdown_timeout` (less a
    /// reserve for the commit) to be acknowledged, commits, and leaves the group.
    pub fn shutdown(mut self) -> RunSummary {
        let sh = self.w.shared.clone();
        sh.health.stopping.store(true, Ordering::Relaxed);
        sh.metrics.ready.set(0);
        let started = Instant::now();
        let total = Duration::from_millis(sh.cfg.kafka.shutdown_timeout.ms() as u64);
        let reserve = (total / 5).min(Duration::from_secs(5));
        let drain_until = started + total.saturating_sub(reserve);
        if let Ok(a) = self.consumer.assignment() {
            let _ = self.consumer.pause(&a);
        }
        loop {
            self.w.resend_due();
            self.w.producer.poll(Duration::from_millis(20));
            let pending = sh.tracker().outstanding();
            let queued = sh.retries.lock().unwrap_or_else(|p| p.into_inner()).len();
            if (pending == 0 && queued == 0 && self.w.producer.in_flight_count() == 0)
                || Instant::now() >= drain_until
            {
                break;
            }
        }
        let list = sh.tracker().to_commit(None);
        commit_sync(&self.consumer, &sh, &list, "shutdown");
        if let Some(w) = self.w.webhook.take() {
            let left = total.saturating_sub(started.elapsed());
            w.shutdown(left.min(Duration::from_secs(5)));
        }
        self.w.sync.stats(&sh.metrics, self.w.engine.stats());
        self.w.gauges(true);
        self.w.summary.unacknowledged = sh.tracker().outstanding();
        self.w.summary.late = self.w.engine.stats().late;
        self.w.summary.committed = sh
            .tracker()
            .active()
            .map(|p| (p.topic.clone(), p.partition, p.committed))
            .collect();
        if self.w.summary.unacknowledged > 0 {
            crate::error!(
                LOG,
                "{} outputs were not acknowledged by the broker within kafka.shutdown_timeout; their offsets stay uncommitted and are re-read on restart",
                self.w.summary.unacknowledged
            );
        }
        crate::info!(
            LOG,
            "stopped: {} events ({} more re-read for warm-up), {} signals, {} dead letters, {} late in {:.1}s; committed {}",
            self.w.summary.messages,
            self.w.summary.warmup_messages,
            self.w.summary.signals,
            self.w.summary.dead_letters,
            self.w.summary.late,
            self.w.summary.elapsed.as_secs_f64(),
            if self.w.summary.committed.is_empty() {
                "nothing (no partitions assigned)".to_string()
            } else {
                self.w
                    .summary
                    .committed
                    .iter()
                    .map(|(t, p, o)| format!("{t}/{p}@{o}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        );
        let summary = self.w.summary.clone();
        // Leave the group now (the revoke callback commits nothing new), within the
        // remaining bound.
        self.consumer.unsubscribe();
        let _ = self.consumer.poll(Duration::from_millis(100));
        summary
    }
}

impl Worker {
    /// Partitions that delivered nothing for `kafka.partition_idle_after`, or were
    /// revoked, stop holding the watermark back. While fetching is paused silence means
    /// nothing, so the clock stops. Nor is a partition idle while librdkafka's
    /// statistics show it has messages to come: catching up on a backlog, one partition
    /// can wait longer than that for its turn, and letting the watermark run past it
    /// expired state its events still needed (tests/kafka.rs, the backlog tests). Until
    /// the first statistics report, that is assumed when statistics are on.
    fn idle_sources(&mut self, now: Instant) {
        let after = Duration::from_millis(self.shared.cfg.kafka.partition_idle_after.ms() as u64);
        let tracker = self.shared.tracker();
        for (slot, s) in self.sources.iter_mut().enumerate() {
            if std::mem::take(&mut s.delivered) {
                s.last = now;
                s.idle = false;
                continue;
            }
            if s.idle {
                continue;
            }
            let gone = !tracker.is_active(slot as u32);
            if self.paused && !gone {
                s.last = now;
            } else if gone
                || (now.duration_since(s.last) >= after
                    && !tracker.unread(slot as u32, self.stats_on))
            {
                s.idle = true;
                self.engine.set_source_idle(slot as u32);
            }
        }
        drop(tracker);
        self.shared
            .metrics
            .watermark_partitions
            .set(self.engine.live_sources() as i64);
    }

    /// Pauses fetching while too many outputs await acknowledgement (a slow or absent
    /// broker), so memory stays bounded; resumes at half the limit.
    fn backpressure(&mut self, consumer: &BaseConsumer<ConsumerCtx>) {
        let limit = self.shared.cfg.kafka.max_pending_outputs;
        let pending = self.shared.tracker().outstanding();
        let pause = pending >= limit;
        let resume = pending < limit / 2;
        if (pause && !self.paused) || (resume && self.paused) {
            let Ok(assignment) = consumer.assignment() else {
                return;
            };
            let r = if pause {
                consumer.pause(&assignment)
            } else {
                consumer.resume(&assignment)
            };
            if r.is_ok() {
                self.paused = pause;
                if pause {
                    crate::warn!(
                        LOG,
                        "{pending} outputs await acknowledgement (kafka.max_pending_outputs = {limit}); fetching paused"
                    );
                } else {
                    crate::info!(LOG, "outputs acknowledged; fetching resumed");
                }
            }
        }
    }

    fn commit_async(&self, consumer: &BaseConsumer<ConsumerCtx>) {
        let list = self.shared.tracker().to_commit(None);
        if list.is_empty() {
            return;
        }
        let mut tpl = TopicPartitionList::new();
        for (_, t, p, o) in &list {
            let _ = tpl.add_partition_offset(t, *p, Offset::Offset(*o));
        }
        if let Err(e) = commit_async_with_callback(consumer, &tpl) {
            commit_failed(&self.shared, format_args!("offset commit failed: {e}"));
        }
    }

    /// Handles polled messages in order, decoded ahead (`Batch`), each with its state
    /// loaded a few messages ahead (`engine::Ahead`).
    fn handle_batch(&mut self, msgs: &[Msg<'_>], pos: &[MsgPos<'_>], decoded: &[Decoded<'_>]) {
        self.expect_assigned();
        let mut ahead = crate::engine::Ahead::new(decoded);
        // `Batch::decode` yields one position and one event per message; all three are
        // cut at the same `n`.
        for (m, &at) in msgs.iter().zip(pos) {
            let p = ahead
                .next(&self.engine)
                .expect("one decoded event per message");
            self.handle(m, at, p);
        }
    }

    /// Newly assigned partitions hold the watermark until their first message:
    /// otherwise the first to deliver runs it (and the expiry of state) ahead of those
    /// still waiting their turn. `idle_sources` lets go of any that turn out to have
    /// nothing to deliver. Once per batch is enough: a partition is assigned before any
    /// of its messages is fetched.
    fn expect_assigned(&mut self) {
        let tracker = self.shared.tracker();
        if tracker.assignments() == self.assignments_seen {
            return;
        }
        self.assignments_seen = tracker.assignments();
        let now = Instant::now();
        for slot in tracker.active_slots() {
            let i = slot as usize;
            if i >= self.sources.len() {
                self.sources.resize(
                    i + 1,
                    SourceSeen {
                        delivered: false,
                        last: now,
                        idle: true,
                    },
                );
            }
            if self.sources[i].idle {
                self.sources[i].idle = false;
                self.sources[i].last = now;
                self.engine.expect_source(slot);
            }
        }
    }

    fn handle(&mut self, msg: &Msg<'_>, at: MsgPos<'_>, prepared: Prepared<'_>) {
        let MsgPos {
            topic,
            partition,
            offset,
        } = at;
        let mut tracker = self.shared.tracker();
        let Some(slot) = tracker.slot(topic, partition) else {
            return;
        };
        let handling = tracker.handling(slot, offset);
        if logging::enabled(Level::Debug) {
            crate::debug!(LOG, "message {topic}/{partition}@{offset} {handling:?}");
        }
        if matches!(handling, Handling::Skip | Handling::NotAssigned) {
            return;
        }
        tracker.fed(slot, offset);
        drop(tracker);
        self.engine.set_source(slot);
        match self.sources.get_mut(slot as usize) {
            Some(s) => s.delivered = true,
            None => self.sources.resize(
                slot as usize + 1,
                SourceSeen {
                    delivered: true,
                    last: Instant::now(),
                    idle: false,
                },
            ),
        }
        if handling == Handling::Warmup {
            self.summary.warmup_messages += 1;
            self.shared.metrics.warmup_events.inc();
            self.engine.set_suppress(true);
            self.engine.process_prepared(prepared, &mut self.signals);
            self.engine.set_suppress(false);
            self.signals.clear();
            return;
        }
        self.summary.messages += 1;
        self.shared.metrics.messages.inc();
        let invalid = match self.engine.process_prepared(prepared, &mut self.signals) {
            Processed::Invalid(e) => Some(e),
            _ => None,
        };
        if let Some(p) = &self.pseudo {
            for s in &mut self.signals {
                p.signal(s);
            }
        }
        if let Some(w) = &self.webhook {
            for s in &self.signals {
                w.offer(s);
            }
        }
        // The clock is read only when there is something to decide (most events).
        let now_ms = if self.signals.is_empty() {
            0
        } else {
            chrono::Utc::now().timestamp_millis()
        };
        let publish_decisions = !self.shared.cfg.decisions.topic.is_empty();
        for sig in &self.signals {
            if let Some(d) = self.decider.decide(sig, now_ms) {
                count_decision(&self.shared.metrics.decisions, &d);
                if self.shared.decisions.upsert(d.clone(), now_ms) && publish_decisions {
                    self.decisions.push(d);
                }
            }
        }
        let outputs = (self.signals.len() + self.decisions.len()) as u32 + invalid.is_some() as u32;
        let origin = Some(self.shared.tracker().processed(slot, offset, outputs));
        if outputs == 0 {
            return;
        }
        let source_ts = msg.timestamp_ms();
        let sh = self.shared.clone();
        let src_headers = |h: OwnedHeaders| {
            h.insert(Header {
                key: "atowatch.source.topic",
                value: Some(topic),
            })
            .insert(Header {
                key: "atowatch.source.partition",
                value: Some(&partition.to_string()),
            })
            .insert(Header {
                key: "atowatch.source.offset",
                value: Some(&offset.to_string()),
            })
        };
        let signals = std::mem::take(&mut self.signals);
        for s in &signals {
            self.summary.signals += 1;
            sh.metrics.signal(s.rule, s.severity);
            let json = crate::finding::render(s, sh.cfg.signals.output_format);
            let headers = src_headers(OwnedHeaders::new_with_capacity(4)).insert(Header {
                key: "atowatch.rule",
                value: Some(s.rule.as_str()),
            });
            let meta = Box::new(OutMeta {
                origin,
                kind: OutKind::Signal,
                source_ts_ms: source_ts,
                attempts: 0,
            });
            let rec = BaseRecord::with_opaque_to(&sh.cfg.kafka.signals_topic, meta)
                .key(s.entity.value.as_bytes())
                .payload(json.as_bytes())
                .headers(headers);
            self.send(rec);
        }
        self.signals = signals;
        self.signals.clear();
        let decisions = std::mem::take(&mut self.decisions);
        for d in &decisions {
            let json = d.to_json();
            let meta = Box::new(OutMeta {
                origin,
                kind: OutKind::Decision,
                source_ts_ms: source_ts,
                attempts: 0,
            });
            let headers = src_headers(OwnedHeaders::new_with_capacity(3));
            let rec = BaseRecord::with_opaque_to(&sh.cfg.decisions.topic, meta)
                .key(d.id.as_bytes())
                .payload(json.as_bytes())
                .headers(headers);
            self.send(rec);
        }
        self.decisions = decisions;
        self.decisions.clear();
        if let Some(e) = invalid {
            self.summary.dead_letters += 1;
            let headers = src_headers(OwnedHeaders::new_with_capacity(5))
                .insert(Header {
                    key: "atowatch.reason",
                    value: Some(e.reason.as_str()),
                })
                .insert(Header {
                    key: "atowatch.detail",
                    value: Some(e.detail.as_str()),
                });
            let meta = Box::new(OutMeta {
                origin,
                kind: OutKind::DeadLetter,
                source_ts_ms: source_ts,
                attempts: 0,
            });
            let mut rec = BaseRecord::with_opaque_to(&sh.cfg.kafka.dead_letter_topic, meta)
                .payload(msg.payload().unwrap_or_default())
                .headers(headers);
            if let Some(k) = msg.key() {
                rec = rec.key(k);
            }
            self.send(rec);
        }
    }

    /// Sends, waiting for room when librdkafka's queue is full. Anything else that
    /// fails at once is handled like a failed delivery: retried, offset held.
    fn send(&self, mut rec: BaseRecord<'_, [u8], [u8], Box<OutMeta>>) {
        loop {
            match self.producer.send(rec) {
                Ok(()) => return,
                Err((RdError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    rec = r;
                    self.producer.poll(Duration::from_millis(10));
                }
                Err((e, r)) => {
                    let backoff = self.shared.retry_later(
                        &error_kind(&e),
                        r.topic,
                        r.key,
                        r.payload,
                        r.headers.as_ref(),
                        r.delivery_opaque,
                    );
                    crate::error!(
                        LOG,
                        "cannot send to {}: {e}; retrying in {backoff:?}",
                        r.topic
                    );
                    return;
                }
            }
        }
    }

    /// rdkafka's `poll(ZERO)` serves one batch of delivery reports per call; draining
    /// them all keeps acknowledgements (offset commits, the latency histogram) prompt.
    fn serve_deliveries(&self) {
        for _ in 0..64 {
            let before = self.producer.in_flight_count();
            self.producer.poll(Duration::ZERO);
            if before == 0 || self.producer.in_flight_count() >= before {
                break;
            }
        }
    }

    fn resend_due(&self) {
        let due: Vec<Retry> = {
            let mut q = self
                .shared
                .retries
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if q.is_empty() {
                return;
            }
            let now = Instant::now();
            let (due, wait): (Vec<Retry>, Vec<Retry>) = q.drain(..).partition(|r| r.due <= now);
            *q = wait;
            due
        };
        for r in due {
            let mut headers = OwnedHeaders::new_with_capacity(r.headers.len());
            for (k, v) in &r.headers {
                headers = headers.insert(Header {
                    key: k.as_str(),
                    value: Some(v.as_slice()),
                });
            }
            let mut rec = BaseRecord::with_opaque_to(&r.topic, r.meta).headers(headers);
            if let Some(p) = &r.payload {
                rec = rec.payload(p.as_slice());
            }
            if let Some(k) = &r.key {
                rec = rec.key(k.as_slice());
            }
            self.send(rec);
        }
    }

    fn gauges(&mut self, bytes: bool) {
        let sh = &self.shared;
        let m = &sh.metrics;
        let size = if bytes {
            self.engine.state_size()
        } else {
            self.engine.state_counts()
        };
        let mut size = size;
        if !bytes {
            size.bytes = m.state_bytes.get() as usize;
        }
        self.sync.state(m, &size, Some(self.engine.watermark()));
        self.sync.services(m, self.engine.service_logins());
        m.producer_queue.set(self.producer.in_flight_count() as i64);
        m.pending_outputs.set(sh.tracker().outstanding() as i64);
        m.retry_queue
            .set(sh.retries.lock().unwrap_or_else(|p| p.into_inner()).len() as i64);
        if let Some(w) = &self.webhook {
            m.webhook_queue.set(w.queued() as i64);
        }
        sh.health
            .heartbeat_ms
            .store(chrono::Utc::now().timestamp_millis(), Ordering::Relaxed);
        m.ready.set(sh.health.ready() as i64);
        self.expire_decisions();
    }

    /// Publishes decisions added through the API. Ends decisions whose time is up,
    /// those lifted through the API, and those evicted to stay within
    /// `decisions.max_active`; on the
    /// compacted topic a tombstone (null value) under the same key ends them for every
    /// reader. A lifted decision's entity is forgiven its offences.
    fn expire_decisions(&mut self) {
        let sh = &self.shared;
        let mut gone = sh.decisions.expire(chrono::Utc::now().timestamp_millis());
        for d in sh.decisions.take_lifted() {
            self.decider.forgive(&d.id);
            count_decision(&sh.metrics.decisions_lifted, &d);
            gone.push(d);
        }
        // Added by hand through the API: published for every other instance, as a
        // decision from a signal is (no event's offset waits for it).
        for d in sh.decisions.take_added() {
            count_decision(&sh.metrics.decisions_added, &d);
            if !sh.cfg.decisions.topic.is_empty() {
                let meta = Box::new(OutMeta {
                    origin: None,
                    kind: OutKind::Decision,
                    source_ts_ms: None,
                    attempts: 0,
                });
                let json = d.to_json();
                let rec: BaseRecord<'_, [u8], [u8], Box<OutMeta>> =
                    BaseRecord::with_opaque_to(&sh.cfg.decisions.topic, meta)
                        .key(d.id.as_bytes())
                        .payload(json.as_bytes());
                self.send(rec);
            }
        }
        // Not forgiven: the entity was not a mistake, only the weakest held.
        for d in sh.decisions.take_evicted() {
            count_decision(&sh.metrics.decisions_evicted, &d);
            gone.push(d);
        }
        if !sh.cfg.decisions.topic.is_empty() {
            for d in &gone {
                let meta = Box::new(OutMeta {
                    origin: None,
                    kind: OutKind::Tombstone,
                    source_ts_ms: None,
                    attempts: 0,
                });
                let rec: BaseRecord<'_, [u8], [u8], Box<OutMeta>> =
                    BaseRecord::with_opaque_to(&sh.cfg.decisions.topic, meta).key(d.id.as_bytes());
                self.send(rec);
            }
        }
        let m = &sh.metrics;
        m.decisions_active.reset();
        for ((action, scope), n) in sh.decisions.counts() {
            m.decisions_active
                .with_label_values(&[action.as_str(), scope.as_str()])
                .set(n);
        }
    }
}
