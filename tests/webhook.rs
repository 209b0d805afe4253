//! The webhook sink against a real HTTP/1.1 server on 127.0.0.1 (written here, std
//! only): retries, Retry-After, rate limiting with digests, escaping, shutdown, and an
//! `offer` that never blocks on a hung endpoint.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use atowatch::config::Dur;
use atowatch::signal::{Counts, Entity, EntityType, Evidence, Rule, Severity, Signal};
use atowatch::webhook::{
    MetricsHook, Webhook, WebhookConfig, WebhookEvent, WebhookStats, escape_mrkdwn, slack_message,
    thousands, url_host,
};
use serde_json::Value;

// ---------------------------------------------------------------------------------------
// A small HTTP/1.1 server

#[derive(Clone, Debug)]
enum Reply {
    Status {
        code: u16,
        headers: Vec<(&'static str, String)>,
        body: &'static str,
    },
    /// Reads the request and never answers (holds the connection until the server stops).
    Hang,
}

fn status(code: u16) -> Reply {
    Reply::Status {
        code,
        headers: Vec::new(),
        body: if code == 200 { "ok" } else { "error" },
    }
}

#[derive(Clone, Debug)]
struct Request {
    at: Instant,
    path: String,
    content_type: String,
    body: String,
}

impl Request {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("body is JSON")
    }
}

struct State {
    requests: Vec<Request>,
    script: VecDeque<Reply>,
    default: Reply,
    delay: Duration,
}

struct Server {
    addr: std::net::SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
}

impl Server {
    /// Answers with `script` in order, then `default` forever.
    fn start(script: Vec<Reply>, default: Reply) -> Server {
        Server::start_with_delay(script, default, Duration::ZERO)
    }

    fn start_with_delay(script: Vec<Reply>, default: Reply, delay: Duration) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State {
            requests: Vec::new(),
            script: script.into(),
            default,
            delay,
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (state.clone(), stop.clone());
        thread::spawn(move || {
            // Bounded: the server lives at most a minute even if a test forgets it.
            let started = Instant::now();
            while !sp.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(60) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (st, sp) = (st.clone(), sp.clone());
                        thread::spawn(move || serve(stream, st, sp));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Server { addr, state, stop }
    }

    fn url(&self) -> String {
        format!("http://{}/services/T000/B000/secretsecret", self.addr)
    }

    fn requests(&self) -> Vec<Request> {
        self.state.lock().unwrap().requests.clone()
    }

    fn count(&self) -> usize {
        self.state.lock().unwrap().requests.len()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve(stream: TcpStream, state: Arc<Mutex<State>>, stop: Arc<AtomicBool>) {
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let started = Instant::now();
    'conn: while !stop.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(60) {
        // Request line and headers.
        let mut head = Vec::<String>::new();
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) => return,
                Ok(_) => {
                    let l = line.trim_end_matches(['\r', '\n']).to_string();
                    if l.is_empty() {
                        if head.is_empty() {
                            continue;
                        }
                        break;
                    }
                    head.push(l);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    continue;
                }
                Err(_) => return,
            }
        }
        let path = head[0].split(' ').nth(1).unwrap_or("").to_string();
        let header = |name: &str| {
            head[1..].iter().find_map(|h| {
                let (k, v) = h.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_string())
            })
        };
        let len: usize = header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let content_type = header("content-type").unwrap_or_default();
        let mut body = vec![0u8; len];
        let mut got = 0;
        while got < len {
            match reader.read(&mut body[got..]) {
                Ok(0) => return,
                Ok(n) => got += n,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    continue;
                }
                Err(_) => return,
            }
        }
        let (reply, delay) = {
            let mut s = state.lock().unwrap();
            s.requests.push(Request {
                at: Instant::now(),
                path,
                content_type,
                body: String::from_utf8(body).unwrap(),
            });
            let default = s.default.clone();
            (s.script.pop_front().unwrap_or(default), s.delay)
        };
        thread::sleep(delay);
        match reply {
            Reply::Hang => {
                while !stop.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(60) {
                    thread::sleep(Duration::from_millis(20));
                }
                return;
            }
            Reply::Status {
                code,
                headers,
                body,
            } => {
                let mut out = format!(
                    "HTTP/1.1 {code} X\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n",
                    body.len()
                );
                for (k, v) in headers {
                    out.push_str(&format!("{k}: {v}\r\n"));
                }
                out.push_str("\r\n");
                out.push_str(body);
                if writer.write_all(out.as_bytes()).is_err() {
                    break 'conn;
                }
            }
        }
    }
}

fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return true;
        }
        thread::sleep(Duration::from_millis(10));
    }
    f()
}

// ---------------------------------------------------------------------------------------
// Signals and config

fn signal(rule: Rule, severity: Severity, value: &str, n: i64) -> Signal {
    let entity = Entity {
        kind: rule.entity_type(),
        value: value.to_string(),
    };
    let ts_ms = 1_795_000_000_000 + n;
    Signal {
        signal_id: Signal::make_id(rule, &entity, ts_ms),
        rule,
        severity,
        entity,
        ts: "2026-11-21T10:03:00.000Z".into(),
        window: "10m".into(),
        service: Some("login".into()),
        evidence: Evidence {
            counts: Counts {
                failures: Some(1234),
                distinct_accounts: Some(56),
                failure_ratio: Some(0.97),
                ..Default::default()
            },
            sample_accounts: vec!["alice@example.com".into(), "bob@example.com".into()],
            ..Default::default()
        },
        summary: format!("{rule} fired for {value}"),
        ts_ms,
    }
}

/// Fast retries and a roomy limiter, so each test sees only what it sets up.
fn cfg() -> WebhookConfig {
    WebhookConfig {
        min_severity: Severity::High,
        max_messages_per_minute: 600,
        burst: 100,
        timeout: Dur::secs(2),
        max_retries: 3,
        backoff: Dur(20),
        queue: 100,
        ..Default::default()
    }
}

fn start(cfg: &WebhookConfig, server: &Server) -> Webhook {
    Webhook::start_with_url(cfg, server.url(), None).unwrap()
}

fn texts(v: &Value) -> String {
    let mut out = vec![v["text"].as_str().unwrap().to_string()];
    for b in v["blocks"].as_array().unwrap() {
        if let Some(t) = b["text"]["text"].as_str() {
            out.push(t.to_string());
        }
        for e in b["elements"].as_array().into_iter().flatten() {
            out.push(e["text"].as_str().unwrap().to_string());
        }
    }
    out.join("\n")
}

// ---------------------------------------------------------------------------------------
// Tests

#[test]
fn posts_slack_json_at_or_above_min_severity() {
    let server = Server::start(vec![], status(200));
    let counted = Arc::new(AtomicU64::new(0));
    let c = counted.clone();
    let hook: MetricsHook = Arc::new(move |ev, n| {
        if ev == WebhookEvent::Sent {
            c.fetch_add(n, Ordering::Relaxed);
        }
    });
    let w = Webhook::start_with_url(&cfg(), server.url(), Some(hook)).unwrap();
    assert_eq!(w.host(), server.addr.to_string());
    w.offer(&signal(
        Rule::CredentialStuffing,
        Severity::Medium,
        "203.0.113.7",
        1,
    ));
    w.offer(&signal(Rule::Bruteforce, Severity::Low, "carol", 2));
    w.offer(&signal(Rule::Bruteforce, Severity::High, "dave", 3));
    w.offer(&signal(
        Rule::AccountTakeover,
        Severity::Critical,
        "erin",
        4,
    ));
    let stats = w.shutdown(Duration::from_secs(10));
    assert_eq!(
        stats,
        WebhookStats {
            sent: 2,
            ..Default::default()
        }
    );
    assert_eq!(counted.load(Ordering::Relaxed), 2);
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].path, "/services/T000/B000/secretsecret");
    assert_eq!(reqs[0].content_type, "application/json");
    let first = reqs[0].json();
    let all = texts(&first);
    assert!(all.contains("`bruteforce` on account `dave`"), "{all}");
    assert!(all.contains("*HIGH*"), "{all}");
    assert!(all.contains("failures *1,234*"), "{all}");
    assert!(all.contains("distinct accounts *56*"), "{all}");
    assert!(all.contains("failure ratio *97%*"), "{all}");
    assert!(all.contains("`alice@example.com`"), "{all}");
    assert!(all.contains("2026-11-21T10:03:00.000Z"), "{all}");
    assert!(all.contains("service `login`"), "{all}");
    let id = Signal::make_id(
        Rule::Bruteforce,
        &Entity {
            kind: EntityType::Account,
            value: "dave".into(),
        },
        1_795_000_000_003,
    );
    assert!(all.contains(&id), "{all}");
    assert_eq!(first["blocks"][0]["type"], "section");
    assert_eq!(first["blocks"][0]["text"]["type"], "mrkdwn");
    let last = first["blocks"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["type"], "context");
    assert!(
        first["text"]
            .as_str()
            .unwrap()
            .starts_with("[high] bruteforce on account dave")
    );
    let second = texts(&reqs[1].json());
    assert!(second.contains("*CRITICAL* `account_takeover` on account `erin`"));
    assert!(!second.contains("credential_stuffing") && !all.contains("203.0.113.7"));
}

#[test]
fn retries_5xx_then_succeeds() {
    let server = Server::start(vec![status(500), status(503)], status(200));
    let w = start(&cfg(), &server);
    w.offer(&signal(
        Rule::AccountTakeover,
        Severity::Critical,
        "alice",
        1,
    ));
    let stats = w.shutdown(Duration::from_secs(10));
    let reqs = server.requests();
    assert_eq!(reqs.len(), 3);
    assert!(reqs.iter().all(|r| r.body == reqs[0].body));
    assert_eq!((stats.sent, stats.retried, stats.failed), (1, 2, 0));
    // Backoff doubles: 20 ms, then 40 ms.
    assert!(reqs[1].at - reqs[0].at >= Duration::from_millis(20));
    assert!(reqs[2].at - reqs[1].at >= Duration::from_millis(40));
}

#[test]
fn gives_up_after_max_retries() {
    let server = Server::start(vec![], status(502));
    let w = start(
        &WebhookConfig {
            max_retries: 2,
            ..cfg()
        },
        &server,
    );
    w.offer(&signal(
        Rule::AccountTakeover,
        Severity::Critical,
        "alice",
        1,
    ));
    let stats = w.shutdown(Duration::from_secs(10));
    assert_eq!(server.count(), 3);
    assert_eq!((stats.sent, stats.retried, stats.failed), (0, 2, 1));
}

#[test]
fn network_errors_are_retried() {
    // A port nobody listens on: connection refused.
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let w = Webhook::start_with_url(
        &WebhookConfig {
            max_retries: 2,
            ..cfg()
        },
        format!("http://127.0.0.1:{port}/hook"),
        None,
    )
    .unwrap();
    w.offer(&signal(
        Rule::AccountTakeover,
        Severity::Critical,
        "alice",
        1,
    ));
    let stats = w.shutdown(Duration::from_secs(10));
    assert_eq!((stats.sent, stats.retried, stats.failed), (0, 2, 1));
}

#[test]
fn a_hung_request_times_out_and_is_retried() {
    let server = Server::start(vec![], Reply::Hang);
    let w = start(
        &WebhookConfig {
            timeout: Dur(200),
            max_retries: 1,
            ..cfg()
        },
        &server,
    );
    w.offer(&signal(
        Rule::AccountTakeover,
        Severity::Critical,
        "alice",
        1,
    ));
    assert!(wait_until(Duration::from_secs(10), || w.stats().failed == 1));
    let stats = w.shutdown(Duration::from_secs(10));
    assert_eq!(server.count(), 2);
    assert_eq!((stats.sent, stats.retried, stats.failed), (0, 1, 1));
}

#[test]
fn webhook_can_be_shared_across_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Webhook>();
    let server = Server::start(vec![], status(200));
    let w = Arc::new(start(&cfg(), &server));
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let w = w.clone();
            thread::spawn(move || {
                for i in 0..5 {
                    let acct = format!("t{t}-{i}");
                    w.offer(&signal(Rule::AccountTakeover, Severity::Critical, &acct, i));
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let w = Arc::into_inner(w).unwrap();
    let stats = w.shutdown(Duration::from_secs(10));
    assert_eq!(stats.sent, 20);
    assert_eq!(server.count(), 20);
}

#[test]
fn client_errors_are_not_retried() {
    let server = Server::start(
        vec![Reply::Status {
            code: 400,
            headers: vec![],
            body: "invalid_payload",
        }],
        status(200),
    );
    let w = start(&cfg(), &server);
    w.offer(&signal(
        Rule::AccountTakeover,
        Severity::Critical,
        "alice",
        1,
    ));
    assert!(wait_until(Duration::from_secs(5), || w.stats().failed == 1));
    // The next message is unaffected.
    w.offer(&signal(Rule::AccountTakeover, Severity::Critical, "bob", 2));
    let stats = w.shutdown(Duration::from_secs(10));
    assert_eq!(server.count(), 2);
    assert_eq!((stats.sent, stats.retried, stats.failed), (1, 0, 1));
}

#[test]
fn honours_retry_after_on_429() {
    let server = Server::start(
        vec![Reply::Status {
            code: 429,
            headers: vec![("Retry-After", "1".into())],
            body: "rate_limited",
        }],
        status(200),
    );
    // Backoff alone would retry after 20 ms.
    let w = start(&cfg(), &server);
    w.offer(&signal(
        Rule::AccountTakeover,
        Severity::Critical,
        "alice",
        1,
    ));
    let stats = w.shutdown(Duration::from_secs(10));
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2);
    assert!(
        reqs[1].at - reqs[0].at >= Duration::from_millis(950),
        "retried after {:?}",
        reqs[1].at - reqs[0].at
    );
    assert_eq!((stats.sent, stats.retried, stats.failed), (1, 1, 0));
}

#[test]
fn a_campaign_yields_a_handful_of_messages_and_a_digest() {
    let server = Server::start(vec![], status(200));
    // Production defaults for the limiter: 6/min, burst 3.
    let c = WebhookConfig {
        min_severity: Severity::Medium,
        ..WebhookConfig {
            max_messages_per_minute: 6,
            burst: 3,
            ..cfg()
        }
    };
    let w = start(&c, &server);
    for i in 0..2000 {
        let ip = format!("198.51.{}.{}", i / 250, i % 250);
        w.offer(&signal(Rule::CampaignParticipant, Severity::Medium, &ip, i));
    }
    // Below the threshold: neither sent nor counted.
    w.offer(&signal(Rule::IpVelocity, Severity::Low, "192.0.2.1", 0));
    assert_eq!(w.stats().suppressed, 1997);
    let stats = w.shutdown(Duration::from_secs(10));
    let reqs = server.requests();
    assert!(
        reqs.len() <= 3 + 2 && reqs.len() >= 4,
        "{} messages",
        reqs.len()
    );
    assert_eq!(stats.sent, reqs.len() as u64);
    assert_eq!(stats.suppressed, 1997);
    assert_eq!((stats.failed, stats.dropped), (0, 0));
    let digest = texts(&reqs.last().unwrap().json());
    assert!(
        digest.contains("…and *1,997* more `campaign_participant` signals (medium)"),
        "{digest}"
    );
    assert!(digest.contains("`198.51.0.3`"), "{digest}");
    assert!(
        digest.contains("1,997 more medium+ signals held back"),
        "{digest}"
    );
}

#[test]
fn digest_goes_out_at_the_next_free_slot() {
    let server = Server::start(vec![], status(200));
    // One message a second, no burst beyond one.
    let w = start(
        &WebhookConfig {
            max_messages_per_minute: 60,
            burst: 1,
            ..cfg()
        },
        &server,
    );
    w.offer(&signal(
        Rule::CampaignParticipant,
        Severity::High,
        "198.51.100.1",
        0,
    ));
    for i in 1..40 {
        let ip = format!("198.51.100.{}", i + 1);
        w.offer(&signal(Rule::CampaignParticipant, Severity::High, &ip, i));
    }
    for i in 0..10 {
        let acct = format!("victim{i}");
        w.offer(&signal(Rule::AccountTakeover, Severity::Critical, &acct, i));
    }
    assert!(wait_until(Duration::from_secs(10), || server.count() >= 2));
    let reqs = server.requests();
    assert!(texts(&reqs[0].json()).contains("`198.51.100.1`"));
    let digest = reqs[1].json();
    let all = texts(&digest);
    assert!(all.contains("*49* high+ signals held back"), "{all}");
    let ato = all.find("*10* more `account_takeover` signals (critical)");
    let camp = all.find("*39* more `campaign_participant` signals (high)");
    assert!(ato.is_some() && camp.is_some(), "{all}");
    assert!(ato < camp, "most severe first: {all}");
    assert!(all.contains("`victim0`"), "{all}");
    let stats = w.shutdown(Duration::from_secs(10));
    assert_eq!(stats.sent, 2, "nothing left for a final digest");
    assert_eq!(stats.suppressed, 49);
}

#[test]
fn attacker_text_is_escaped() {
    let evil = "<script>&<!channel> `x`\n*fake* \u{202e}";
    let mut s = signal(Rule::AccountTakeover, Severity::Critical, evil, 1);
    s.summary = format!("account {evil} taken over <https://evil.example|click>");
    s.evidence.sample_ips = vec!["<@U123>".into()];
    let server = Server::start(vec![], status(200));
    let w = start(&cfg(), &server);
    w.offer(&s);
    w.shutdown(Duration::from_secs(10));
    let reqs = server.requests();
    assert_eq!(reqs.len(), 1);
    let body = &reqs[0].body;
    let json = reqs[0].json();
    let all = texts(&json);
    for bad in ["<script>", "<!channel>", "<@U123>", "<https://", "\u{202e}"] {
        assert!(!all.contains(bad), "{bad} in {all}");
        assert!(!body.contains(bad), "{bad} in {body}");
    }
    assert!(
        all.contains("`&lt;script&gt;&amp;&lt;!channel&gt; \u{2cb}x\u{2cb} *fake*  `"),
        "{all}"
    );
    assert!(all.contains("&lt;https://evil.example|click&gt;"), "{all}");
    assert!(all.contains("`&lt;@U123&gt;`"), "{all}");
    // The value cannot start a line of its own.
    assert!(
        !json["blocks"][0]["text"]["text"]
            .as_str()
            .unwrap()
            .contains("\n*fake*")
    );

    assert_eq!(escape_mrkdwn("a<b>&c"), "a&lt;b&gt;&amp;c");
    assert_eq!(texts(&slack_message(&s)), all);
}

#[test]
fn long_values_stay_within_slack_limits() {
    let long = "&".repeat(10_000);
    let mut s = signal(Rule::AccountTakeover, Severity::Critical, &long, 1);
    s.summary = long.clone();
    s.evidence.because = Some(long.clone());
    s.evidence.sample_accounts = vec![long.clone(); 10];
    s.evidence.sample_ips = vec![long.clone(); 10];
    s.service = Some(long.clone());
    let m = slack_message(&s);
    for b in m["blocks"].as_array().unwrap() {
        let t = b["text"]["text"]
            .as_str()
            .or(b["elements"][0]["text"].as_str())
            .unwrap();
        assert!(t.chars().count() <= 3000, "{} chars", t.chars().count());
    }
    assert!(m["text"].as_str().unwrap().chars().count() <= 3000);
}

#[test]
fn shutdown_flushes_the_queue() {
    let server = Server::start_with_delay(vec![], status(200), Duration::from_millis(150));
    let w = start(&cfg(), &server);
    for i in 0..5 {
        w.offer(&signal(
            Rule::AccountTakeover,
            Severity::Critical,
            &format!("a{i}"),
            i,
        ));
    }
    let stats = w.shutdown(Duration::from_secs(10));
    assert_eq!(server.count(), 5);
    assert_eq!(stats.sent, 5);
    let accounts: Vec<String> = server.requests().iter().map(|r| texts(&r.json())).collect();
    for (i, t) in accounts.iter().enumerate() {
        assert!(t.contains(&format!("on account `a{i}`")), "in order: {t}");
    }
}

#[test]
fn shutdown_sends_the_pending_digest() {
    let server = Server::start(vec![], status(200));
    let w = start(
        &WebhookConfig {
            max_messages_per_minute: 1,
            burst: 1,
            ..cfg()
        },
        &server,
    );
    for i in 0..3 {
        w.offer(&signal(
            Rule::Bruteforce,
            Severity::High,
            &format!("u{i}"),
            i,
        ));
    }
    let stats = w.shutdown(Duration::from_secs(10));
    assert_eq!((stats.sent, stats.suppressed), (2, 2));
    let reqs = server.requests();
    assert!(texts(&reqs[1].json()).contains("…and *2* more `bruteforce` signals (high)"));
}

#[test]
fn offer_never_blocks_on_a_hung_endpoint() {
    let server = Server::start(vec![], Reply::Hang);
    let c = WebhookConfig {
        // No rate limit to speak of: every signal goes for the queue.
        max_messages_per_minute: 10_000_000,
        burst: 100_000,
        queue: 10,
        timeout: Dur::secs(30),
        max_retries: 0,
        ..cfg()
    };
    let w = start(&c, &server);
    let t = Instant::now();
    for i in 0..10_000 {
        w.offer(&signal(
            Rule::AccountTakeover,
            Severity::Critical,
            "alice",
            i,
        ));
    }
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert!(wait_until(Duration::from_secs(5), || server.count() == 1));
    let s = w.stats();
    // One in flight, at most `queue` waiting, the rest dropped.
    assert!(s.dropped >= 10_000 - 11, "{s:?}");
    assert_eq!(s.sent, 0);
    let t = Instant::now();
    let s = w.shutdown(Duration::from_millis(300));
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert_eq!(s.sent, 0);
    assert_eq!(server.count(), 1);
}

#[test]
fn shutdown_on_a_hung_endpoint_counts_what_it_gave_up() {
    let server = Server::start(vec![], Reply::Hang);
    let c = WebhookConfig {
        timeout: Dur::secs(30),
        ..cfg()
    };
    let w = start(&c, &server);
    for i in 0..3 {
        w.offer(&signal(Rule::AccountTakeover, Severity::Critical, "a", i));
    }
    assert!(wait_until(Duration::from_secs(5), || server.count() == 1));
    let t = Instant::now();
    let s = w.shutdown(Duration::from_millis(300));
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    // The request in flight (30 s timeout) is given up at the deadline; the two queued
    // were never tried.
    assert_eq!((s.sent, s.failed, s.dropped), (0, 1, 2), "{s:?}");
}

// ---------------------------------------------------------------------------------------
// Config

/// The `[webhook]` block for config/default.toml.
const DEFAULT_TOML: &str = r#"
# Off unless a URL is set. The URL is a secret: prefer url_file or the
# ATOWATCH_WEBHOOK_URL environment variable (which wins, then the file). Only its host
# is ever logged.
url = ""
url_file = ""
# Signals below this severity are not posted.
min_severity = "high"
# Slack accepts about one message per second per incoming webhook
# (https://api.slack.com/apis/rate-limits); 6 a minute, after a burst of 3, keeps a
# channel readable. Signals over the limit are counted per rule into a digest
# ("…and 1,997 more campaign_participant signals") sent at the next free slot.
max_messages_per_minute = 6
burst = 3
# Per request. 429 waits for Retry-After; 5xx, 408 and network errors retry after
# backoff, doubling up to 60s, at most max_retries times; other 4xx fail at once.
timeout = "5s"
max_retries = 5
backoff = "1s"
# Messages waiting to be sent; past it signals are dropped (counted), never blocking.
queue = 1000
"#;

#[test]
fn default_toml_block_matches_defaults() {
    let parsed: WebhookConfig = toml::from_str(DEFAULT_TOML).unwrap();
    assert_eq!(parsed, WebhookConfig::default());
    assert!(!parsed.enabled());
    assert_eq!(parsed.resolve_url(None), Ok(None));
    assert!(parsed.validate().is_ok());
    let empty: WebhookConfig = toml::from_str("").unwrap();
    assert_eq!(empty, WebhookConfig::default());
    assert!(toml::from_str::<WebhookConfig>("uri = \"x\"").is_err());
    assert!(Webhook::start(&parsed, None).unwrap().is_none());
}

#[test]
fn validation_names_the_key() {
    let key = |c: WebhookConfig| c.validate().unwrap_err().0;
    let d = WebhookConfig::default;
    assert_eq!(
        key(WebhookConfig {
            url: "hooks.slack.com/services/x".into(),
            ..d()
        }),
        "url"
    );
    assert_eq!(
        key(WebhookConfig {
            url: "ftp://example.com/x".into(),
            ..d()
        }),
        "url"
    );
    assert_eq!(
        key(WebhookConfig {
            url: "https://".into(),
            ..d()
        }),
        "url"
    );
    assert_eq!(
        key(WebhookConfig {
            url: "https://a.example/x".into(),
            url_file: "/run/secrets/hook".into(),
            ..d()
        }),
        "url_file"
    );
    assert_eq!(
        key(WebhookConfig {
            max_messages_per_minute: 0,
            ..d()
        }),
        "max_messages_per_minute"
    );
    assert_eq!(key(WebhookConfig { burst: 0, ..d() }), "burst");
    assert_eq!(key(WebhookConfig { queue: 0, ..d() }), "queue");
    assert_eq!(
        key(WebhookConfig {
            timeout: Dur(0),
            ..d()
        }),
        "timeout"
    );
    assert_eq!(
        key(WebhookConfig {
            backoff: Dur(0),
            ..d()
        }),
        "backoff"
    );
    let ok = WebhookConfig {
        url: "https://hooks.slack.com/services/T/B/X".into(),
        max_retries: 0,
        ..d()
    };
    assert!(ok.validate().is_ok() && ok.enabled());
    // The message never repeats the URL.
    let bad = WebhookConfig {
        url: "hooks.slack.com/services/T/B/SECRET".into(),
        ..d()
    };
    let (_, msg) = bad.validate().unwrap_err();
    assert!(!msg.contains("SECRET"));
    assert!(!bad.resolve_url(None).unwrap_err().contains("SECRET"));
    assert!(Webhook::start(&bad, None).is_err());
}

#[test]
fn url_comes_from_the_file_or_the_environment_value() {
    let dir = std::env::temp_dir().join(format!("atowatch-webhook-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("url");
    std::fs::write(&file, "  https://hooks.slack.com/services/T/B/X\n").unwrap();
    let c = WebhookConfig {
        url_file: file.to_string_lossy().into_owned(),
        ..Default::default()
    };
    assert!(c.enabled());
    assert_eq!(
        c.resolve_url(None).unwrap().as_deref(),
        Some("https://hooks.slack.com/services/T/B/X")
    );
    assert_eq!(
        c.resolve_url(Some("http://127.0.0.1:9/x".into()))
            .unwrap()
            .as_deref(),
        Some("http://127.0.0.1:9/x")
    );
    std::fs::write(&file, "hooks.slack.com/services/T/B/SECRET").unwrap();
    let e = c.resolve_url(None).unwrap_err();
    assert!(
        e.starts_with("webhook.url_file") && !e.contains("SECRET"),
        "{e}"
    );
    std::fs::write(&file, "\n").unwrap();
    assert!(c.resolve_url(None).unwrap_err().contains("is empty"));
    let missing = WebhookConfig {
        url_file: dir.join("nope").to_string_lossy().into_owned(),
        ..Default::default()
    };
    assert!(
        missing
            .resolve_url(None)
            .unwrap_err()
            .contains("cannot read")
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn helpers() {
    assert_eq!(
        url_host("https://hooks.slack.com/services/T/B/X"),
        "hooks.slack.com"
    );
    assert_eq!(
        url_host("http://user:pw@127.0.0.1:8080/x?y"),
        "127.0.0.1:8080"
    );
    assert_eq!(thousands(0), "0");
    assert_eq!(thousands(999), "999");
    assert_eq!(thousands(1000), "1,000");
    assert_eq!(thousands(1_234_567), "1,234,567");
}
