//! Every Prometheus metric atowatch exports, defined once, over one registry.
//!
//! The engine counts events in plain integers on the hot path (`engine::Stats`); the
//! runtime copies the deltas into these counters once per batch, so a counter costs
//! nothing per event. Names follow Prometheus conventions: `atowatch_` prefix, `_total`
//! for counters, base units (`_seconds`, `_bytes`).

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::engine::{StateSize, Stats};
use crate::event::InvalidReason;
use crate::signal::{Rule, Severity};

pub struct Metrics {
    registry: Registry,
    /// Accepted events by `type` and `outcome`.
    pub events: IntCounterVec,
    /// Every message read from the events topics, valid or not.
    pub messages: IntCounter,
    pub invalid: IntCounterVec,
    pub late: IntCounter,
    pub duplicates: IntCounter,
    /// Events re-read on assignment to warm state (signals suppressed).
    pub warmup_events: IntCounter,
    pub suppressed_signals: IntCounter,
    pub signals: IntCounterVec,
    /// Dead-letter records acknowledged by the broker.
    pub dead_letters: IntCounter,
    pub latency: Histogram,
    pub batch_seconds: Histogram,
    pub consumer_lag: IntGaugeVec,
    pub committed_offset: IntGaugeVec,
    pub rebalances: IntCounterVec,
    pub commit_errors: IntCounter,
    pub tracked_keys: IntGaugeVec,
    pub state_bytes: IntGauge,
    pub evictions: IntCounter,
    pub expirations: IntCounter,
    pub watermark: IntGauge,
    pub watermark_partitions: IntGauge,
    pub producer_queue: IntGauge,
    pub pending_outputs: IntGauge,
    pub retry_queue: IntGauge,
    pub webhook_queue: IntGauge,
    pub fetch_queue: IntGauge,
    pub delivery_errors: IntCounterVec,
    pub brokers_up: IntGauge,
    pub ready: IntGauge,
    pub build_info: IntGaugeVec,
    /// Decisions made, by action and scope (never by entity: no IP or account labels).
    pub decisions: IntCounterVec,
    pub decisions_active: IntGaugeVec,
    pub decisions_lifted: IntCounterVec,
    pub decisions_evicted: IntCounterVec,
    pub decisions_added: IntCounterVec,
    /// Sign-ins per service and outcome (services are few and capped by
    /// state.max_services; never per account or IP).
    pub service_logins: IntCounterVec,
    /// Webhook messages and signals, by what happened (sent, failed, retried, suppressed
    /// into a digest, dropped).
    pub webhook: IntCounterVec,
    /// Pre-resolved children, so syncing touches no label maps.
    event_children: [IntCounter; 3],
    invalid_children: Vec<IntCounter>,
    keys_children: [IntGauge; 4],
}

/// What was last copied from the engine, so each sync adds only the difference. Owned
/// by the task that owns the engine.
#[derive(Default)]
pub struct EngineSync {
    last: Stats,
    services: std::collections::HashMap<String, [u64; 2]>,
    last_evicted: u64,
    last_expired: u64,
}

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("valid metric");
    r.register(Box::new(c.clone())).expect("registered once");
    c
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(c.clone())).expect("registered once");
    c
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("valid metric");
    r.register(Box::new(g.clone())).expect("registered once");
    g
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(g.clone())).expect("registered once");
    g
}

fn histogram(r: &Registry, name: &str, help: &str, buckets: &[f64]) -> Histogram {
    let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec()))
        .expect("valid metric");
    r.register(Box::new(h.clone())).expect("registered once");
    h
}

/// Latency buckets in seconds: fine below 100 ms, where the target (50 ms p99) lives.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let r = Registry::new();
        let events = counter_vec(
            &r,
            "atowatch_events_total",
            "Accepted authentication events, by type and outcome.",
            &["type", "outcome"],
        );
        let invalid = counter_vec(
            &r,
            "atowatch_invalid_events_total",
            "Events rejected and dead-lettered, by reason.",
            &["reason"],
        );
        let tracked_keys = gauge_vec(
            &r,
            "atowatch_tracked_keys",
            "Keys held in engine state, by kind (ip, account, service, event_id).",
            &["kind"],
        );
        let event_children = [
            events.with_label_values(&["user.login", "success"]),
            events.with_label_values(&["user.login", "failure"]),
            events.with_label_values(&["session.create", "none"]),
        ];
        let invalid_children = InvalidReason::ALL
            .iter()
            .map(|r| invalid.with_label_values(&[r.as_str()]))
            .collect();
        let keys_children =
            ["ip", "account", "service", "event_id"].map(|k| tracked_keys.with_label_values(&[k]));
        let signals = counter_vec(
            &r,
            "atowatch_signals_total",
            "Signals emitted, by rule and severity.",
            &["rule", "severity"],
        );
        // Every rule and severity exists from the start, so rate() and absent() work
        // before the first attack.
        for rule in Rule::ALL {
            for sev in Severity::ALL {
                signals.with_label_values(&[rule.as_str(), sev.as_str()]);
            }
        }
        let build_info = gauge_vec(
            &r,
            "atowatch_build_info",
            "Always 1; labels name the build.",
            &["version"],
        );
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        let delivery_errors = counter_vec(
            &r,
            "atowatch_delivery_errors_total",
            "Signal and dead-letter records the broker did not acknowledge, by error kind; each is retried with backoff and holds back the offset commit.",
            &["kind"],
        );
        Metrics {
            messages: counter(
                &r,
                "atowatch_messages_total",
                "Messages read from the events topics, valid or not (warm-up re-reads excluded).",
            ),
            late: counter(
                &r,
                "atowatch_late_events_total",
                "Events older than the watermark (the least partition stream time minus allowed lateness), dropped.",
            ),
            duplicates: counter(
                &r,
                "atowatch_duplicate_events_total",
                "Events whose event_id was already seen within time.dedup_window, ignored.",
            ),
            warmup_events: counter(
                &r,
                "atowatch_warmup_events_total",
                "Events re-read on partition assignment to warm state, with signals suppressed.",
            ),
            suppressed_signals: counter(
                &r,
                "atowatch_warmup_suppressed_signals_total",
                "Signals decided during warm-up and not emitted (they were emitted before).",
            ),
            dead_letters: counter(
                &r,
                "atowatch_dead_letters_total",
                "Invalid events written to the dead-letter topic and acknowledged.",
            ),
            latency: histogram(
                &r,
                "atowatch_event_to_signal_latency_seconds",
                "From the triggering event's Kafka timestamp to the broker's acknowledgement of its signal.",
                &LATENCY_BUCKETS,
            ),
            batch_seconds: histogram(
                &r,
                "atowatch_batch_processing_seconds",
                "Wall time to process one batch of polled messages (up to 1024).",
                &[
                    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5,
                ],
            ),
            consumer_lag: gauge_vec(
                &r,
                "atowatch_consumer_lag_messages",
                "Messages behind the partition's high watermark (librdkafka statistics).",
                &["topic", "partition"],
            ),
            committed_offset: gauge_vec(
                &r,
                "atowatch_committed_offset",
                "Last offset committed for the consumer group (the next to read).",
                &["topic", "partition"],
            ),
            rebalances: counter_vec(
                &r,
                "atowatch_rebalances_total",
                "Consumer group rebalance callbacks, by kind (assign, revoke, error).",
                &["kind"],
            ),
            commit_errors: counter(
                &r,
                "atowatch_commit_errors_total",
                "Offset commits the group coordinator rejected or that timed out.",
            ),
            state_bytes: gauge(
                &r,
                "atowatch_state_bytes",
                "Estimated bytes held by engine state (tables, keys, windows, sketches).",
            ),
            evictions: counter(
                &r,
                "atowatch_state_evictions_total",
                "Keys and dedup ids evicted because a state.max_* cap was reached (oldest first).",
            ),
            expirations: counter(
                &r,
                "atowatch_state_expirations_total",
                "Keys expired after their longest window without events.",
            ),
            watermark: gauge(
                &r,
                "atowatch_watermark_timestamp_seconds",
                "Event-time watermark: the least stream time of the partitions holding it back, minus allowed lateness.",
            ),
            watermark_partitions: gauge(
                &r,
                "atowatch_watermark_partitions",
                "Partitions holding the watermark back: delivering (or assigned and not yet heard from), not idle for kafka.partition_idle_after.",
            ),
            producer_queue: gauge(
                &r,
                "atowatch_producer_queue_messages",
                "Records in the producer's queue, not yet acknowledged by the broker.",
            ),
            pending_outputs: gauge(
                &r,
                "atowatch_pending_outputs",
                "Signal and dead-letter records awaiting acknowledgement; fetching pauses at kafka.max_pending_outputs.",
            ),
            retry_queue: gauge(
                &r,
                "atowatch_retry_queue_messages",
                "Records whose delivery failed, waiting to be sent again.",
            ),
            fetch_queue: gauge(
                &r,
                "atowatch_fetch_queue_messages",
                "Messages fetched by librdkafka and not yet processed.",
            ),
            brokers_up: gauge(
                &r,
                "atowatch_kafka_brokers_up",
                "Brokers the consumer is connected to (librdkafka statistics).",
            ),
            ready: gauge(
                &r,
                "atowatch_ready",
                "1 when /readyz reports ready: group joined and a broker reachable.",
            ),
            decisions: counter_vec(
                &r,
                "atowatch_decisions_total",
                "Decisions made from signals, by action (ban, challenge) and scope (ip, range, account).",
                &["action", "scope"],
            ),
            decisions_active: gauge_vec(
                &r,
                "atowatch_decisions_active",
                "Decisions in force now, by action and scope.",
                &["action", "scope"],
            ),
            decisions_lifted: counter_vec(
                &r,
                "atowatch_decisions_lifted_total",
                "Decisions lifted by hand (DELETE /v1/decisions/{id}) before their end, by action and scope.",
                &["action", "scope"],
            ),
            decisions_added: counter_vec(
                &r,
                "atowatch_decisions_added_total",
                "Decisions added by hand (POST /v1/decisions), by action and scope.",
                &["action", "scope"],
            ),
            decisions_evicted: counter_vec(
                &r,
                "atowatch_decisions_evicted_total",
                "Decisions ended early because decisions.max_active were in force, by action and scope: the weakest go first.",
                &["action", "scope"],
            ),
            service_logins: counter_vec(
                &r,
                "atowatch_service_logins_total",
                "user.login events per service and outcome (success, failure), for failure ratios by service.",
                &["service", "outcome"],
            ),
            webhook_queue: gauge(
                &r,
                "atowatch_webhook_queue_messages",
                "Webhook messages waiting to be posted (at most webhook.queue; a full queue drops into the next digest).",
            ),
            webhook: counter_vec(
                &r,
                "atowatch_webhook_total",
                "Webhook activity: messages sent, failed, retried; signals suppressed into a digest or dropped (queue full).",
                &["event"],
            ),
            events,
            invalid,
            signals,
            tracked_keys,
            build_info,
            delivery_errors,
            event_children,
            invalid_children,
            keys_children,
            registry: r,
        }
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding cannot fail");
        String::from_utf8(buf).expect("text format is UTF-8")
    }

    /// Signals emitted so far, over every rule and severity.
    pub fn signals_total_value(&self) -> u64 {
        Rule::ALL
            .iter()
            .flat_map(|r| {
                Severity::ALL.iter().map(move |s| {
                    self.signals
                        .with_label_values(&[r.as_str(), s.as_str()])
                        .get()
                })
            })
            .sum()
    }

    pub fn signal(&self, rule: Rule, severity: Severity) {
        self.signals
            .with_label_values(&[rule.as_str(), severity.as_str()])
            .inc();
    }
}

impl EngineSync {
    /// Adds what the engine counted since the last call.
    pub fn stats(&mut self, m: &Metrics, s: &Stats) {
        let d = |now: u64, before: u64| now.saturating_sub(before);
        let l = &self.last;
        m.event_children[0].inc_by(d(s.login_success, l.login_success));
        m.event_children[1].inc_by(d(s.login_failure, l.login_failure));
        m.event_children[2].inc_by(d(s.session_create, l.session_create));
        for (i, c) in m.invalid_children.iter().enumerate() {
            c.inc_by(d(s.invalid[i], l.invalid[i]));
        }
        m.late.inc_by(d(s.late, l.late));
        m.duplicates.inc_by(d(s.duplicates, l.duplicates));
        m.suppressed_signals.inc_by(d(s.suppressed, l.suppressed));
        self.last = s.clone();
    }

    /// Adds each service's sign-ins since the last call.
    pub fn services<'a>(&mut self, m: &Metrics, now: impl Iterator<Item = (&'a str, [u64; 2])>) {
        for (svc, counts) in now {
            let last = self.services.entry(svc.to_string()).or_insert([0, 0]);
            for (i, outcome) in ["success", "failure"].into_iter().enumerate() {
                // A service that expired and came back restarts from zero in the engine.
                let d = counts[i].checked_sub(last[i]).unwrap_or(counts[i]);
                if d > 0 {
                    m.service_logins
                        .with_label_values(&[svc, outcome])
                        .inc_by(d);
                }
            }
            *last = counts;
        }
    }

    pub fn state(&mut self, m: &Metrics, s: &StateSize, watermark_ms: Option<i64>) {
        for (g, v) in m
            .keys_children
            .iter()
            .zip([s.ips, s.accounts, s.services, s.dedup_ids])
        {
            g.set(v as i64);
        }
        m.state_bytes.set(s.bytes as i64);
        m.evictions
            .inc_by(s.evicted.saturating_sub(self.last_evicted));
        m.expirations
            .inc_by(s.expired.saturating_sub(self.last_expired));
        self.last_evicted = s.evicted;
        self.last_expired = s.expired;
        if let Some(w) = watermark_ms.filter(|&w| w > i64::MIN) {
            m.watermark.set(w.div_euclid(1000));
        }
    }
}
