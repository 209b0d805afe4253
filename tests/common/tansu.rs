//! Starts a throwaway [tansu](https://github.com/tansu-io/tansu) broker (an independent,
//! Kafka-API-compatible broker written in Rust) for end-to-end tests.
//!
//! ```ignore
//! let Some(tansu) = common::tansu::start() else { return }; // prints "SKIP: ..." to stderr
//! tansu.create_topic("auth-events", 3);
//! let consumer: BaseConsumer = tansu.client_config().set("group.id", "g").create().unwrap();
//! ```
//!
//! Each [`Tansu`] is its own process with in-memory storage (`memory://tansu/`) on its own free
//! loopback port and with its own cluster id, so tests running in parallel never share state or a
//! port. tansu 0.6 opens exactly one socket (the Kafka listener): no Prometheus, schema-registry
//! or admin port to collide on. The broker is killed (and reaped) when the [`Tansu`] is dropped.
//!
//! Known differences from Apache Kafka (tansu 0.6.0, `memory://` storage), found by probing:
//! - A fetch from an offset inside a record batch skips the rest of that batch: the broker only
//!   serves batches whose *base* offset is at or after the fetch offset. Resuming from a
//!   committed offset or seeking therefore loses records unless every record is its own batch:
//!   produce test input with [`Tansu::producer_config`] (`batch.num.messages=1`).
//! - ListOffsets "latest" (`fetch_watermarks`' high mark, `auto.offset.reset=latest`) is the
//!   last batch's base offset + 1, too low when that batch holds several records. Fetch
//!   responses (and so statistics' `hi_offset`/`consumer_lag`) are right.
//! - `offsets_for_times` compares the broker's append time of each batch, not record
//!   timestamps, and answers offset 0 (not end/-1) when nothing was appended after the time.
//! - No topic auto-creation (produce to an unknown topic times out): create topics first.
//! - Not implemented: KIP-848 `group.protocol=consumer` (the member never gets an assignment),
//!   EndTxn (transactions), CreatePartitions, OffsetForLeaderEpoch. Static membership
//!   (`group.instance.id`) rebalances forever with `session.timeout.ms=6000` (fine at 10 s+).
//! - Classic group rebalances take ~3 s (the coordinator pauses joining followers).
//!
//! Environment:
//! - `TANSU_BIN`: path of the `tansu` binary (otherwise `PATH`, then `$CARGO_HOME/bin`, then
//!   `~/.cargo/bin`).
//! - `TANSU_LOG`: `RUST_LOG`-style filter for the broker's own log (default `warn`); the log goes
//!   to a temp file, shown when startup fails and when a test panics while the broker is alive.
#![allow(dead_code)]

use std::fs::{self, File};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};

/// How to get the broker when it is missing.
pub const INSTALL_HINT: &str = "cargo install tansu --locked --features dynostore";

/// How long [`start`] waits for the broker to answer metadata requests.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// How long [`Tansu::create_topic`] waits for the topic to show up in metadata.
pub const TOPIC_TIMEOUT: Duration = Duration::from_secs(30);

/// Attempts at picking a port; another process may grab the port between our probe and
/// tansu's bind, in which case tansu exits (or someone else answers) and we try a new port.
const START_ATTEMPTS: u32 = 3;

/// Variables tansu reads as defaults for its flags. We pass the ones we need explicitly and
/// remove the rest so a developer's shell cannot reconfigure the test broker.
const TANSU_ENV: &[&str] = &[
    "CLUSTER_ID",
    "LISTENER_URL",
    "ADVERTISED_LISTENER_URL",
    "STORAGE_ENGINE",
    "SCHEMA_REGISTRY",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "DATA_LAKE",
    "ICEBERG_CATALOG",
    "ICEBERG_NAMESPACE",
    "ICEBERG_WAREHOUSE",
    "DELTA_DATABASE",
];

static INSTANCE: AtomicU32 = AtomicU32::new(0);

/// A running tansu broker; killed when dropped.
pub struct Tansu {
    child: Child,
    /// `127.0.0.1:PORT`, ready for `bootstrap.servers`.
    pub bootstrap: String,
    pub port: u16,
    /// Unique per instance; tansu reports it in metadata.
    pub cluster_id: String,
    /// Working directory of the broker (holds `tansu.log`); removed on drop.
    dir: PathBuf,
    log_path: PathBuf,
}

/// Locates the `tansu` binary: `$TANSU_BIN`, then `PATH`, then `$CARGO_HOME/bin/tansu`, then
/// `~/.cargo/bin/tansu`.
pub fn tansu_binary() -> Option<PathBuf> {
    if let Some(bin) = std::env::var_os("TANSU_BIN").filter(|bin| !bin.is_empty()) {
        let bin = PathBuf::from(bin);
        if is_executable(&bin) {
            return Some(bin);
        }
        eprintln!(
            "warning: TANSU_BIN={} is not an executable file; looking elsewhere",
            bin.display()
        );
    }
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|dir| dir.join("tansu"));
    let cargo_home =
        std::env::var_os("CARGO_HOME").map(|home| PathBuf::from(home).join("bin/tansu"));
    let home = std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo/bin/tansu"));
    on_path
        .chain(cargo_home)
        .chain(home)
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(path)
            .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
    }
    #[cfg(not(unix))]
    {
        path.is_file()
    }
}

/// Starts a fresh broker and waits until it answers Kafka metadata requests.
///
/// Returns `None`, after printing a `SKIP:` line to stderr, only when tansu is not installed.
/// Panics, showing the broker's output, when it is installed but does not come up.
pub fn start() -> Option<Tansu> {
    let Some(bin) = tansu_binary() else {
        // CI installs tansu and sets this, so a skip there is a failure, not a pass.
        if std::env::var_os("ATOWATCH_REQUIRE_TANSU").is_some() {
            panic!("tansu not installed and ATOWATCH_REQUIRE_TANSU is set ({INSTALL_HINT})");
        }
        eprintln!("SKIP: tansu not installed ({INSTALL_HINT}; or set TANSU_BIN)");
        return None;
    };
    let mut failures = Vec::new();
    for attempt in 1..=START_ATTEMPTS {
        let mut tansu = spawn(&bin);
        match tansu.wait_until_ready(STARTUP_TIMEOUT) {
            Ok(()) => return Some(tansu),
            Err(why) => {
                let logs = tansu.logs();
                failures.push(format!(
                    "attempt {attempt} (port {}): {why}\n--- tansu output ---\n{logs}",
                    tansu.port
                ));
                // Only a lost port race is worth retrying; anything else is a real failure.
                let port_race = why.contains("another broker")
                    || logs.contains("Address already in use")
                    || logs.contains("AddrInUse");
                if !port_race {
                    break;
                }
            }
        }
    }
    panic!(
        "tansu ({}) failed to start:\n{}",
        bin.display(),
        failures.join("\n")
    );
}

fn spawn(bin: &Path) -> Tansu {
    let n = INSTANCE.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let tag = format!("{}-{n}-{nanos:09}", std::process::id());
    let dir = std::env::temp_dir().join(format!("atowatch-tansu-{tag}"));
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    let log_path = dir.join("tansu.log");
    let log =
        File::create(&log_path).unwrap_or_else(|e| panic!("creating {}: {e}", log_path.display()));
    let log_err = log.try_clone().expect("cloning the tansu log handle");

    let port = free_port();
    let url = format!("tcp://127.0.0.1:{port}");
    let cluster_id = format!("atowatch-{tag}");
    let mut command = Command::new(bin);
    command
        .arg("broker")
        .args(["--cluster-id", &cluster_id])
        .args(["--listener-url", &url])
        .args(["--advertised-listener-url", &url])
        .args(["--storage-engine", "memory://tansu/"])
        // tansu loads `.env` from its working directory (and parents): use an empty one.
        .current_dir(&dir)
        .env(
            "RUST_LOG",
            std::env::var("TANSU_LOG").unwrap_or_else(|_| "warn".to_owned()),
        )
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err);
    for var in TANSU_ENV {
        command.env_remove(var);
    }
    let child = command
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {} broker: {e}", bin.display()));
    Tansu {
        child,
        bootstrap: format!("127.0.0.1:{port}"),
        port,
        cluster_id,
        dir,
        log_path,
    }
}

/// A loopback port that was free a moment ago.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0");
    listener.local_addr().expect("local_addr").port()
}

impl Tansu {
    /// Client settings pointing at this broker, with short reconnect backoff (the librdkafka
    /// default backs off up to 10 s) and no noisy logging. Add `group.id` etc. as needed.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.bootstrap)
            .set("broker.address.family", "v4")
            .set("reconnect.backoff.ms", "50")
            .set("reconnect.backoff.max.ms", "500");
        config
    }

    /// [`Tansu::client_config`] for producing test input: one record per batch, so consumers
    /// can start at any offset (tansu skips the rest of a batch fetched from its middle).
    pub fn producer_config(&self) -> ClientConfig {
        let mut config = self.client_config();
        config.set("batch.num.messages", "1");
        config
    }

    /// Everything the broker has written to stdout/stderr so far.
    pub fn logs(&self) -> String {
        fs::read(&self.log_path)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_else(|e| format!("<cannot read {}: {e}>", self.log_path.display()))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Creates a topic (replication factor 1) and waits until metadata lists all its partitions
    /// with a leader. Panics on any error, including "topic already exists".
    pub fn create_topic(&self, name: &str, partitions: i32) {
        self.create_topic_with_config(name, partitions, &[]);
    }

    /// [`Tansu::create_topic`] with topic configs, e.g. `[("cleanup.policy", "compact")]`.
    pub fn create_topic_with_config(&self, name: &str, partitions: i32, config: &[(&str, &str)]) {
        let admin: AdminClient<DefaultClientContext> = self
            .client_config()
            .create()
            .expect("creating a Kafka admin client");
        let topic = config.iter().fold(
            NewTopic::new(name, partitions, TopicReplication::Fixed(1)),
            |topic, (key, value)| topic.set(key, value),
        );
        let options = AdminOptions::new()
            .operation_timeout(Some(Duration::from_secs(10)))
            .request_timeout(Some(Duration::from_secs(10)));
        let results = block_on(admin.create_topics([&topic], &options))
            .unwrap_or_else(|e| panic!("CreateTopics {name}: {e}\n{}", self.logs()));
        for result in results {
            if let Err((topic, code)) = result {
                panic!("CreateTopics {topic}: {code:?}\n{}", self.logs());
            }
        }
        self.wait_for_topic(name, partitions, TOPIC_TIMEOUT);
    }

    /// Waits until metadata shows `name` with `partitions` partitions, each with a leader.
    pub fn wait_for_topic(&self, name: &str, partitions: i32, timeout: Duration) {
        let probe = self.probe();
        let deadline = Instant::now() + timeout;
        loop {
            let last = match probe.fetch_metadata(Some(name), Duration::from_secs(2)) {
                Ok(metadata) => match metadata.topics().iter().find(|t| t.name() == name) {
                    Some(topic) if topic.error().is_some() => {
                        format!("topic error {:?}", topic.error())
                    }
                    Some(topic) => {
                        let led = topic
                            .partitions()
                            .iter()
                            .filter(|p| p.error().is_none() && p.leader() >= 0)
                            .count();
                        if topic.partitions().len() == partitions as usize
                            && led == partitions as usize
                        {
                            return;
                        }
                        format!(
                            "{} partitions listed, {led} with a leader, want {partitions}",
                            topic.partitions().len()
                        )
                    }
                    None => "topic not in metadata".to_owned(),
                },
                Err(e) => format!("metadata: {e}"),
            };
            if Instant::now() >= deadline {
                panic!(
                    "topic {name} not ready after {timeout:?}: {last}\n--- tansu output ---\n{}",
                    self.logs()
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// A metadata-only client.
    fn probe(&self) -> BaseConsumer {
        self.client_config()
            .create()
            .expect("creating a Kafka metadata client")
    }

    fn wait_until_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let probe = self.probe();
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().map_err(|e| e.to_string())? {
                return Err(format!("tansu exited during startup ({status})"));
            }
            let last = match probe.fetch_metadata(None, Duration::from_millis(500)) {
                Ok(metadata) if metadata.brokers().is_empty() => {
                    "metadata lists no brokers".to_owned()
                }
                Ok(_) => {
                    // Make sure it is *our* broker that answered, not someone who took the port.
                    match probe.client().fetch_cluster_id(Duration::from_secs(2)) {
                        Some(id) if id == self.cluster_id => {
                            // The probe succeeded; make sure the broker did not die meanwhile.
                            if let Some(status) =
                                self.child.try_wait().map_err(|e| e.to_string())?
                            {
                                return Err(format!("tansu exited during startup ({status})"));
                            }
                            return Ok(());
                        }
                        Some(id) => {
                            return Err(format!(
                                "another broker (cluster id {id:?}) answered on port {}",
                                self.port
                            ));
                        }
                        None => "metadata ok but no cluster id yet".to_owned(),
                    }
                }
                Err(e) => format!("metadata: {e}"),
            };
            if Instant::now() >= deadline {
                return Err(format!("not ready after {timeout:?}: {last}"));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            // Keep the log around and show it: it usually explains the failed test.
            eprintln!(
                "--- tansu {} output ({}) ---\n{}",
                self.bootstrap,
                self.log_path.display(),
                self.logs()
            );
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// Runs an rdkafka admin future to completion. rdkafka drives these from its own background
/// thread, so a bare current-thread runtime is enough.
fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("building a tokio runtime")
        .block_on(future)
}
