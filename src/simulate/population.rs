//! The benign population and its traffic.
//!
//! Realistic randomness alone would now and then push a busy NAT address or an
//! unlucky account over a detector threshold, which would make every run's
//! false-positive count a coin toss. So each benign failure is admitted only if
//! it keeps its client key and account within a third of the default
//! thresholds (see [`Budget`]); a refused typo simply becomes a correct first
//! try. The checks look at neighbours on both sides in time, which bounds every
//! window no matter in which order sessions are generated.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::format::{DAY_MS, FxMap, FxSet};
use super::{
    HOUR_MS, MINUTE_MS, SECOND_MS, SVC_ACCOUNTS, SVC_CHECKOUT, SVC_LEGACY, SVC_MOBILE, SimOptions,
    UA_DESKTOP, UA_MOBILE, World,
};

pub(crate) const NONE: u32 = u32::MAX;

pub(crate) const FIRST_NAMES: [&str; 48] = [
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "karl",
    "laura", "mallory", "nina", "oscar", "peggy", "quinn", "rupert", "sybil", "trent", "ursula",
    "victor", "wendy", "xavier", "yvonne", "zack", "amir", "bianca", "chen", "dmitri", "elena",
    "fatima", "gustavo", "hana", "igor", "jamal", "kenji", "lucia", "mateo", "noor", "olga",
    "priya", "rafael", "sofia", "tomas", "uma", "wei", "yusuf",
];

pub(crate) const LAST_NAMES: [&str; 48] = [
    "smith", "jones", "garcia", "miller", "davis", "martin", "lopez", "wilson", "anderson",
    "thomas", "moore", "jackson", "white", "harris", "clark", "lewis", "walker", "hall", "young",
    "king", "wright", "scott", "green", "baker", "adams", "nelson", "hill", "campbell", "mitchell",
    "roberts", "carter", "phillips", "evans", "turner", "torres", "parker", "collins", "edwards",
    "stewart", "morris", "murphy", "cook", "rogers", "morgan", "peterson", "cooper", "reed",
    "bailey",
];

/// Real accounts live only under these domains, so any login under another
/// domain is guaranteed not to exist.
const DOMAINS: [&str; 5] = [
    "example.com",
    "example.org",
    "example.net",
    "mail.example.com",
    "corp.example",
];
const TYPO_DOMAINS: [&str; 6] = [
    "exmaple.com",
    "example.cmo",
    "exampel.org",
    "example.ent",
    "examlpe.com",
    "mial.example.com",
];

/// Benign first octets. Disjoint from each other, from the carrier blocks and
/// from every attacker range (45/8, 185/8, 198.51.100/24, 203.0.113/24).
const HOME_OCTETS: [u8; 24] = [
    24, 50, 66, 67, 68, 69, 70, 71, 72, 73, 75, 76, 81, 82, 83, 84, 86, 87, 88, 89, 90, 91, 92, 93,
];
const CORP_OCTETS: [u8; 8] = [12, 38, 63, 64, 65, 204, 206, 208];
const CARRIER_V4: [[u8; 2]; 3] = [[172, 56], [174, 204], [107, 115]];

pub(crate) const CLASS_HOME: u8 = 0;
pub(crate) const CLASS_CORP: u8 = 1;
pub(crate) const CLASS_MOBILE: u8 = 2;

/// Sizing targets: per-address attempt rate at the diurnal peak.
const NAT_TARGET_PER_MIN: f64 = 8.0;
const CGNAT_TARGET_PER_MIN: f64 = 3.0;

#[derive(Clone, Copy)]
pub(crate) struct Profile {
    pub class: u8,
    pub carrier: u8,
    pub ua_desk: u8,
    pub ua_mob: u8,
    /// Home: the user's address. Corp: company index. Mobile: own IPv6
    /// address, or `NONE` for IPv4-only users who go through CGNAT.
    pub net: u32,
}

pub(crate) struct Population {
    pub accounts: u32,
    pub profiles: Vec<Profile>,
    pub companies: Vec<Vec<u32>>,
    pub carriers: Vec<Vec<u32>>,
    pub nat_ips: Vec<u32>,
    pub cgnat_ips: Vec<u32>,
    pub benign_keys: u32,
}

/// Per-minute buckets of the run with their diurnal weight.
pub(crate) struct Curve {
    pub buckets: Vec<(i64, i64, f64)>,
    pub total: f64,
    /// Busiest minute relative to the run's average minute.
    pub peak: f64,
}

/// Relative load per UTC hour (a mostly EU/US audience); linear in between.
const HOURLY: [f64; 25] = [
    0.55, 0.45, 0.38, 0.33, 0.30, 0.32, 0.40, 0.55, 0.75, 0.90, 1.00, 1.05, 1.08, 1.10, 1.12, 1.15,
    1.18, 1.20, 1.15, 1.05, 0.95, 0.85, 0.75, 0.65, 0.55,
];

fn diurnal(t: i64) -> f64 {
    let ms = t.rem_euclid(DAY_MS);
    let h = (ms / HOUR_MS) as usize;
    let frac = (ms % HOUR_MS) as f64 / HOUR_MS as f64;
    HOURLY[h] + (HOURLY[h + 1] - HOURLY[h]) * frac
}

impl Curve {
    pub(crate) fn new(start: i64, end: i64) -> Curve {
        let mut buckets = Vec::new();
        let mut t = start;
        let mut total = 0.0;
        let mut max_rate: f64 = 0.0;
        while t < end {
            let len = MINUTE_MS.min(end - t);
            let rate = diurnal(t + len / 2);
            let w = rate * len as f64 / MINUTE_MS as f64;
            max_rate = max_rate.max(rate);
            total += w;
            buckets.push((t, len, w));
            t += len;
        }
        let avg = total * MINUTE_MS as f64 / (end - start).max(1) as f64;
        Curve {
            buckets,
            total,
            peak: if avg > 0.0 { max_rate / avg } else { 1.0 },
        }
    }
}

pub(crate) fn below(rng: &mut ChaCha8Rng, n: u32) -> u32 {
    if n <= 1 { 0 } else { rng.random_range(0..n) }
}

pub(crate) fn chance(rng: &mut ChaCha8Rng, p: f64) -> bool {
    rng.random::<f64>() < p
}

pub(crate) fn shuffle<T>(rng: &mut ChaCha8Rng, v: &mut [T]) {
    for i in (1..v.len()).rev() {
        let j = below(rng, i as u32 + 1) as usize;
        v.swap(i, j);
    }
}

/// A fresh public IPv4 address in one of `octets`' /8s.
fn fresh_v4(rng: &mut ChaCha8Rng, used: &mut FxSet<u32>, first: u8) -> Ipv4Addr {
    loop {
        let rest = rng.random::<u32>() & 0x00FF_FFFF;
        let a = (u32::from(first) << 24) | rest;
        let last = a & 0xFF;
        if last == 0 || last == 255 {
            continue;
        }
        if used.insert(a) {
            return Ipv4Addr::from(a);
        }
    }
}

fn fresh_v4_in16(rng: &mut ChaCha8Rng, used: &mut FxSet<u32>, p: [u8; 2]) -> Ipv4Addr {
    loop {
        let rest = rng.random::<u32>() & 0xFFFF;
        let a = (u32::from(p[0]) << 24) | (u32::from(p[1]) << 16) | rest;
        let last = a & 0xFF;
        if last == 0 || last == 255 {
            continue;
        }
        if used.insert(a) {
            return Ipv4Addr::from(a);
        }
    }
}

/// A fresh /64 under the 32-bit `prefix` (top two hextets).
fn fresh_v6_64(rng: &mut ChaCha8Rng, used: &mut FxSet<u64>, top: [u16; 2]) -> [u16; 4] {
    loop {
        let lo = rng.random::<u32>();
        let p = (u64::from(top[0]) << 48) | (u64::from(top[1]) << 32) | u64::from(lo);
        if used.insert(p) {
            return [top[0], top[1], (lo >> 16) as u16, lo as u16];
        }
    }
}

fn v6_addr(rng: &mut ChaCha8Rng, p: [u16; 4]) -> IpAddr {
    let iid: u64 = rng.random::<u64>() | 1;
    IpAddr::V6(Ipv6Addr::new(
        p[0],
        p[1],
        p[2],
        p[3],
        (iid >> 48) as u16,
        (iid >> 32) as u16,
        (iid >> 16) as u16,
        iid as u16,
    ))
}

pub(crate) fn build(
    w: &mut World,
    opts: &SimOptions,
    curve: &Curve,
    target: u64,
    rng: &mut ChaCha8Rng,
) -> Population {
    let n = opts.accounts;

    // Unique `first.last[N]@domain` logins; the counter per name triple keeps
    // them unique without a set.
    let mut counters = vec![0u32; FIRST_NAMES.len() * LAST_NAMES.len() * DOMAINS.len()];
    let mut login = String::with_capacity(48);
    for _ in 0..n {
        let f = below(rng, FIRST_NAMES.len() as u32) as usize;
        let l = below(rng, LAST_NAMES.len() as u32) as usize;
        let d = below(rng, DOMAINS.len() as u32) as usize;
        let slot = &mut counters[(f * LAST_NAMES.len() + l) * DOMAINS.len() + d];
        *slot += 1;
        login.clear();
        login.push_str(FIRST_NAMES[f]);
        login.push('.');
        login.push_str(LAST_NAMES[l]);
        if *slot > 1 {
            login.push_str(&slot.to_string());
        }
        login.push('@');
        login.push_str(DOMAINS[d]);
        w.add_account(&login, true);
    }

    let mut order: Vec<u32> = (0..n).collect();
    shuffle(rng, &mut order);
    let corp_n = (n as usize * 15 / 100).max(1);
    let mobile_n = n as usize * 15 / 100;
    let (corp, rest) = order.split_at(corp_n);
    let (mobile, home) = rest.split_at(mobile_n);

    let mut profiles = vec![
        Profile {
            class: CLASS_HOME,
            carrier: 0,
            ua_desk: 0,
            ua_mob: 0,
            net: NONE,
        };
        n as usize
    ];
    for p in profiles.iter_mut() {
        p.carrier = below(rng, CARRIER_V4.len() as u32) as u8;
        p.ua_desk = UA_DESKTOP.0 + below(rng, u32::from(UA_DESKTOP.1 - UA_DESKTOP.0)) as u8;
        p.ua_mob = UA_MOBILE.0 + below(rng, u32::from(UA_MOBILE.1 - UA_MOBILE.0)) as u8;
    }

    let minutes = (opts.duration_ms as f64 / MINUTE_MS as f64).max(1.0);
    let per_acct_peak = target as f64 / minutes * curve.peak / f64::from(n);
    let mut used4: FxSet<u32> = FxSet::default();
    let mut used6: FxSet<u64> = FxSet::default();

    // Corporate NAT: companies of 150–500 users behind as many egress
    // addresses as keep each one near NAT_TARGET_PER_MIN at the peak.
    let mut companies: Vec<Vec<u32>> = Vec::new();
    let mut nat_ips = Vec::new();
    let mut i = 0;
    while i < corp.len() {
        let mut size = 150 + below(rng, 351) as usize;
        if corp.len() - i < size + 50 {
            size = corp.len() - i;
        }
        let users = &corp[i..i + size];
        let peak = size as f64 * per_acct_peak * 0.8 * 1.15;
        let n_ips = ((peak / NAT_TARGET_PER_MIN).ceil() as u32).max(2);
        let mut ips = Vec::with_capacity(n_ips as usize);
        let first = CORP_OCTETS[below(rng, CORP_OCTETS.len() as u32) as usize];
        for _ in 0..n_ips {
            let ip = w.add_ip_own_key(IpAddr::V4(fresh_v4(rng, &mut used4, first)));
            ips.push(ip);
            nat_ips.push(ip);
        }
        for &u in users {
            profiles[u as usize].class = CLASS_CORP;
            profiles[u as usize].net = companies.len() as u32;
        }
        companies.push(ips);
        i += size;
    }

    // Mobile-only users: a third have their own IPv6 /64 (carriers hand out a
    // /64 per device); the rest share CGNAT addresses.
    let mut mobile_v6 = 0u32;
    for &u in mobile {
        let p = &mut profiles[u as usize];
        p.class = CLASS_MOBILE;
        if chance(rng, 0.35) {
            let prefix = fresh_v6_64(rng, &mut used6, [0x2607, 0xfb90]);
            p.net = w.add_ip_own_key(v6_addr(rng, prefix));
            mobile_v6 += 1;
        }
    }

    let v4_mobile_share = (home.len() as f64 * 0.25
        + corp.len() as f64 * 0.2
        + (mobile.len() as f64 - f64::from(mobile_v6)))
        / f64::from(n);
    let cg_peak = target as f64 / minutes * curve.peak * v4_mobile_share * 1.15;
    let pool = ((cg_peak / CGNAT_TARGET_PER_MIN).ceil() as u32)
        .max(opts.ips * 3 / 100)
        .max(6);
    let mut carriers: Vec<Vec<u32>> = vec![Vec::new(); CARRIER_V4.len()];
    let mut cgnat_ips = Vec::with_capacity(pool as usize);
    for k in 0..pool {
        let c = k as usize % CARRIER_V4.len();
        let ip = w.add_ip_own_key(IpAddr::V4(fresh_v4_in16(rng, &mut used4, CARRIER_V4[c])));
        carriers[c].push(ip);
        cgnat_ips.push(ip);
    }

    // Homes take the remaining address budget, 1–3 users each.
    let used_keys = nat_ips.len() as u32 + pool + mobile_v6;
    let budget = opts.ips.saturating_sub(used_keys).max(1);
    let avg = (home.len() as f64 / f64::from(budget)).clamp(1.0, 3.0);
    let q = (avg - 1.0) / 2.0;
    let mut j = 0;
    while j < home.len() {
        let size =
            (1 + usize::from(chance(rng, q)) + usize::from(chance(rng, q))).min(home.len() - j);
        if chance(rng, 0.25) {
            let top = 0x8100 + below(rng, 0x0f00) as u16;
            let prefix = fresh_v6_64(rng, &mut used6, [0x2a02, top]);
            let key = w.new_key();
            for &u in &home[j..j + size] {
                profiles[u as usize].net = w.add_ip(v6_addr(rng, prefix), key);
            }
        } else {
            let first = HOME_OCTETS[below(rng, HOME_OCTETS.len() as u32) as usize];
            let ip = w.add_ip_own_key(IpAddr::V4(fresh_v4(rng, &mut used4, first)));
            for &u in &home[j..j + size] {
                profiles[u as usize].net = ip;
            }
        }
        j += size;
    }

    Population {
        accounts: n,
        profiles,
        companies,
        carriers,
        nat_ips,
        cgnat_ips,
        benign_keys: w.tables.keys,
    }
}

// ---------------------------------------------------------------------------
// Benign traffic.

/// Accounts kept free of benign logins around an attack on them, so that a
/// victim's own later login is not an "account under attack" takeover.
pub(crate) struct Exclusion {
    pub account: u32,
    pub from: i64,
    pub to: i64,
}

/// While a distributed campaign may be active on `service`, no benign client
/// key fails there on more than one account (the participant rule's trigger).
pub(crate) struct CampaignGuard {
    pub service: u8,
    pub from: i64,
    pub to: i64,
}

#[derive(Default)]
pub(crate) struct BenignGuards {
    pub excluded: Vec<Exclusion>,
    pub campaign: Option<CampaignGuard>,
}

#[derive(Clone, Copy)]
enum Net {
    Home,
    Nat,
    Cgnat,
    MobileV6,
}

#[derive(Clone, Copy)]
struct KeyFail {
    ts: i64,
    account: u32,
    nonexistent: bool,
}

/// One third of each default threshold, as inclusive window limits.
struct Budget;
impl Budget {
    const ACCOUNT_FAILS_5M: usize = 3;
    const KEY_FAILS_10M: usize = 6;
    const KEY_ACCOUNTS_10M: usize = 3;
    const KEY_NONEXISTENT_10M: usize = 3;
    const KEY_FAILS_24H: usize = 33;
    /// Per aligned minute; any 60 s spans two, so ≤ 36 < 120 / 3.
    const FIRST_ATTEMPT_PER_MIN: u8 = 15;
    const ATTEMPTS_PER_MIN: u8 = 18;
}

const P_OK: u8 = 0;
const P_FAIL: u8 = 1;
const P_FAIL_NX: u8 = 2;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Clean,
    Typo,
    Forgotten,
}

struct Benign<'a> {
    w: &'a mut World,
    pop: &'a Population,
    guards: &'a BenignGuards,
    rng: &'a mut ChaCha8Rng,
    rate: FxMap<u64, u8>,
    key_fails: Vec<Vec<KeyFail>>,
    acct_fails: Vec<Vec<i64>>,
    campaign_acct: Vec<u32>,
    typo_of: FxMap<u32, u32>,
    plan: Vec<(i64, u8)>,
}

pub(crate) fn benign(
    w: &mut World,
    pop: &Population,
    guards: &BenignGuards,
    curve: &Curve,
    target: u64,
    rng: &mut ChaCha8Rng,
) {
    let keys = w.tables.keys as usize;
    let accounts = w.tables.exists.len();
    let mut g = Benign {
        w,
        pop,
        guards,
        rng,
        rate: FxMap::default(),
        key_fails: vec![Vec::new(); keys],
        acct_fails: vec![Vec::new(); accounts],
        campaign_acct: vec![NONE; keys],
        typo_of: FxMap::default(),
        plan: Vec::with_capacity(16),
    };
    g.run(curve, target);
}

impl Benign<'_> {
    fn run(&mut self, curve: &Curve, target: u64) {
        let mut carry = 0.0f64;
        for &(bstart, blen, weight) in &curve.buckets {
            let expected = target as f64 * weight / curve.total;
            let noisy = (expected * (0.9 + 0.2 * self.rng.random::<f64>()) + carry).max(0.0);
            let want = noisy.round() as u64;
            let mut made = 0u64;
            let mut tries = 0u64;
            while made < want && tries < want * 3 + 16 {
                tries += 1;
                let t0 = bstart + self.rng.random_range(0..blen);
                made += u64::from(self.session(t0));
            }
            // Overshoot from multi-attempt sessions is paid back next minute.
            carry = (expected + carry - made as f64).clamp(-20.0, 20.0);
        }
    }

    fn pick_account(&mut self, t0: i64) -> Option<u32> {
        for _ in 0..8 {
            let a = below(self.rng, self.pop.accounts);
            // Sessions last up to ~40 minutes, so keep clear of the window early.
            let hit = self
                .guards
                .excluded
                .iter()
                .any(|x| x.account == a && t0 >= x.from - 40 * MINUTE_MS && t0 <= x.to);
            if !hit {
                return Some(a);
            }
        }
        None
    }

    fn pick_net(&mut self, p: Profile) -> (u32, Net) {
        let u: f64 = self.rng.random();
        match p.class {
            CLASS_CORP if u < 0.8 => (self.nat_ip(p), Net::Nat),
            CLASS_HOME if u < 0.75 => (p.net, Net::Home),
            CLASS_MOBILE if p.net != NONE => (p.net, Net::MobileV6),
            _ => (self.cgnat_ip(p), Net::Cgnat),
        }
    }

    fn nat_ip(&mut self, p: Profile) -> u32 {
        let ips = &self.pop.companies[p.net as usize];
        ips[below(self.rng, ips.len() as u32) as usize]
    }

    fn cgnat_ip(&mut self, p: Profile) -> u32 {
        let pool = &self.pop.carriers[p.carrier as usize];
        pool[below(self.rng, pool.len() as u32) as usize]
    }

    fn pick_service(&mut self, net: Net) -> u8 {
        let u: f64 = self.rng.random();
        let table: [(f64, u8); 4] = match net {
            Net::Home => [
                (0.42, SVC_CHECKOUT),
                (0.72, SVC_ACCOUNTS),
                (0.88, SVC_LEGACY),
                (1.0, SVC_MOBILE),
            ],
            Net::Nat => [
                (0.35, SVC_CHECKOUT),
                (0.80, SVC_ACCOUNTS),
                (0.88, SVC_LEGACY),
                (1.0, SVC_MOBILE),
            ],
            Net::Cgnat | Net::MobileV6 => [
                (0.70, SVC_MOBILE),
                (0.82, SVC_CHECKOUT),
                (0.92, SVC_ACCOUNTS),
                (1.0, SVC_LEGACY),
            ],
        };
        table
            .iter()
            .find(|(p, _)| u < *p)
            .map_or(SVC_MOBILE, |t| t.1)
    }

    fn rate_slot(&self, ip: u32, ts: i64) -> u64 {
        let minute = ((ts - self.w.start) / MINUTE_MS) as u64;
        (u64::from(self.w.key_of(ip)) << 32) | minute
    }

    fn rate_room(&self, ip: u32, ts: i64, cap: u8) -> bool {
        self.rate.get(&self.rate_slot(ip, ts)).copied().unwrap_or(0) < cap
    }

    fn rate_take(&mut self, ip: u32, ts: i64, cap: u8) -> bool {
        let slot = self.rate_slot(ip, ts);
        let c = self.rate.entry(slot).or_insert(0);
        if *c >= cap {
            return false;
        }
        *c += 1;
        true
    }

    /// Fills `self.plan` with (offset, what) attempts for one sitting.
    fn plan_attempts(&mut self, svc: u8) -> Mode {
        self.plan.clear();
        let legacy = svc == SVC_LEGACY;
        // Legacy SSO: a dated login form with case-sensitive usernames and
        // expired passwords, hence ~40% failures by attempt.
        let (p_typo, p_nx, p_forgot) = if legacy {
            (0.40, 0.42, 0.44)
        } else {
            (0.03, 0.034, 0.037)
        };
        let u: f64 = self.rng.random();
        if u < p_typo {
            let r: f64 = self.rng.random();
            let fails = if legacy {
                1 + usize::from(r < 0.4)
            } else if r < 0.6 {
                1
            } else if r < 0.9 {
                2
            } else {
                3
            };
            let mut t = 0;
            for _ in 0..fails {
                self.plan.push((t, P_FAIL));
                t += self.rng.random_range(4 * SECOND_MS..25 * SECOND_MS);
            }
            self.plan.push((t, P_OK));
            Mode::Typo
        } else if u < p_nx {
            self.plan.push((0, P_FAIL_NX));
            let t = self.rng.random_range(5 * SECOND_MS..20 * SECOND_MS);
            self.plan.push((t, P_OK));
            Mode::Typo
        } else if u < p_forgot {
            // Bursts of at most two, minutes apart: at most 2 per 5 minutes.
            let total = 3 + below(self.rng, 4);
            let mut t = 0;
            let mut left = total;
            while left > 0 {
                let burst = left.min(2);
                for k in 0..burst {
                    if k > 0 {
                        t += self.rng.random_range(8 * SECOND_MS..40 * SECOND_MS);
                    }
                    self.plan.push((t, P_FAIL));
                }
                left -= burst;
                if left > 0 {
                    t += self.rng.random_range(6 * MINUTE_MS..10 * MINUTE_MS);
                }
            }
            if chance(self.rng, 0.5) {
                // Reset the password by mail, then log in.
                t += self.rng.random_range(3 * MINUTE_MS..10 * MINUTE_MS);
                self.plan.push((t, P_OK));
            }
            Mode::Forgotten
        } else {
            self.plan.push((0, P_OK));
            Mode::Clean
        }
    }

    /// A benign sitting; returns the number of login attempts emitted.
    fn session(&mut self, t0: i64) -> u32 {
        let Some(acct) = self.pick_account(t0) else {
            return 0;
        };
        let p = self.pop.profiles[acct as usize];
        let (mut ip, net) = self.pick_net(p);
        let svc = self.pick_service(net);
        let mut ok = self.rate_room(ip, t0, Budget::FIRST_ATTEMPT_PER_MIN);
        let mut spins = 0;
        // A full egress address spills over to a sibling, as NAT pools do.
        while !ok && spins < 4 && matches!(net, Net::Nat | Net::Cgnat) {
            ip = if matches!(net, Net::Nat) {
                self.nat_ip(p)
            } else {
                self.cgnat_ip(p)
            };
            ok = self.rate_room(ip, t0, Budget::FIRST_ATTEMPT_PER_MIN);
            spins += 1;
        }
        if !ok {
            return 0;
        }
        let ua = if svc == SVC_MOBILE || matches!(net, Net::Cgnat | Net::MobileV6) {
            p.ua_mob
        } else {
            p.ua_desk
        };
        let mode = self.plan_attempts(svc);
        let end = self.w.end;
        let mut emitted = 0;
        let mut typo_fixed = false;
        for k in 0..self.plan.len() {
            let (off, what) = self.plan[k];
            let ts = t0 + off;
            if ts >= end {
                break;
            }
            let cap = if k == 0 {
                Budget::FIRST_ATTEMPT_PER_MIN
            } else {
                Budget::ATTEMPTS_PER_MIN
            };
            if what == P_OK {
                if !self.rate_take(ip, ts, cap) {
                    break;
                }
                let trace = self.w.login(ts, acct, ip, svc, ua, true, 0);
                emitted += 1;
                if chance(self.rng, 0.9) {
                    let st = ts + self.rng.random_range(40..900);
                    self.w.session(trace, st, acct, ip, svc, ua, 0);
                }
                continue;
            }
            if typo_fixed {
                continue;
            }
            let nx = what == P_FAIL_NX;
            let account = if nx { self.typo_account(acct) } else { acct };
            if !self.fail_ok(ip, account, ts, nx, svc) {
                // Over budget: the user gets it right first time instead, or,
                // when locked out of their memory, just gives up sooner.
                if mode == Mode::Forgotten {
                    break;
                }
                typo_fixed = true;
                continue;
            }
            if !self.rate_take(ip, ts, cap) {
                break;
            }
            self.record_fail(ip, account, ts, nx, svc);
            self.w.login(ts, account, ip, svc, ua, false, 0);
            emitted += 1;
        }
        emitted
    }

    /// The same person mistyping their domain: a login that cannot exist.
    fn typo_account(&mut self, acct: u32) -> u32 {
        if let Some(&t) = self.typo_of.get(&acct) {
            return t;
        }
        let login = self.w.tables.logins.get(acct);
        let local = login.split('@').next().unwrap_or(login).to_string();
        let dom = TYPO_DOMAINS[below(self.rng, TYPO_DOMAINS.len() as u32) as usize];
        let id = self.w.add_account(&format!("{local}@{dom}"), false);
        self.typo_of.insert(acct, id);
        if self.acct_fails.len() <= id as usize {
            self.acct_fails.resize(id as usize + 1, Vec::new());
        }
        id
    }

    fn fail_ok(&self, ip: u32, account: u32, ts: i64, nx: bool, svc: u8) -> bool {
        let near = |t: i64, w: i64| (t - ts).abs() <= w;
        let acct_near = self.acct_fails[account as usize]
            .iter()
            .filter(|&&t| near(t, 5 * MINUTE_MS))
            .count();
        if acct_near + 1 > Budget::ACCOUNT_FAILS_5M {
            return false;
        }
        let key = self.w.key_of(ip) as usize;
        let (mut n10, mut nx10, mut n24) = (0, 0, 0);
        let mut distinct = [account; Budget::KEY_ACCOUNTS_10M];
        let mut nd = 1;
        for f in &self.key_fails[key] {
            if near(f.ts, DAY_MS) {
                n24 += 1;
            }
            if !near(f.ts, 10 * MINUTE_MS) {
                continue;
            }
            n10 += 1;
            nx10 += usize::from(f.nonexistent);
            if !distinct[..nd].contains(&f.account) {
                if nd == distinct.len() {
                    return false;
                }
                distinct[nd] = f.account;
                nd += 1;
            }
        }
        if n10 + 1 > Budget::KEY_FAILS_10M
            || n24 + 1 > Budget::KEY_FAILS_24H
            || (nx && nx10 + 1 > Budget::KEY_NONEXISTENT_10M)
        {
            return false;
        }
        if self.in_campaign(svc, ts) {
            let c = self.campaign_acct[key];
            if c != NONE && c != account {
                return false;
            }
        }
        true
    }

    fn record_fail(&mut self, ip: u32, account: u32, ts: i64, nx: bool, svc: u8) {
        let key = self.w.key_of(ip) as usize;
        self.acct_fails[account as usize].push(ts);
        self.key_fails[key].push(KeyFail {
            ts,
            account,
            nonexistent: nx,
        });
        if self.in_campaign(svc, ts) {
            self.campaign_acct[key] = account;
        }
    }

    fn in_campaign(&self, svc: u8, ts: i64) -> bool {
        self.guards
            .campaign
            .as_ref()
            .is_some_and(|g| svc == g.service && ts >= g.from && ts <= g.to)
    }
}
