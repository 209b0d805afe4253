//! Producing simulated traffic into Kafka (`simulate --brokers`, `demo`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError as RdError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use crate::simulate::Simulation;

#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    #[error("cannot create a Kafka producer for {brokers}: {source}")]
    Create { brokers: String, source: RdError },
    #[error("producing to {topic} failed: {source}")]
    Send { topic: String, source: RdError },
    #[error("{unacked} of {sent} events to {topic} were not acknowledged within {secs}s")]
    Flush {
        topic: String,
        sent: u64,
        unacked: i32,
        secs: u64,
    },
}

/// The client IP in a simulated event, used as the record key so one IP's events stay
/// in one partition, in order.
pub fn event_key(json: &[u8]) -> &[u8] {
    const TAG: &[u8] = b"\"ip\":\"";
    json.windows(TAG.len())
        .position(|w| w == TAG)
        .and_then(|i| {
            let rest = &json[i + TAG.len()..];
            rest.iter().position(|&b| b == b'"').map(|end| &rest[..end])
        })
        .unwrap_or_default()
}

pub struct ProduceOptions {
    /// Events per second, or as fast as the broker takes them.
    pub rate: Option<f64>,
    pub stop: Arc<AtomicBool>,
    /// Called about every second with events sent so far.
    pub progress: Option<Box<dyn FnMut(u64) + Send>>,
}

/// Produces every event of `sim` to `topic`, keyed by client IP, paced at `rate`.
/// Returns how many were sent and acknowledged.
pub fn produce_simulation(
    brokers: &str,
    topic: &str,
    sim: &Simulation,
    mut opts: ProduceOptions,
) -> Result<u64, ProduceError> {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "5")
        .set("compression.type", "lz4")
        .set("queue.buffering.max.messages", "500000")
        .create()
        .map_err(|source| ProduceError::Create {
            brokers: brokers.to_string(),
            source,
        })?;
    let started = Instant::now();
    let mut next_progress = started + Duration::from_secs(1);
    let mut buf = Vec::with_capacity(512);
    let mut sent = 0u64;
    for i in 0..sim.len() {
        if opts.stop.load(Ordering::Relaxed) {
            break;
        }
        if let Some(rate) = opts.rate {
            let due = started + Duration::from_secs_f64(i as f64 / rate);
            let now = Instant::now();
            if due > now {
                producer.poll(Duration::ZERO);
                std::thread::sleep(due - now);
            }
        }
        buf.clear();
        sim.write_event_json(i, &mut buf);
        let mut rec = BaseRecord::to(topic).key(event_key(&buf)).payload(&buf[..]);
        loop {
            match producer.send(rec) {
                Ok(()) => break,
                Err((RdError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    rec = r;
                    producer.poll(Duration::from_millis(5));
                }
                Err((source, _)) => {
                    return Err(ProduceError::Send {
                        topic: topic.to_string(),
                        source,
                    });
                }
            }
        }
        sent += 1;
        if sent % 1024 == 0 {
            producer.poll(Duration::ZERO);
            if let Some(p) = opts.progress.as_mut() {
                if Instant::now() >= next_progress {
                    p(sent);
                    next_progress = Instant::now() + Duration::from_secs(1);
                }
            }
        }
    }
    let secs = 30;
    if producer.flush(Duration::from_secs(secs)).is_err() {
        return Err(ProduceError::Flush {
            topic: topic.to_string(),
            sent,
            unacked: producer.in_flight_count(),
            secs,
        });
    }
    if let Some(p) = opts.progress.as_mut() {
        p(sent);
    }
    Ok(sent)
}

#[cfg(test)]
mod tests {
    #[test]
    fn event_key_is_the_ip_field() {
        assert_eq!(
            super::event_key(br#"{"type":"user.login","ip":"203.0.113.7","user":{}}"#),
            b"203.0.113.7"
        );
        assert_eq!(super::event_key(br#"{"type":"user.login"}"#), b"");
    }
}
