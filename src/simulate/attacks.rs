//! Attack scheduling and generation.
//!
//! Fast attacks run one at a time after the warm-up, spread evenly over the
//! rest of the run, so that each detector hit can be attributed to exactly one
//! label. The 20 h low-and-slow stuffing necessarily runs alongside them.
//!
//! Attacker addresses come only from ranges the benign population never uses:
//! 203.0.113.0/24 and 198.51.100.0/24 for single-source attacks, 2001:db8::/32
//! for the IPv6 enumerator, 45/8 and 185/8 for the distributed campaign.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::format::{FxSet, human_duration, rfc3339_ms};
use super::labels::{AttackLabel, SkippedAttack};
use super::population::{
    BenignGuards, CampaignGuard, Exclusion, FIRST_NAMES, LAST_NAMES, NONE, Population, below,
    chance, shuffle,
};
use super::{
    AttackKind, F_ATTACK, F_SPOOF, HOUR_MS, KIND_FAILURE, KIND_SESSION, MINUTE_MS, SECOND_MS,
    SERVICES, SVC_ACCOUNTS, SVC_CHECKOUT, SVC_MOBILE, SimError, SimOptions, UA_ATTACK, UA_SCRIPTED,
    WARMUP_MS, World,
};

const BF_SPAN: i64 = 3 * MINUTE_MS;
const DBF_SPAN: i64 = 11 * MINUTE_MS;
const CS_SPAN: i64 = 9 * MINUTE_MS;
const UE_SPAN: i64 = 5 * MINUTE_MS;
const IPV_SPAN: i64 = 2 * MINUTE_MS;
const DCS_SPAN: i64 = 7 * MINUTE_MS;
/// Quiet time between fast attacks, and after the last one.
const MIN_GAP: i64 = 5 * MINUTE_MS;
const TAIL: i64 = 5 * MINUTE_MS;
pub(crate) const SLOW_SPAN: i64 = 20 * HOUR_MS;
pub(crate) const SLOW_NEEDED: i64 = 21 * HOUR_MS;

/// Bruteforce runs twice: once failing throughout, once ending in a takeover.
fn spans(kind: AttackKind) -> &'static [i64] {
    match kind {
        AttackKind::Bruteforce => &[BF_SPAN, BF_SPAN],
        AttackKind::DistributedBruteforce => &[DBF_SPAN],
        AttackKind::CredentialStuffing => &[CS_SPAN],
        AttackKind::UserEnumeration => &[UE_SPAN],
        AttackKind::IpVelocity => &[IPV_SPAN],
        AttackKind::DistributedCredentialStuffing => &[DCS_SPAN],
        AttackKind::CredentialStuffingSlow | AttackKind::AccountTakeover => &[],
    }
}

fn fast_needed(kinds: &BTreeSet<AttackKind>) -> i64 {
    let spans: Vec<i64> = kinds
        .iter()
        .flat_map(|k| spans(*k).iter().copied())
        .collect();
    if spans.is_empty() {
        return 0;
    }
    WARMUP_MS + spans.iter().sum::<i64>() + (spans.len() as i64 - 1) * MIN_GAP + TAIL
}

fn names(kinds: &BTreeSet<AttackKind>) -> String {
    kinds
        .iter()
        .map(|k| k.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn check(kinds: &BTreeSet<AttackKind>, duration_ms: i64) -> Result<(), SimError> {
    let takeover_source = [
        AttackKind::Bruteforce,
        AttackKind::CredentialStuffing,
        AttackKind::DistributedCredentialStuffing,
    ];
    if kinds.contains(&AttackKind::AccountTakeover)
        && !takeover_source.iter().any(|k| kinds.contains(k))
    {
        return Err(SimError::NoTakeoverSource);
    }
    if kinds.contains(&AttackKind::CredentialStuffingSlow) && duration_ms < SLOW_NEEDED {
        return Err(SimError::DurationTooShort {
            what: format!(
                "credential_stuffing_slow (it spreads over {})",
                human_duration(SLOW_SPAN)
            ),
            needed_ms: SLOW_NEEDED,
            duration_ms,
        });
    }
    let needed = fast_needed(kinds);
    if needed > duration_ms {
        let fast: BTreeSet<AttackKind> = kinds
            .iter()
            .copied()
            .filter(|k| !spans(*k).is_empty())
            .collect();
        return Err(SimError::DurationTooShort {
            what: format!(
                "the enabled attacks ({}), run one after another with {} gaps",
                names(&fast),
                human_duration(MIN_GAP)
            ),
            needed_ms: needed,
            duration_ms,
        });
    }
    Ok(())
}

pub(crate) fn fits(kinds: &[AttackKind], duration_ms: i64) -> bool {
    check(&kinds.iter().copied().collect(), duration_ms).is_ok()
}

pub(crate) struct Slot {
    pub kind: AttackKind,
    pub instance: u8,
    pub start: i64,
    pub span: i64,
}

pub(crate) struct Plan {
    pub slots: Vec<Slot>,
    pub skipped: Vec<SkippedAttack>,
    pub ato: bool,
}

pub(crate) fn plan(opts: &SimOptions, rng: &mut ChaCha8Rng) -> Result<Plan, SimError> {
    let set: BTreeSet<AttackKind> = opts.attacks.iter().copied().collect();
    check(&set, opts.duration_ms)?;

    let mut fast: Vec<(AttackKind, u8, i64)> = Vec::new();
    for &kind in &set {
        for (i, &span) in spans(kind).iter().enumerate() {
            fast.push((kind, i as u8, span));
        }
    }
    shuffle(rng, &mut fast);
    let mut slots = Vec::new();
    if !fast.is_empty() {
        let total: i64 = fast.iter().map(|f| f.2).sum();
        let free = opts.duration_ms - WARMUP_MS - TAIL - total;
        let gap = if fast.len() > 1 {
            free / (fast.len() as i64 - 1)
        } else {
            0
        };
        let mut t = opts.start_ms + WARMUP_MS;
        for (kind, instance, span) in fast {
            slots.push(Slot {
                kind,
                instance,
                start: t,
                span,
            });
            t += span + gap;
        }
    }
    if set.contains(&AttackKind::CredentialStuffingSlow) {
        slots.push(Slot {
            kind: AttackKind::CredentialStuffingSlow,
            instance: 0,
            start: opts.start_ms + WARMUP_MS,
            span: SLOW_SPAN,
        });
    }

    let mut skipped = Vec::new();
    for kind in AttackKind::ALL {
        if set.contains(&kind) {
            continue;
        }
        let mut with = set.clone();
        with.insert(kind);
        let reason = match check(&with, opts.duration_ms) {
            Err(e) => format!("not enabled: {e}"),
            Ok(()) => "not enabled".to_string(),
        };
        skipped.push(SkippedAttack { kind, reason });
    }
    Ok(Plan {
        slots,
        skipped,
        ato: set.contains(&AttackKind::AccountTakeover),
    })
}

pub(crate) struct Guards {
    pub benign: BenignGuards,
    /// Victim account per slot (`NONE` where the attack picks its own).
    pub victims: Vec<u32>,
}

/// Chooses single-account victims up front so benign traffic can steer clear.
pub(crate) fn guards(plan: &Plan, accounts: u32, rng: &mut ChaCha8Rng) -> Guards {
    let mut benign = BenignGuards::default();
    let mut victims = Vec::with_capacity(plan.slots.len());
    let mut taken = FxSet::default();
    for slot in &plan.slots {
        let mut victim = NONE;
        if matches!(
            slot.kind,
            AttackKind::Bruteforce | AttackKind::DistributedBruteforce
        ) {
            victim = loop {
                let a = below(rng, accounts);
                if taken.insert(a) || taken.len() as u32 >= accounts {
                    break a;
                }
            };
            // "Under attack" lasts an hour after the last failure for the
            // takeover rule; the owner's own login then would be a false alarm.
            benign.excluded.push(Exclusion {
                account: victim,
                from: slot.start - 15 * MINUTE_MS,
                to: slot.start + slot.span + 75 * MINUTE_MS,
            });
        }
        if slot.kind == AttackKind::DistributedCredentialStuffing {
            benign.campaign = Some(CampaignGuard {
                service: SVC_ACCOUNTS,
                from: slot.start - 10 * MINUTE_MS,
                to: slot.start + slot.span + 30 * MINUTE_MS,
            });
        }
        victims.push(victim);
    }
    Guards { benign, victims }
}

pub(crate) fn run(
    w: &mut World,
    pop: &Population,
    plan: &Plan,
    guards: &Guards,
    rng: &mut ChaCha8Rng,
) -> Vec<AttackLabel> {
    let mut testnet: Vec<Ipv4Addr> = (1..=254u8)
        .map(|h| Ipv4Addr::new(203, 0, 113, h))
        .chain((1..=254u8).map(|h| Ipv4Addr::new(198, 51, 100, h)))
        .collect();
    shuffle(rng, &mut testnet);
    let mut g = Gen {
        w,
        accounts: pop.accounts,
        rng,
        testnet,
        next_testnet: 0,
        labels: Vec::new(),
        nx_counter: 0,
        ato: plan.ato,
    };
    for (i, slot) in plan.slots.iter().enumerate() {
        match slot.kind {
            AttackKind::Bruteforce => {
                let success = plan.ato && slot.instance == 1;
                g.bruteforce(slot, guards.victims[i], success);
            }
            AttackKind::DistributedBruteforce => g.distributed_bruteforce(slot, guards.victims[i]),
            AttackKind::CredentialStuffing => g.credential_stuffing(slot),
            AttackKind::CredentialStuffingSlow => g.slow_stuffing(slot),
            AttackKind::UserEnumeration => g.enumeration(slot),
            AttackKind::IpVelocity => g.velocity(slot),
            AttackKind::DistributedCredentialStuffing => g.campaign(slot),
            AttackKind::AccountTakeover => {}
        }
    }
    g.labels
}

struct Gen<'a> {
    w: &'a mut World,
    accounts: u32,
    rng: &'a mut ChaCha8Rng,
    testnet: Vec<Ipv4Addr>,
    next_testnet: usize,
    labels: Vec<AttackLabel>,
    nx_counter: u32,
    ato: bool,
}

/// One compromised account: (account, client ip, time).
type Takeover = (u32, u32, i64);

const ENUM_NAMES: [&str; 40] = [
    "admin",
    "administrator",
    "root",
    "test",
    "test1",
    "guest",
    "info",
    "support",
    "sales",
    "webmaster",
    "operator",
    "demo",
    "user",
    "backup",
    "oracle",
    "postgres",
    "ftpuser",
    "jenkins",
    "deploy",
    "dev",
    "staging",
    "qa",
    "hr",
    "finance",
    "billing",
    "security",
    "noc",
    "helpdesk",
    "service",
    "api",
    "system",
    "manager",
    "office",
    "contact",
    "marketing",
    "it",
    "ops",
    "postmaster",
    "sysadmin",
    "superuser",
];

impl Gen<'_> {
    fn testnet_ip(&mut self) -> u32 {
        let a = self.testnet[self.next_testnet % self.testnet.len()];
        self.next_testnet += 1;
        self.w.add_ip_own_key(IpAddr::V4(a))
    }

    fn attack_ua(&mut self) -> u8 {
        UA_ATTACK.0 + below(self.rng, u32::from(UA_ATTACK.1 - UA_ATTACK.0)) as u8
    }

    /// A plausible login from a breach list that does not exist here: its
    /// domain is one no real account uses, and the counter keeps it unique.
    fn nonexistent(&mut self) -> u32 {
        const LIST_DOMAINS: [&str; 3] = ["inbox.example", "post.example", "webmail.example"];
        self.nx_counter += 1;
        let f = FIRST_NAMES[below(self.rng, FIRST_NAMES.len() as u32) as usize];
        let l = LAST_NAMES[below(self.rng, LAST_NAMES.len() as u32) as usize];
        let d = LIST_DOMAINS[below(self.rng, LIST_DOMAINS.len() as u32) as usize];
        let login = format!("{f}{l}{}@{d}", self.nx_counter);
        self.w.add_account(&login, false)
    }

    /// `k` real benign accounts, distinct while the population allows.
    fn sample_real(&mut self, k: usize) -> Vec<u32> {
        let n = self.accounts as usize;
        if k <= n / 2 {
            let mut seen = FxSet::default();
            let mut out = Vec::with_capacity(k);
            while out.len() < k {
                let a = below(self.rng, self.accounts);
                if seen.insert(a) {
                    out.push(a);
                }
            }
            out
        } else {
            let mut all: Vec<u32> = (0..self.accounts).collect();
            shuffle(self.rng, &mut all);
            (0..k).map(|i| all[i % n]).collect()
        }
    }

    /// `n` times over `span` from `start`, evenly spaced with ±`jitter` of a
    /// step, sorted.
    fn spaced(&mut self, start: i64, n: usize, span: i64, jitter: f64) -> Vec<i64> {
        let step = if n > 1 { span / (n as i64 - 1) } else { 0 };
        let j = (step as f64 * jitter) as i64;
        let mut v: Vec<i64> = (0..n as i64)
            .map(|i| {
                let off = if j > 0 {
                    self.rng.random_range(-j..=j)
                } else {
                    0
                };
                (start + i * step + off).clamp(start, start + span)
            })
            .collect();
        v.sort_unstable();
        v
    }

    #[allow(clippy::too_many_arguments)]
    fn hit(&mut self, ts: i64, acct: u32, ip: u32, svc: u8, ua: u8, success: bool, flags: u8) {
        let flags = flags | F_ATTACK;
        let trace = self.w.login(ts, acct, ip, svc, ua, success, flags);
        if success {
            let st = ts + self.rng.random_range(50..600);
            self.w.session(trace, st, acct, ip, svc, ua, flags);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn label(
        &mut self,
        kind: AttackKind,
        svc: u8,
        ips: &[u32],
        accounts: &[u32],
        start: i64,
        end: i64,
        note: String,
    ) {
        let mut seen = FxSet::default();
        let ips: Vec<String> = ips
            .iter()
            .map(|&ip| self.w.key_label(ip))
            .filter(|k| seen.insert(k.clone()))
            .collect();
        let mut seen = FxSet::default();
        let accounts: Vec<String> = accounts
            .iter()
            .filter(|&&a| seen.insert(a))
            .map(|&a| self.w.tables.logins.get(a).to_string())
            .collect();
        self.labels.push(AttackLabel {
            kind,
            expected_rules: kind
                .expected_rules()
                .iter()
                .map(|r| r.to_string())
                .collect(),
            service: SERVICES[svc as usize].name.to_string(),
            ips,
            accounts,
            start: rfc3339_ms(start),
            end: rfc3339_ms(end),
            note,
        });
    }

    fn takeover_label(&mut self, source: AttackKind, svc: u8, won: &[Takeover]) {
        if won.is_empty() {
            return;
        }
        let ips: Vec<u32> = won.iter().map(|t| t.1).collect();
        let accts: Vec<u32> = won.iter().map(|t| t.0).collect();
        let start = won.iter().map(|t| t.2).min().unwrap_or(0);
        let end = won.iter().map(|t| t.2).max().unwrap_or(0);
        let note = format!(
            "{} successful login(s), each followed by session.create, from {} after it was flagged",
            won.len(),
            source.as_str()
        );
        self.label(
            AttackKind::AccountTakeover,
            svc,
            &ips,
            &accts,
            start,
            end,
            note,
        );
    }

    fn bruteforce(&mut self, slot: &Slot, victim: u32, success: bool) {
        let svc = if slot.instance == 0 {
            SVC_ACCOUNTS
        } else {
            SVC_CHECKOUT
        };
        let ip = self.testnet_ip();
        let ua = self.attack_ua();
        let n = 25 + below(self.rng, 16) as usize;
        let used = self.rng.random_range(150 * SECOND_MS..=175 * SECOND_MS);
        let times = self.spaced(slot.start, n, used, 0.3);
        for &t in &times {
            self.hit(t, victim, ip, svc, ua, false, 0);
        }
        let mut end = times[n - 1];
        let mut won = Vec::new();
        if success {
            end += self.rng.random_range(5 * SECOND_MS..20 * SECOND_MS);
            self.hit(end, victim, ip, svc, ua, true, 0);
            won.push((victim, ip, end));
        }
        let note = format!(
            "{n} failed passwords on one account from one IP in {}{}",
            human_duration(times[n - 1] - times[0]),
            if success {
                ", then a successful login (see account_takeover)"
            } else {
                ""
            }
        );
        self.label(
            AttackKind::Bruteforce,
            svc,
            &[ip],
            &[victim],
            slot.start,
            end,
            note,
        );
        self.takeover_label(AttackKind::Bruteforce, svc, &won);
    }

    fn distributed_bruteforce(&mut self, slot: &Slot, victim: u32) {
        let svc = SVC_MOBILE;
        let n = 15 + below(self.rng, 3) as i64;
        // Steps of 35–39 s keep any 5 minutes at ≤ 9 failures (plain bruteforce
        // stays quiet) while any 10 minutes holds ≥ 10 from ≥ 10 addresses.
        let step = self.rng.random_range(36 * SECOND_MS..=38 * SECOND_MS);
        let mut ips = Vec::with_capacity(n as usize);
        let mut last = slot.start;
        for i in 0..n {
            let ip = self.testnet_ip();
            let ua = self.attack_ua();
            let t = slot.start + i * step + self.rng.random_range(-SECOND_MS..=SECOND_MS);
            let t = t.max(slot.start);
            self.hit(t, victim, ip, svc, ua, false, 0);
            ips.push(ip);
            last = last.max(t);
        }
        let note = format!(
            "{n} addresses fail once each on one account every ~{}s (≤ 9 per 5 min, so plain bruteforce should stay quiet)",
            step / 1000
        );
        self.label(
            AttackKind::DistributedBruteforce,
            svc,
            &ips,
            &[victim],
            slot.start,
            last,
            note,
        );
    }

    fn credential_stuffing(&mut self, slot: &Slot) {
        let svc = SVC_CHECKOUT;
        let ip = self.testnet_ip();
        let ua = self.attack_ua();
        let n = 150 + below(self.rng, 151) as usize;
        // Few unknown names: ≥ 10 in 10 minutes would also be enumeration.
        let nx = 6 + below(self.rng, 3) as usize;
        let used = self.rng.random_range(450 * SECOND_MS..=510 * SECOND_MS);
        let times = self.spaced(slot.start, n, used, 0.3);
        let mut targets = self.sample_real(n - nx);
        for k in 0..nx {
            let at = k * n / nx + below(self.rng, (n / nx) as u32) as usize;
            let name = self.nonexistent();
            targets.insert(at.min(targets.len()), name);
        }
        let mut wins = BTreeSet::new();
        if self.ato {
            let s = ((n as f64 * self.rng.random_range(0.01..0.02)).round() as usize).max(1);
            // Only after a third of the list, when the IP is surely flagged.
            while wins.len() < s {
                let at = n / 3 + below(self.rng, (n - n / 3) as u32) as usize;
                if self.w.tables.exists[targets[at] as usize] {
                    wins.insert(at);
                }
            }
        }
        let mut won = Vec::new();
        for (i, (&t, &acct)) in times.iter().zip(&targets).enumerate() {
            let success = wins.contains(&i);
            self.hit(t, acct, ip, svc, ua, success, F_SPOOF);
            if success {
                won.push((acct, ip, t));
            }
        }
        let note = format!(
            "{n} distinct accounts ({nx} nonexistent) from one IP behind the load balancer in {}, with a spoofed left-most X-Forwarded-For; {} succeed. Over 100 failures, so credential_stuffing_slow may fire on this IP as well",
            human_duration(times[n - 1] - times[0]),
            won.len()
        );
        self.label(
            AttackKind::CredentialStuffing,
            svc,
            &[ip],
            &targets,
            times[0],
            times[n - 1],
            note,
        );
        self.takeover_label(AttackKind::CredentialStuffing, svc, &won);
    }

    fn slow_stuffing(&mut self, slot: &Slot) {
        // Not on the campaign's service: a failure or two during the campaign
        // would make this address look like a campaign participant.
        let svc = SVC_MOBILE;
        let ip = self.testnet_ip();
        let ua = self.attack_ua();
        let n = 125 + below(self.rng, 11) as usize;
        let nx = 3 + below(self.rng, 3) as usize;
        // ±1/8 step jitter keeps consecutive tries ≥ 6.5 min apart: ≤ 2 per 10 min.
        let times = self.spaced(slot.start, n, slot.span, 0.125);
        let mut targets = self.sample_real(n - nx);
        for _ in 0..nx {
            let at = below(self.rng, targets.len() as u32 + 1) as usize;
            let name = self.nonexistent();
            targets.insert(at, name);
        }
        for (&t, &acct) in times.iter().zip(&targets) {
            self.hit(t, acct, ip, svc, ua, false, 0);
        }
        let note = format!(
            "{n} distinct accounts from one IP, one every ~{} over {}: never 20 failures in 10 min",
            human_duration(slot.span / n as i64),
            human_duration(times[n - 1] - times[0])
        );
        self.label(
            AttackKind::CredentialStuffingSlow,
            svc,
            &[ip],
            &targets,
            times[0],
            times[n - 1],
            note,
        );
    }

    fn enumeration(&mut self, slot: &Slot) {
        let svc = SVC_ACCOUNTS;
        let n = 25 + below(self.rng, 16) as usize;
        let used = self.rng.random_range(240 * SECOND_MS..=290 * SECOND_MS);
        let times = self.spaced(slot.start, n, used, 0.3);
        let mut names: Vec<String> = ENUM_NAMES.iter().map(|s| s.to_string()).collect();
        names.extend(FIRST_NAMES.iter().map(|f| format!("{f}@example.com")));
        shuffle(self.rng, &mut names);
        // One /64 with a fresh interface id per request: only /64
        // aggregation ties these together.
        let hi = self.rng.random::<u32>();
        let key = self.w.new_key();
        let ua = self.attack_ua();
        let mut ips = Vec::with_capacity(n);
        let mut accts = Vec::with_capacity(n);
        for (i, &t) in times.iter().enumerate() {
            let acct = self.w.add_account(&names[i], false);
            let iid = self.rng.random::<u64>() | 1;
            let addr = Ipv6Addr::new(
                0x2001,
                0x0db8,
                (hi >> 16) as u16,
                hi as u16,
                (iid >> 48) as u16,
                (iid >> 32) as u16,
                (iid >> 16) as u16,
                iid as u16,
            );
            let ip = self.w.add_ip(IpAddr::V6(addr), key);
            self.hit(t, acct, ip, svc, ua, false, 0);
            ips.push(ip);
            accts.push(acct);
        }
        let note = format!(
            "{n} nonexistent usernames (user.exists=false) in {} from rotating addresses in one IPv6 /64; with ≥ 20 failures over ≥ 10 accounts, credential_stuffing may also fire on this /64",
            human_duration(times[n - 1] - times[0])
        );
        self.label(
            AttackKind::UserEnumeration,
            svc,
            &ips,
            &accts,
            times[0],
            times[n - 1],
            note,
        );
    }

    fn velocity(&mut self, slot: &Slot) {
        let svc = SVC_MOBILE;
        let ip = self.testnet_ip();
        let n = 250 + below(self.rng, 151) as usize;
        let used = self.rng.random_range(50 * SECOND_MS..=58 * SECOND_MS);
        let times = self.spaced(slot.start, n, used, 0.4);
        // Dedicated service accounts of a runaway sync job; their logins have
        // no '.', so they never collide with the population's.
        let accts: Vec<u32> = (1..=3)
            .map(|k| {
                self.w
                    .add_account(&format!("svc-report-sync-{k:02}@example.com"), true)
            })
            .collect();
        // ≤ 8 failures per account keeps the account rules quiet; attempt i
        // goes to account i % 3, so failures are placed per account.
        let per_acct = ((n as f64 * 0.05 / 3.0).round() as usize).min(8);
        let fails = per_acct * accts.len();
        let mut fail_at = BTreeSet::new();
        for a in 0..accts.len() {
            let mut mine = BTreeSet::new();
            while mine.len() < per_acct {
                mine.insert(below(self.rng, (n / accts.len()) as u32) as usize);
            }
            fail_at.extend(mine.into_iter().map(|j| j * accts.len() + a));
        }
        for (i, &t) in times.iter().enumerate() {
            let acct = accts[i % accts.len()];
            self.hit(t, acct, ip, svc, UA_SCRIPTED, !fail_at.contains(&i), 0);
        }
        let note = format!(
            "scripted client: {n} logins in {} on 3 service accounts, {fails} failures; logins after the IP is flagged may also raise account_takeover on these accounts",
            human_duration(times[n - 1] - times[0])
        );
        self.label(
            AttackKind::IpVelocity,
            svc,
            &[ip],
            &accts,
            times[0],
            times[n - 1],
            note,
        );
    }

    /// Benign volume on `svc` around a campaign: (trailing failure ratio,
    /// most logins in any 6 consecutive minutes near the campaign).
    fn service_stats(&self, svc: u8, start: i64, span: i64) -> (f64, f64) {
        let base_from = start - HOUR_MS;
        let lo = start - 6 * MINUTE_MS;
        let hi = start + span + 6 * MINUTE_MS;
        let mut per_min = vec![0u64; ((hi - lo) / MINUTE_MS + 1) as usize];
        let (mut logins, mut fails) = (0u64, 0u64);
        for e in &self.w.events {
            if e.flags & F_ATTACK != 0 || e.service != svc || e.kind == KIND_SESSION {
                continue;
            }
            if e.ts >= base_from && e.ts < start {
                logins += 1;
                fails += u64::from(e.kind == KIND_FAILURE);
            }
            if e.ts >= lo && e.ts < hi {
                per_min[((e.ts - lo) / MINUTE_MS) as usize] += 1;
            }
        }
        let b6 = per_min
            .windows(6)
            .map(|w| w.iter().sum::<u64>())
            .max()
            .unwrap_or(0);
        let ratio = if logins >= 20 {
            fails as f64 / logins as f64
        } else {
            0.1
        };
        (ratio, b6 as f64)
    }

    fn campaign(&mut self, slot: &Slot) {
        let svc = SVC_ACCOUNTS;
        let span = self.rng.random_range(360 * SECOND_MS..=420 * SECOND_MS);
        // Size the first wave so that on its own it lifts the 5-minute failure
        // ratio to 4× the trailing baseline even at the busiest benign minute;
        // 60% of addresses take part in it.
        let (ratio, busiest) = self.service_stats(svc, slot.start, span);
        let r4 = (4.0 * ratio).min(0.8);
        let wave = r4 * busiest / (1.0 - r4);
        let needed = (wave / 0.6 * 1.1).ceil() as usize;
        let n_ip = (500 + below(self.rng, 1001) as usize)
            .max(needed)
            .min(60_000);

        let mut used = FxSet::default();
        let mut ips = Vec::with_capacity(n_ip);
        let mut ks = Vec::with_capacity(n_ip);
        for _ in 0..n_ip {
            let first: u32 = if chance(self.rng, 0.5) { 45 } else { 185 };
            let a = loop {
                let a = (first << 24) | (self.rng.random::<u32>() & 0x00FF_FFFF);
                let last = a & 0xFF;
                if last != 0 && last != 255 && used.insert(a) {
                    break a;
                }
            };
            ips.push(self.w.add_ip_own_key(IpAddr::V4(Ipv4Addr::from(a))));
            ks.push(if chance(self.rng, 0.6) { 3usize } else { 2 });
        }
        let attempts: usize = ks.iter().sum();
        let real_n = (attempts * 9 / 10)
            .min(self.accounts as usize * 6 / 10)
            .max(3);
        let nx_n = (attempts / 10).max(3);
        let mut list = self.sample_real(real_n);
        for _ in 0..nx_n {
            let name = self.nonexistent();
            list.push(name);
        }
        shuffle(self.rng, &mut list);

        // Winners: a few first-wave addresses that later get in on a real account.
        let mut winners = BTreeSet::new();
        if self.ato {
            let want = 3 + below(self.rng, 4) as usize;
            let first_wave = ks.iter().filter(|&&k| k == 3).count();
            while winners.len() < want.min(first_wave) {
                let i = below(self.rng, n_ip as u32) as usize;
                if ks[i] == 3 {
                    winners.insert(i);
                }
            }
        }

        // Every address fails at least twice after 40% of the span, by which
        // time the first wave has made the campaign active, so the participant
        // rule sees ≥ 2 accounts from each one during the campaign.
        let s = slot.start;
        let frac = |rng: &mut ChaCha8Rng, a: f64, b: f64| {
            s + (span as f64 * rng.random_range(a..b)) as i64
        };
        let mut cursor = 0;
        let mut targeted = Vec::with_capacity(attempts);
        let mut won = Vec::new();
        let (mut first_ts, mut last_ts) = (i64::MAX, i64::MIN);
        for (i, (&ip, &k)) in ips.iter().zip(&ks).enumerate() {
            let ua = self.attack_ua();
            let mut times = Vec::with_capacity(3);
            if k == 3 {
                times.push(frac(self.rng, 0.0, 0.25));
            }
            times.push(frac(self.rng, 0.4, 1.0));
            times.push(frac(self.rng, 0.4, 1.0));
            times.sort_unstable();
            for &t in &times {
                let acct = list[cursor % list.len()];
                cursor += 1;
                self.hit(t, acct, ip, svc, ua, false, 0);
                targeted.push(acct);
                first_ts = first_ts.min(t);
                last_ts = last_ts.max(t);
            }
            if winners.contains(&i) {
                let acct = self.sample_real(1)[0];
                let t =
                    times[times.len() - 1] + self.rng.random_range(3 * SECOND_MS..20 * SECOND_MS);
                self.hit(t, acct, ip, svc, ua, true, 0);
                won.push((acct, ip, t));
                last_ts = last_ts.max(t);
            }
        }
        let note = format!(
            "{n_ip} addresses from 45/8 and 185/8, each failing on 2–3 distinct accounts ({attempts} failures, {} distinct accounts) over {}; first wave in the first quarter, all addresses fail twice more after 40% of the span; baseline failure ratio {:.3}, busiest benign 6 min {} logins{}",
            {
                let mut d = targeted.clone();
                d.sort_unstable();
                d.dedup();
                d.len()
            },
            human_duration(span),
            ratio,
            busiest,
            if n_ip > 1500 {
                "; scaled above 1500 addresses to stand out from this much benign volume"
            } else {
                ""
            }
        );
        self.label(
            AttackKind::DistributedCredentialStuffing,
            svc,
            &ips,
            &targeted,
            first_ts,
            last_ts,
            note,
        );
        self.takeover_label(AttackKind::DistributedCredentialStuffing, svc, &won);
    }
}
