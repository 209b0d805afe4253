//! The Kafka runtime: a consumer group in, signals and dead letters out, at-least-once.
//!
//! Two threads run it (`pipeline`). The polling thread serves the consumer: rebalance,
//! commit and statistics callbacks run from its `poll` calls, and it takes fetched
//! messages in batches (`fetch`), decodes and keys them, and hands each batch over. The
//! engine's thread owns the engine and the producer: it handles each message, publishes,
//! serves delivery reports and commits. The offset bookkeeping in [`offsets`] is reached
//! from both through one mutex, taken briefly per message and per callback.

mod fetch;
pub mod follow;
pub mod offsets;
pub mod pipeline;
pub mod produce;

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use rdkafka::ClientConfig;

use crate::config::{Config, KafkaConfig};

pub use pipeline::{RunOptions, RunSummary, run};

#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    /// A librdkafka property was rejected; `key` names it in the config.
    #[error("{key}: {message}")]
    Property { key: String, message: String },
    #[error("cannot create the Kafka {role}: {source}")]
    Client {
        role: &'static str,
        source: rdkafka::error::KafkaError,
    },
    #[error(transparent)]
    Webhook(#[from] crate::webhook::WebhookError),
    #[error(transparent)]
    Privacy(#[from] crate::privacy::PrivacyError),
    #[error("cannot subscribe to {topics}: {source}")]
    Subscribe {
        topics: String,
        source: rdkafka::error::KafkaError,
    },
}

/// What `/healthz` and `/readyz` report, written by the pipeline thread.
#[derive(Debug, Default)]
pub struct Health {
    /// The group has assigned us partitions (possibly none) at least once.
    pub joined: AtomicBool,
    /// Brokers librdkafka reports as up, from its statistics and error callbacks.
    pub brokers_up: AtomicI64,
    pub stopping: AtomicBool,
    /// Wall-clock ms of the pipeline loop's last turn: a stuck loop is not live.
    pub heartbeat_ms: AtomicI64,
    /// Partitions assigned now.
    pub partitions: AtomicI64,
}

/// A loop that has not turned for this long is reported as not live.
pub const STALL_MS: i64 = 60_000;

impl Health {
    pub fn ready(&self) -> bool {
        self.joined.load(Ordering::Relaxed)
            && self.brokers_up.load(Ordering::Relaxed) > 0
            && !self.stopping.load(Ordering::Relaxed)
    }

    /// Why `/readyz` says no, for its body.
    pub fn not_ready_reason(&self) -> Option<&'static str> {
        if self.stopping.load(Ordering::Relaxed) {
            Some("shutting down")
        } else if self.brokers_up.load(Ordering::Relaxed) <= 0 {
            Some("no Kafka broker reachable")
        } else if !self.joined.load(Ordering::Relaxed) {
            Some("consumer group not joined yet")
        } else {
            None
        }
    }

    pub fn live(&self, now_ms: i64) -> bool {
        let hb = self.heartbeat_ms.load(Ordering::Relaxed);
        hb == 0 || now_ms - hb < STALL_MS
    }
}

/// The consumer's librdkafka configuration: shared properties, then consumer ones,
/// then what atowatch manages (which validation keeps users from setting).
pub fn consumer_config(cfg: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("client.id", "atowatch");
    for (k, v) in cfg.properties.iter().chain(&cfg.consumer_properties) {
        c.set(k, &v.0);
    }
    c.set("bootstrap.servers", &cfg.brokers)
        .set("group.id", &cfg.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false");
    c
}

pub fn producer_config(cfg: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("client.id", "atowatch");
    for (k, v) in cfg.properties.iter().chain(&cfg.producer_properties) {
        c.set(k, &v.0);
    }
    c.set("bootstrap.servers", &cfg.brokers);
    c
}

/// Turns librdkafka's "No such configuration property" (and friends) into an error that
/// names the config key the property came from.
pub(crate) fn property_error(
    cfg: &KafkaConfig,
    role: &'static str,
    e: rdkafka::error::KafkaError,
) -> KafkaError {
    let msg = e.to_string();
    let tables = [
        ("properties", &cfg.properties),
        (
            if role == "consumer" {
                "consumer_properties"
            } else {
                "producer_properties"
            },
            if role == "consumer" {
                &cfg.consumer_properties
            } else {
                &cfg.producer_properties
            },
        ),
    ];
    // librdkafka ends its message with `NAME VALUE` as given; failing that, it quotes
    // the (canonical) name. Exact matches only: `sasl.mechanism` is not `sasl.mechanismz`.
    let named = |name: &str, value: &str| {
        msg.ends_with(&format!(" {name} {value}")) || msg.contains(&format!("\"{name}\""))
    };
    for (table, props) in tables {
        for (name, value) in props.iter() {
            if named(name, &value.0) {
                return KafkaError::Property {
                    key: format!("kafka.{table}.\"{name}\""),
                    message: msg,
                };
            }
        }
    }
    KafkaError::Client { role, source: e }
}

/// Creates (without connecting) the consumer and producer that `run` would, so property
/// names and values are checked by librdkafka itself. `check-config` calls it.
pub fn check_properties(cfg: &Config) -> Result<(), KafkaError> {
    use rdkafka::consumer::BaseConsumer;
    use rdkafka::producer::BaseProducer;
    let _c: BaseConsumer = consumer_config(&cfg.kafka)
        .create()
        .map_err(|e| property_error(&cfg.kafka, "consumer", e))?;
    let _p: BaseProducer = producer_config(&cfg.kafka)
        .create()
        .map_err(|e| property_error(&cfg.kafka, "producer", e))?;
    Ok(())
}
