//! Reads the compacted decisions topic into this instance's decision table, so
//! `/v1/decisions` on every instance serves every instance's decisions (and a restarted
//! instance serves the ones still in force). Decisions are keyed by entity, a tombstone
//! ends one; this instance's own come back too and change nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use crate::config::Config;
use crate::decisions::DecisionTable;
use crate::logging::{self, Level};

const LOG: &str = "decisions";

/// Starts the follower; it stops when `stop` is set.
pub fn start(
    cfg: &Config,
    table: Arc<DecisionTable>,
    stop: Arc<AtomicBool>,
) -> Option<JoinHandle<()>> {
    let topic = cfg.decisions.topic.clone();
    if !cfg.decisions.enabled || topic.is_empty() {
        return None;
    }
    let mut client = super::consumer_config(&cfg.kafka);
    // Assigned, not subscribed: every instance reads every partition, and never commits.
    client.set("group.id", format!("{}-decisions", cfg.kafka.group_id));
    client.set("statistics.interval.ms", "0");
    let consumer: BaseConsumer = match client.create() {
        Ok(c) => c,
        Err(e) => {
            crate::warn!(
                LOG,
                "cannot read {topic}: {e}; decisions from other instances will not be served"
            );
            return None;
        }
    };
    std::thread::Builder::new()
        .name("decisions".into())
        .spawn(move || follow(consumer, &topic, &table, &stop))
        .ok()
}

fn follow(consumer: BaseConsumer, topic: &str, table: &DecisionTable, stop: &AtomicBool) {
    // Wait for the topic's partitions (the broker may be down, the topic not yet there).
    let partitions = loop {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        match consumer.fetch_metadata(Some(topic), Duration::from_secs(5)) {
            Ok(md) => {
                let parts: Vec<i32> = md
                    .topics()
                    .iter()
                    .filter(|t| t.name() == topic && t.error().is_none())
                    .flat_map(|t| t.partitions().iter().map(|p| p.id()))
                    .collect();
                if !parts.is_empty() {
                    break parts;
                }
            }
            Err(e) => logging::log_limited(
                Level::Warn,
                LOG,
                "follow-metadata",
                Duration::from_secs(60),
                format_args!("cannot read {topic}'s metadata: {e}"),
            ),
        }
        std::thread::sleep(Duration::from_secs(2));
    };
    let mut tpl = TopicPartitionList::new();
    for p in &partitions {
        let _ = tpl.add_partition_offset(topic, *p, Offset::Beginning);
    }
    if let Err(e) = consumer.assign(&tpl) {
        crate::warn!(LOG, "cannot read {topic}: {e}");
        return;
    }
    while !stop.load(Ordering::Relaxed) {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let now = chrono::Utc::now().timestamp_millis();
                match (m.key(), m.payload()) {
                    (Some(k), None) => {
                        table.remove(&String::from_utf8_lossy(k), now);
                    }
                    (_, Some(p)) => {
                        table.learn(p, now);
                    }
                    _ => {}
                }
            }
            Some(Err(e)) => logging::log_limited(
                Level::Warn,
                LOG,
                "follow-poll",
                Duration::from_secs(60),
                format_args!("reading {topic}: {e}"),
            ),
            None => {}
        }
    }
}
