//! Webhook sink: Slack-compatible JSON for signals at or above a configured severity,
//! with retry and backoff, rate-limited so a campaign yields a handful of messages.
//!
//! The pipeline thread calls [`Webhook::offer`] for every signal. It never waits on the
//! network: it filters by severity, takes a token from a token bucket (`burst` deep,
//! refilled at `max_messages_per_minute`) and hands the signal to one background
//! thread through a bounded queue. A signal that finds the bucket empty is not sent on
//! its own; it is counted, per rule, into a digest ("…and 1,997 more
//! `campaign_participant` signals (medium+) in the last 2m") that rides along with the
//! next message, or goes out alone at the next free slot. A full queue drops the
//! signal (counted, and folded into the digest too), never blocks.
//!
//! Delivery: `POST` with `Content-Type: application/json`. 2xx is sent; 429, 5xx, 408
//! and network errors are retried up to `max_retries` times, after `Retry-After` (in
//! seconds) when the answer has one, else with exponential backoff (`backoff`, doubling,
//! capped at 60 s); any other status fails at once. Redirects are not followed.
//! The URL is a secret (whoever has a Slack incoming-webhook URL can post to the
//! channel): it is never logged, only its host.

use std::borrow::Cow;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::config::Dur;
use crate::signal::{Counts, EntityType, Rule, Severity, Signal};

const TARGET: &str = "webhook";

/// Environment variable that, when set, wins over `url` and `url_file`.
pub const URL_ENV: &str = "ATOWATCH_WEBHOOK_URL";

/// Longest wait between two attempts, whatever the backoff doubling says.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Longest `Retry-After` honoured; a larger one is clamped to this.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(15 * 60);
/// How often the sender thread looks for a pending digest and a free slot.
const TICK: Duration = Duration::from_millis(200);
/// Slack rejects a text object over 3,000 characters; blocks are packed below this.
const BLOCK_TEXT_MAX: usize = 2900;

// ---------------------------------------------------------------------------------------
// Config

/// A webhook that cannot start: the message names the config key, never the URL.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct WebhookError(pub String);

/// `[webhook]`: where and how often to post signals. Off unless a URL is given.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookConfig {
    /// Incoming-webhook URL (`https://hooks.slack.com/services/…`); "" = off. It is a
    /// secret: prefer `url_file` or the `ATOWATCH_WEBHOOK_URL` environment variable.
    pub url: String,
    /// File holding the URL (surrounding whitespace ignored), e.g. a mounted secret.
    pub url_file: String,
    /// Signals below this severity are not posted.
    pub min_severity: Severity,
    /// Sustained rate. Slack allows an incoming webhook about one message per second
    /// (<https://api.slack.com/apis/rate-limits>, "Incoming webhooks"); 6 a minute keeps
    /// a tenth of that, so a channel stays readable during a campaign and other senders
    /// on the same webhook are not starved.
    pub max_messages_per_minute: u32,
    /// Messages that may go out back to back before the rate applies: the first few
    /// signals of an incident arrive at once; 3 stays well under Slack's short bursts.
    pub burst: u32,
    /// Whole-request timeout (connect, send, response). Slack answers in well under a
    /// second; 5 s rides out a slow moment without holding the queue for long.
    pub timeout: Dur,
    /// Retries after the first attempt for 429, 5xx, 408 and network errors. With the
    /// default 1 s backoff, 5 retries span about a minute (1+2+4+8+16 s).
    pub max_retries: u32,
    /// First wait before a retry; doubles per attempt, capped at 60 s.
    pub backoff: Dur,
    /// Messages waiting for the sender thread. Bounded so a dead endpoint cannot grow
    /// memory; past it signals are dropped (counted). With the rate limit in front it
    /// only fills when the endpoint has been failing for a long time.
    pub queue: usize,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            url: String::new(),
            url_file: String::new(),
            min_severity: Severity::High,
            max_messages_per_minute: 6,
            burst: 3,
            timeout: Dur::secs(5),
            max_retries: 5,
            backoff: Dur::secs(1),
            queue: 1000,
        }
    }
}

impl WebhookConfig {
    /// Whether a URL is configured here (the environment variable can also turn it on).
    pub fn enabled(&self) -> bool {
        !self.url.trim().is_empty() || !self.url_file.trim().is_empty()
    }

    /// Impossible values, as (key under `webhook.`, message). Does not read `url_file`;
    /// [`WebhookConfig::resolve_url`] does.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let err = |k: &str, m: &str| Err((k.to_string(), m.to_string()));
        if !self.url.trim().is_empty() && !self.url_file.trim().is_empty() {
            return err("url_file", "set either url or url_file, not both");
        }
        if !self.url.trim().is_empty() {
            check_url(&self.url).map_err(|m| ("url".to_string(), m))?;
        }
        if self.max_messages_per_minute == 0 {
            return err("max_messages_per_minute", "must be at least 1");
        }
        if self.burst == 0 {
            return err("burst", "must be at least 1");
        }
        if self.timeout.ms() < 1 {
            return err("timeout", "must be positive");
        }
        if self.backoff.ms() < 1 {
            return err("backoff", "must be positive");
        }
        if self.queue == 0 {
            return err("queue", "must be at least 1");
        }
        Ok(())
    }

    /// The URL to post to: `env` (pass `std::env::var(URL_ENV).ok()`), else `url_file`'s
    /// contents, else `url`. `Ok(None)` = webhook off. Errors never contain the URL.
    pub fn resolve_url(&self, env: Option<String>) -> Result<Option<String>, String> {
        if let Some(u) = env.map(|u| u.trim().to_string()).filter(|u| !u.is_empty()) {
            check_url(&u).map_err(|m| format!("{URL_ENV}: {m}"))?;
            return Ok(Some(u));
        }
        let file = self.url_file.trim();
        if !file.is_empty() {
            let u = std::fs::read_to_string(file)
                .map_err(|e| format!("webhook.url_file: cannot read {file}: {e}"))?;
            let u = u.trim().to_string();
            if u.is_empty() {
                return Err(format!("webhook.url_file: {file} is empty"));
            }
            check_url(&u).map_err(|m| format!("webhook.url_file: {file}: {m}"))?;
            return Ok(Some(u));
        }
        let u = self.url.trim();
        if u.is_empty() {
            return Ok(None);
        }
        check_url(u).map_err(|m| format!("webhook.url: {m}"))?;
        Ok(Some(u.to_string()))
    }
}

/// `http://` or `https://`, a host, no whitespace. The message never repeats the URL.
fn check_url(u: &str) -> Result<(), String> {
    let u = u.trim();
    let lower = u.to_ascii_lowercase();
    let rest = if let Some(r) = lower.strip_prefix("https://") {
        r
    } else if let Some(r) = lower.strip_prefix("http://") {
        r
    } else {
        return Err("must start with http:// or https://".into());
    };
    if u.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain whitespace".into());
    }
    if host_part(rest).is_empty() {
        return Err("has no host".into());
    }
    Ok(())
}

fn host_part(after_scheme: &str) -> &str {
    let authority = after_scheme
        .split(['/', '?', '#'])
        .next()
        .unwrap_or_default();
    authority.rsplit('@').next().unwrap_or_default()
}

/// The part of a URL that may be logged: `host[:port]`, no credentials, path or query.
pub fn url_host(u: &str) -> String {
    let u = u.trim();
    let rest = u.split_once("://").map_or(u, |(_, r)| r);
    host_part(rest).to_string()
}

// ---------------------------------------------------------------------------------------
// Stats

/// Counters since start. `sent + failed` are messages (a digest-only message counts
/// once); `suppressed` and `dropped` are signals.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WebhookStats {
    /// Messages the endpoint accepted (2xx).
    pub sent: u64,
    /// Messages given up on: a non-retryable status, retries exhausted, or cut off by
    /// the shutdown deadline.
    pub failed: u64,
    /// Attempts after the first (429, 5xx, 408, network errors).
    pub retried: u64,
    /// Signals at or above `min_severity` folded into a digest by the rate limit.
    pub suppressed: u64,
    /// Signals (or queued messages) never attempted: queue full, or still queued at
    /// the shutdown deadline.
    pub dropped: u64,
}

/// What happened, for [`MetricsHook`]: each comes with a count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WebhookEvent {
    Sent,
    Failed,
    Retried,
    Suppressed,
    Dropped,
}

/// Called as the counters move (`Suppressed` and `Dropped` on the thread calling
/// `offer`, the rest on the sender thread), so it must be cheap: e.g. a Prometheus
/// `inc_by`.
pub type MetricsHook = Arc<dyn Fn(WebhookEvent, u64) + Send + Sync>;

// ---------------------------------------------------------------------------------------
// Rate limit and digest

struct Bucket {
    tokens: f64,
    capacity: f64,
    per_sec: f64,
    last: Instant,
}

impl Bucket {
    fn new(burst: u32, per_minute: u32, now: Instant) -> Bucket {
        let capacity = f64::from(burst.max(1));
        Bucket {
            tokens: capacity,
            capacity,
            per_sec: f64::from(per_minute.max(1)) / 60.0,
            last: now,
        }
    }

    fn take(&mut self, now: Instant) -> bool {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * self.per_sec).min(self.capacity);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn give_back(&mut self) {
        self.tokens = (self.tokens + 1.0).min(self.capacity);
    }
}

const DIGEST_SAMPLES: usize = 3;

#[derive(Clone, Debug)]
struct Tally {
    count: u64,
    min: Severity,
    max: Severity,
    samples: Vec<String>,
}

/// Signals not posted on their own, per rule, since `since`.
#[derive(Debug, Default)]
struct Digest {
    rules: [Option<Tally>; Rule::ALL.len()],
    since: Option<Instant>,
}

impl Digest {
    fn is_empty(&self) -> bool {
        self.since.is_none()
    }

    fn total(&self) -> u64 {
        self.rules.iter().flatten().map(|t| t.count).sum()
    }

    fn add(&mut self, s: &Signal, now: Instant) {
        self.since.get_or_insert(now);
        let slot = &mut self.rules[s.rule.index()];
        let t = slot.get_or_insert_with(|| Tally {
            count: 0,
            min: s.severity,
            max: s.severity,
            samples: Vec::new(),
        });
        t.count += 1;
        t.min = t.min.min(s.severity);
        t.max = t.max.max(s.severity);
        if t.samples.len() < DIGEST_SAMPLES && !t.samples.contains(&s.entity.value) {
            t.samples.push(s.entity.value.clone());
        }
    }

    fn merge(&mut self, other: Digest) {
        let Some(since) = other.since else { return };
        self.since = Some(self.since.map_or(since, |s| s.min(since)));
        for (mine, theirs) in self.rules.iter_mut().zip(other.rules) {
            let Some(theirs) = theirs else { continue };
            match mine {
                None => *mine = Some(theirs),
                Some(m) => {
                    m.count += theirs.count;
                    m.min = m.min.min(theirs.min);
                    m.max = m.max.max(theirs.max);
                    for v in theirs.samples {
                        if m.samples.len() < DIGEST_SAMPLES && !m.samples.contains(&v) {
                            m.samples.push(v);
                        }
                    }
                }
            }
        }
    }
}

struct Gate {
    bucket: Bucket,
    digest: Digest,
}

struct Shared {
    gate: Mutex<Gate>,
    sent: AtomicU64,
    failed: AtomicU64,
    retried: AtomicU64,
    suppressed: AtomicU64,
    dropped: AtomicU64,
    /// Set by `shutdown`: the sender gives up on anything it cannot finish by then.
    deadline: Mutex<Option<Instant>>,
    stopping: AtomicBool,
    /// Jobs in the channel, and messages being delivered (0 or 1): what a shutdown
    /// that runs out of time gives up on.
    queued: AtomicU64,
    in_flight: AtomicU64,
    /// Set when a shutdown ran out of time and counted the rest itself; the thread
    /// left behind counts nothing more.
    abandoned: AtomicBool,
    hook: Option<MetricsHook>,
}

impl Shared {
    fn count(&self, ev: WebhookEvent, n: u64) {
        if self.abandoned.load(Ordering::Acquire) {
            return;
        }
        self.add(ev, n);
    }

    fn add(&self, ev: WebhookEvent, n: u64) {
        let c = match ev {
            WebhookEvent::Sent => &self.sent,
            WebhookEvent::Failed => &self.failed,
            WebhookEvent::Retried => &self.retried,
            WebhookEvent::Suppressed => &self.suppressed,
            WebhookEvent::Dropped => &self.dropped,
        };
        c.fetch_add(n, Ordering::Relaxed);
        if let Some(h) = &self.hook {
            h(ev, n);
        }
    }

    fn snapshot(&self) -> WebhookStats {
        WebhookStats {
            sent: self.sent.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            retried: self.retried.load(Ordering::Relaxed),
            suppressed: self.suppressed.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
        }
    }

    fn gate(&self) -> MutexGuard<'_, Gate> {
        self.gate.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn deadline(&self) -> Option<Instant> {
        if !self.stopping.load(Ordering::Acquire) {
            return None;
        }
        *self.deadline.lock().unwrap_or_else(|p| p.into_inner())
    }
}

struct Job {
    signal: Box<Signal>,
    digest: Digest,
}

// ---------------------------------------------------------------------------------------
// The sink

/// A running webhook sink: cheap `offer` on the pipeline thread, one sender thread.
pub struct Webhook {
    tx: SyncSender<Job>,
    shared: Arc<Shared>,
    min_severity: Severity,
    host: String,
    worker: JoinHandle<()>,
}

impl fmt::Debug for Webhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Webhook")
            .field("host", &self.host)
            .field("min_severity", &self.min_severity)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Webhook {
    /// Starts the sender thread if a URL is configured (`ATOWATCH_WEBHOOK_URL`, else
    /// `url_file`, else `url`); `Ok(None)` when none is. Errors: an invalid config or
    /// URL, an unreadable `url_file`.
    pub fn start(
        cfg: &WebhookConfig,
        hook: Option<MetricsHook>,
    ) -> Result<Option<Webhook>, WebhookError> {
        cfg.validate()
            .map_err(|(k, m)| WebhookError(format!("webhook.{k}: {m}")))?;
        let Some(url) = cfg
            .resolve_url(std::env::var(URL_ENV).ok())
            .map_err(WebhookError)?
        else {
            return Ok(None);
        };
        Webhook::start_with_url(cfg, url, hook).map(Some)
    }

    /// As [`Webhook::start`], with the URL given (ignores `url`, `url_file` and the
    /// environment).
    pub fn start_with_url(
        cfg: &WebhookConfig,
        url: String,
        hook: Option<MetricsHook>,
    ) -> Result<Webhook, WebhookError> {
        cfg.validate()
            .map_err(|(k, m)| WebhookError(format!("webhook.{k}: {m}")))?;
        check_url(&url).map_err(|m| WebhookError(format!("webhook url: {m}")))?;
        let url = url.trim().to_string();
        let host = url_host(&url);
        let shared = Arc::new(Shared {
            gate: Mutex::new(Gate {
                bucket: Bucket::new(cfg.burst, cfg.max_messages_per_minute, Instant::now()),
                digest: Digest::default(),
            }),
            sent: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            retried: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            deadline: Mutex::new(None),
            stopping: AtomicBool::new(false),
            queued: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            abandoned: AtomicBool::new(false),
            hook,
        });
        let (tx, rx) = mpsc::sync_channel(cfg.queue.max(1));
        let sender = Sender {
            agent: agent(),
            url,
            host: host.clone(),
            timeout: Duration::from_millis(cfg.timeout.ms().max(1) as u64),
            backoff: Duration::from_millis(cfg.backoff.ms().max(1) as u64),
            max_retries: cfg.max_retries,
            min_severity: cfg.min_severity,
            shared: shared.clone(),
        };
        let worker = std::thread::Builder::new()
            .name("webhook".into())
            .spawn(move || sender.run(rx))
            .map_err(|e| WebhookError(format!("cannot start the webhook thread: {e}")))?;
        crate::info!(
            TARGET,
            "posting {}+ signals to {host} (at most {}/min, burst {})",
            cfg.min_severity,
            cfg.max_messages_per_minute,
            cfg.burst
        );
        Ok(Webhook {
            tx,
            shared,
            min_severity: cfg.min_severity,
            host,
            worker,
        })
    }

    /// Hands a signal to the sender thread, or counts it. Never blocks on the network
    /// or the queue; takes one short uncontended lock.
    pub fn offer(&self, s: &Signal) {
        if s.severity < self.min_severity {
            return;
        }
        let now = Instant::now();
        let mut g = self.shared.gate();
        if !g.bucket.take(now) {
            g.digest.add(s, now);
            drop(g);
            self.shared.count(WebhookEvent::Suppressed, 1);
            return;
        }
        let digest = std::mem::take(&mut g.digest);
        drop(g);
        let job = Job {
            signal: Box::new(s.clone()),
            digest,
        };
        self.shared.queued.fetch_add(1, Ordering::Relaxed);
        match self.tx.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(job) | TrySendError::Disconnected(job)) => {
                self.shared.queued.fetch_sub(1, Ordering::Relaxed);
                let mut g = self.shared.gate();
                g.bucket.give_back();
                g.digest.merge(job.digest);
                g.digest.add(&job.signal, now);
                drop(g);
                self.shared.count(WebhookEvent::Dropped, 1);
                crate::logging::log_limited(
                    crate::logging::Level::Warn,
                    TARGET,
                    "webhook-queue-full",
                    Duration::from_secs(60),
                    format_args!(
                        "queue to {} is full; signals are counted into the next digest",
                        self.host
                    ),
                );
            }
        }
    }

    pub fn stats(&self) -> WebhookStats {
        self.shared.snapshot()
    }

    /// Messages waiting for the sender thread (at most `webhook.queue`).
    pub fn queued(&self) -> u64 {
        self.shared.queued.load(Ordering::Relaxed)
    }

    /// The host posted to (safe to log; the URL is not).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Sends what is queued, and then the pending digest, within `deadline`; then stops
    /// the thread. Returns by the deadline (plus a few ms) even if the endpoint hangs:
    /// what could not be sent is counted (`failed` for an attempt cut short, `dropped`
    /// for messages never tried) and the thread is left to end on its own.
    pub fn shutdown(self, deadline: Duration) -> WebhookStats {
        let until = Instant::now() + deadline;
        *self
            .shared
            .deadline
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(until);
        self.shared.stopping.store(true, Ordering::Release);
        let Webhook {
            tx,
            shared,
            host,
            worker,
            ..
        } = self;
        drop(tx);
        let give_up_at = until + Duration::from_millis(50);
        while !worker.is_finished() && Instant::now() < give_up_at {
            std::thread::sleep(Duration::from_millis(5));
        }
        if worker.is_finished() {
            let _ = worker.join();
        } else {
            shared.abandoned.store(true, Ordering::Release);
            let queued = shared.queued.load(Ordering::Relaxed);
            let in_flight = shared.in_flight.load(Ordering::Relaxed);
            shared.add(WebhookEvent::Dropped, queued);
            shared.add(WebhookEvent::Failed, in_flight);
            crate::warn!(
                TARGET,
                "sender to {host} did not finish within {deadline:?}: gave up on \
                 {in_flight} message(s) in flight and {queued} queued"
            );
        }
        shared.snapshot()
    }
}

fn agent() -> ureq::Agent {
    use ureq::tls::{RootCerts, TlsConfig, TlsProvider};
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        // A webhook does not redirect; following one would post the payload elsewhere.
        .max_redirects(0)
        .user_agent(concat!("atowatch/", env!("CARGO_PKG_VERSION")))
        .tls_config(
            TlsConfig::builder()
                .provider(TlsProvider::NativeTls)
                // The system's CA store, as librdkafka's OpenSSL uses.
                .root_certs(RootCerts::PlatformVerifier)
                .build(),
        )
        .build()
        .new_agent()
}

// ---------------------------------------------------------------------------------------
// Sender thread

struct Sender {
    agent: ureq::Agent,
    url: String,
    host: String,
    timeout: Duration,
    backoff: Duration,
    max_retries: u32,
    min_severity: Severity,
    shared: Arc<Shared>,
}

enum Attempt {
    Sent,
    /// Retryable: after this long (`Retry-After`), or after the backoff.
    Retry(Option<Duration>, String),
    Fatal(String),
}

impl Sender {
    fn run(&self, rx: Receiver<Job>) {
        loop {
            match rx.recv_timeout(TICK) {
                Ok(job) => {
                    self.shared.queued.fetch_sub(1, Ordering::Relaxed);
                    if self.past_deadline() {
                        self.shared.count(WebhookEvent::Dropped, 1);
                        continue;
                    }
                    let body =
                        message_with_digest(Some(&job.signal), &job.digest, self.min_severity);
                    self.deliver(&body);
                }
                Err(RecvTimeoutError::Timeout) => {
                    let digest = {
                        let mut g = self.shared.gate();
                        if g.digest.is_empty() || !g.bucket.take(Instant::now()) {
                            continue;
                        }
                        std::mem::take(&mut g.digest)
                    };
                    let body = message_with_digest(None, &digest, self.min_severity);
                    self.deliver(&body);
                }
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        // Last word: what the rate limit held back, regardless of the bucket.
        let digest = std::mem::take(&mut self.shared.gate().digest);
        if !digest.is_empty() && !self.past_deadline() {
            let body = message_with_digest(None, &digest, self.min_severity);
            self.deliver(&body);
        }
    }

    fn past_deadline(&self) -> bool {
        self.shared.deadline().is_some_and(|d| Instant::now() >= d)
    }

    fn deliver(&self, body: &Value) {
        self.shared.in_flight.store(1, Ordering::Relaxed);
        self.deliver_inner(body);
        self.shared.in_flight.store(0, Ordering::Relaxed);
    }

    fn deliver_inner(&self, body: &Value) {
        let payload = body.to_string();
        let mut retries = 0u32;
        loop {
            let deadline = self.shared.deadline();
            let timeout = match deadline {
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        self.give_up("shutdown deadline reached");
                        return;
                    }
                    self.timeout.min(left)
                }
                None => self.timeout,
            };
            let (wait, why) = match self.attempt(&payload, timeout) {
                Attempt::Sent => {
                    self.shared.count(WebhookEvent::Sent, 1);
                    return;
                }
                Attempt::Fatal(why) => {
                    self.give_up(&why);
                    return;
                }
                Attempt::Retry(wait, why) => (wait.unwrap_or_else(|| self.backoff(retries)), why),
            };
            if retries >= self.max_retries {
                if retries > 0 {
                    self.give_up(&format!("{why}; gave up after {retries} retries"));
                } else {
                    self.give_up(&why);
                }
                return;
            }
            retries += 1;
            self.shared.count(WebhookEvent::Retried, 1);
            crate::logging::log_limited(
                crate::logging::Level::Warn,
                TARGET,
                "webhook-retry",
                Duration::from_secs(30),
                format_args!(
                    "post to {} failed ({why}); retry {retries}/{} in {}ms",
                    self.host,
                    self.max_retries,
                    wait.as_millis()
                ),
            );
            if !self.sleep(wait) {
                self.give_up(&format!("{why}; shutdown deadline reached before retrying"));
                return;
            }
        }
    }

    fn give_up(&self, why: &str) {
        if self.shared.abandoned.load(Ordering::Acquire) {
            return; // shutdown has counted and logged it
        }
        self.shared.count(WebhookEvent::Failed, 1);
        crate::error!(TARGET, "message to {} not delivered: {why}", self.host);
    }

    /// Waits `d`, or returns false at once if the shutdown deadline would pass first.
    fn sleep(&self, d: Duration) -> bool {
        let until = Instant::now() + d;
        loop {
            if let Some(dl) = self.shared.deadline()
                && until > dl
            {
                return false;
            }
            let now = Instant::now();
            if now >= until {
                return true;
            }
            std::thread::sleep((until - now).min(Duration::from_millis(50)));
        }
    }

    fn backoff(&self, retries_so_far: u32) -> Duration {
        let factor = 1u32 << retries_so_far.min(16);
        self.backoff.saturating_mul(factor).min(MAX_BACKOFF)
    }

    fn attempt(&self, payload: &str, timeout: Duration) -> Attempt {
        let res = self
            .agent
            .post(&self.url)
            .config()
            .timeout_global(Some(timeout))
            .build()
            .header("Content-Type", "application/json")
            .send(payload.as_bytes());
        let mut resp = match res {
            Ok(r) => r,
            Err(e) => {
                let why = redact(&e.to_string(), &self.url);
                return match e {
                    ureq::Error::BadUri(_) | ureq::Error::Http(_) => Attempt::Fatal(why),
                    _ => Attempt::Retry(None, why),
                };
            }
        };
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|s| Duration::from_secs(s).min(MAX_RETRY_AFTER));
        // Read (a little of) the body so the connection can be reused, and for the log.
        let text = resp
            .body_mut()
            .with_config()
            .limit(16 * 1024)
            .read_to_string()
            .unwrap_or_default();
        let snippet = clean(&text, 200);
        match status {
            200..=299 => Attempt::Sent,
            429 => Attempt::Retry(
                retry_after,
                format!("429 rate limited{}", describe(&snippet)),
            ),
            408 | 500..=599 => {
                Attempt::Retry(retry_after, format!("{status}{}", describe(&snippet)))
            }
            _ => Attempt::Fatal(format!("{status}{}", describe(&snippet))),
        }
    }
}

fn describe(snippet: &str) -> String {
    if snippet.is_empty() {
        String::new()
    } else {
        format!(" `{snippet}`")
    }
}

/// Removes the URL and its path from a message that may quote them.
fn redact(msg: &str, url: &str) -> String {
    let mut out = msg.replace(url, "<webhook url>");
    if let Some((_, rest)) = url.split_once("://")
        && let Some(i) = rest.find('/')
        && rest.len() - i > 1
    {
        out = out.replace(&rest[i..], "/<redacted>");
    }
    out
}

// ---------------------------------------------------------------------------------------
// Rendering

/// Escapes text for Slack mrkdwn: `&`, `<`, `>` (so attacker-chosen account names
/// cannot make links or `<!channel>` mentions), and replaces control and bidi-override
/// characters with a space so a value cannot start a new line or reorder the text.
pub fn escape_mrkdwn(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c if c.is_control() || is_bidi_control(c) => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// At most `max` chars, with `…` if cut.
fn truncate(s: &str, max: usize) -> Cow<'_, str> {
    match s.char_indices().nth(max) {
        None => Cow::Borrowed(s),
        Some((i, _)) => Cow::Owned(format!("{}…", &s[..i])),
    }
}

/// Escaped plain text, at most `max` source chars.
fn text(s: &str, max: usize) -> String {
    escape_mrkdwn(&truncate(s, max))
}

/// An inline code span: backticks inside cannot end it early.
fn code(s: &str, max: usize) -> String {
    let t = truncate(s, max).replace('`', "\u{2cb}");
    format!("`{}`", escape_mrkdwn(&t))
}

fn clean(s: &str, max: usize) -> String {
    truncate(s.trim(), max)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// `1234567` → `1,234,567`: the same grouping the replay summary prints.
pub use crate::replay::group as thousands;

fn ago(d: Duration) -> String {
    let s = d.as_secs().max(1);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        _ if s % 3600 < 60 => format!("{}h", s / 3600),
        _ => format!("{}h{}m", s / 3600, s % 3600 / 60),
    }
}

fn emoji(s: Severity) -> &'static str {
    match s {
        Severity::Critical => ":rotating_light:",
        Severity::High => ":warning:",
        Severity::Medium => ":large_orange_diamond:",
        Severity::Low => ":information_source:",
    }
}

fn entity_kind(k: EntityType) -> &'static str {
    match k {
        EntityType::Ip => "IP",
        EntityType::Account => "account",
        EntityType::Service => "service",
    }
}

fn counts_line(c: &Counts) -> Vec<String> {
    let mut v = Vec::new();
    for (name, n) in [
        ("failures", c.failures),
        ("successes", c.successes),
        ("attempts", c.attempts),
        ("distinct accounts", c.distinct_accounts),
        ("distinct IPs", c.distinct_ips),
    ] {
        if let Some(n) = n {
            v.push(format!("{name} *{}*", thousands(n)));
        }
    }
    if let Some(r) = c.failure_ratio.filter(|r| r.is_finite()) {
        let mut s = format!("failure ratio *{:.0}%*", r * 100.0);
        if let Some(b) = c.baseline_failure_ratio.filter(|b| b.is_finite()) {
            s.push_str(&format!(" (baseline {:.0}%)", b * 100.0));
        }
        v.push(s);
    }
    v
}

fn samples(label: &str, values: &[String]) -> Option<String> {
    if values.is_empty() {
        return None;
    }
    let shown: Vec<String> = values.iter().take(3).map(|v| code(v, 40)).collect();
    let more = values.len().saturating_sub(3);
    let more = if more > 0 {
        format!(" (+{more})")
    } else {
        String::new()
    };
    Some(format!("*{label}:* {}{more}", shown.join(", ")))
}

fn section(text: String) -> Value {
    json!({"type": "section", "text": {"type": "mrkdwn", "text": text}})
}

/// The Slack message for one signal (what [`Webhook`] posts when nothing was held back).
pub fn slack_message(s: &Signal) -> Value {
    message_with_digest(Some(s), &Digest::default(), s.severity)
}

fn message_with_digest(s: Option<&Signal>, digest: &Digest, min: Severity) -> Value {
    let mut blocks = Vec::new();
    let mut fallback = String::new();
    if let Some(s) = s {
        fallback = format!(
            "[{}] {} on {} {}: {}",
            s.severity,
            s.rule,
            entity_kind(s.entity.kind),
            text(&s.entity.value, 64),
            text(&s.summary, 200),
        );
        blocks.push(section(format!(
            "{} *{}* `{}` on {} {}\n{}",
            emoji(s.severity),
            s.severity.as_str().to_uppercase(),
            s.rule,
            entity_kind(s.entity.kind),
            code(&s.entity.value, 100),
            text(&s.summary, 400),
        )));
        let mut details = Vec::new();
        let counts = counts_line(&s.evidence.counts);
        if !counts.is_empty() {
            details.push(format!("*Evidence:* {}", counts.join(" · ")));
        }
        if let Some(b) = &s.evidence.because {
            details.push(format!("*Because:* {}", text(b, 100)));
        }
        details.extend(samples("Accounts", &s.evidence.sample_accounts));
        details.extend(samples("IPs", &s.evidence.sample_ips));
        if !details.is_empty() {
            blocks.push(section(details.join("\n")));
        }
        let mut ctx = vec![format!("signal_id {}", code(&s.signal_id, 64))];
        ctx.push(format!("window {}", text(&s.window, 20)));
        if let Some(svc) = &s.service {
            ctx.push(format!("service {}", code(svc, 60)));
        }
        ctx.push(text(&s.ts, 40));
        blocks.push(json!({
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": ctx.join(" · ")}],
        }));
    }
    if !digest.is_empty() {
        let ago = ago(digest.since.map_or(Duration::ZERO, |t| t.elapsed()));
        let mut tallies: Vec<(Rule, &Tally)> = Rule::ALL
            .iter()
            .zip(&digest.rules)
            .filter_map(|(r, t)| t.as_ref().map(|t| (*r, t)))
            .collect();
        tallies.sort_by(|a, b| b.1.max.cmp(&a.1.max).then(b.1.count.cmp(&a.1.count)));
        let mut lines = Vec::new();
        for (rule, t) in tallies {
            let sev = if t.min == t.max {
                t.min.to_string()
            } else {
                format!("{}+", t.min)
            };
            let eg: Vec<String> = t.samples.iter().map(|v| code(v, 40)).collect();
            lines.push(format!(
                "…and *{}* more `{rule}` signal{} ({sev}) in the last {ago}, e.g. {}",
                thousands(t.count),
                if t.count == 1 { "" } else { "s" },
                eg.join(", "),
            ));
        }
        if fallback.is_empty() {
            fallback = format!(
                "atowatch: {} more {min}+ signals held back by the rate limit in the last {ago}",
                thousands(digest.total()),
            );
            lines.insert(
                0,
                format!(
                    ":bar_chart: *{}* {min}+ signals held back by the webhook rate limit",
                    thousands(digest.total())
                ),
            );
        }
        // Pack the lines into blocks under Slack's per-text limit.
        let mut cur = String::new();
        for line in lines {
            if !cur.is_empty() && cur.len() + 1 + line.len() > BLOCK_TEXT_MAX {
                blocks.push(section(std::mem::take(&mut cur)));
            }
            if !cur.is_empty() {
                cur.push('\n');
            }
            cur.push_str(&line);
        }
        if !cur.is_empty() {
            blocks.push(section(cur));
        }
    }
    json!({"text": fallback, "blocks": blocks})
}
