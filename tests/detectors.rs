//! Every rule at, below and above its threshold, with escalation, window expiry, clock
//! boundaries, out-of-order and late events; then account takeover, normalization
//! (allowlist, proxies, IPv6), duplicates, wild timestamps and signal ids.
//!
//! `T0` is 2025-11-21T10:00:00Z. Most tests enable only the rule under test (`only`).

mod common;

use atowatch::config::{Config, Dur};
use atowatch::engine::Processed;
use atowatch::event::InvalidReason;
use atowatch::signal::{EntityType, Rule, Severity, Signal};

use common::*;

/// `n` failures on `account` from `ip`, one every `step` from `start`.
fn failures_on(account: &str, ip: &str, start: i64, step: i64, n: usize) -> Vec<Ev> {
    (0..n as i64)
        .map(|i| Ev::failure(start + i * step, ip, account))
        .collect()
}

/// Failures on `account` at the given times, all from `ip`.
fn failures_at(account: &str, ip: &str, times: &[i64]) -> Vec<Ev> {
    times.iter().map(|&t| Ev::failure(t, ip, account)).collect()
}

/// Something unrelated that moves event time forward.
fn tick(ts: i64) -> Ev {
    Ev::success(ts, BYSTANDER, "someone-else")
}

/// Moves stream time to `ts`: stream time is the K-th newest event time
/// (`time.jump_confirmations`, 3), so one event alone does not move it.
fn advance(r: &mut Run, ts: i64) {
    for _ in 0..3 {
        r.ok(&tick(ts));
    }
}

fn assert_no_signals(r: &Run) {
    assert!(
        r.signals.is_empty(),
        "expected no signals, got:\n{}",
        r.dump()
    );
}

// =======================================================================================
// bruteforce: >= 10 failures on one account in 5m (medium; high at 50)

fn bruteforce_only() -> Config {
    only(&[Rule::Bruteforce])
}

#[test]
fn bruteforce_fires_at_ten_failures_in_five_minutes_not_nine() {
    let mut r = Run::new(bruteforce_only());
    for (i, ev) in failures_on("alice", ATTACKER, T0, 10 * SEC, 10)
        .iter()
        .enumerate()
    {
        r.ok(ev);
        assert_eq!(
            r.count(Rule::Bruteforce),
            usize::from(i == 9),
            "after failure {}:\n{}",
            i + 1,
            r.dump()
        );
    }
    let s = r.one(Rule::Bruteforce);
    assert_eq!(s.entity.kind, EntityType::Account);
    assert_eq!(s.entity.value, "alice");
    assert_eq!(s.severity, Severity::Medium);
    assert_eq!(
        s.ts, "2025-11-21T10:01:30Z",
        "the tenth failure's event time"
    );
    assert_eq!(s.ts_ms, T0 + 90 * SEC);
    assert_eq!(s.window, "5m");
    assert_eq!(s.service.as_deref(), Some("web"));
    assert_eq!(s.evidence.counts.failures, Some(10));
    assert_eq!(s.evidence.counts.distinct_ips, Some(1));
    assert_eq!(s.evidence.thresholds.failures, Some(10));
    assert_eq!(s.evidence.sample_ips, vec![ATTACKER.to_string()]);
    assert!(
        !s.evidence.trace_ids.is_empty() && s.evidence.trace_ids.len() <= 5,
        "{:?}",
        s.evidence.trace_ids
    );
    assert_eq!(r.engine.stats().signals[Rule::Bruteforce.index()], 1);
}

#[test]
fn bruteforce_emits_one_signal_within_cooldown_however_many_more_failures() {
    let mut r = Run::new(bruteforce_only());
    r.ok_all(failures_on("alice", ATTACKER, T0, 5 * SEC, 30));
    let s = r.one(Rule::Bruteforce);
    assert_eq!(s.ts_ms, T0 + 45 * SEC);
    assert_eq!(s.evidence.counts.failures, Some(10));
}

#[test]
fn bruteforce_escalates_to_high_at_fifty_failures_and_re_emits_once() {
    let mut r = Run::new(bruteforce_only());
    r.ok_all(failures_on("alice", ATTACKER, T0, 5 * SEC, 60)); // 295 s: all in one window
    let v = r.of(Rule::Bruteforce);
    assert_eq!(v.len(), 2, "{}", r.dump());
    assert_eq!(
        (v[0].severity, v[0].ts_ms, v[0].evidence.counts.failures),
        (Severity::Medium, T0 + 45 * SEC, Some(10))
    );
    assert_eq!(
        (v[1].severity, v[1].ts_ms, v[1].evidence.counts.failures),
        (Severity::High, T0 + 245 * SEC, Some(50))
    );
}

#[test]
fn bruteforce_re_emits_after_the_cooldown_passes() {
    let mut r = Run::new(bruteforce_only());
    r.ok_all(failures_on("alice", ATTACKER, T0, SEC, 10));
    assert_eq!(r.one(Rule::Bruteforce).ts_ms, T0 + 9 * SEC);
    // One failure every 20 s: always >= 10 in the window, suppressed until 5m after the signal.
    for k in 1..=15 {
        r.ok(&Ev::failure(T0 + 9 * SEC + k * 20 * SEC, ATTACKER, "alice"));
        if k < 15 {
            assert_eq!(
                r.count(Rule::Bruteforce),
                1,
                "k={k}: still within the cooldown"
            );
        }
    }
    let v = r.of(Rule::Bruteforce);
    assert_eq!(v.len(), 2, "{}", r.dump());
    assert_eq!(v[1].ts_ms, T0 + 309 * SEC);
    assert_eq!(v[1].severity, Severity::Medium);
}

#[test]
fn bruteforce_ten_failures_exactly_five_minutes_end_to_end_do_not_fire() {
    let mut r = Run::new(bruteforce_only());
    r.ok_all(failures_at("alice", ATTACKER, &spread(T0, 5 * MIN, 10)));
    assert_no_signals(&r);
}

#[test]
fn bruteforce_ten_failures_just_under_five_minutes_end_to_end_fire() {
    let mut r = Run::new(bruteforce_only());
    r.ok_all(failures_at("alice", ATTACKER, &spread(T0, 5 * MIN - 1, 10)));
    assert_eq!(r.one(Rule::Bruteforce).ts, "2025-11-21T10:04:59.999Z");
}

#[test]
fn bruteforce_attack_straddling_ten_oh_five_fires() {
    let mut r = Run::new(bruteforce_only());
    let mut times: Vec<i64> = [0, 15, 30, 45, 59]
        .iter()
        .map(|s| T0 + 4 * MIN + s * SEC)
        .collect();
    times.extend([0, 10, 20, 30, 40].iter().map(|s| T0 + 5 * MIN + s * SEC));
    r.ok_all(failures_at("alice", ATTACKER, &times));
    let s = r.one(Rule::Bruteforce);
    assert_eq!(s.ts, "2025-11-21T10:05:40Z");
    assert_eq!(s.evidence.counts.failures, Some(10));
}

#[test]
fn bruteforce_out_of_order_failure_within_lateness_completes_the_run() {
    let mut r = Run::new(bruteforce_only());
    r.ok_all(failures_on("alice", ATTACKER, T0 + 30 * SEC, 10 * SEC, 9)); // 10:00:30 .. 10:01:50
    assert_no_signals(&r);
    // 55 s behind the newest event: within the 60 s lateness.
    r.ok(&Ev::failure(T0 + 55 * SEC, ATTACKER, "alice"));
    let s = r.one(Rule::Bruteforce);
    // In event time the tenth failure is the one at 10:01:50.
    assert_eq!(s.ts_ms, T0 + 110 * SEC);
    assert_eq!(s.evidence.counts.failures, Some(10));
    assert_eq!(r.engine.stats().late, 0);
    assert_eq!(r.engine.stats().login_failure, 10);
}

#[test]
fn bruteforce_failure_later_than_allowed_lateness_is_dropped_and_does_not_complete_the_run() {
    let mut r = Run::new(bruteforce_only());
    r.ok_all(failures_on("alice", ATTACKER, T0, 10 * SEC, 9)); // 10:00:00 .. 10:01:20
    advance(&mut r, T0 + 200 * SEC); // watermark 10:02:20
    let p = r.feed(&Ev::failure(T0 + 90 * SEC, ATTACKER, "alice"));
    assert_eq!(p, Processed::Late);
    assert_no_signals(&r);
    let st = r.engine.stats();
    assert_eq!(st.late, 1);
    assert_eq!(st.login_failure, 9);
}

#[test]
fn bruteforce_counts_case_variants_of_a_login_as_one_account() {
    let mut r = Run::new(bruteforce_only());
    for i in 0..10 {
        let login = ["Alice", "ALICE", "alice"][i % 3];
        r.ok(&Ev::failure(T0 + i as i64 * SEC, ATTACKER, login));
    }
    assert_eq!(r.one(Rule::Bruteforce).entity.value, "alice");
}

#[test]
fn bruteforce_keys_on_user_id_when_there_is_no_login() {
    let mut r = Run::new(bruteforce_only());
    r.ok_all((0..10).map(|i| Ev::failure(T0 + i * SEC, ATTACKER, "x").user_id_only("12345")));
    assert_eq!(r.one(Rule::Bruteforce).entity.value, "12345");
}

#[test]
fn rfc3339_timestamps_give_the_same_signals_as_epoch_millis() {
    let evs = failures_on("alice", ATTACKER, T0 + 123, 7 * SEC, 12);
    let mut a = Run::new(bruteforce_only());
    a.ok_all(evs.clone());
    let mut b = Run::new(bruteforce_only());
    b.ok_all(evs.into_iter().map(Ev::rfc3339));
    assert_eq!(a.count(Rule::Bruteforce), 1);
    assert_eq!(a.dump(), b.dump());
}

// =======================================================================================
// distributed_bruteforce: >= 10 failures on one account from >= 5 IPs in 10m (high;
// critical at 25 IPs)

fn dbf_only() -> Config {
    only(&[Rule::DistributedBruteforce])
}

/// `n` failures on `account`, rotating over `ips` addresses.
fn rotating(account: &str, start: i64, step: i64, n: usize, ips: u32) -> Vec<Ev> {
    (0..n as i64)
        .map(|i| Ev::failure(start + i * step, &nth_ip(i as u32 % ips), account))
        .collect()
}

#[test]
fn distributed_bruteforce_does_not_fire_with_four_distinct_ips() {
    let mut r = Run::new(dbf_only());
    r.ok_all(rotating("alice", T0, 20 * SEC, 20, 4));
    assert_no_signals(&r);
}

#[test]
fn distributed_bruteforce_does_not_fire_at_nine_failures_from_nine_ips() {
    let mut r = Run::new(dbf_only());
    r.ok_all(rotating("alice", T0, 20 * SEC, 9, 9));
    assert_no_signals(&r);
}

#[test]
fn distributed_bruteforce_fires_at_ten_failures_from_five_ips_in_ten_minutes() {
    let mut r = Run::new(dbf_only());
    for (i, ev) in rotating("alice", T0, 30 * SEC, 10, 5).iter().enumerate() {
        r.ok(ev);
        assert_eq!(
            r.count(Rule::DistributedBruteforce),
            usize::from(i == 9),
            "after failure {}",
            i + 1
        );
    }
    let s = r.one(Rule::DistributedBruteforce);
    assert_eq!(s.entity.kind, EntityType::Account);
    assert_eq!(s.entity.value, "alice");
    assert_eq!(s.severity, Severity::High);
    assert_eq!(s.ts, "2025-11-21T10:04:30Z");
    assert_eq!(s.window, "10m");
    assert_eq!(s.evidence.counts.failures, Some(10));
    assert_eq!(s.evidence.counts.distinct_ips, Some(5));
    assert_eq!(s.evidence.thresholds.failures, Some(10));
    assert_eq!(s.evidence.thresholds.distinct_ips, Some(5));
    let mut ips = s.evidence.sample_ips.clone();
    ips.sort();
    let mut want: Vec<String> = (0..5).map(nth_ip).collect();
    want.sort();
    assert_eq!(ips, want);
}

#[test]
fn distributed_bruteforce_emits_one_signal_within_cooldown() {
    let mut r = Run::new(dbf_only());
    r.ok_all(rotating("alice", T0, 20 * SEC, 24, 12));
    assert_eq!(r.one(Rule::DistributedBruteforce).ts_ms, T0 + 180 * SEC);
}

#[test]
fn distributed_bruteforce_escalates_to_critical_at_twenty_five_ips() {
    let mut r = Run::new(dbf_only());
    r.ok_all(rotating("alice", T0, 10 * SEC, 30, 30));
    let v = r.of(Rule::DistributedBruteforce);
    assert_eq!(v.len(), 2, "{}", r.dump());
    assert_eq!(
        (v[0].severity, v[0].ts_ms, v[0].evidence.counts.distinct_ips),
        (Severity::High, T0 + 90 * SEC, Some(10))
    );
    assert_eq!(
        (v[1].severity, v[1].ts_ms, v[1].evidence.counts.distinct_ips),
        (Severity::Critical, T0 + 240 * SEC, Some(25))
    );
}

#[test]
fn distributed_bruteforce_failures_exactly_ten_minutes_end_to_end_do_not_fire() {
    let mut r = Run::new(dbf_only());
    let times = spread(T0, 10 * MIN, 10);
    r.ok_all(
        times
            .iter()
            .enumerate()
            .map(|(i, &t)| Ev::failure(t, &nth_ip(i as u32 % 5), "alice")),
    );
    assert_no_signals(&r);
}

#[test]
fn distributed_bruteforce_attack_straddling_ten_ten_fires() {
    let mut r = Run::new(dbf_only());
    let mut times: Vec<i64> = [10, 20, 30, 40, 50]
        .iter()
        .map(|s| T0 + 9 * MIN + s * SEC)
        .collect();
    times.extend([0, 10, 20, 30, 40].iter().map(|s| T0 + 10 * MIN + s * SEC));
    r.ok_all(
        times
            .iter()
            .enumerate()
            .map(|(i, &t)| Ev::failure(t, &nth_ip(i as u32 % 5), "alice")),
    );
    assert_eq!(
        r.one(Rule::DistributedBruteforce).ts,
        "2025-11-21T10:10:40Z"
    );
}

#[test]
fn distributed_bruteforce_out_of_order_failure_from_a_fifth_ip_completes_the_run() {
    let mut r = Run::new(dbf_only());
    r.ok_all(rotating("alice", T0 + 30 * SEC, 10 * SEC, 9, 4)); // 4 IPs, up to 10:01:50
    assert_no_signals(&r);
    r.ok(&Ev::failure(T0 + 55 * SEC, &nth_ip(4), "alice"));
    let s = r.one(Rule::DistributedBruteforce);
    assert_eq!(s.ts_ms, T0 + 110 * SEC);
    assert_eq!(s.evidence.counts.failures, Some(10));
    assert_eq!(s.evidence.counts.distinct_ips, Some(5));
}

#[test]
fn distributed_bruteforce_late_failure_is_dropped_and_does_not_complete_the_run() {
    let mut r = Run::new(dbf_only());
    r.ok_all(rotating("alice", T0, 10 * SEC, 9, 5));
    advance(&mut r, T0 + 200 * SEC);
    assert_eq!(
        r.feed(&Ev::failure(T0 + 90 * SEC, &nth_ip(5), "alice")),
        Processed::Late
    );
    assert_no_signals(&r);
    assert_eq!(r.engine.stats().late, 1);
}

// =======================================================================================
// credential_stuffing: one IP, >= 20 failures over >= 10 accounts, ratio >= 0.5, in 10m
// (high; critical at 100)

fn cs_only() -> Config {
    only(&[Rule::CredentialStuffing])
}

/// `n` failures from `ip` over `accounts` accounts (user0, user1, ...).
fn stuffing(ip: &str, start: i64, step: i64, n: usize, accounts: usize) -> Vec<Ev> {
    (0..n)
        .map(|i| {
            Ev::failure(
                start + i as i64 * step,
                ip,
                &format!("user{}", i % accounts),
            )
        })
        .collect()
}

#[test]
fn credential_stuffing_counts_only_the_accounts_failed_within_its_window_beside_the_slow_rule() {
    // The slow rule keeps the IP's accounts for a day; the 10-minute count must not
    // take in the ones failed an hour before (it said 40 here).
    let mut r = Run::new(only(&[
        Rule::CredentialStuffing,
        Rule::CredentialStuffingSlow,
    ]));
    let later: Vec<Ev> = (0..20)
        .map(|i| Ev::failure(T0 + HOUR + i * 12 * SEC, ATTACKER, &format!("other{i}")))
        .collect();
    r.ok_all(stuffing(ATTACKER, T0, 12 * SEC, 20, 20));
    r.ok_all(later);
    let fired: Vec<&Signal> = r
        .signals
        .iter()
        .filter(|s| s.rule == Rule::CredentialStuffing)
        .collect();
    assert_eq!(fired.len(), 2);
    for s in fired {
        assert_eq!(
            s.evidence.counts.distinct_accounts,
            Some(20),
            "{}",
            s.summary
        );
    }
}

#[test]
fn credential_stuffing_does_not_fire_at_nineteen_failures() {
    let mut r = Run::new(cs_only());
    r.ok_all(stuffing(ATTACKER, T0, 10 * SEC, 19, 10));
    assert_no_signals(&r);
}

#[test]
fn credential_stuffing_does_not_fire_over_nine_distinct_accounts() {
    let mut r = Run::new(cs_only());
    r.ok_all(stuffing(ATTACKER, T0, 10 * SEC, 30, 9));
    assert_no_signals(&r);
}

#[test]
fn credential_stuffing_fires_at_twenty_failures_over_ten_accounts() {
    let mut r = Run::new(cs_only());
    for (i, ev) in stuffing(ATTACKER, T0, 10 * SEC, 20, 10).iter().enumerate() {
        r.ok(ev);
        assert_eq!(
            r.count(Rule::CredentialStuffing),
            usize::from(i == 19),
            "after failure {}",
            i + 1
        );
    }
    let s = r.one(Rule::CredentialStuffing);
    assert_eq!(s.entity.kind, EntityType::Ip);
    assert_eq!(s.entity.value, ATTACKER);
    assert_eq!(s.severity, Severity::High);
    assert_eq!(s.ts, "2025-11-21T10:03:10Z");
    assert_eq!(s.window, "10m");
    let c = &s.evidence.counts;
    assert_eq!(
        (c.failures, c.successes, c.attempts, c.distinct_accounts),
        (Some(20), Some(0), Some(20), Some(10))
    );
    assert_eq!(c.failure_ratio, Some(1.0));
    let t = &s.evidence.thresholds;
    assert_eq!(
        (t.failures, t.distinct_accounts, t.failure_ratio),
        (Some(20), Some(10), Some(0.5))
    );
    assert_eq!(s.evidence.sample_accounts.len(), 5);
    assert!(
        s.evidence
            .sample_accounts
            .iter()
            .all(|a| a.starts_with("user")),
        "{:?}",
        s.evidence.sample_accounts
    );
}

#[test]
fn credential_stuffing_does_not_fire_from_a_mostly_succeeding_nat() {
    let mut r = Run::new(cs_only());
    let mut evs = vec![Ev::failure(T0, ATTACKER, "user0")];
    evs.extend((0..25).map(|i| Ev::success(T0 + SEC + i * SEC, ATTACKER, &format!("member{i}"))));
    evs.extend((1..20).map(|i| {
        Ev::failure(
            T0 + 30 * SEC + i * SEC,
            ATTACKER,
            &format!("user{}", i % 10),
        )
    }));
    r.ok_all(evs); // 20 failures / 45 attempts
    assert_no_signals(&r);
}

#[test]
fn credential_stuffing_fires_at_a_failure_ratio_of_exactly_one_half() {
    let mut r = Run::new(cs_only());
    let mut evs = vec![Ev::failure(T0, ATTACKER, "user0")];
    evs.extend((0..20).map(|i| Ev::success(T0 + SEC + i * SEC, ATTACKER, &format!("member{i}"))));
    evs.extend((1..20).map(|i| {
        Ev::failure(
            T0 + 30 * SEC + i * SEC,
            ATTACKER,
            &format!("user{}", i % 10),
        )
    }));
    r.ok_all(evs);
    let c = &r.one(Rule::CredentialStuffing).evidence.counts;
    assert_eq!(
        (c.failures, c.successes, c.attempts, c.failure_ratio),
        (Some(20), Some(20), Some(40), Some(0.5))
    );
}

#[test]
fn credential_stuffing_ratio_counts_successes_from_before_the_ips_first_failure() {
    // A NAT: 25 users sign in, then 20 failures over 10 accounts. Ratio 20/45 < 0.5.
    let mut r = Run::new(cs_only());
    r.ok_all((0..25).map(|i| Ev::success(T0 + i * SEC, ATTACKER, &format!("member{i}"))));
    r.ok_all(stuffing(ATTACKER, T0 + 30 * SEC, SEC, 20, 10));
    assert_no_signals(&r);
}

#[test]
fn credential_stuffing_emits_one_signal_within_cooldown() {
    let mut r = Run::new(cs_only());
    r.ok_all(stuffing(ATTACKER, T0, 5 * SEC, 60, 15));
    assert_eq!(r.one(Rule::CredentialStuffing).ts_ms, T0 + 95 * SEC);
}

#[test]
fn credential_stuffing_escalates_to_critical_at_a_hundred_failures() {
    let mut r = Run::new(cs_only());
    r.ok_all(stuffing(ATTACKER, T0, 5 * SEC, 110, 20)); // 545 s
    let v = r.of(Rule::CredentialStuffing);
    assert_eq!(v.len(), 2, "{}", r.dump());
    assert_eq!(
        (v[0].severity, v[0].ts_ms, v[0].evidence.counts.failures),
        (Severity::High, T0 + 95 * SEC, Some(20))
    );
    assert_eq!(
        (v[1].severity, v[1].ts_ms, v[1].evidence.counts.failures),
        (Severity::Critical, T0 + 495 * SEC, Some(100))
    );
}

#[test]
fn credential_stuffing_failures_exactly_ten_minutes_end_to_end_do_not_fire() {
    let mut r = Run::new(cs_only());
    let times = spread(T0, 10 * MIN, 20);
    r.ok_all(
        times
            .iter()
            .enumerate()
            .map(|(i, &t)| Ev::failure(t, ATTACKER, &format!("user{}", i % 10))),
    );
    assert_no_signals(&r);
}

#[test]
fn credential_stuffing_attack_straddling_ten_ten_fires() {
    let mut r = Run::new(cs_only());
    r.ok_all(stuffing(ATTACKER, T0 + 9 * MIN, 6 * SEC, 20, 10)); // 10:09:00 .. 10:10:54
    assert_eq!(r.one(Rule::CredentialStuffing).ts, "2025-11-21T10:10:54Z");
}

#[test]
fn credential_stuffing_out_of_order_failure_within_lateness_completes_the_run() {
    let mut r = Run::new(cs_only());
    r.ok_all(stuffing(ATTACKER, T0, 5 * SEC, 19, 10)); // up to 10:01:30
    r.ok(&Ev::failure(T0 + 40 * SEC, ATTACKER, "user9"));
    let s = r.one(Rule::CredentialStuffing);
    assert_eq!(s.ts_ms, T0 + 90 * SEC);
    assert_eq!(s.evidence.counts.failures, Some(20));
}

#[test]
fn credential_stuffing_late_failure_is_dropped_and_does_not_complete_the_run() {
    let mut r = Run::new(cs_only());
    r.ok_all(stuffing(ATTACKER, T0, 5 * SEC, 19, 10)); // up to 10:01:30
    advance(&mut r, T0 + 200 * SEC);
    assert_eq!(
        r.feed(&Ev::failure(T0 + 95 * SEC, ATTACKER, "user9")),
        Processed::Late
    );
    assert_no_signals(&r);
}

// =======================================================================================
// credential_stuffing_slow: one IP, >= 100 failures over >= 10 accounts in 24h (medium;
// high at 500)

fn slow_only() -> Config {
    only(&[Rule::CredentialStuffingSlow])
}

#[test]
fn credential_stuffing_slow_does_not_fire_at_ninety_nine_failures_in_a_day() {
    let mut r = Run::new(slow_only());
    r.ok_all(stuffing(ATTACKER, T0, 10 * MIN, 99, 10));
    assert_no_signals(&r);
}

#[test]
fn credential_stuffing_slow_does_not_fire_over_nine_distinct_accounts() {
    let mut r = Run::new(slow_only());
    r.ok_all(stuffing(ATTACKER, T0, 10 * MIN, 120, 9));
    assert_no_signals(&r);
}

#[test]
fn credential_stuffing_slow_fires_at_a_hundred_failures_just_under_a_day() {
    let mut r = Run::new(slow_only());
    let times = spread(T0, 24 * HOUR - 1, 100);
    let evs: Vec<Ev> = times
        .iter()
        .enumerate()
        .map(|(i, &t)| Ev::failure(t, ATTACKER, &format!("user{}", i % 10)))
        .collect();
    for (i, ev) in evs.iter().enumerate() {
        r.ok(ev);
        assert_eq!(
            r.count(Rule::CredentialStuffingSlow),
            usize::from(i == 99),
            "after failure {}",
            i + 1
        );
    }
    let s = r.one(Rule::CredentialStuffingSlow);
    assert_eq!(s.entity.kind, EntityType::Ip);
    assert_eq!(s.entity.value, ATTACKER);
    assert_eq!(s.severity, Severity::Medium);
    assert_eq!(s.ts, "2025-11-22T09:59:59.999Z");
    assert_eq!(s.window, "1d");
    assert_eq!(
        (
            s.evidence.counts.failures,
            s.evidence.counts.distinct_accounts
        ),
        (Some(100), Some(10))
    );
    assert_eq!(
        (
            s.evidence.thresholds.failures,
            s.evidence.thresholds.distinct_accounts
        ),
        (Some(100), Some(10))
    );
}

#[test]
fn credential_stuffing_slow_hundred_failures_exactly_a_day_end_to_end_do_not_fire() {
    let mut r = Run::new(slow_only());
    let times = spread(T0, 24 * HOUR, 100);
    r.ok_all(
        times
            .iter()
            .enumerate()
            .map(|(i, &t)| Ev::failure(t, ATTACKER, &format!("user{}", i % 10))),
    );
    assert_no_signals(&r);
}

#[test]
fn credential_stuffing_slow_emits_one_signal_within_cooldown() {
    let mut r = Run::new(slow_only());
    r.ok_all(stuffing(ATTACKER, T0, 5 * MIN, 150, 10));
    assert_eq!(r.one(Rule::CredentialStuffingSlow).ts_ms, T0 + 99 * 5 * MIN);
}

#[test]
fn credential_stuffing_slow_escalates_to_high_at_five_hundred_failures() {
    let mut r = Run::new(slow_only());
    r.ok_all(stuffing(ATTACKER, T0, 2 * MIN, 510, 10)); // 17 h
    let v = r.of(Rule::CredentialStuffingSlow);
    assert_eq!(v.len(), 2, "{}", r.dump());
    assert_eq!(
        (v[0].severity, v[0].ts_ms, v[0].evidence.counts.failures),
        (Severity::Medium, T0 + 99 * 2 * MIN, Some(100))
    );
    assert_eq!(
        (v[1].severity, v[1].ts_ms, v[1].evidence.counts.failures),
        (Severity::High, T0 + 499 * 2 * MIN, Some(500))
    );
}

#[test]
fn credential_stuffing_slow_attack_straddling_midnight_fires() {
    let mut r = Run::new(slow_only());
    // 15:40 .. 23:50 on the 21st, then 00:00 .. 08:10 on the 22nd.
    r.ok_all(stuffing(
        ATTACKER,
        T0 + 5 * HOUR + 40 * MIN,
        10 * MIN,
        100,
        10,
    ));
    assert_eq!(
        r.one(Rule::CredentialStuffingSlow).ts,
        "2025-11-22T08:10:00Z"
    );
}

#[test]
fn credential_stuffing_slow_out_of_order_failure_within_lateness_completes_the_run() {
    let mut r = Run::new(slow_only());
    r.ok_all(stuffing(ATTACKER, T0, 10 * MIN, 99, 10));
    let last = T0 + 98 * 10 * MIN;
    r.ok(&Ev::failure(last - 30 * SEC, ATTACKER, "user3"));
    let s = r.one(Rule::CredentialStuffingSlow);
    assert_eq!(s.ts_ms, last);
    assert_eq!(s.evidence.counts.failures, Some(100));
}

#[test]
fn credential_stuffing_slow_late_failure_is_dropped_and_does_not_complete_the_run() {
    let mut r = Run::new(slow_only());
    r.ok_all(stuffing(ATTACKER, T0, 10 * MIN, 99, 10));
    let last = T0 + 98 * 10 * MIN;
    advance(&mut r, last + 5 * MIN);
    assert_eq!(
        r.feed(&Ev::failure(last + 3 * MIN, ATTACKER, "user3")),
        Processed::Late
    );
    assert_no_signals(&r);
}

// =======================================================================================
// user_enumeration: one IP, >= 10 failures on nonexistent accounts over >= 5 such names
// in 10m (medium; high at 50)

fn ue_only() -> Config {
    only(&[Rule::UserEnumeration])
}

/// `n` failures from `ip` on `names` accounts that do not exist (ghost0, ghost1, ...).
fn probing(ip: &str, start: i64, step: i64, n: usize, names: usize) -> Vec<Ev> {
    (0..n)
        .map(|i| {
            Ev::failure(start + i as i64 * step, ip, &format!("ghost{}", i % names)).exists(false)
        })
        .collect()
}

#[test]
fn user_enumeration_does_not_fire_at_nine_failures() {
    let mut r = Run::new(ue_only());
    r.ok_all(probing(ATTACKER, T0, 20 * SEC, 9, 5));
    assert_no_signals(&r);
}

#[test]
fn user_enumeration_does_not_fire_over_four_distinct_names() {
    let mut r = Run::new(ue_only());
    r.ok_all(probing(ATTACKER, T0, 20 * SEC, 20, 4));
    assert_no_signals(&r);
}

#[test]
fn user_enumeration_fires_at_ten_failures_over_five_nonexistent_accounts() {
    let mut r = Run::new(ue_only());
    for (i, ev) in probing(ATTACKER, T0, 20 * SEC, 10, 5).iter().enumerate() {
        r.ok(ev);
        assert_eq!(
            r.count(Rule::UserEnumeration),
            usize::from(i == 9),
            "after failure {}",
            i + 1
        );
    }
    let s = r.one(Rule::UserEnumeration);
    assert_eq!(s.entity.kind, EntityType::Ip);
    assert_eq!(s.entity.value, ATTACKER);
    assert_eq!(s.severity, Severity::Medium);
    assert_eq!(s.ts, "2025-11-21T10:03:00Z");
    assert_eq!(s.window, "10m");
    assert_eq!(
        (
            s.evidence.counts.failures,
            s.evidence.counts.distinct_accounts
        ),
        (Some(10), Some(5))
    );
    assert_eq!(
        (
            s.evidence.thresholds.failures,
            s.evidence.thresholds.distinct_accounts
        ),
        (Some(10), Some(5))
    );
}

#[test]
fn user_enumeration_counts_only_failures_the_app_marks_as_nonexistent() {
    let mut r = Run::new(ue_only());
    r.ok_all(probing(ATTACKER, T0, 5 * SEC, 9, 5));
    r.ok_all(
        (0..5).map(|i| {
            Ev::failure(T0 + 60 * SEC + i * SEC, ATTACKER, &format!("real{i}")).exists(true)
        }),
    );
    r.ok_all((0..5).map(|i| {
        Ev::failure(T0 + 70 * SEC + i * SEC, ATTACKER, &format!("unsure{i}")).no_exists()
    }));
    assert_no_signals(&r);
    r.ok(&Ev::failure(T0 + 80 * SEC, ATTACKER, "ghost4").exists(false));
    assert_eq!(
        r.one(Rule::UserEnumeration).evidence.counts.failures,
        Some(10)
    );
}

#[test]
fn user_enumeration_emits_one_signal_within_cooldown() {
    let mut r = Run::new(ue_only());
    r.ok_all(probing(ATTACKER, T0, 10 * SEC, 30, 8));
    assert_eq!(r.one(Rule::UserEnumeration).ts_ms, T0 + 90 * SEC);
}

#[test]
fn user_enumeration_escalates_to_high_at_fifty_failures() {
    let mut r = Run::new(ue_only());
    r.ok_all(probing(ATTACKER, T0, 10 * SEC, 55, 8)); // 540 s
    let v = r.of(Rule::UserEnumeration);
    assert_eq!(v.len(), 2, "{}", r.dump());
    assert_eq!(
        (v[0].severity, v[0].evidence.counts.failures),
        (Severity::Medium, Some(10))
    );
    assert_eq!(
        (v[1].severity, v[1].ts_ms, v[1].evidence.counts.failures),
        (Severity::High, T0 + 490 * SEC, Some(50))
    );
}

#[test]
fn user_enumeration_failures_exactly_ten_minutes_end_to_end_do_not_fire() {
    let mut r = Run::new(ue_only());
    let times = spread(T0, 10 * MIN, 10);
    r.ok_all(
        times
            .iter()
            .enumerate()
            .map(|(i, &t)| Ev::failure(t, ATTACKER, &format!("ghost{}", i % 5)).exists(false)),
    );
    assert_no_signals(&r);
}

#[test]
fn user_enumeration_attack_straddling_ten_ten_fires() {
    let mut r = Run::new(ue_only());
    r.ok_all(probing(ATTACKER, T0 + 9 * MIN + 30 * SEC, 10 * SEC, 10, 5)); // 10:09:30 .. 10:11:00
    assert_eq!(r.one(Rule::UserEnumeration).ts, "2025-11-21T10:11:00Z");
}

#[test]
fn user_enumeration_out_of_order_failure_within_lateness_completes_the_run() {
    let mut r = Run::new(ue_only());
    r.ok_all(probing(ATTACKER, T0, 10 * SEC, 9, 5)); // up to 10:01:20
    r.ok(&Ev::failure(T0 + 35 * SEC, ATTACKER, "ghost7").exists(false));
    let s = r.one(Rule::UserEnumeration);
    assert_eq!(s.ts_ms, T0 + 80 * SEC);
    assert_eq!(
        (
            s.evidence.counts.failures,
            s.evidence.counts.distinct_accounts
        ),
        (Some(10), Some(6))
    );
}

#[test]
fn user_enumeration_late_failure_is_dropped_and_does_not_complete_the_run() {
    let mut r = Run::new(ue_only());
    r.ok_all(probing(ATTACKER, T0, 10 * SEC, 9, 5));
    advance(&mut r, T0 + 200 * SEC);
    assert_eq!(
        r.feed(&Ev::failure(T0 + 85 * SEC, ATTACKER, "ghost7").exists(false)),
        Processed::Late
    );
    assert_no_signals(&r);
}

// =======================================================================================
// ip_velocity: one IP, >= 120 login attempts of any outcome in 1m (medium; high at 600)

fn velocity_only() -> Config {
    only(&[Rule::IpVelocity])
}

/// `n` logins from `ip`, alternating success and failure.
fn burst_at(ip: &str, times: &[i64]) -> Vec<Ev> {
    times
        .iter()
        .enumerate()
        .map(|(i, &t)| {
            let account = format!("u{}", i % 7);
            if i % 2 == 0 {
                Ev::success(t, ip, &account)
            } else {
                Ev::failure(t, ip, &account)
            }
        })
        .collect()
}

fn burst(ip: &str, start: i64, step: i64, n: usize) -> Vec<Ev> {
    burst_at(
        ip,
        &(0..n as i64).map(|i| start + i * step).collect::<Vec<_>>(),
    )
}

#[test]
fn ip_velocity_does_not_fire_at_119_attempts_in_a_minute() {
    let mut r = Run::new(velocity_only());
    r.ok_all(burst(ATTACKER, T0, 400, 119));
    assert_no_signals(&r);
}

#[test]
fn ip_velocity_fires_at_120_attempts_of_any_outcome_in_a_minute() {
    let mut r = Run::new(velocity_only());
    for (i, ev) in burst(ATTACKER, T0, 400, 120).iter().enumerate() {
        r.ok(ev);
        assert_eq!(
            r.count(Rule::IpVelocity),
            usize::from(i == 119),
            "after attempt {}",
            i + 1
        );
    }
    let s = r.one(Rule::IpVelocity);
    assert_eq!(s.entity.kind, EntityType::Ip);
    assert_eq!(s.entity.value, ATTACKER);
    assert_eq!(s.severity, Severity::Medium);
    assert_eq!(s.ts, "2025-11-21T10:00:47.600Z");
    assert_eq!(s.window, "1m");
    assert_eq!(s.evidence.counts.attempts, Some(120));
    assert_eq!(s.evidence.thresholds.attempts, Some(120));
}

#[test]
fn ip_velocity_does_not_count_session_create() {
    let mut r = Run::new(velocity_only());
    let mut evs = burst(ATTACKER, T0, 400, 119);
    evs.extend((0..20).map(|i| Ev::session(T0 + 200 + i * 400, ATTACKER, "u1")));
    evs.sort_by_key(|e| e.ts);
    r.ok_all(evs);
    assert_no_signals(&r);
}

#[test]
fn ip_velocity_emits_one_signal_within_cooldown() {
    let mut r = Run::new(velocity_only());
    r.ok_all(burst(ATTACKER, T0, 250, 200));
    assert_eq!(r.one(Rule::IpVelocity).ts_ms, T0 + 119 * 250);
}

#[test]
fn ip_velocity_escalates_to_high_at_six_hundred_attempts() {
    let mut r = Run::new(velocity_only());
    r.ok_all(burst(ATTACKER, T0, 90, 650)); // 58.4 s
    let v = r.of(Rule::IpVelocity);
    assert_eq!(v.len(), 2, "{}", r.dump());
    assert_eq!(
        (v[0].severity, v[0].ts_ms, v[0].evidence.counts.attempts),
        (Severity::Medium, T0 + 119 * 90, Some(120))
    );
    assert_eq!(
        (v[1].severity, v[1].ts_ms, v[1].evidence.counts.attempts),
        (Severity::High, T0 + 599 * 90, Some(600))
    );
}

#[test]
fn ip_velocity_attempts_exactly_a_minute_end_to_end_do_not_fire() {
    let mut r = Run::new(velocity_only());
    r.ok_all(burst_at(ATTACKER, &spread(T0, MIN, 120)));
    assert_no_signals(&r);
}

#[test]
fn ip_velocity_burst_straddling_ten_oh_one_fires() {
    let mut r = Run::new(velocity_only());
    r.ok_all(burst(ATTACKER, T0 + 30 * SEC, 500, 120)); // 10:00:30 .. 10:01:29.5
    assert_eq!(r.one(Rule::IpVelocity).ts, "2025-11-21T10:01:29.500Z");
}

#[test]
fn ip_velocity_out_of_order_attempt_within_lateness_completes_the_run() {
    let mut r = Run::new(velocity_only());
    r.ok_all(burst(ATTACKER, T0, 250, 119)); // up to 10:00:29.5
    r.ok(&Ev::success(T0 + 10_100, ATTACKER, "u9"));
    let s = r.one(Rule::IpVelocity);
    assert_eq!(s.ts_ms, T0 + 29_500);
    assert_eq!(s.evidence.counts.attempts, Some(120));
}

#[test]
fn ip_velocity_late_attempt_is_dropped_and_does_not_complete_the_run() {
    let mut r = Run::new(velocity_only());
    r.ok_all(burst(ATTACKER, T0, 250, 119)); // up to 10:00:29.5
    advance(&mut r, T0 + 100 * SEC); // watermark 10:00:40
    assert_eq!(
        r.feed(&Ev::success(T0 + 35 * SEC, ATTACKER, "u9")),
        Processed::Late
    );
    assert_no_signals(&r);
    assert_eq!(r.engine.stats().late, 1);
}

// =======================================================================================
// distributed_credential_stuffing: one service, in 5m: >= 200 failures, ratio >=
// min(3 x baseline, 0.9), >= 50 failing IPs, >= 100 failing accounts (high; critical at
// 1000)

fn dcs_only() -> Config {
    only(&[Rule::DistributedCredentialStuffing])
}

/// Benign logins on `service` in `[start, end)`, one every `step`; `fail_num` of every
/// `fail_den` fail. 300 IPs, 1000 accounts.
fn benign(service: &str, start: i64, end: i64, step: i64, fail_num: u64, fail_den: u64) -> Vec<Ev> {
    let mut v = Vec::new();
    let mut t = start;
    let mut i: u64 = 0;
    while t < end {
        let ip = nth_ip((i % 300) as u32);
        let account = format!("member{}", (i * 7) % 1000);
        let ev = if i % fail_den < fail_num {
            Ev::failure(t, &ip, &account)
        } else {
            Ev::success(t, &ip, &account)
        };
        v.push(ev.service(service));
        t += step;
        i += 1;
    }
    v
}

/// A campaign on `service`: `n` failures, one every `step`, rotating over `ips` IPs
/// (numbered from 1000) and `accounts` accounts.
fn campaign(service: &str, start: i64, step: i64, n: usize, ips: u32, accounts: usize) -> Vec<Ev> {
    (0..n)
        .map(|i| {
            Ev::failure(
                start + i as i64 * step,
                &nth_ip(1000 + i as u32 % ips),
                &format!("victim{}", i % accounts),
            )
            .service(service)
        })
        .collect()
}

fn merged(mut a: Vec<Ev>, b: Vec<Ev>) -> Vec<Ev> {
    a.extend(b);
    a.sort_by_key(|e| e.ts);
    a
}

/// Feeds events; returns the event after which the first `rule` signal appeared.
fn feed_until_first(r: &mut Run, evs: &[Ev], rule: Rule) -> Option<Ev> {
    let mut first = None;
    for ev in evs {
        let before = r.count(rule);
        r.ok(ev);
        if first.is_none() && r.count(rule) > before {
            first = Some(ev.clone());
        }
    }
    first
}

#[test]
fn distributed_credential_stuffing_quiet_service_with_history_fires_on_a_sudden_campaign() {
    let mut r = Run::new(dcs_only());
    r.ok_all(benign("checkout", T0 - 65 * MIN, T0, 2 * SEC, 1, 20)); // 5 % failures
    assert_no_signals(&r);
    let evs = merged(
        benign("checkout", T0, T0 + 3 * MIN, 2 * SEC, 1, 20),
        campaign("checkout", T0, 500, 360, 60, 300),
    );
    let crossing = feed_until_first(&mut r, &evs, Rule::DistributedCredentialStuffing)
        .expect("campaign detected");
    let s = r.one(Rule::DistributedCredentialStuffing);
    assert_eq!(s.entity.kind, EntityType::Service);
    assert_eq!(s.entity.value, "checkout");
    assert_eq!(s.service.as_deref(), Some("checkout"));
    assert_eq!(s.severity, Severity::High);
    assert_eq!(s.window, "5m");
    assert_eq!(
        s.ts_ms, crossing.ts,
        "signal time is the event that crossed"
    );
    let c = &s.evidence.counts;
    assert_eq!(
        c.failures,
        Some(200),
        "fires at the 200th failure in the window, not later: {}",
        s.to_json()
    );
    assert!(
        c.distinct_ips.unwrap() >= 50 && c.distinct_accounts.unwrap() >= 100,
        "{}",
        s.to_json()
    );
    let baseline = c.baseline_failure_ratio.unwrap();
    assert!(
        (0.04..=0.06).contains(&baseline),
        "baseline ~5 %: {}",
        s.to_json()
    );
    let t = &s.evidence.thresholds;
    assert_eq!(
        (t.failures, t.distinct_ips, t.distinct_accounts),
        (Some(200), Some(50), Some(100))
    );
    assert!(
        (t.failure_ratio.unwrap() - 3.0 * baseline).abs() < 0.002,
        "required = 3 x baseline: {}",
        s.to_json()
    );
    assert!(c.failure_ratio.unwrap() >= t.failure_ratio.unwrap());
}

#[test]
fn distributed_credential_stuffing_high_failure_service_fires_only_when_a_campaign_pushes_past_ninety_percent()
 {
    let mut r = Run::new(dcs_only());
    let svc = "legacy-sso";
    // An hour at 40 % failures, below 200 failures per 5m ...
    r.ok_all(benign(svc, T0 - 70 * MIN, T0 - 10 * MIN, 800, 2, 5));
    // ... then busier, still 40 %: 300 failures per 5m from 300 IPs on 1000 accounts.
    r.ok_all(benign(svc, T0 - 10 * MIN, T0, 400, 2, 5));
    assert_no_signals(&r);
    // A campaign on top: the ratio climbs past 0.9.
    let evs = merged(
        benign(svc, T0, T0 + 3 * MIN, 400, 2, 5),
        campaign(svc, T0, 40, 4500, 100, 2000),
    );
    feed_until_first(&mut r, &evs, Rule::DistributedCredentialStuffing).expect("campaign detected");
    let s = r.one(Rule::DistributedCredentialStuffing);
    assert_eq!(s.entity.value, svc);
    assert_eq!(
        s.evidence.thresholds.failure_ratio,
        Some(0.9),
        "3 x 0.4 capped at 0.9: {}",
        s.to_json()
    );
    let c = &s.evidence.counts;
    assert!(c.failure_ratio.unwrap() >= 0.9, "{}", s.to_json());
    assert!(
        (0.38..=0.42).contains(&c.baseline_failure_ratio.unwrap()),
        "{}",
        s.to_json()
    );
    assert!(s.ts_ms >= T0);
    assert_eq!(
        s.severity,
        Severity::Critical,
        "over 1000 failures in the window: {}",
        s.to_json()
    );
}

#[test]
fn distributed_credential_stuffing_fires_at_two_hundred_failures_not_one_ninety_nine() {
    let mut r = Run::new(dcs_only());
    let evs = campaign("checkout", T0, 500, 200, 60, 200);
    r.ok_all(evs[..199].to_vec());
    assert_no_signals(&r);
    r.ok(&evs[199]);
    let s = r.one(Rule::DistributedCredentialStuffing);
    assert_eq!(s.ts_ms, evs[199].ts);
    let c = &s.evidence.counts;
    assert_eq!(
        (c.failures, c.successes, c.attempts),
        (Some(200), Some(0), Some(200))
    );
    // No history: the configured default baseline, times the factor, capped.
    let d = &r.engine.config().rules.distributed_credential_stuffing;
    let required = (d.default_baseline_ratio * d.baseline_factor).min(d.max_required_ratio);
    assert_eq!(c.baseline_failure_ratio, Some(d.default_baseline_ratio));
    assert_eq!(
        s.evidence.thresholds.failure_ratio,
        Some((required * 1000.0).round() / 1000.0)
    );
    assert_eq!(s.evidence.sample_ips.len(), 5);
    assert_eq!(s.evidence.sample_accounts.len(), 5);
}

#[test]
fn distributed_credential_stuffing_needs_fifty_distinct_failing_ips() {
    let mut few = Run::new(dcs_only());
    few.ok_all(campaign("checkout", T0, 500, 300, 45, 300));
    assert_no_signals(&few);
    let mut enough = Run::new(dcs_only());
    enough.ok_all(campaign("checkout", T0, 500, 300, 50, 300));
    assert_eq!(
        enough
            .one(Rule::DistributedCredentialStuffing)
            .evidence
            .counts
            .distinct_ips,
        Some(50)
    );
}

#[test]
fn distributed_credential_stuffing_needs_a_hundred_distinct_failing_accounts() {
    let mut r = Run::new(dcs_only());
    r.ok_all(campaign("checkout", T0, 500, 300, 60, 90));
    assert_no_signals(&r);
}

#[test]
fn distributed_credential_stuffing_emits_one_signal_within_cooldown() {
    let mut r = Run::new(dcs_only());
    r.ok_all(campaign("checkout", T0, 250, 800, 60, 400)); // 200 s
    assert_eq!(
        r.one(Rule::DistributedCredentialStuffing)
            .evidence
            .counts
            .failures,
        Some(200)
    );
}

#[test]
fn distributed_credential_stuffing_escalates_to_critical_at_a_thousand_failures() {
    let mut r = Run::new(dcs_only());
    r.ok_all(campaign("checkout", T0, 200, 1200, 80, 600)); // 240 s
    let v = r.of(Rule::DistributedCredentialStuffing);
    assert_eq!(v.len(), 2, "{}", r.dump());
    assert_eq!(v[0].severity, Severity::High);
    assert_eq!(v[1].severity, Severity::Critical);
    assert!(
        v[1].evidence.counts.failures.unwrap() >= 1000,
        "{}",
        v[1].to_json()
    );
}

#[test]
fn distributed_credential_stuffing_campaign_spread_over_ten_minutes_does_not_fire() {
    let mut r = Run::new(dcs_only());
    r.ok_all(campaign("checkout", T0, 3 * SEC, 200, 60, 200)); // ~100 per 5m
    assert_no_signals(&r);
}

#[test]
fn distributed_credential_stuffing_campaign_straddling_ten_oh_five_fires() {
    let mut r = Run::new(dcs_only());
    let evs = campaign("checkout", T0 + 4 * MIN, 500, 240, 60, 240); // 120 before 10:05, 120 after
    r.ok_all(evs);
    assert_eq!(
        r.one(Rule::DistributedCredentialStuffing).ts,
        "2025-11-21T10:05:39.500Z"
    );
}

#[test]
fn distributed_credential_stuffing_out_of_order_failure_within_lateness_completes_the_window() {
    let mut r = Run::new(dcs_only());
    let evs = campaign("checkout", T0, 500, 200, 60, 200);
    r.ok_all(evs[..199].to_vec()); // up to 10:01:39
    let late = evs[199].clone().at(T0 + 70 * SEC);
    r.ok(&late);
    let s = r.one(Rule::DistributedCredentialStuffing);
    assert_eq!(s.evidence.counts.failures, Some(200), "{}", s.to_json());
}

#[test]
fn distributed_credential_stuffing_late_failure_is_dropped_and_does_not_complete_the_window() {
    let mut r = Run::new(dcs_only());
    let evs = campaign("checkout", T0, 500, 200, 60, 200);
    r.ok_all(evs[..199].to_vec()); // up to 10:01:39
    for _ in 0..3 {
        // Stream time is the third-newest event time: three events move it.
        r.ok(&Ev::success(T0 + 170 * SEC, BYSTANDER, "member1").service("checkout"));
    }
    assert_eq!(
        r.feed(&evs[199].clone().at(T0 + 100 * SEC)),
        Processed::Late
    );
    assert_no_signals(&r);
}

#[test]
fn distributed_credential_stuffing_counts_each_service_separately() {
    let mut r = Run::new(dcs_only());
    let a = campaign("checkout", T0, 500, 150, 60, 150);
    let b = campaign("login-api", T0 + 250, 500, 150, 60, 150);
    r.ok_all(merged(a, b));
    assert_no_signals(&r);
}

#[test]
fn distributed_credential_stuffing_still_fires_after_a_wild_first_event_was_overruled() {
    let mut r = Run::new(dcs_only());
    // The very first event carries a broken clock (2099); the next normal one overrules it.
    let wild = Ev::success(4_070_908_800_000, BYSTANDER, "member1").service("checkout");
    assert!(matches!(
        r.feed(&wild),
        Processed::Accepted | Processed::Invalid(_)
    ));
    r.ok_all(campaign("checkout", T0, 500, 240, 60, 240));
    assert_eq!(
        r.count(Rule::DistributedCredentialStuffing),
        1,
        "{}",
        r.dump()
    );
}

// =======================================================================================
// campaign_participant: while a campaign is active on the service, an IP failing there on
// >= 2 distinct accounts (medium)

fn participant_cfg() -> Config {
    only(&[
        Rule::DistributedCredentialStuffing,
        Rule::CampaignParticipant,
    ])
}

/// 200 failures, one every 500 ms: 50 IPs (nth_ip(1000..1050)), each on 4 accounts.
fn four_accounts_each(start: i64) -> Vec<Ev> {
    (0..200u32)
        .map(|i| {
            Ev::failure(
                start + i as i64 * 500,
                &nth_ip(1000 + i % 50),
                &format!("victim{i}"),
            )
        })
        .collect()
}

fn campaign_ips() -> Vec<String> {
    let mut v: Vec<String> = (0..50).map(|i| nth_ip(1000 + i)).collect();
    v.sort();
    v
}

/// A campaign declared at about 10:01:45; returns the run and the last campaign event time.
fn active_campaign() -> (Run, i64) {
    let mut r = Run::new(participant_cfg());
    let evs = four_accounts_each(T0 + 5 * SEC);
    let last = evs.last().unwrap().ts;
    r.ok_all(evs);
    assert_eq!(
        r.count(Rule::DistributedCredentialStuffing),
        1,
        "{}",
        r.dump()
    );
    (r, last)
}

#[test]
fn campaign_participant_sweeps_recent_failing_ips_when_the_campaign_starts() {
    let mut r = Run::new(participant_cfg());
    let one_account = nth_ip(5);
    let typo = nth_ip(6);
    r.ok(&Ev::failure(T0, &one_account, "member1"));
    r.ok(&Ev::failure(T0 + SEC, &typo, "member2"));
    r.ok(&Ev::failure(T0 + 2 * SEC, &typo, "member2"));
    r.ok_all(four_accounts_each(T0 + 5 * SEC));
    let dcs = r.one(Rule::DistributedCredentialStuffing);
    let v = r.of(Rule::CampaignParticipant);
    let mut ips: Vec<String> = v.iter().map(|s| s.entity.value.clone()).collect();
    ips.sort();
    assert_eq!(
        ips,
        campaign_ips(),
        "every campaign IP exactly once, no bystanders:\n{}",
        r.dump()
    );
    for s in &v {
        assert_eq!(s.entity.kind, EntityType::Ip);
        assert_eq!(s.severity, Severity::Medium);
        assert_eq!(s.ts, dcs.ts, "swept when the campaign was declared");
        assert!(s.evidence.counts.distinct_accounts.unwrap() >= 2);
        assert_eq!(s.evidence.thresholds.distinct_accounts, Some(2));
        assert_eq!(
            s.evidence.because.as_deref(),
            Some("distributed_credential_stuffing on web")
        );
        assert_eq!(s.window, "5m");
    }
}

#[test]
fn campaign_participant_flags_an_ip_failing_on_two_accounts_while_the_campaign_is_active() {
    let (mut r, _) = active_campaign();
    let x = nth_ip(7);
    let y = nth_ip(8);
    // Straddling 10:05:00.
    r.ok(&Ev::failure(T0 + 4 * MIN + 50 * SEC, &x, "other1"));
    r.ok(&Ev::failure(T0 + 4 * MIN + 52 * SEC, &y, "other3"));
    r.ok(&Ev::failure(T0 + 4 * MIN + 55 * SEC, &y, "other3"));
    assert!(r.on(Rule::CampaignParticipant, &x).is_empty());
    r.ok(&Ev::failure(T0 + 5 * MIN + 10 * SEC, &x, "other2"));
    let v = r.on(Rule::CampaignParticipant, &x);
    assert_eq!(v.len(), 1, "{}", r.dump());
    assert_eq!(v[0].ts, "2025-11-21T10:05:10Z");
    assert_eq!(v[0].evidence.counts.distinct_accounts, Some(2));
    assert!(
        r.on(Rule::CampaignParticipant, &y).is_empty(),
        "one account twice is a typo, not a campaign"
    );
    // More accounts within the cooldown: nothing new.
    r.ok(&Ev::failure(T0 + 5 * MIN + 20 * SEC, &x, "other4"));
    r.ok(&Ev::failure(T0 + 5 * MIN + 30 * SEC, &x, "other5"));
    assert_eq!(r.on(Rule::CampaignParticipant, &x).len(), 1);
}

#[test]
fn campaign_participant_does_not_fire_after_the_campaign_window_has_passed() {
    let (mut r, last) = active_campaign();
    let x = nth_ip(7);
    r.ok(&Ev::failure(last + 6 * MIN, &x, "other1"));
    r.ok(&Ev::failure(last + 6 * MIN + 10 * SEC, &x, "other2"));
    assert!(
        r.on(Rule::CampaignParticipant, &x).is_empty(),
        "{}",
        r.dump()
    );
}

#[test]
fn campaign_participant_failures_five_minutes_apart_are_not_in_one_window() {
    let mut r = Run::new(participant_cfg());
    // A campaign kept up for 9 minutes: 2 failures per second from 50 IPs.
    let evs: Vec<Ev> = (0..1080u32)
        .map(|i| {
            Ev::failure(
                T0 + i as i64 * 500,
                &nth_ip(1000 + i % 50),
                &format!("victim{}", i % 500),
            )
        })
        .collect();
    let x = nth_ip(7);
    let y = nth_ip(8);
    let extra = vec![
        Ev::failure(T0 + 2 * MIN, &x, "other1"),
        Ev::failure(T0 + 7 * MIN, &x, "other2"),
        Ev::failure(T0 + 2 * MIN, &y, "other1"),
        Ev::failure(T0 + 7 * MIN - SEC, &y, "other2"),
    ];
    r.ok_all(merged(evs, extra));
    assert!(
        r.on(Rule::CampaignParticipant, &x).is_empty(),
        "{}",
        r.dump()
    );
    assert_eq!(r.on(Rule::CampaignParticipant, &y).len(), 1, "{}", r.dump());
}

#[test]
fn campaign_participant_out_of_order_failure_within_lateness_completes_the_pair() {
    let (mut r, last) = active_campaign();
    let x = nth_ip(7);
    r.ok(&Ev::failure(last + 5 * SEC, &x, "other1"));
    r.ok(&Ev::failure(last - 15 * SEC, &x, "other2"));
    assert_eq!(r.on(Rule::CampaignParticipant, &x).len(), 1, "{}", r.dump());
}

#[test]
fn campaign_participant_late_failure_is_dropped_and_does_not_complete_the_pair() {
    let (mut r, last) = active_campaign();
    let x = nth_ip(7);
    r.ok(&Ev::failure(last, &x, "other1"));
    advance(&mut r, last + 90 * SEC);
    assert_eq!(
        r.feed(&Ev::failure(last + 10 * SEC, &x, "other2")),
        Processed::Late
    );
    assert!(
        r.on(Rule::CampaignParticipant, &x).is_empty(),
        "{}",
        r.dump()
    );
}

// =======================================================================================
// account_takeover: a sign-in where an attack is under way, within 1h

fn ato_after(rules: &[Rule]) -> Config {
    let mut v = rules.to_vec();
    v.push(Rule::AccountTakeover);
    only(&v)
}

/// alice brute-forced from ATTACKER: bruteforce fires at 10:01:30.
fn alice_bruteforced() -> Run {
    let mut r = Run::new(ato_after(&[Rule::Bruteforce]));
    r.ok_all(failures_on("alice", ATTACKER, T0, 10 * SEC, 10));
    assert_eq!(r.count(Rule::Bruteforce), 1);
    r
}

#[test]
fn account_takeover_success_after_bruteforce_from_another_ip_is_high() {
    let mut r = alice_bruteforced();
    r.ok(&Ev::success(T0 + 10 * MIN, BYSTANDER, "alice"));
    let s = r.one(Rule::AccountTakeover);
    assert_eq!(s.entity.kind, EntityType::Account);
    assert_eq!(s.entity.value, "alice");
    assert_eq!(s.severity, Severity::High);
    assert_eq!(s.ts, "2025-11-21T10:10:00Z");
    assert_eq!(s.window, "1h");
    assert_eq!(s.evidence.because.as_deref(), Some("bruteforce on alice"));
    assert_eq!(s.evidence.counts.successes, Some(1));
    assert_eq!(s.evidence.thresholds.successes, Some(1));
    assert_eq!(s.evidence.sample_ips, vec![BYSTANDER.to_string()]);
    assert_eq!(s.evidence.sample_accounts, vec!["alice".to_string()]);
}

#[test]
fn account_takeover_success_after_bruteforce_from_the_attacking_ip_is_critical() {
    let mut r = alice_bruteforced();
    r.ok(&Ev::success(T0 + 10 * MIN, ATTACKER, "alice"));
    let s = r.one(Rule::AccountTakeover);
    assert_eq!(s.severity, Severity::Critical);
    assert_eq!(s.evidence.because.as_deref(), Some("bruteforce on alice"));
}

#[test]
fn account_takeover_re_emits_when_severity_rises_but_not_within_cooldown_otherwise() {
    let mut r = alice_bruteforced();
    r.ok(&Ev::success(T0 + 10 * MIN, BYSTANDER, "alice"));
    r.ok(&Ev::success(T0 + 11 * MIN, BYSTANDER, "alice"));
    assert_eq!(r.count(Rule::AccountTakeover), 1);
    r.ok(&Ev::success(T0 + 12 * MIN, ATTACKER, "alice"));
    r.ok(&Ev::success(T0 + 13 * MIN, ATTACKER, "alice"));
    let v = r.of(Rule::AccountTakeover);
    assert_eq!(
        v.iter().map(|s| s.severity).collect::<Vec<_>>(),
        vec![Severity::High, Severity::Critical],
        "{}",
        r.dump()
    );
    assert_eq!(v[1].ts_ms, T0 + 12 * MIN);
}

#[test]
fn account_takeover_session_create_counts_as_a_successful_sign_in() {
    let mut r = alice_bruteforced();
    r.ok(&Ev::session(T0 + 10 * MIN, BYSTANDER, "alice"));
    assert_eq!(r.one(Rule::AccountTakeover).ts_ms, T0 + 10 * MIN);
}

#[test]
fn account_takeover_success_arriving_out_of_order_within_lateness_is_still_a_takeover() {
    let mut r = alice_bruteforced();
    advance(&mut r, T0 + 10 * MIN);
    r.ok(&Ev::success(T0 + 10 * MIN - 30 * SEC, BYSTANDER, "alice"));
    assert_eq!(r.one(Rule::AccountTakeover).ts, "2025-11-21T10:09:30Z");
}

#[test]
fn account_takeover_late_success_is_dropped() {
    let mut r = alice_bruteforced();
    advance(&mut r, T0 + 10 * MIN);
    assert_eq!(
        r.feed(&Ev::success(T0 + 8 * MIN, BYSTANDER, "alice")),
        Processed::Late
    );
    assert_eq!(r.count(Rule::AccountTakeover), 0, "{}", r.dump());
}

#[test]
fn account_takeover_only_within_an_hour_of_the_attack() {
    let mut r = Run::new(ato_after(&[Rule::Bruteforce]));
    let mut evs = failures_on("alice", ATTACKER, T0, 10 * SEC, 10);
    evs.extend(failures_on("bob", ATTACKER, T0 + 5 * SEC, 10 * SEC, 10));
    evs.sort_by_key(|e| e.ts);
    r.ok_all(evs);
    assert_eq!(r.count(Rule::Bruteforce), 2);
    // bruteforce fired at 10:01:30 (alice) and 10:01:35 (bob).
    advance(&mut r, T0 + 60 * MIN); // a quiet hour: traffic moves time, not one event
    r.ok(&Ev::success(T0 + 90 * SEC + 59 * MIN, BYSTANDER, "alice"));
    r.ok(&Ev::success(T0 + 95 * SEC + 61 * MIN, BYSTANDER, "bob"));
    let v = r.of(Rule::AccountTakeover);
    assert_eq!(v.len(), 1, "{}", r.dump());
    assert_eq!(v[0].entity.value, "alice");
}

#[test]
fn account_takeover_after_distributed_bruteforce() {
    let mut r = Run::new(ato_after(&[Rule::DistributedBruteforce]));
    r.ok_all(rotating("alice", T0, 10 * SEC, 10, 5));
    assert_eq!(r.count(Rule::DistributedBruteforce), 1);
    r.ok(&Ev::success(T0 + 5 * MIN, BYSTANDER, "alice"));
    let s = r.one(Rule::AccountTakeover);
    assert_eq!(s.severity, Severity::High);
    assert_eq!(
        s.evidence.because.as_deref(),
        Some("distributed_bruteforce on alice")
    );
}

#[test]
fn account_takeover_success_from_a_credential_stuffing_ip_is_critical() {
    let mut r = Run::new(ato_after(&[Rule::CredentialStuffing]));
    r.ok_all(stuffing(ATTACKER, T0, 10 * SEC, 20, 10));
    assert_eq!(r.count(Rule::CredentialStuffing), 1);
    r.ok(&Ev::success(T0 + 5 * MIN, ATTACKER, "zed"));
    let s = r.one(Rule::AccountTakeover);
    assert_eq!(s.entity.value, "zed");
    assert_eq!(s.severity, Severity::Critical);
    assert_eq!(
        s.evidence.because.as_deref(),
        Some("credential_stuffing from 203.0.113.7")
    );
    assert_eq!(s.ts_ms, T0 + 5 * MIN);
}

#[test]
fn account_takeover_success_from_a_slow_stuffing_ip_is_critical() {
    let mut r = Run::new(ato_after(&[Rule::CredentialStuffingSlow]));
    r.ok_all(stuffing(ATTACKER, T0, 10 * MIN, 100, 10));
    assert_eq!(r.count(Rule::CredentialStuffingSlow), 1);
    r.ok(&Ev::success(T0 + 99 * 10 * MIN + 30 * MIN, ATTACKER, "zed"));
    let s = r.one(Rule::AccountTakeover);
    assert_eq!(s.severity, Severity::Critical);
    assert_eq!(
        s.evidence.because.as_deref(),
        Some("credential_stuffing_slow from 203.0.113.7")
    );
}

#[test]
fn account_takeover_success_from_an_enumerating_ip_is_critical() {
    let mut r = Run::new(ato_after(&[Rule::UserEnumeration]));
    r.ok_all(probing(ATTACKER, T0, 10 * SEC, 10, 5));
    assert_eq!(r.count(Rule::UserEnumeration), 1);
    r.ok(&Ev::success(T0 + 5 * MIN, ATTACKER, "erin"));
    let s = r.one(Rule::AccountTakeover);
    assert_eq!(s.severity, Severity::Critical);
    assert_eq!(
        s.evidence.because.as_deref(),
        Some("user_enumeration from 203.0.113.7")
    );
}

#[test]
fn account_takeover_success_from_a_campaign_participant_is_critical() {
    let mut r = Run::new(ato_after(&[
        Rule::DistributedCredentialStuffing,
        Rule::CampaignParticipant,
    ]));
    let evs = four_accounts_each(T0);
    let last = evs.last().unwrap().ts;
    r.ok_all(evs);
    let ip = nth_ip(1000);
    assert_eq!(r.on(Rule::CampaignParticipant, &ip).len(), 1);
    r.ok(&Ev::success(last + MIN, &ip, "frank"));
    let s = r.one(Rule::AccountTakeover);
    assert_eq!(s.entity.value, "frank");
    assert_eq!(s.severity, Severity::Critical);
    assert_eq!(
        s.evidence.because.as_deref(),
        Some(format!("campaign_participant from {ip}").as_str())
    );
}

#[test]
fn account_takeover_looks_back_at_earlier_sign_ins_when_an_ip_is_flagged() {
    let mut r = Run::new(ato_after(&[Rule::CredentialStuffing]));
    r.ok(&Ev::success(T0 - 61 * MIN, ATTACKER, "carol")); // more than 1h before the flag
    advance(&mut r, T0 - 30 * MIN);
    r.ok(&Ev::success(T0, ATTACKER, "bob"));
    assert_no_signals(&r);
    r.ok_all(stuffing(ATTACKER, T0 + 10 * MIN, 10 * SEC, 20, 10));
    let cs = r.one(Rule::CredentialStuffing);
    let s = r.one(Rule::AccountTakeover);
    assert_eq!(s.entity.value, "bob");
    assert_eq!(
        s.ts, "2025-11-21T10:00:00Z",
        "the time of the earlier sign-in"
    );
    assert_eq!(s.severity, Severity::Critical);
    assert_eq!(
        s.evidence.because.as_deref(),
        Some("credential_stuffing from 203.0.113.7")
    );
    assert!(s.summary.contains("looking back"), "{}", s.summary);
    assert!(cs.ts_ms > s.ts_ms);
}

#[test]
fn account_takeover_is_not_caused_by_ip_velocity_alone() {
    let mut r = Run::new(ato_after(&[Rule::IpVelocity]));
    let fast = nth_ip(9);
    r.ok_all((0..130).map(|i| Ev::success(T0 + i * 400, &fast, &format!("u{}", i % 20))));
    assert_eq!(r.count(Rule::IpVelocity), 1);
    r.ok(&Ev::success(T0 + 60 * SEC, &fast, "dave"));
    assert_eq!(r.count(Rule::AccountTakeover), 0, "{}", r.dump());
}

// =======================================================================================
// Normalization: allowlist, trusted proxies, IPv6 prefixes

/// 12 failures on alice and 120 on 20 other accounts from one IP within a minute: enough
/// for bruteforce on alice, credential_stuffing and ip_velocity on the IP.
fn noisy_attack(ip: &str) -> Vec<Ev> {
    (0..132i64)
        .map(|i| {
            let account = if i % 11 == 0 {
                "alice".to_string()
            } else {
                format!("user{}", i % 20)
            };
            Ev::failure(T0 + i * 450, ip, &account)
        })
        .collect()
}

#[test]
fn allowlisted_ip_gets_no_ip_signals_but_its_account_is_still_flagged() {
    let mut control = Run::new(Config::default());
    control.ok_all(noisy_attack(ATTACKER));
    assert!(
        !control.on(Rule::CredentialStuffing, ATTACKER).is_empty(),
        "{}",
        control.dump()
    );
    assert!(
        !control.on(Rule::IpVelocity, ATTACKER).is_empty(),
        "{}",
        control.dump()
    );

    let mut cfg = Config::default();
    cfg.normalize.allowlist = vec!["203.0.113.0/24".to_string()];
    let mut r = Run::new(cfg);
    r.ok_all(noisy_attack(ATTACKER));
    let ip_signals: Vec<&Signal> = r
        .signals
        .iter()
        .filter(|s| s.entity.kind == EntityType::Ip)
        .collect();
    assert!(ip_signals.is_empty(), "{}", r.dump());
    assert_eq!(r.on(Rule::Bruteforce, "alice").len(), 1, "{}", r.dump());
    // alice is flagged: a sign-in from elsewhere is a takeover.
    r.ok(&Ev::success(T0 + 5 * MIN, BYSTANDER, "alice"));
    assert_eq!(
        r.on(Rule::AccountTakeover, "alice").len(),
        1,
        "{}",
        r.dump()
    );
}

#[test]
fn attack_through_a_trusted_proxy_is_attributed_to_the_client() {
    let mut r = Run::new(cs_only());
    r.ok_all(
        stuffing("10.0.0.5", T0, 10 * SEC, 20, 10)
            .into_iter()
            .map(|e| e.forwarded_for(&["198.51.100.23"])),
    );
    let s = r.one(Rule::CredentialStuffing);
    assert_eq!(s.entity.value, "198.51.100.23");
}

#[test]
fn client_ip_is_the_rightmost_untrusted_hop_so_a_spoofed_leftmost_entry_is_ignored() {
    let mut r = Run::new(cs_only());
    let evs = stuffing("10.0.0.5", T0, 10 * SEC, 20, 10);
    r.ok_all(evs.into_iter().enumerate().map(|(i, e)| {
        let spoofed = format!("1.1.1.{}", i + 1);
        e.forwarded_for(&[spoofed.as_str(), "198.51.100.23", "192.168.1.9"])
    }));
    assert_eq!(
        r.one(Rule::CredentialStuffing).entity.value,
        "198.51.100.23"
    );
}

#[test]
fn forwarded_for_is_ignored_when_ip_is_not_a_trusted_proxy() {
    let mut r = Run::new(cs_only());
    r.ok_all(
        stuffing(ATTACKER, T0, 10 * SEC, 20, 10)
            .into_iter()
            .enumerate()
            .map(|(i, e)| {
                let spoofed = format!("1.1.1.{}", i + 1);
                e.forwarded_for(&[spoofed.as_str()])
            }),
    );
    assert_eq!(r.one(Rule::CredentialStuffing).entity.value, ATTACKER);
}

#[test]
fn ipv6_attacker_rotating_within_one_64_is_one_entity() {
    let mut r = Run::new(cs_only());
    r.ok_all((0..20).map(|i| {
        Ev::failure(
            T0 + i * 10 * SEC,
            &format!("2001:db8:1:2:{:x}::{:x}", i * 7 + 1, i + 1),
            &format!("user{}", i % 10),
        )
    }));
    // Another /64 next door stays separate (and quiet).
    r.ok_all((0..5).map(|i| {
        Ev::failure(
            T0 + 200 * SEC + i * SEC,
            "2001:db8:1:3::1",
            &format!("user{i}"),
        )
    }));
    let s = r.one(Rule::CredentialStuffing);
    assert_eq!(s.entity.value, "2001:db8:1:2::/64");
    assert_eq!(s.evidence.counts.failures, Some(20));
}

// =======================================================================================
// Duplicates, wild timestamps, signal ids

#[test]
fn duplicates_of_one_event_id_cannot_push_bruteforce_over_the_threshold() {
    let mut r = Run::new(bruteforce_only());
    let evs = failures_on("alice", ATTACKER, T0, 10 * SEC, 10);
    r.ok_all(evs[..9].to_vec());
    for _ in 0..5 {
        assert_eq!(r.feed(&evs[8]), Processed::Duplicate);
    }
    // A redelivery with a different timestamp is the same event too.
    assert_eq!(
        r.feed(&evs[8].clone().at(T0 + 85 * SEC)),
        Processed::Duplicate
    );
    assert_no_signals(&r);
    let st = r.engine.stats();
    assert_eq!((st.duplicates, st.login_failure), (6, 9));
    r.ok(&evs[9]);
    assert_eq!(r.one(Rule::Bruteforce).evidence.counts.failures, Some(10));
    assert_eq!(r.feed(&evs[9]), Processed::Duplicate);
    assert_eq!(r.count(Rule::Bruteforce), 1);
}

#[test]
fn an_event_id_seen_again_after_the_dedup_window_is_processed() {
    let mut r = Run::new(bruteforce_only());
    let ev = Ev::failure(T0, ATTACKER, "alice").event_id("redelivered-much-later");
    r.ok(&ev);
    for m in 1..=20 {
        advance(&mut r, T0 + m * MIN);
    }
    assert_eq!(r.feed(&ev.clone().at(T0 + 20 * MIN)), Processed::Accepted);
}

#[test]
fn a_wild_first_event_does_not_keep_later_event_ids_in_dedup_forever() {
    let mut r = Run::new(bruteforce_only());
    let _ = r.feed(&Ev::failure(4_070_908_800_000, BYSTANDER, "bob")); // overruled below
    let ev = Ev::failure(T0, ATTACKER, "alice").event_id("redelivered-much-later");
    r.ok(&ev);
    for m in 1..=20 {
        advance(&mut r, T0 + m * MIN);
    }
    assert_eq!(
        r.feed(&ev.clone().at(T0 + 20 * MIN)),
        Processed::Accepted,
        "20 minutes is outside time.dedup_window"
    );
}

#[test]
fn a_wild_2099_timestamp_mid_stream_is_rejected_and_does_not_make_the_rest_late() {
    let mut r = Run::new(bruteforce_only());
    r.ok_all(failures_on("alice", ATTACKER, T0, 10 * SEC, 5));
    let wild = Ev::failure(4_070_908_800_000, ATTACKER, "alice"); // 2099-01-01
    match r.feed(&wild) {
        Processed::Invalid(e) => assert_eq!(e.reason, InvalidReason::TimestampJump),
        other => panic!("expected timestamp_jump, got {other:?}"),
    }
    r.ok_all(failures_on("alice", ATTACKER, T0 + 50 * SEC, 10 * SEC, 5));
    assert_eq!(r.one(Rule::Bruteforce).ts_ms, T0 + 90 * SEC);
    let st = r.engine.stats();
    assert_eq!(
        (
            st.late,
            st.invalid[InvalidReason::TimestampJump.index()],
            st.login_failure
        ),
        (0, 1, 10)
    );
}

#[test]
fn a_wild_first_event_is_overruled_by_the_next_normal_one() {
    let mut r = Run::new(bruteforce_only());
    let _ = r.feed(&Ev::failure(4_070_908_800_000, BYSTANDER, "bob"));
    r.ok_all(failures_on("alice", ATTACKER, T0, 10 * SEC, 10));
    assert_eq!(r.one(Rule::Bruteforce).ts_ms, T0 + 90 * SEC);
    assert_eq!(r.engine.max_event_ms(), Some(T0 + 90 * SEC));
    assert_eq!(r.engine.stats().late, 0);
}

#[test]
fn a_forward_gap_confirmed_by_three_events_moves_time() {
    let mut r = Run::new(bruteforce_only());
    advance(&mut r, T0); // time is established by three events
    let later = T0 + 3 * HOUR;
    assert!(
        matches!(r.feed(&tick(later)), Processed::Invalid(ref e) if e.reason == InvalidReason::TimestampJump)
    );
    assert!(
        matches!(r.feed(&tick(later + 10)), Processed::Invalid(ref e) if e.reason == InvalidReason::TimestampJump)
    );
    assert_eq!(r.feed(&tick(later + 20)), Processed::Accepted);
    assert_eq!(r.feed(&tick(T0 + SEC)), Processed::Late);
}

#[test]
fn signal_id_is_identical_for_identical_input_and_differs_across_entities() {
    let mut evs = failures_on("alice", ATTACKER, T0, 10 * SEC, 10);
    evs.extend(failures_on("bob", BYSTANDER, T0, 10 * SEC, 10));
    evs.sort_by_key(|e| e.ts);
    let mut a = Run::new(bruteforce_only());
    a.ok_all(evs.clone());
    let mut b = Run::new(bruteforce_only());
    b.ok_all(evs);
    assert_eq!(a.count(Rule::Bruteforce), 2);
    let ids = |r: &Run| {
        r.signals
            .iter()
            .map(|s| s.signal_id.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&a), ids(&b));
    let v = a.of(Rule::Bruteforce);
    assert_eq!(v[0].ts, v[1].ts, "same trigger time");
    assert_ne!(v[0].signal_id, v[1].signal_id, "different entities");
    for s in &a.signals {
        assert_eq!(s.signal_id.len(), 32);
        assert!(s.signal_id.bytes().all(|b| b.is_ascii_hexdigit()));
    }
    assert_eq!(a.dump(), b.dump());
}

#[test]
fn a_custom_window_and_threshold_from_config_apply() {
    let mut cfg = bruteforce_only();
    cfg.rules.bruteforce.window = Dur::mins(1);
    cfg.rules.bruteforce.min_failures = 3;
    let mut r = Run::new(cfg);
    r.ok_all(failures_at(
        "alice",
        ATTACKER,
        &[T0, T0 + 30 * SEC, T0 + 60 * SEC],
    ));
    assert_no_signals(&r);
    r.ok(&Ev::failure(T0 + 61 * SEC, ATTACKER, "alice"));
    let s = r.one(Rule::Bruteforce);
    assert_eq!(
        (s.window.as_str(), s.evidence.thresholds.failures),
        ("1m", Some(3))
    );
}
