//! Privacy: keyed account pseudonyms in signals, decisions and logs, and metrics that
//! never carry account or IP labels.

mod common;

use std::collections::BTreeSet;

use atowatch::config::Config;
use atowatch::decisions::{Decider, Decision, Scope};
use atowatch::metrics::{EngineSync, Metrics};
use atowatch::normalize::CidrSet;
use atowatch::privacy::{PrivacyConfig, PrivacyError, Pseudonymizer};
use atowatch::signal::{Counts, Entity, EntityType, Evidence, Rule, Severity, Signal};
use common::{ATTACKER, Ev, MIN, Run, SEC, T0, nth_ip, rfc, scratch_dir};

const KEY: &str = "atowatch-test-key-0123456789";
const NOW: i64 = 1_800_000_000_000;

fn pz() -> Pseudonymizer {
    Pseudonymizer::from_key(KEY.as_bytes())
}

fn enabled() -> PrivacyConfig {
    PrivacyConfig {
        pseudonymize_accounts: true,
        ..PrivacyConfig::default()
    }
}

fn env_with(var: &'static str, value: &'static str) -> impl Fn(&str) -> Option<String> {
    move |v| (v == var).then(|| value.to_string())
}

fn no_env(_: &str) -> Option<String> {
    None
}

// ---------------------------------------------------------------------------------------
// Signals shaped like the detectors' (src/detectors/*.rs)

fn signal(
    rule: Rule,
    kind: EntityType,
    value: &str,
    evidence: Evidence,
    summary: String,
) -> Signal {
    let ts_ms = T0 + 3 * MIN + 250;
    let entity = Entity {
        kind,
        value: value.to_string(),
    };
    Signal {
        signal_id: Signal::make_id(rule, &entity, ts_ms),
        rule,
        severity: Severity::High,
        entity,
        ts: rfc(ts_ms),
        window: "10m".into(),
        service: Some("web".into()),
        evidence,
        summary,
        ts_ms,
    }
}

fn bruteforce(account: &str) -> Signal {
    signal(
        Rule::Bruteforce,
        EntityType::Account,
        account,
        Evidence {
            counts: Counts {
                failures: Some(12),
                distinct_ips: Some(1),
                ..Counts::default()
            },
            sample_ips: vec![ATTACKER.into()],
            trace_ids: vec!["tr-1".into()],
            ..Evidence::default()
        },
        format!("{account}: 12 failed logins in 10m from 1 IP(s)"),
    )
}

fn account_takeover(account: &str) -> Signal {
    signal(
        Rule::AccountTakeover,
        EntityType::Account,
        account,
        Evidence {
            counts: Counts {
                successes: Some(1),
                ..Counts::default()
            },
            sample_accounts: vec![account.into()],
            sample_ips: vec!["203.0.113.9".into()],
            because: Some(format!("bruteforce on {account}")),
            ..Evidence::default()
        },
        format!("{account} signed in from 203.0.113.9, which took part in the bruteforce on it"),
    )
}

fn credential_stuffing(accounts: &[&str]) -> Signal {
    signal(
        Rule::CredentialStuffing,
        EntityType::Ip,
        ATTACKER,
        Evidence {
            counts: Counts {
                failures: Some(40),
                distinct_accounts: Some(accounts.len() as u64),
                failure_ratio: Some(1.0),
                ..Counts::default()
            },
            sample_accounts: accounts.iter().map(|a| a.to_string()).collect(),
            ..Evidence::default()
        },
        format!(
            "{ATTACKER} failed logins on {} accounts in 10m (40 failures, failure ratio 1.00)",
            accounts.len()
        ),
    )
}

fn distributed_credential_stuffing(accounts: &[&str]) -> Signal {
    signal(
        Rule::DistributedCredentialStuffing,
        EntityType::Service,
        "web",
        Evidence {
            sample_accounts: accounts.iter().map(|a| a.to_string()).collect(),
            sample_ips: vec![nth_ip(1), nth_ip(2)],
            ..Evidence::default()
        },
        "web: 900 failed logins from 300 IPs on 800 accounts in 10m; failure ratio 0.90 vs baseline 0.10".into(),
    )
}

/// Every raw account, wherever it might hide in the JSON (escaped or not).
fn assert_no_raw(json: &str, raws: &[&str]) {
    for raw in raws {
        assert!(!json.contains(raw), "raw account `{raw}` in {json}");
        let escaped = serde_json::to_string(raw).unwrap();
        assert!(
            !json.contains(escaped.trim_matches('"')),
            "raw account `{raw}` in {json}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Pseudonyms

#[test]
fn pseudonyms_are_deterministic_keyed_and_shaped_acct_plus_32_hex() {
    let p = pz();
    let a = p.account("alice@example.com");
    assert_eq!(a, p.account("alice@example.com"));
    assert_eq!(
        a,
        pz().account("alice@example.com"),
        "a new instance, same key"
    );
    assert_eq!(a.len(), 5 + 32);
    assert!(a.starts_with("acct_"));
    assert!(
        a[5..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    );
    assert_ne!(a, p.account("bob@example.com"));
    assert_ne!(
        a,
        p.account("Alice@example.com"),
        "bytes as given: normalize first"
    );
    let other = Pseudonymizer::from_key(b"atowatch-test-key-0123456788");
    assert_ne!(a, other.account("alice@example.com"), "a different key");
}

#[test]
fn pseudonyms_are_plain_hmac_sha256_so_enforcers_can_compute_them() {
    // python3: "acct_" + hmac.new(KEY, account, "sha256").hexdigest()[:32]
    let p = pz();
    assert_eq!(
        p.account("alice@example.com"),
        "acct_0901bd8cdf2864c3b0c5a08b0c3c9f95"
    );
    assert_eq!(
        p.account("victim@example.com"),
        "acct_8f762c1d94614536bdeb3f2e6dd85890"
    );
}

#[test]
fn key_id_is_stable_short_and_not_the_key() {
    let p = pz();
    assert_eq!(p.key_id(), pz().key_id());
    assert_eq!(p.key_id().len(), 8);
    assert_ne!(
        p.key_id(),
        Pseudonymizer::from_key(b"another-key-0123456789").key_id()
    );
    let dbg = format!("{p:?}");
    assert!(!dbg.contains(KEY) && !dbg.contains("0123456789"), "{dbg}");
    assert!(dbg.contains("<redacted>"));
}

// ---------------------------------------------------------------------------------------
// Signals

#[test]
fn no_raw_account_survives_in_any_field_of_any_signal_shape() {
    let p = pz();
    let many = ["alice@example.com", "bob@x.com", "bob@x.com.au", "carol"];
    let cases: Vec<(Signal, Vec<&str>)> = vec![
        (bruteforce("alice@example.com"), vec!["alice@example.com"]),
        (
            account_takeover("alice@example.com"),
            vec!["alice@example.com"],
        ),
        (credential_stuffing(&many), many.to_vec()),
        (distributed_credential_stuffing(&many), many.to_vec()),
    ];
    for (raw, accounts) in cases {
        let before = raw.to_json();
        for a in &accounts {
            assert!(before.contains(a), "the test signal carries {a}: {before}");
        }
        let mut s = raw.clone();
        p.signal(&mut s);
        let after = s.to_json();
        assert_no_raw(&after, &accounts);
        assert!(!after.contains('@'), "{after}");

        // What carried an account now carries its pseudonym...
        if raw.entity.kind == EntityType::Account {
            assert_eq!(s.entity.value, p.account(&raw.entity.value));
            assert!(s.summary.contains(&s.entity.value), "{}", s.summary);
        } else {
            assert_eq!(s.entity, raw.entity, "IP and service entities stay");
        }
        let expected: Vec<String> = raw
            .evidence
            .sample_accounts
            .iter()
            .map(|a| p.account(a))
            .collect();
        assert_eq!(s.evidence.sample_accounts, expected);
        if let Some(b) = &raw.evidence.because {
            assert_eq!(
                s.evidence.because.as_deref(),
                Some(p.text(b, &accounts).as_str())
            );
        }
        // ...and nothing else changed.
        assert_eq!(s.evidence.sample_ips, raw.evidence.sample_ips);
        assert_eq!(s.evidence.trace_ids, raw.evidence.trace_ids);
        assert_eq!(s.evidence.counts, raw.evidence.counts);
        assert_eq!(s.evidence.thresholds, raw.evidence.thresholds);
        assert_eq!(
            (s.rule, s.severity, &s.ts, &s.window, &s.service, s.ts_ms),
            (
                raw.rule,
                raw.severity,
                &raw.ts,
                &raw.window,
                &raw.service,
                raw.ts_ms
            )
        );
        // Deterministic: redelivery gives the same record.
        let mut again = raw.clone();
        p.signal(&mut again);
        assert_eq!(again, s);
    }
}

#[test]
fn summaries_read_the_same_with_pseudonyms() {
    let p = pz();
    let mut s = account_takeover("alice@example.com");
    p.signal(&mut s);
    let a = p.account("alice@example.com");
    assert_eq!(
        s.summary,
        format!("{a} signed in from 203.0.113.9, which took part in the bruteforce on it")
    );
    assert_eq!(
        s.evidence.because.as_deref(),
        Some(&*format!("bruteforce on {a}"))
    );
}

#[test]
fn overlapping_account_names_each_get_their_own_pseudonym() {
    let p = pz();
    // bob@x.com is a prefix of bob@x.com.au, and `a` is inside everything.
    let accounts = ["bob@x.com", "a", "bob@x.com.au"];
    let line = "bob@x.com.au then bob@x.com then a";
    let out = p.text(line, &accounts);
    let (short, long, a) = (
        p.account("bob@x.com"),
        p.account("bob@x.com.au"),
        p.account("a"),
    );
    assert_eq!(out, format!("{long} then {short} then {a}"));
    // Inserted pseudonyms are never searched again, so they are intact.
    let out = p.text("a bob", &["a", "b", "bob"]);
    assert_eq!(out, format!("{a} {}", p.account("bob")));
    // Unknown names and empty names leave the text alone.
    assert_eq!(
        p.text("dave@x.com failed", &["", "erin"]),
        "dave@x.com failed"
    );
    assert_eq!(p.text("", &["a"]), "");
    // Non-ASCII text around and inside names.
    assert_eq!(
        p.text("«jörg@x.de» ok", &["jörg@x.de"]),
        format!("«{}» ok", p.account("jörg@x.de"))
    );
}

#[test]
fn account_signal_ids_are_rekeyed_deterministically_ip_signal_ids_stay() {
    let p = pz();
    let raw = bruteforce("alice@example.com");
    // The raw id is an unkeyed hash of (rule, account, event time), and the signal
    // prints the rule and the time to the millisecond: a list of candidate accounts
    // (a breach list) confirms which one it is about.
    let candidates = ["bob@example.com", "alice@example.com", "carol@example.com"];
    let confirm = |s: &Signal| {
        candidates.iter().copied().find(|c| {
            let e = Entity {
                kind: EntityType::Account,
                value: c.to_string(),
            };
            Signal::make_id(s.rule, &e, s.ts_ms) == s.signal_id
        })
    };
    assert_eq!(confirm(&raw), Some("alice@example.com"));
    let mut s = raw.clone();
    p.signal(&mut s);
    assert_eq!(confirm(&s), None, "the pseudonymized id confirms nothing");
    assert_ne!(s.signal_id, raw.signal_id);
    assert_eq!(s.signal_id, p.signal_id(&raw.signal_id));
    assert_eq!(s.signal_id.len(), 32);
    assert!(s.signal_id.bytes().all(|b| b.is_ascii_hexdigit()));
    // Same raw signal (a redelivery), same id: consumers still deduplicate.
    let mut again = raw.clone();
    p.signal(&mut again);
    assert_eq!(again.signal_id, s.signal_id);

    // IP and service entities: the id names no account, and stays.
    for raw in [
        credential_stuffing(&["alice@example.com"]),
        distributed_credential_stuffing(&["alice@example.com"]),
    ] {
        let mut s = raw.clone();
        p.signal(&mut s);
        assert_eq!(s.signal_id, raw.signal_id);
    }
}

// ---------------------------------------------------------------------------------------
// Decisions

fn decider() -> Decider {
    Decider::new(&Config::default().decisions, CidrSet::new(Vec::new()))
}

#[test]
fn account_decisions_are_pseudonymized_ip_decisions_are_not() {
    let p = pz();
    let raw_sig = account_takeover("alice@example.com");
    let raw = decider()
        .decide(&raw_sig, NOW)
        .expect("takeovers ban the account");
    assert_eq!(raw.scope, Scope::Account);
    let mut d = raw.clone();
    p.decision(&mut d);
    let a = p.account("alice@example.com");
    assert_eq!(d.value, a);
    assert_eq!(d.id, format!("account:{a}"));
    assert_eq!(d.reason, p.text(&raw.reason, &["alice@example.com"]));
    assert!(d.reason.contains(&a));
    assert_eq!(d.signal_id, p.signal_id(&raw.signal_id));
    assert_no_raw(&d.to_json(), &["alice@example.com"]);
    assert_eq!(
        (d.action, d.duration_s, &d.created, &d.until, d.offence),
        (
            raw.action,
            raw.duration_s,
            &raw.created,
            &raw.until,
            raw.offence
        )
    );

    let ip_sig = credential_stuffing(&["alice@example.com", "bob@x.com"]);
    let raw = decider()
        .decide(&ip_sig, NOW)
        .expect("stuffing bans the IP");
    let mut d = raw.clone();
    p.decision(&mut d);
    assert_eq!(d, raw, "IP decisions are needed as they are for blocking");
    assert_no_raw(&d.to_json(), &["alice@example.com", "bob@x.com"]);
}

#[test]
fn deciding_on_a_pseudonymized_signal_equals_pseudonymizing_the_decision() {
    let p = pz();
    for raw in [
        bruteforce("alice@example.com"),
        account_takeover("alice@example.com"),
        credential_stuffing(&["alice@example.com", "bob@x.com"]),
    ] {
        // Order A: pseudonymize the signal, then decide.
        let mut s = raw.clone();
        p.signal(&mut s);
        let a: Decision = decider().decide(&s, NOW).expect("a decision");
        // Order B: decide on the raw signal, then pseudonymize the decision.
        let mut b = decider().decide(&raw, NOW).expect("a decision");
        p.decision(&mut b);
        assert_eq!(a, b, "{}", raw.rule);
        assert_eq!(
            a.signal_id, s.signal_id,
            "the decision points at its signal"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Keys and configuration

#[test]
fn disabled_means_no_pseudonymizer_and_no_key_lookup() {
    let cfg = PrivacyConfig::default();
    assert!(!cfg.pseudonymize_accounts);
    let got = Pseudonymizer::from_config(&cfg, |v| panic!("looked up {v}")).unwrap();
    assert!(got.is_none());
    cfg.validate().unwrap();
}

#[test]
fn key_from_the_environment() {
    let p = Pseudonymizer::from_config(&enabled(), env_with("ATOWATCH_PSEUDONYM_KEY", KEY))
        .unwrap()
        .expect("enabled");
    assert_eq!(
        p.account("alice@example.com"),
        pz().account("alice@example.com")
    );
    assert!(p.origin().contains("ATOWATCH_PSEUDONYM_KEY"));

    let cfg = PrivacyConfig {
        key_env: "MY_KEY".into(),
        ..enabled()
    };
    // Surrounding whitespace is not part of the key.
    let p =
        Pseudonymizer::from_config(&cfg, env_with("MY_KEY", "  atowatch-test-key-0123456789\n"))
            .unwrap()
            .unwrap();
    assert_eq!(p.account("x"), pz().account("x"));
}

#[test]
fn key_from_a_file_wins_over_the_environment() {
    let dir = scratch_dir("privacy-key");
    let path = dir.join("pseudonym.key");
    std::fs::write(&path, format!("{KEY}\n")).unwrap();
    let cfg = PrivacyConfig {
        key_file: path.display().to_string(),
        ..enabled()
    };
    let p = Pseudonymizer::from_config(
        &cfg,
        env_with("ATOWATCH_PSEUDONYM_KEY", "a-different-key-from-the-env"),
    )
    .unwrap()
    .unwrap();
    assert_eq!(
        p.account("alice@example.com"),
        pz().account("alice@example.com"),
        "the file's key, trailing newline trimmed"
    );
    assert!(p.origin().contains("pseudonym.key"));
    assert!(!format!("{p:?}").contains(KEY));
}

#[test]
fn missing_or_short_keys_are_errors_that_name_the_source_and_never_the_key() {
    // A file that is not there.
    let cfg = PrivacyConfig {
        key_file: "/nonexistent/atowatch/pseudonym.key".into(),
        ..enabled()
    };
    let e = Pseudonymizer::from_config(&cfg, env_with("ATOWATCH_PSEUDONYM_KEY", KEY)).unwrap_err();
    assert!(matches!(e, PrivacyError::KeyFile { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("privacy.key_file") && msg.contains("/nonexistent/atowatch/pseudonym.key"),
        "{msg}"
    );

    // No file, and the variable is unset.
    let e = Pseudonymizer::from_config(&enabled(), no_env).unwrap_err();
    assert!(matches!(e, PrivacyError::KeyEnvUnset { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("ATOWATCH_PSEUDONYM_KEY") && msg.contains("privacy.key_file"),
        "{msg}"
    );

    // Neither source named.
    let cfg = PrivacyConfig {
        key_env: String::new(),
        ..enabled()
    };
    let e = Pseudonymizer::from_config(&cfg, no_env).unwrap_err();
    assert!(matches!(e, PrivacyError::NoKeySource), "{e:?}");
    assert!(e.to_string().contains("privacy.key_file"));

    // Too short, after trimming: 15 bytes, whitespace padding, an empty file.
    let short = "fifteen-bytes!!";
    assert_eq!(short.len(), 15);
    for value in [short, "   short-key \n\n", ""] {
        let e = Pseudonymizer::from_config(&enabled(), |_| Some(value.to_string())).unwrap_err();
        assert!(matches!(e, PrivacyError::KeyTooShort { .. }), "{e:?}");
        let msg = e.to_string();
        assert!(
            msg.contains("ATOWATCH_PSEUDONYM_KEY") && msg.contains("16"),
            "{msg}"
        );
        if !value.trim().is_empty() {
            assert!(!msg.contains(value.trim()), "the key leaked: {msg}");
            assert!(
                !format!("{e:?}").contains(value.trim()),
                "the key leaked: {e:?}"
            );
        }
    }
    let dir = scratch_dir("privacy-empty-key");
    let path = dir.join("empty.key");
    std::fs::write(&path, "\n").unwrap();
    let cfg = PrivacyConfig {
        key_file: path.display().to_string(),
        ..enabled()
    };
    let e = Pseudonymizer::from_config(&cfg, no_env).unwrap_err();
    assert!(
        matches!(e, PrivacyError::KeyTooShort { len: 0, .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains("empty.key"));

    // Exactly sixteen is enough.
    assert!(
        Pseudonymizer::from_config(&enabled(), |_| Some("sixteen-bytes-ok".into()))
            .unwrap()
            .is_some()
    );
}

#[test]
fn validate_names_privacy_key_file_when_no_source_is_set() {
    let cfg = PrivacyConfig {
        key_env: String::new(),
        ..enabled()
    };
    let e = cfg.validate().unwrap_err();
    assert_eq!(e.key, "privacy.key_file");
    enabled().validate().unwrap();
    let bad = PrivacyConfig {
        key_env: "A=B".into(),
        ..PrivacyConfig::default()
    };
    assert_eq!(bad.validate().unwrap_err().key, "privacy.key_env");
}

/// The block for config/default.toml.
const TOML_BLOCK: &str = r#"
[privacy]
# Replace account names in signals, decisions and logs with keyed pseudonyms:
# "acct_" + the first 16 bytes of HMAC-SHA256(key, account) in hex. The same account
# gets the same pseudonym everywhere while the key stays the same; rotating the key
# changes every pseudonym (and the signal_id of account signals). A WAF or gateway can
# only enforce an account decision if it computes the same HMAC over the normalized
# account. IP addresses are never pseudonymized: blocking needs them.
pseudonymize_accounts = false
# A file holding the key (at least 16 bytes; surrounding whitespace is trimmed), e.g.
# `openssl rand -hex 32 > key` mounted from a Secret. When set, key_env is not read.
key_file = ""
# Otherwise, the environment variable holding the key.
key_env = "ATOWATCH_PSEUDONYM_KEY"
"#;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct WithPrivacy {
    privacy: PrivacyConfig,
}

#[test]
fn the_toml_block_parses_to_the_defaults_and_unknown_keys_are_rejected() {
    let w: WithPrivacy = toml::from_str(TOML_BLOCK).unwrap();
    assert_eq!(w.privacy, PrivacyConfig::default());
    let partial: WithPrivacy = toml::from_str("[privacy]\npseudonymize_accounts = true\n").unwrap();
    assert_eq!(partial.privacy, enabled());
    assert!(toml::from_str::<WithPrivacy>("[privacy]\nkey = \"inline\"\n").is_err());
}

// ---------------------------------------------------------------------------------------
// End to end: the engine's own signals

/// Everyone the engine sees: a bruteforce victim, stuffing victims and a taken-over one.
fn attack_events() -> (Vec<Ev>, Vec<String>) {
    let mut evs = Vec::new();
    let mut accounts = vec!["victim@example.com".to_string()];
    // Bruteforce on one account from one IP, then it gets in: bruteforce + takeover.
    for i in 0..12 {
        evs.push(Ev::failure(
            T0 + i * 10 * SEC,
            ATTACKER,
            "victim@example.com",
        ));
    }
    evs.push(Ev::success(T0 + 3 * MIN, ATTACKER, "victim@example.com"));
    // Credential stuffing from another IP over 30 accounts, one of which it gets into.
    let stuffer = nth_ip(7);
    for i in 0..30 {
        let a = format!("user{i}@corp.example");
        evs.push(Ev::failure(T0 + 4 * MIN + i * SEC, &stuffer, &a));
        accounts.push(a);
    }
    evs.push(Ev::success(T0 + 5 * MIN, &stuffer, "user7@corp.example"));
    (evs, accounts)
}

#[test]
fn a_real_engine_run_leaves_no_raw_account_in_any_signal_or_decision() {
    let (evs, accounts) = attack_events();
    let raws: Vec<&str> = accounts.iter().map(String::as_str).collect();
    let mut run = Run::new(Config::default());
    run.ok_all(evs);
    for rule in [
        Rule::Bruteforce,
        Rule::AccountTakeover,
        Rule::CredentialStuffing,
    ] {
        assert!(run.count(rule) > 0, "no {rule} signal:\n{}", run.dump());
    }
    assert!(
        run.signals
            .iter()
            .any(|s| !s.evidence.sample_accounts.is_empty()),
        "some signal carries sample accounts:\n{}",
        run.dump()
    );
    let raw_dump = run.dump();
    assert!(raw_dump.contains("victim@example.com") && raw_dump.contains("user7@corp.example"));

    let p = pz();
    let mut decider = decider();
    let mut decisions = 0;
    for raw in &run.signals {
        // Decide on the raw signal and pseudonymize the decision...
        if let Some(mut d) = decider.decide(raw, NOW) {
            p.decision(&mut d);
            assert_no_raw(&d.to_json(), &raws);
            assert!(!d.to_json().contains('@'), "{}", d.to_json());
            decisions += 1;
        }
        // ...and pseudonymize the signal.
        let mut s = raw.clone();
        p.signal(&mut s);
        let json = s.to_json();
        assert_no_raw(&json, &raws);
        assert!(!json.contains('@'), "{json}");
        assert!(
            !json.contains("victim") && !json.contains("corp.example"),
            "{json}"
        );
        // Log lines about the signal, with the accounts it names.
        let mut named: Vec<&str> = raw
            .evidence
            .sample_accounts
            .iter()
            .map(String::as_str)
            .collect();
        if raw.entity.kind == EntityType::Account {
            named.push(&raw.entity.value);
        }
        let line = format!(
            "signal {} on {}: {}",
            raw.rule, raw.entity.value, raw.summary
        );
        assert_no_raw(&p.text(&line, &named), &raws);
    }
    assert!(decisions > 0);
}

// ---------------------------------------------------------------------------------------
// Metrics never carry account or IP labels

/// Whether a label name looks like it would hold an account, a user or an address.
fn identifying(label: &str) -> bool {
    let l = label.to_ascii_lowercase();
    let words: Vec<&str> = l.split(|c: char| !c.is_ascii_alphanumeric()).collect();
    let person = [
        "account",
        "acct",
        "user",
        "login",
        "email",
        "mail",
        "entity",
        "principal",
        "identity",
        "subject",
        "customer",
        "member",
    ];
    let address = [
        "ip", "ips", "ipv4", "ipv6", "addr", "address", "cidr", "remote",
    ];
    words
        .iter()
        .any(|w| person.iter().any(|p| w.contains(p)) || address.contains(w))
}

#[test]
fn the_label_check_knows_what_identifies() {
    for bad in [
        "account",
        "account_id",
        "acct",
        "user",
        "user_id",
        "username",
        "login",
        "email",
        "entity",
        "entity_value",
        "ip",
        "client_ip",
        "src_ip",
        "remote_addr",
        "ip_address",
        "ipv6",
        "cidr",
    ] {
        assert!(identifying(bad), "{bad}");
    }
    for ok in [
        "rule",
        "severity",
        "type",
        "outcome",
        "reason",
        "kind",
        "action",
        "scope",
        "topic",
        "partition",
        "version",
        "zip",
        "pipeline",
        "description",
    ] {
        assert!(!identifying(ok), "{ok}");
    }
}

/// A token of Rust source: enough to find calls and their string-literal arguments.
#[derive(Debug, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Punct(char),
}

fn lex(src: &str) -> Vec<Tok> {
    let cs: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < cs.len() {
        let c = cs[i];
        if c == '/' && cs.get(i + 1) == Some(&'/') {
            while i < cs.len() && cs[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && cs.get(i + 1) == Some(&'*') {
            i += 2;
            while i + 1 < cs.len() && !(cs[i] == '*' && cs[i + 1] == '/') {
                i += 1;
            }
            i += 2;
        } else if c == 'r' && matches!(cs.get(i + 1), Some('"') | Some('#')) {
            // Raw string: r"..." or r#"..."#.
            let mut j = i + 1;
            let mut hashes = 0;
            while cs.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if cs.get(j) != Some(&'"') {
                out.push(Tok::Ident("r".into()));
                i += 1;
                continue;
            }
            j += 1;
            let start = j;
            loop {
                if j >= cs.len() {
                    break;
                }
                if cs[j] == '"' && (1..=hashes).all(|k| cs.get(j + k) == Some(&'#')) {
                    break;
                }
                j += 1;
            }
            out.push(Tok::Str(cs[start..j.min(cs.len())].iter().collect()));
            i = j + 1 + hashes;
        } else if c == '"' {
            let mut s = String::new();
            i += 1;
            while i < cs.len() && cs[i] != '"' {
                if cs[i] == '\\' {
                    i += 1;
                }
                if i < cs.len() {
                    s.push(cs[i]);
                }
                i += 1;
            }
            i += 1;
            out.push(Tok::Str(s));
        } else if c == '\'' {
            // A char literal ('x', '\n') or a lifetime ('a): skip either.
            if cs.get(i + 2) == Some(&'\'') {
                i += 3;
            } else if cs.get(i + 1) == Some(&'\\') {
                i += 2;
                while i < cs.len() && cs[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else {
                i += 1;
            }
        } else if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < cs.len() && (cs[i].is_alphanumeric() || cs[i] == '_') {
                i += 1;
            }
            out.push(Tok::Ident(cs[start..i].iter().collect()));
        } else {
            if !c.is_whitespace() {
                out.push(Tok::Punct(c));
            }
            i += 1;
        }
    }
    out
}

/// The label names declared in Rust source: the string literals in every `&[...]` or
/// `vec![...]` passed to a labelled-metric constructor (`*_vec(..)`, `*Vec::new(..)`,
/// `register_*_vec!(..)`) and in every `const_label(s)` / `variable_label(s)` call.
/// Label values (`with_label_values`) are not names and are not collected.
fn declared_labels(src: &str) -> (usize, Vec<String>) {
    let toks = lex(src);
    let mut calls = 0;
    let mut labels = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        let Tok::Ident(name) = &toks[i] else {
            i += 1;
            continue;
        };
        let is_fn_def = i > 0 && toks[i - 1] == Tok::Ident("fn".into());
        let labelled_ctor = name.ends_with("_vec")
            || matches!(
                name.as_str(),
                "const_label" | "const_labels" | "variable_label" | "variable_labels"
            );
        let vec_new = name.ends_with("Vec")
            && toks.get(i + 1) == Some(&Tok::Punct(':'))
            && toks.get(i + 3) == Some(&Tok::Ident("new".into()));
        let mut open = if vec_new { i + 4 } else { i + 1 };
        if toks.get(open) == Some(&Tok::Punct('!')) {
            open += 1;
        }
        if is_fn_def || !(labelled_ctor || vec_new) || toks.get(open) != Some(&Tok::Punct('(')) {
            i += 1;
            continue;
        }
        calls += 1;
        // Up to the matching `)`, collecting literals inside `[...]`.
        let mut depth = 0;
        let mut in_array = 0;
        let mut j = open;
        while j < toks.len() {
            match &toks[j] {
                Tok::Punct('(') => depth += 1,
                Tok::Punct(')') => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                Tok::Punct('[') => in_array += 1,
                Tok::Punct(']') => in_array -= 1,
                Tok::Str(s) if in_array > 0 || name.contains("_label") => labels.push(s.clone()),
                _ => {}
            }
            j += 1;
        }
        i = j;
    }
    (calls, labels)
}

#[test]
fn metrics_rs_declares_no_account_or_ip_label() {
    let src = include_str!("../src/metrics.rs");
    let (calls, labels) = declared_labels(src);
    // The scan sees the labels that are there (so an empty result cannot pass).
    assert!(calls >= 8, "found only {calls} labelled metrics");
    let set: BTreeSet<&str> = labels.iter().map(String::as_str).collect();
    for known in ["rule", "severity", "action", "scope", "kind"] {
        assert!(set.contains(known), "{known} not found in {set:?}");
    }
    let bad: Vec<&&str> = set.iter().filter(|l| identifying(l)).collect();
    assert!(bad.is_empty(), "metrics label names that identify: {bad:?}");
}

#[test]
fn no_source_file_declares_an_account_or_ip_metric_label() {
    // Metrics may be defined outside metrics.rs one day; scan the whole crate.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut stack = vec![root];
    let mut files = 0;
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|x| x == "rs") {
                files += 1;
                let src = std::fs::read_to_string(&path).unwrap();
                if !src.contains("prometheus") {
                    continue;
                }
                let (_, labels) = declared_labels(&src);
                let bad: Vec<&String> = labels.iter().filter(|l| identifying(l)).collect();
                assert!(
                    bad.is_empty(),
                    "{}: identifying metric labels {bad:?}",
                    path.display()
                );
            }
        }
    }
    assert!(files > 10);
}

#[test]
fn exported_metrics_after_an_attack_name_no_account_or_ip() {
    let (evs, accounts) = attack_events();
    let mut run = Run::new(Config::default());
    run.ok_all(evs);
    let m = Metrics::new();
    let mut sync = EngineSync::default();
    sync.stats(&m, run.engine.stats());
    sync.state(&m, &run.engine.state_size(), Some(run.engine.watermark()));
    let mut decider = decider();
    for s in &run.signals {
        m.signal(s.rule, s.severity);
        if let Some(d) = decider.decide(s, NOW) {
            let action = serde_json::to_value(d.action).unwrap();
            m.decisions
                .with_label_values(&[action.as_str().unwrap(), d.scope.as_str()])
                .inc();
        }
    }
    let text = m.render();
    assert!(text.contains("atowatch_signals_total"));
    assert!(text.contains("atowatch_decisions_total{"));
    for a in &accounts {
        assert!(!text.contains(a.as_str()), "{a} in metrics");
    }
    assert!(!text.contains('@'));
    for s in &run.signals {
        for ip in s.evidence.sample_ips.iter().chain([&s.entity.value]) {
            assert!(!text.contains(&format!("\"{ip}\"")), "{ip} in metrics");
        }
    }
    // Every label name in the exposition is harmless.
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((_, rest)) = line.split_once('{') else {
            continue;
        };
        let inner = rest.split('}').next().unwrap();
        for pair in inner.split("\",") {
            let name = pair.split('=').next().unwrap().trim();
            assert!(!identifying(name), "label {name} in {line}");
        }
    }
}
