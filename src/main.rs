//! The `atowatch` command line. `anyhow` lives here only; the library has typed errors.

use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use atowatch::config::{Config, ConfigError, Dur};
use atowatch::demo::DemoOptions;
use atowatch::engine::Engine;
use atowatch::http::HttpState;
use atowatch::kafka::produce::{ProduceOptions, produce_simulation};
use atowatch::kafka::{self, Health, RunOptions};
use atowatch::metrics::Metrics;
use atowatch::replay::{self, ReplayError, ReplayOptions};
use atowatch::simulate::{self, AttackKind, SimOptions};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Parser)]
#[command(
    name = "atowatch",
    version,
    about = "Account-takeover detection over a stream of authentication events",
    long_about = "atowatch keeps windowed state per IP, per account and per service over \
authentication events (user.login success/failure, session.create) and emits ATO \
signals: brute force, credential stuffing, user enumeration, distributed credential \
stuffing, and the successful login that follows an attack.",
    after_help = "Try it with no setup (embedded Kafka, simulated attacks, live signals):\n  \
atowatch demo\n\n\
In production:\n  \
ATOWATCH_BROKERS=kafka:9092 atowatch run --config atowatch.toml\n\n\
On files:\n  \
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
    /// See the whole pipeline with nothing installed: embedded Kafka, simulated attacks, live signals.
    #[command(
        after_help = "Starts an embedded Kafka cluster on loopback (librdkafka's mock \
broker: the real protocol over TCP), creates the topics auth-events, ato-signals and \
auth-events-dlq, produces simulated traffic with attacks woven in, and runs the real \
`run` pipeline against it. Each signal prints as one line; /metrics is served while it \
runs. At the end: events, signals by rule, and which labelled attacks were detected.\n\n\
Scenarios: all (every attack that fits in --span), none (benign only), or a \
comma-separated list of bruteforce, distributed_bruteforce, credential_stuffing, \
credential_stuffing_slow, user_enumeration, ip_velocity, distributed_credential_stuffing, \
account_takeover.\n\nExamples:\n  atowatch demo\n  atowatch demo --duration 60s --rate 20000\n  \
atowatch demo --scenario credential_stuffing,account_takeover --json | jq ."
    )]
    Demo {
        /// How long traffic is produced (wall clock).
        #[arg(long, default_value = "20s")]
        duration: Dur,
        /// Average events per second produced.
        #[arg(long, default_value_t = 5_000)]
        rate: u64,
        /// Attack kinds to weave in: `all`, `none`, or a comma-separated list.
        #[arg(long, default_value = "all")]
        scenario: String,
        /// Simulated time the traffic covers, compressed into --duration.
        #[arg(long, default_value = "2h")]
        span: Dur,
        /// Print each signal as its raw JSON instead of a readable line.
        #[arg(long)]
        json: bool,
        /// Random seed for the simulated traffic.
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// Partitions of the events topic (one consumer group reads them all).
        #[arg(long, default_value_t = 3)]
        partitions: i32,
        /// Where /metrics, /healthz and /readyz are served (a free port if taken).
        #[arg(long, default_value = "127.0.0.1:9464")]
        http: String,
    },
    /// Consume events from Kafka as a consumer group; publish signals and dead letters.
    #[command(
        after_help = "Reads [kafka] and [http] from the config (see config/default.toml); \
environment variables override them for containers: ATOWATCH_BROKERS, ATOWATCH_GROUP_ID, \
ATOWATCH_TOPICS (comma-separated), ATOWATCH_SIGNALS_TOPIC, ATOWATCH_DEAD_LETTER_TOPIC, \
ATOWATCH_HTTP_BIND. Any librdkafka property goes in [kafka.properties] (SASL/TLS too).\n\n\
Decisions (block this IP, step up this account) are served at GET /v1/decisions with the \
token in ATOWATCH_DECISIONS_TOKEN (or decisions.api_token_file); POST /v1/decisions \
adds one by hand (JSON: ip, range or account; duration; reason) and DELETE \
/v1/decisions/{id} lifts one, with the different token in ATOWATCH_DECISIONS_ADMIN_TOKEN \
(or decisions.admin_token_file). Without a token each stays off.\n\n\
At-least-once: an offset is committed only after every signal and dead-letter record of \
that event and of all earlier events of its partition is acknowledged. SIGTERM or SIGINT \
stops fetching, drains, commits and exits 0 within kafka.shutdown_timeout; a second \
signal exits at once. Broker outages are retried, never fatal; /readyz says not ready \
meanwhile.\n\nExit status: 0 after a clean stop; 2 for a bad config; 1 for a failure.\n\n\
Examples:\n  atowatch run --config atowatch.toml\n  \
ATOWATCH_BROKERS=kafka:9092 atowatch run"
    )]
    Run {
        /// Config file (TOML). Without it the embedded defaults apply.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
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
        /// Input event schema: native, ocsf (OCSF Authentication, class_uid 3002) or ecs
        /// (Elastic Common Schema). Default: the config's input.format (native).
        #[arg(long, value_parser = ["native", "ocsf", "ecs"])]
        format: Option<String>,
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
        /// Produce the events to this Kafka cluster (HOST:PORT[,...]) instead of a file.
        #[arg(long, value_name = "HOST:PORT")]
        brokers: Option<String>,
        /// Topic for --brokers.
        #[arg(long, default_value = "auth-events")]
        topic: String,
        /// With --brokers: events per second (default: as fast as the broker takes them).
        #[arg(long)]
        rate: Option<f64>,
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
            format,
            dead_letter,
            quiet,
            files,
        } => cmd_replay(config, format, dead_letter, quiet, files),
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
            brokers,
            topic,
            rate,
        } => cmd_simulate(
            SimArgs {
                seed,
                duration,
                start,
                accounts,
                ips,
                events,
                attacks,
                out,
                labels,
            },
            brokers.map(|b| (b, topic, rate)),
        ),
        Cmd::Run { config } => cmd_run(config),
        Cmd::Demo {
            duration,
            rate,
            scenario,
            span,
            json,
            seed,
            partitions,
            http,
        } => cmd_demo(
            duration, rate, &scenario, span, json, seed, partitions, http,
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
    format: Option<String>,
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
        format: format
            .map(|f| {
                f.parse()
                    .map_err(|e: String| anyhow::anyhow!("--format: {e}"))
            })
            .transpose()?,
    };
    let stdout = io::stdout();
    let mut out = io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let mut err = io::stderr();
    let summary = match replay::run(&mut engine, &opts, &mut out, &mut err) {
        Ok(s) => s,
        Err(
            e @ (ReplayError::Open { .. }
            | ReplayError::Read { .. }
            | ReplayError::DeadLetter { .. }
            | ReplayError::Privacy(_)),
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

struct SimArgs {
    seed: u64,
    duration: Dur,
    start: String,
    accounts: u32,
    ips: u32,
    events: Option<u64>,
    attacks: String,
    out: PathBuf,
    labels: Option<PathBuf>,
}

fn parse_attacks(list: &str, duration: Dur) -> anyhow::Result<Vec<AttackKind>> {
    Ok(match list.trim() {
        "all" => SimOptions::default_attacks(duration.ms()),
        "none" | "" => Vec::new(),
        list => list
            .split(',')
            .map(|s| {
                s.trim()
                    .parse::<AttackKind>()
                    .map_err(|e| anyhow::anyhow!("{e}"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?,
    })
}

fn cmd_simulate(
    a: SimArgs,
    kafka: Option<(String, String, Option<f64>)>,
) -> anyhow::Result<ExitCode> {
    let SimArgs {
        seed,
        duration,
        start,
        accounts,
        ips,
        events,
        attacks,
        out,
        labels,
    } = a;
    let start_ms = atowatch::event::parse_rfc3339_ms(&start).ok_or_else(|| {
        anyhow::anyhow!("--start `{start}` is not an RFC 3339 time (e.g. 2026-11-21T00:00:00Z)")
    })?;
    let mut opts = SimOptions {
        start_ms,
        accounts,
        ips,
        benign_events: events,
        ..SimOptions::for_duration(seed, duration.ms())
    };
    opts.attacks =
        parse_attacks(&attacks, duration).map_err(|e| anyhow::anyhow!("--attacks: {e}"))?;
    let sim = simulate::generate(&opts)?;
    let t0 = std::time::Instant::now();
    if let Some((brokers, topic, rate)) = kafka {
        let total = sim.len() as u64;
        let sent = produce_simulation(
            &brokers,
            &topic,
            &sim,
            ProduceOptions {
                rate,
                stop: stop_on_ctrl_c(),
                progress: Some(Box::new(move |n| {
                    eprint!("\rsimulate: {n}/{total} events sent   ");
                })),
            },
        )?;
        eprintln!();
        if let Some(p) = &labels {
            let text = serde_json::to_string_pretty(&sim.labels)?;
            std::fs::write(p, text + "\n")
                .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", p.display()))?;
        }
        eprintln!(
            "simulate: {} events to {topic} at {brokers} in {:.2}s",
            replay::group(sent),
            t0.elapsed().as_secs_f64()
        );
        return Ok(ExitCode::SUCCESS);
    }
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

/// A flag set by the first SIGINT/SIGTERM; the second exits at once.
fn stop_on_ctrl_c() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("signal runtime");
        rt.block_on(async move {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("SIGTERM handler");
            for n in 0.. {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
                if n == 0 {
                    eprintln!("\natowatch: stopping (again to exit at once)");
                    flag.store(true, Ordering::SeqCst);
                } else {
                    std::process::exit(130);
                }
            }
        });
    });
    stop
}

fn cmd_run(config: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let mut cfg = match load_config(config.clone()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("atowatch: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let applied = match cfg.apply_env(|k| std::env::var(k).ok()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("atowatch: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    if let Err(e) = kafka::check_properties(&cfg) {
        eprintln!(
            "atowatch: {}: {e}",
            config
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "embedded defaults".into())
        );
        return Ok(ExitCode::from(2));
    }
    if !applied.is_empty() {
        atowatch::info!(
            "config",
            "overridden from the environment: {}",
            applied.join(", ")
        );
    }
    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::default());
    let stop = stop_on_ctrl_c();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("http")
        .enable_all()
        .build()?;
    let (token, admin_token) = match cfg.decisions.tokens(
        std::env::var("ATOWATCH_DECISIONS_TOKEN").ok(),
        std::env::var("ATOWATCH_DECISIONS_ADMIN_TOKEN").ok(),
    ) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("atowatch: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let decisions = Arc::new(atowatch::decisions::DecisionTable::new());
    let (api_on, lift_on) = (token.is_some(), admin_token.is_some());
    let state = HttpState {
        metrics: metrics.clone(),
        health: health.clone(),
        decisions: decisions.clone(),
        token: token.map(Into::into),
        admin_token: admin_token.map(Into::into),
        lowercase_accounts: cfg.normalize.lowercase_accounts,
        allowlist: cfg.allowlist(),
    };
    let addr = rt.block_on(atowatch::http::serve(&cfg.http.bind, state))?;
    atowatch::info!(
        "http",
        "serving /metrics, /healthz, /readyz on http://{addr}"
    );
    // A stop that the drain cannot finish (a commit hanging on a dead coordinator) must
    // still end the process: the bound is a promise to the orchestrator.
    let bound = Duration::from_millis(cfg.kafka.shutdown_timeout.ms() as u64 + 5_000);
    let watchdog_stop = stop.clone();
    std::thread::spawn(move || {
        while !watchdog_stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(bound);
        atowatch::error!("run", "shutdown did not finish within {bound:?}; exiting");
        std::process::exit(1);
    });
    if !api_on {
        atowatch::info!(
            "http",
            "/v1/decisions is off: set decisions.api_token_file or ATOWATCH_DECISIONS_TOKEN"
        );
    }
    atowatch::info!(
        "http",
        "adding and lifting decisions by hand (POST /v1/decisions, DELETE /v1/decisions/{{id}}) is {}",
        if lift_on {
            "on"
        } else {
            "off: set decisions.admin_token_file or ATOWATCH_DECISIONS_ADMIN_TOKEN"
        }
    );
    let opts = RunOptions {
        stop,
        decisions,
        ..RunOptions::default()
    };
    let summary = kafka::run(cfg, metrics, health, opts)?;
    drop(rt);
    Ok(if summary.unacknowledged == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[allow(clippy::too_many_arguments)]
fn cmd_demo(
    duration: Dur,
    rate: u64,
    scenario: &str,
    span: Dur,
    json: bool,
    seed: u64,
    partitions: i32,
    http: String,
) -> anyhow::Result<ExitCode> {
    let attacks = parse_attacks(scenario, span).map_err(|e| anyhow::anyhow!("--scenario: {e}"))?;
    if duration.ms() <= 0 || rate == 0 || partitions < 1 {
        anyhow::bail!("--duration, --rate and --partitions must be positive");
    }
    // The demo prints its own progress; the pipeline's routine log lines would bury it.
    atowatch::logging::default_level(atowatch::logging::Level::Warn);
    let stop = stop_on_ctrl_c();
    let opts = DemoOptions {
        seed,
        duration: Duration::from_millis(duration.ms() as u64),
        rate,
        span_ms: span.ms(),
        attacks,
        json,
        color: io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        partitions,
        http_bind: http,
        stop,
    };
    let mut out = io::stdout();
    let report = atowatch::demo::run(opts, &mut out)?;
    eprint!("{}", report.render_summary());
    Ok(ExitCode::SUCCESS)
}

fn cmd_check_config(file: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    match load_config(file.clone()) {
        Ok(mut cfg) => {
            // What `run` would use: the ATOWATCH_* environment applies here too.
            if let Err(e) = cfg.apply_env(|k| std::env::var(k).ok()) {
                eprintln!("atowatch: {e}");
                return Ok(ExitCode::from(2));
            }
            // librdkafka itself judges the pass-through properties.
            if let Err(e) = kafka::check_properties(&cfg) {
                eprintln!(
                    "atowatch: {}: {e}",
                    file.map(|p| p.display().to_string())
                        .unwrap_or_else(|| "embedded defaults".into())
                );
                return Ok(ExitCode::from(2));
            }
            let name = file
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "embedded defaults".into());
            println!("# {name}: valid. Effective configuration:\n");
            print!("{}", cfg.redacted().to_toml());
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("atowatch: {e}");
            Ok(ExitCode::from(2))
        }
    }
}
