//! Privacy: keyed pseudonyms for account identifiers in signals, decisions and logs.
//!
//! With `privacy.pseudonymize_accounts = true`, every account name atowatch writes out
//! is replaced by `acct_` + the first 16 bytes of HMAC-SHA256(key, account), hex-encoded
//! (32 lowercase hex characters). The input is the account key exactly as atowatch
//! counts it, i.e. after `normalize.lowercase_accounts` (and, for a name over 256
//! bytes, after `normalize::shorten_account_key`).
//!
//! * **Deterministic.** The same account gives the same pseudonym in every signal, on
//!   every instance and across restarts, as long as the key is the same: consumers can
//!   still group and join on it. **Rotating the key changes every pseudonym** (and the
//!   ids of account signals, below): history before and after a rotation no longer
//!   joins, which is the point of rotating.
//! * **Keyed.** Account names are guessable (breach lists are what credential stuffing
//!   is made of), so a plain hash would be reversed by hashing the list. Without the
//!   key, a pseudonym cannot be confirmed against a guess.
//! * **Enforcement.** A decision on a pseudonymized account (`account:acct_…`) can only
//!   be enforced by a system that computes the same HMAC with the same key over the
//!   same normalized account key (any standard HMAC-SHA256 does; see [`Pseudonymizer::account`]).
//!
//! What is rewritten, by [`Pseudonymizer::signal`]: the entity value when the entity is an
//! account, every `evidence.sample_accounts` entry, and every occurrence of those
//! accounts in `summary` and `evidence.because`. For account signals the `signal_id`
//! is re-keyed too (see [`Pseudonymizer::signal_id`]): it is an unkeyed hash of the rule,
//! the account and the event time, all but the account printed in the signal, so
//! anyone with a list of candidate accounts could otherwise confirm which one a
//! signal is about.
//!
//! What is not: IP addresses and IPv6 prefixes (an IP decision is only useful if the
//! WAF can match the address; they identify a network, not a customer account, and are
//! in every access log anyway), service names, trace ids, counts and times.
//!
//! Free-text replacement (summaries, `because`, log lines) works on the accounts known
//! to the record: one left-to-right pass over the original text that, at each position,
//! replaces the longest known account starting there and then skips past it. So
//! `bob@x.com` and `bob@x.com.au` in one signal each get their own pseudonym, a short
//! account name (`a`) never matches inside a pseudonym inserted for another one, and
//! replacement never cascades. Matching is exact (bytes) and ignores word boundaries:
//! an account that is also an ordinary word in the text (`web`, `in`) is replaced there
//! too. That errs on the side of privacy: text can be over-pseudonymized, never leak a
//! known account.

use std::fmt;
use std::path::Path;

use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::config::KeyError;
use crate::decisions::{Decision, Scope};
use crate::hash::hex;
use crate::signal::{EntityType, Signal};

/// Shortest accepted key, in bytes after trimming surrounding whitespace.
pub const MIN_KEY_BYTES: usize = 16;

/// What every account pseudonym starts with.
pub const ACCOUNT_PREFIX: &str = "acct_";

/// The environment variable read for the key when `privacy.key_file` is empty.
pub const DEFAULT_KEY_ENV: &str = "ATOWATCH_PSEUDONYM_KEY";

/// Domain separation for re-keyed signal ids, so they are never an account's HMAC.
const SIGNAL_ID_DOMAIN: &[u8] = b"atowatch signal_id\0";
const KEY_ID_DOMAIN: &[u8] = b"atowatch key id\0";

/// `[privacy]`: whether account identifiers are pseudonymized, and where the key is.
///
/// The key itself is never part of the configuration, so printing the effective config
/// (`check-config`) cannot reveal it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrivacyConfig {
    /// Replace account names in signals, decisions and logs with keyed pseudonyms.
    /// Off by default.
    pub pseudonymize_accounts: bool,
    /// A file holding the key (surrounding whitespace is trimmed). When set, it is the
    /// only source: `key_env` is not consulted.
    pub key_file: String,
    /// The environment variable holding the key, used when `key_file` is empty.
    pub key_env: String,
}

impl Default for PrivacyConfig {
    fn default() -> Self {
        PrivacyConfig {
            pseudonymize_accounts: false,
            key_file: String::new(),
            key_env: DEFAULT_KEY_ENV.to_string(),
        }
    }
}

impl PrivacyConfig {
    /// Static checks (no file or environment access): when enabled, a key source must
    /// be named.
    pub fn validate(&self) -> Result<(), KeyError> {
        if self.key_env.contains(['=', '\0']) {
            return Err(KeyError {
                key: "privacy.key_env".into(),
                message: "must be an environment variable name (no `=` or NUL)".into(),
            });
        }
        if self.pseudonymize_accounts
            && self.key_file.trim().is_empty()
            && self.key_env.trim().is_empty()
        {
            return Err(KeyError {
                key: "privacy.key_file".into(),
                message: "privacy.pseudonymize_accounts is on: set privacy.key_file or \
                          privacy.key_env to where the key is"
                    .into(),
            });
        }
        Ok(())
    }
}

/// Why a pseudonymizer could not be built. No variant carries the key or any part of it.
#[derive(Debug, thiserror::Error)]
pub enum PrivacyError {
    #[error("privacy.key_file `{path}`: cannot read the pseudonymization key: {source}")]
    KeyFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "privacy.pseudonymize_accounts is on, privacy.key_file is empty and the environment \
         variable {var} (privacy.key_env) is not set"
    )]
    KeyEnvUnset { var: String },
    #[error(
        "privacy.pseudonymize_accounts is on but neither privacy.key_file nor privacy.key_env \
         names a key"
    )]
    NoKeySource,
    #[error(
        "the pseudonymization key from {origin} is {len} bytes after trimming whitespace; at \
         least {MIN_KEY_BYTES} are required (e.g. the output of `openssl rand -hex 32`)"
    )]
    KeyTooShort { origin: String, len: usize },
}

/// Maps account identifiers to keyed pseudonyms. Cheap to clone; `Debug` never shows
/// the key.
#[derive(Clone)]
pub struct Pseudonymizer {
    /// HMAC state already keyed: each pseudonym clones it and hashes only the input.
    mac: Hmac<Sha256>,
    /// Where the key came from (the key file or the variable), for logs.
    origin: String,
}

impl fmt::Debug for Pseudonymizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pseudonymizer")
            .field("key", &"<redacted>")
            .field("key_id", &self.key_id())
            .field("origin", &self.origin)
            .finish()
    }
}

impl Pseudonymizer {
    /// `None` when pseudonymization is off. Otherwise the key is read from
    /// `key_file` when that is set, else from the environment variable `key_env`
    /// (through `get_env`, e.g. `|v| std::env::var(v).ok()`). Surrounding whitespace
    /// (a file's trailing newline) is trimmed; the rest, at least [`MIN_KEY_BYTES`]
    /// bytes, is the key exactly as written (a hex string is used as its text, not
    /// decoded).
    pub fn from_config(
        cfg: &PrivacyConfig,
        get_env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Pseudonymizer>, PrivacyError> {
        if !cfg.pseudonymize_accounts {
            return Ok(None);
        }
        let file = cfg.key_file.trim();
        let var = cfg.key_env.trim();
        let (bytes, origin) = if !file.is_empty() {
            let bytes = std::fs::read(Path::new(file)).map_err(|source| PrivacyError::KeyFile {
                path: file.to_string(),
                source,
            })?;
            (bytes, format!("privacy.key_file `{file}`"))
        } else if !var.is_empty() {
            let v = get_env(var).ok_or_else(|| PrivacyError::KeyEnvUnset {
                var: var.to_string(),
            })?;
            (v.into_bytes(), format!("environment variable {var}"))
        } else {
            return Err(PrivacyError::NoKeySource);
        };
        let key = bytes.trim_ascii();
        if key.len() < MIN_KEY_BYTES {
            return Err(PrivacyError::KeyTooShort {
                origin,
                len: key.len(),
            });
        }
        let mut p = Pseudonymizer::from_key(key);
        p.origin = origin;
        Ok(Some(p))
    }

    /// A pseudonymizer over raw key bytes, used as given (no trimming or length
    /// check: [`from_config`](Self::from_config) does those).
    pub fn from_key(key: &[u8]) -> Pseudonymizer {
        Pseudonymizer {
            mac: Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length"),
            origin: "key bytes".to_string(),
        }
    }

    /// Where the key came from, e.g. "environment variable ATOWATCH_PSEUDONYM_KEY".
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// A short fingerprint of the key (8 hex characters of an HMAC of a constant), safe
    /// to log: instances that print the same `key_id` produce the same pseudonyms.
    pub fn key_id(&self) -> String {
        hex(&self.hmac(&[KEY_ID_DOMAIN])[..4])
    }

    fn hmac(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut m = self.mac.clone();
        for p in parts {
            m.update(p);
        }
        m.finalize().into_bytes().into()
    }

    /// The pseudonym of one account: `acct_` + hex(HMAC-SHA256(key, raw)[..16]).
    ///
    /// `raw` is the account key as atowatch counts it (after lowercasing, when
    /// `normalize.lowercase_accounts` is on, and shortening past 256 bytes,
    /// `normalize::account_name`); the bytes are hashed as they are, with
    /// nothing prepended, so an enforcement point can compute the same value with any
    /// HMAC-SHA256 implementation, e.g.
    /// `"acct_" + hmac.new(key, account.encode(), "sha256").hexdigest()[:32]`.
    pub fn account(&self, raw: &str) -> String {
        let mut s = String::with_capacity(ACCOUNT_PREFIX.len() + 32);
        s.push_str(ACCOUNT_PREFIX);
        s.push_str(&hex(&self.hmac(&[raw.as_bytes()])[..16]));
        s
    }

    /// The id an account signal carries once pseudonymized: 32 hex characters, like
    /// every `signal_id`, keyed and derived from the original id only. It is as stable
    /// as the original (a redelivered event crossing the same threshold at the same
    /// event time gives the same id again, on any instance with the same key), so
    /// consumers keep deduplicating on it; and a decision made from the raw signal gets
    /// the same id through [`decision`](Self::decision).
    pub fn signal_id(&self, raw_id: &str) -> String {
        hex(&self.hmac(&[SIGNAL_ID_DOMAIN, raw_id.as_bytes()])[..16])
    }

    /// Pseudonymizes a signal in place (see the module docs for what changes). Apply it
    /// once: a pseudonym is an ordinary string to a second pass.
    pub fn signal(&self, s: &mut Signal) {
        let mut raws: Vec<&str> = s
            .evidence
            .sample_accounts
            .iter()
            .map(String::as_str)
            .collect();
        let is_account = s.entity.kind == EntityType::Account;
        if is_account {
            raws.push(&s.entity.value);
        }
        let r = Replacer::new(self, &raws);
        let summary = r.apply(&s.summary);
        let because = s.evidence.because.as_deref().map(|b| r.apply(b));
        let samples: Vec<String> = s
            .evidence
            .sample_accounts
            .iter()
            .map(|a| r.pseudonym_of(a))
            .collect();
        let entity = is_account.then(|| r.pseudonym_of(&s.entity.value));
        drop(r);
        s.summary = summary;
        s.evidence.because = because;
        s.evidence.sample_accounts = samples;
        if let Some(e) = entity {
            s.entity.value = e;
            s.signal_id = self.signal_id(&s.signal_id);
        }
    }

    /// Pseudonymizes a decision made from a raw signal, in place: for account scope the
    /// value, the id (`account:<pseudonym>`), the account in `reason` and the
    /// `signal_id` (the same as [`signal`](Self::signal) gives the signal). IP and
    /// range decisions are left as they are: their reasons (IP rules' summaries) name
    /// no account.
    ///
    /// Equivalently, pseudonymize the signal first and decide on that: the decision
    /// comes out the same, and this must then not be applied again.
    pub fn decision(&self, d: &mut Decision) {
        if d.scope != Scope::Account {
            return;
        }
        let p = self.account(&d.value);
        d.reason = self.text(&d.reason, &[&d.value]);
        d.id = format!("{}:{p}", d.scope.as_str());
        d.value = p;
        d.signal_id = self.signal_id(&d.signal_id);
    }

    /// Replaces every occurrence of the given accounts in a log line (or any text)
    /// with their pseudonyms, longest match first, in one pass. Empty names are
    /// ignored.
    pub fn text(&self, s: &str, accounts: &[&str]) -> String {
        Replacer::new(self, accounts).apply(s)
    }
}

/// Known accounts with their pseudonyms, longest first.
struct Replacer<'a> {
    pairs: Vec<(&'a str, String)>,
}

impl<'a> Replacer<'a> {
    fn new(p: &Pseudonymizer, raws: &[&'a str]) -> Replacer<'a> {
        let mut names: Vec<&'a str> = raws.iter().copied().filter(|r| !r.is_empty()).collect();
        // Longest first (ties in byte order, for a deterministic order).
        names.sort_unstable_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        names.dedup();
        Replacer {
            pairs: names.into_iter().map(|n| (n, p.account(n))).collect(),
        }
    }

    fn pseudonym_of(&self, raw: &str) -> String {
        self.pairs
            .iter()
            .find(|(n, _)| *n == raw)
            .map(|(_, p)| p.clone())
            .unwrap_or_else(|| {
                // Only empty names are left out of `pairs`; they stay empty.
                debug_assert!(raw.is_empty());
                String::new()
            })
    }

    /// One left-to-right pass over the original text: at each position, the longest
    /// known account starting there is replaced and skipped, so inserted pseudonyms are
    /// never searched again.
    fn apply(&self, text: &str) -> String {
        if self.pairs.is_empty() {
            return text.to_string();
        }
        let bytes = text.as_bytes();
        let mut out = String::with_capacity(text.len() + 16);
        let mut copied = 0;
        let mut i = 0;
        while i < bytes.len() {
            // A UTF-8 name can only match at a char boundary: its first byte is never a
            // continuation byte.
            match self
                .pairs
                .iter()
                .find(|(n, _)| bytes[i..].starts_with(n.as_bytes()))
            {
                Some((n, p)) => {
                    out.push_str(&text[copied..i]);
                    out.push_str(p);
                    i += n.len();
                    copied = i;
                }
                None => i += 1,
            }
        }
        out.push_str(&text[copied..]);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leftmost_longest_in_one_pass() {
        let p = Pseudonymizer::from_key(b"0123456789abcdef");
        let (a, au, x) = (
            p.account("bob@x.com"),
            p.account("bob@x.com.au"),
            p.account("a"),
        );
        let out = p.text(
            "bob@x.com.au, bob@x.com and a",
            &["a", "bob@x.com", "bob@x.com.au"],
        );
        assert_eq!(out, format!("{au}, {a} {x}nd {x}"));
        assert_eq!(p.text("plain", &[""]), "plain");
        assert_eq!(
            p.text("é bob é", &["bob"]),
            format!("é {} é", p.account("bob"))
        );
    }
}
