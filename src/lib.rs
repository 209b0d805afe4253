//! atowatch: account-takeover detection over a stream of authentication events.
//!
//! Data flow (see `../shared/design.md`): decode ([`event`]) → normalize
//! ([`normalize`]) → engine ([`engine`], with the rules in [`detectors`]) → signals
//! ([`signal`]). [`replay`] drives the engine from files; [`simulate`] writes realistic
//! traffic with labelled attacks.

pub mod config;
pub mod decisions;
pub mod demo;
pub mod detectors;
pub mod engine;
pub mod event;
pub mod finding;
pub mod formats;
pub mod hash;
pub mod http;
pub mod kafka;
pub mod logging;
pub mod metrics;
pub mod normalize;
pub mod privacy;
pub mod replay;
pub mod signal;
pub mod simulate;
pub mod webhook;
