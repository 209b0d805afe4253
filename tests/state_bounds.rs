//! State stays bounded: caps hold under any input, and a flood of one-off IPs cannot
//! push out an attacker that keeps attacking.

use atowatch::config::Config;
use atowatch::engine::Engine;
use atowatch::signal::Signal;
use proptest::prelude::*;

const T0: i64 = 1_763_683_200_000;

fn event(ts: i64, ip: &str, login: &str, failure: bool) -> String {
    format!(
        r#"{{"type":"user.login","outcome":"{}","ts":{ts},"ip":"{ip}","user":{{"login":"{login}","exists":true}},"service":"web"}}"#,
        if failure { "failure" } else { "success" }
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn tracked_keys_never_exceed_their_caps(
        max_ips in 1usize..64,
        max_accounts in 1usize..64,
        steps in proptest::collection::vec((0u32..5000, 0u32..500, 0i64..90_000, any::<bool>()), 1..600),
    ) {
        let mut cfg = Config::default();
        cfg.state.max_ips = max_ips;
        cfg.state.max_accounts = max_accounts;
        let mut e = Engine::new(cfg);
        let mut out: Vec<Signal> = Vec::new();
        let mut ts = T0;
        for (ip, acct, dt, fail) in steps {
            ts += dt;
            let ip = format!("198.51.{}.{}", ip / 256 % 256, ip % 256);
            e.process_json(event(ts, &ip, &format!("user{acct}"), fail).as_bytes(), &mut out);
            let st = e.state_size();
            prop_assert!(st.ips <= max_ips, "{} IPs > cap {}", st.ips, max_ips);
            prop_assert!(st.accounts <= max_accounts, "{} accounts > cap {}", st.accounts, max_accounts);
        }
    }
}

#[test]
fn a_flood_of_random_ips_is_capped_and_evictions_are_counted_but_the_attacker_is_still_caught() {
    let mut cfg = Config::default();
    cfg.state.max_ips = 5_000;
    cfg.state.max_accounts = 5_000;
    let mut e = Engine::new(cfg);
    let mut out: Vec<Signal> = Vec::new();
    let mut x: u64 = 0x9e37_79b9;
    let mut ts = T0;
    for i in 0..200_000u64 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        ts += 5;
        let ip = format!(
            "{}.{}.{}.{}",
            11 + (x % 200),
            (x >> 8) % 256,
            (x >> 16) % 256,
            (x >> 24) % 256
        );
        e.process_json(
            event(ts, &ip, &format!("u{}", x % 1_000_000), x % 3 == 0).as_bytes(),
            &mut out,
        );
        if i % 1000 == 0 {
            // One attacker keeps going through the flood: 200 failures on 200 accounts.
            e.process_json(
                event(ts, "203.0.113.66", &format!("victim{}", i / 1000), true).as_bytes(),
                &mut out,
            );
        }
    }
    let st = e.state_size();
    assert!(st.ips <= 5_000 && st.accounts <= 5_000, "{st:?}");
    assert!(st.evicted > 100_000, "evictions are counted: {st:?}");
    assert!(
        out.iter()
            .any(|s| s.rule.as_str() == "credential_stuffing_slow"
                && s.entity.value == "203.0.113.66"),
        "the persistent attacker survives eviction: {:?}",
        out.iter().map(|s| &s.summary).collect::<Vec<_>>()
    );
}
