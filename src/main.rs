//! The `atowatch` command line. `anyhow` lives here only; the library has typed errors.

use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use atowatch::config::{Config, ConfigError, Dur};
use atowatch::engine::Engine;
use atowatch::replay::{self, ReplayError, ReplayOptions};
use atowatch::simulate::{self, AttackKind, SimOptions};

#[derive(Parser)]
#[command(
    name = "atowatch",
    version,
    about = "Account-takeover detection over a stream of authentication events",
    long_about = "atowatch keeps windowed state per IP, per account and per service over \
authentication events (user.login success/failure, session.create) and emits ATO \
signals: brute force, credential stuffing, user enumeration, distributed credential \
stuffing, and the successful login that follows an attack.",
    after_help = "Try it with no setup:\n  \
atowatch simulate --seed 7 --duration 2h --out events.jsonl --labels labels.json\n  \
atowatch replay events.jsonl > signals.jsonl\n\n\
Every threshold comes from config; `atowatch check-config` prints the defaults."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Detect on events read from files or stdin; signals go to stdout as JSON lines.
    #[command(
        after_help = "Input: one native JSON event per line (see README, \"Events in\"). \
Invalid lines are counted by reason and never stop the run (with --dead-letter they are \
kept, with the reason). The summary goes to stderr.\n\n\
Exit status: 0 when the input was read (even with invalid lines); 2 for an unreadable \
file or a bad config.\n\nExamples:\n  \
atowatch replay events.jsonl > signals.jsonl\n  \
zcat day.jsonl.gz | atowatch replay --config my.toml - > signals.jsonl\n  \
atowatch replay --dead-letter bad.jsonl a.jsonl b.jsonl"
    )]
    Replay {
        /// Config file (TOML). Without it the embedded defaults (config/default.toml) apply.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Input event format.
        #[arg(long, default_value = "native", value_parser = ["native"])]
        format: String,
        /// Write invalid lines here as JSON lines: reason, detail, file, line, raw text.
        #[arg(long, value_name = "FILE")]
        dead_letter: Option<PathBuf>,
        /// No progress lines or summary on stderr.
        #[arg(long, short)]
        quiet: bool,
        /// Event files, read in order; `-` or none reads stdin.
        files: Vec<PathBuf>,
    },
    /// Write realistic authentication traffic with labelled attacks (deterministic per seed).
    #[command(
        after_help = "A benign population (home IPs, corporate NATs with hundreds of users, \
mobile CGNAT, typos, forgotten passwords, session.create after logins, a service that \
naturally fails a lot) with attacks woven in, each named in the labels file with its \
accounts, IPs and service.\n\nAttack kinds: bruteforce, distributed_bruteforce, \
credential_stuffing, credential_stuffing_slow (needs --duration of at least 21h), \
user_enumeration, ip_velocity, distributed_credential_stuffing, account_takeover.\n\n\
Examples:\n  atowatch simulate --seed 7 --duration 2h --out events.jsonl --labels labels.json\n  \
atowatch simulate --duration 26h --attacks credential_stuffing_slow --out slow.jsonl\n  \
atowatch simulate --attacks none --events 1000000 --accounts 100000 --ips 50000 --out benign.jsonl"
    )]
    Simulate {
        /// Random seed: the same seed and options give byte-identical output.
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// Simulated time span, e.g. 30m, 2h, 26h.
        #[arg(long, default_value = "2h")]
        duration: Dur,
        /// Start time (RFC 3339).
        #[arg(long, default_value = "2026-11-21T00:00:00Z")]
        start: String,
        /// Benign accounts.
        #[arg(long, default_value_t = 5_000)]
        accounts: u32,
        /// Benign client IPs (approximate).
        #[arg(long, default_value_t = 3_000)]
        ips: u32,
        /// Target number of benign login attempts (default: about 5 per second).
        #[arg(long)]
        events: Option<u64>,
        /// Comma-separated attack kinds to include, `all`, or `none`.
        #[arg(long, default_value = "all")]
        attacks: String,
        /// Events file (JSON lines); `-` is stdout.
        #[arg(long, default_value = "-")]
        out: PathBuf,
        /// Labels file (JSON): which accounts, IPs and services each attack used.
        #[arg(long)]
        labels: Option<PathBuf>,
    },
    /// Validate a config file and print the effective config (defaults filled in).
    #[command(after_help = "Errors name the file, line and key, e.g.\n  \
my.toml:12: rules.bruteforce.min_failures: must be at least 1\n\
Exit status: 0 if valid, 2 if not. With no file, prints the embedded defaults.")]
    CheckConfig {
        /// The config file to check.
        file: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Replay {
            config,
            format: _,
            dead_letter,
            quiet,
            files,
        } => cmd_replay(config, dead_letter, quiet, files),
        Cmd::Simulate {
            seed,
            duration,
            start,
            accounts,
            ips,
            events,
            attacks,
            out,
            labels,
        } => cmd_simulate(
            seed, duration, &start, accounts, ips, events, &attacks, out, labels,
        ),
        Cmd::CheckConfig { file } => cmd_check_config(file),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("atowatch: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn load_config(path: Option<PathBuf>) -> Result<Config, ConfigError> {
    Config::load(path.as_deref())
}

fn cmd_replay(
    config: Option<PathBuf>,
    dead_letter: Option<PathBuf>,
    quiet: bool,
    files: Vec<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let cfg = load_config(config)?;
    let mut engine = Engine::new(cfg);
    let opts = ReplayOptions {
        inputs: files.clone(),
        dead_letter,
        progress_every: (!quiet).then_some(Duration::from_secs(2)),
    };
    let stdout = io::stdout();
    let mut out = io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let mut err = io::stderr();
    let summary = match replay::run(&mut engine, &opts, &mut out, &mut err) {
        Ok(s) => s,
        Err(
            e @ (ReplayError::Open { .. }
            | ReplayError::Read { .. }
            | ReplayError::DeadLetter { .. }),
        ) => {
            eprintln!("atowatch: {e}");
            return Ok(ExitCode::from(2));
        }
        Err(e) => return Err(e.into()),
    };
    drop(out);
    if !quiet {
        let _ = err.write_all(summary.render(&replay::display_inputs(&files)).as_bytes());
    }
    Ok(ExitCode::SUCCESS)
}

#[allow(clippy::too_many_arguments)]
fn cmd_simulate(
    seed: u64,
    duration: Dur,
    start: &str,
    accounts: u32,
    ips: u32,
    events: Option<u64>,
    attacks: &str,
    out: PathBuf,
    labels: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let start_ms = atowatch::event::parse_rfc3339_ms(start).ok_or_else(|| {
        anyhow::anyhow!("--start `{start}` is not an RFC 3339 time (e.g. 2026-11-21T00:00:00Z)")
    })?;
    let mut opts = SimOptions {
        start_ms,
        accounts,
        ips,
        benign_events: events,
        ..SimOptions::for_duration(seed, duration.ms())
    };
    opts.attacks = match attacks.trim() {
        "all" => SimOptions::default_attacks(duration.ms()),
        "none" | "" => Vec::new(),
        list => list
            .split(',')
            .map(|s| {
                s.trim()
                    .parse::<AttackKind>()
                    .map_err(|e| anyhow::anyhow!("--attacks: {e}"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?,
    };
    let sim = simulate::generate(&opts)?;
    let t0 = std::time::Instant::now();
    if out.as_os_str() == "-" {
        let stdout = io::stdout();
        if let Err(e) = sim.write_jsonl(io::BufWriter::new(stdout.lock())) {
            if e.kind() != io::ErrorKind::BrokenPipe {
                return Err(e.into());
            }
        }
    } else {
        let f = std::fs::File::create(&out)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", out.display()))?;
        sim.write_jsonl(io::BufWriter::with_capacity(1 << 20, f))?;
    }
    if let Some(p) = &labels {
        let text = serde_json::to_string_pretty(&sim.labels)?;
        std::fs::write(p, text + "\n")
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", p.display()))?;
    }
    let mut err = io::stderr();
    if out.as_os_str() != "-" || !io::stdout().is_terminal() {
        let _ = writeln!(
            err,
            "simulate: {} events, {} attacks{} in {:.2}s{}",
            replay::group(sim.len() as u64),
            sim.labels.attacks.len(),
            if sim.labels.skipped.is_empty() {
                String::new()
            } else {
                format!(
                    " ({} skipped: {})",
                    sim.labels.skipped.len(),
                    sim.labels
                        .skipped
                        .iter()
                        .map(|s| s.reason.as_str())
                        .collect::<Vec<_>>()
                        .join("; ")
                )
            },
            t0.elapsed().as_secs_f64(),
            labels
                .map(|p| format!("; labels in {}", p.display()))
                .unwrap_or_default()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn cmd_check_config(file: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    match load_config(file.clone()) {
        Ok(cfg) => {
            let name = file
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "embedded defaults".into());
            println!("# {name}: valid. Effective configuration:\n");
            print!("{}", cfg.to_toml());
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("atowatch: {e}");
            Ok(ExitCode::from(2))
        }
    }
}
