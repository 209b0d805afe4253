//! Log lines on stderr: `2026-11-21T10:03:00.123Z WARN  kafka: text`.
//!
//! One small sink rather than a logging framework: the runtime logs a few dozen kinds of
//! line, librdkafka's own logs are routed here, and a broker outage must not print a
//! line per failed request, so repeats of a line's `key` are rate-limited.
//! `ATOWATCH_LOG=debug|info|warn|error` sets the level (default info).

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Debug = 0,
    Info = 1,
    Warn = 2,
    Error = 3,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Debug => "DEBUG",
            Level::Info => "INFO ",
            Level::Warn => "WARN ",
            Level::Error => "ERROR",
        }
    }
}

static LEVEL: AtomicU8 = AtomicU8::new(u8::MAX);

fn level() -> Level {
    let l = LEVEL.load(Ordering::Relaxed);
    let l = if l == u8::MAX {
        let from_env = match std::env::var("ATOWATCH_LOG").as_deref() {
            Ok("debug") => Level::Debug,
            Ok("warn") => Level::Warn,
            Ok("error") => Level::Error,
            _ => Level::Info,
        } as u8;
        LEVEL.store(from_env, Ordering::Relaxed);
        from_env
    } else {
        l
    };
    match l {
        0 => Level::Debug,
        1 => Level::Info,
        2 => Level::Warn,
        _ => Level::Error,
    }
}

/// Sets the level unless `ATOWATCH_LOG` chose one.
pub fn default_level(l: Level) {
    if std::env::var_os("ATOWATCH_LOG").is_none() {
        LEVEL.store(l as u8, Ordering::Relaxed);
    }
}

pub fn enabled(l: Level) -> bool {
    l >= level()
}

pub fn log(l: Level, target: &str, msg: fmt::Arguments<'_>) {
    if !enabled(l) {
        return;
    }
    let now = crate::event::format_ts(chrono::Utc::now().timestamp_millis());
    eprintln!("{now} {} {target}: {msg}", l.as_str());
}

/// Lines with the same `key` print at most once per `every`; the next one that prints
/// says how many were held back.
pub fn log_limited(l: Level, target: &str, key: &str, every: Duration, msg: fmt::Arguments<'_>) {
    if !enabled(l) {
        return;
    }
    static SEEN: OnceLock<Mutex<HashMap<String, (Instant, u64)>>> = OnceLock::new();
    let mut seen = SEEN
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let now = Instant::now();
    match seen.get_mut(key) {
        Some((last, held)) if now.duration_since(*last) < every => {
            *held += 1;
        }
        Some((last, held)) => {
            let n = std::mem::take(held);
            *last = now;
            drop(seen);
            if n > 0 {
                log(
                    l,
                    target,
                    format_args!("{msg} ({n} more like this held back)"),
                );
            } else {
                log(l, target, msg);
            }
        }
        None => {
            seen.insert(key.to_string(), (now, 0));
            drop(seen);
            log(l, target, msg);
        }
    }
}

#[macro_export]
macro_rules! info {
    ($target:expr, $($arg:tt)+) => {
        $crate::logging::log($crate::logging::Level::Info, $target, format_args!($($arg)+))
    };
}

#[macro_export]
macro_rules! warn {
    ($target:expr, $($arg:tt)+) => {
        $crate::logging::log($crate::logging::Level::Warn, $target, format_args!($($arg)+))
    };
}

#[macro_export]
macro_rules! error {
    ($target:expr, $($arg:tt)+) => {
        $crate::logging::log($crate::logging::Level::Error, $target, format_args!($($arg)+))
    };
}

#[macro_export]
macro_rules! debug {
    ($target:expr, $($arg:tt)+) => {
        $crate::logging::log($crate::logging::Level::Debug, $target, format_args!($($arg)+))
    };
}
