//! `atowatch replay`: events from files or stdin through the engine, signals to a writer,
//! and a summary a person can read.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::config::SignalFormat;
use crate::engine::{Engine, Processed, StateSize, Stats};
use crate::event::{InvalidReason, format_ts};
use crate::signal::{Rule, Signal};

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("cannot open {path}: {source}")]
    Open { path: String, source: io::Error },
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: io::Error },
    #[error("cannot write signals: {0}")]
    Write(io::Error),
    #[error("cannot write dead letters to {path}: {source}")]
    DeadLetter { path: String, source: io::Error },
    #[error(transparent)]
    Privacy(#[from] crate::privacy::PrivacyError),
}

/// Where invalid lines were, per reason: the first few, for the summary.
const FIRST_LINES: usize = 5;

#[derive(Debug, Default, Clone)]
pub struct Summary {
    pub lines: u64,
    pub stats: Stats,
    pub first_invalid: Vec<(InvalidReason, Vec<String>)>,
    pub state: StateSize,
    pub elapsed: Duration,
    pub first_event_ms: Option<i64>,
    pub last_event_ms: Option<i64>,
    /// Stopped early because the signal reader went away (e.g. `| head`).
    pub output_closed: bool,
}

impl Summary {
    pub fn events_per_sec(&self) -> f64 {
        self.lines as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn render(&self, inputs: &[String]) -> String {
        let s = &self.stats;
        let mut o = String::new();
        let _ = writeln!(o, "atowatch replay: summary");
        let _ = writeln!(
            o,
            "  input       {} ({} lines)",
            inputs.join(", "),
            group(self.lines)
        );
        if let (Some(a), Some(b)) = (self.first_event_ms, self.last_event_ms) {
            let _ = writeln!(o, "  event time  {} .. {}", format_ts(a), format_ts(b));
        }
        let _ = writeln!(
            o,
            "  events      {} accepted: user.login success {}, failure {}; session.create {}",
            group(s.accepted()),
            group(s.login_success),
            group(s.login_failure),
            group(s.session_create)
        );
        let _ = writeln!(
            o,
            "  invalid     {}{}",
            group(s.invalid_total()),
            if s.invalid_total() > 0 {
                " (not fatal), by reason:"
            } else {
                ""
            }
        );
        for (reason, lines) in &self.first_invalid {
            let n = s.invalid[reason.index()];
            let more = if n as usize > lines.len() {
                ", ..."
            } else {
                ""
            };
            let _ = writeln!(
                o,
                "    {:<24}{:>10}   at {}{more}",
                reason.as_str(),
                group(n),
                lines.join(", ")
            );
        }
        let _ = writeln!(
            o,
            "  late        {} dropped (older than the watermark: time.allowed_lateness)",
            group(s.late)
        );
        let _ = writeln!(
            o,
            "  duplicates  {} ignored (event_id seen within time.dedup_window)",
            group(s.duplicates)
        );
        let _ = writeln!(o, "  signals     {}", group(s.signals_total()));
        for r in Rule::ALL {
            let n = s.signals[r.index()];
            if n > 0 {
                let _ = writeln!(o, "    {:<34}{:>8}", r.as_str(), group(n));
            }
        }
        if s.suppressed > 0 {
            let _ = writeln!(o, "    (suppressed: {})", group(s.suppressed));
        }
        let st = &self.state;
        let _ = writeln!(
            o,
            "  state       {} IPs, {} accounts, {} services tracked; {} expired, {} evicted; ~{:.1} MiB",
            group(st.ips as u64),
            group(st.accounts as u64),
            group(st.services as u64),
            group(st.expired),
            group(st.evicted),
            st.bytes as f64 / (1024.0 * 1024.0)
        );
        let _ = writeln!(
            o,
            "  time        {:.2} s wall, {} events/s",
            self.elapsed.as_secs_f64(),
            group(self.events_per_sec() as u64)
        );
        if self.output_closed {
            let _ = writeln!(
                o,
                "  note        signal output was closed early; input not read to the end"
            );
        }
        o
    }
}

/// 1234567 -> "1,234,567".
pub fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub struct ReplayOptions {
    /// Files to read in order; `-` is stdin. Empty means stdin.
    pub inputs: Vec<PathBuf>,
    /// Invalid lines, with reason and position, as JSON lines.
    pub dead_letter: Option<PathBuf>,
    /// Progress lines on stderr every this often (None: never).
    pub progress_every: Option<Duration>,
    /// Event schema; None: the config's `input.format`.
    pub format: Option<crate::config::InputFormat>,
}

struct DeadLetters {
    path: String,
    out: io::BufWriter<File>,
}

/// Runs the whole replay. Signals are written as JSON lines to `out`.
pub fn run(
    engine: &mut Engine,
    opts: &ReplayOptions,
    out: &mut dyn Write,
    progress: &mut dyn Write,
) -> Result<Summary, ReplayError> {
    let inputs: Vec<PathBuf> = if opts.inputs.is_empty() {
        vec![PathBuf::from("-")]
    } else {
        opts.inputs.clone()
    };
    // Open everything first: a typo in the third file should fail before any output.
    let mut readers: Vec<(String, Box<dyn Read>)> = Vec::new();
    for p in &inputs {
        let name = p.display().to_string();
        if name == "-" {
            readers.push(("<stdin>".into(), Box::new(io::stdin())));
        } else {
            let f = File::open(p).map_err(|source| ReplayError::Open {
                path: name.clone(),
                source,
            })?;
            if f.metadata().map(|m| m.is_dir()).unwrap_or(false) {
                return Err(ReplayError::Open {
                    path: name,
                    source: io::Error::other("is a directory"),
                });
            }
            readers.push((name, Box::new(f)));
        }
    }
    let dlq = match &opts.dead_letter {
        None => None,
        Some(p) => {
            let path = p.display().to_string();
            let f = File::create(p).map_err(|source| ReplayError::DeadLetter {
                path: path.clone(),
                source,
            })?;
            Some(DeadLetters {
                path,
                out: io::BufWriter::new(f),
            })
        }
    };

    let start = Instant::now();
    let mut last_progress = start;
    let mut summary = Summary::default();
    let mut signals: Vec<Signal> = Vec::new();
    let output_format = engine.config().signals.output_format;
    let format = opts.format.unwrap_or(engine.config().input.format);
    // The same pseudonyms as `run`, so replay and run still agree byte for byte.
    let pseudo = crate::privacy::Pseudonymizer::from_config(&engine.config().privacy, |k| {
        std::env::var(k).ok()
    })?;
    let mut sink = Sink {
        out,
        dlq,
        pseudo,
        output_format,
        line_out: Vec::with_capacity(1024),
        first: vec![Vec::new(); InvalidReason::ALL.len()],
        closed: false,
    };
    let mut chunk = Chunk::default();

    // A line longer than this is oversized whatever it holds: read no more of it.
    let limit = engine.config().input.max_event_bytes + 2;
    'files: for (name, r) in readers {
        let mut reader = BufReader::with_capacity(1 << 20, r);
        let mut lineno: u64 = 0;
        loop {
            // Read straight into the chunk's buffer; a blank line is taken back out.
            let at = chunk.bytes.len();
            let (n, oversized) =
                read_line_bounded(&mut reader, &mut chunk.bytes, limit).map_err(|source| {
                    ReplayError::Read {
                        path: name.clone(),
                        source,
                    }
                })?;
            if n == 0 {
                break;
            }
            lineno += 1;
            let end = at + trim_line(&chunk.bytes[at..]).len();
            if !oversized && chunk.bytes[at..end].iter().all(|b| b.is_ascii_whitespace()) {
                chunk.bytes.truncate(at);
                continue;
            }
            summary.lines += 1;
            chunk.lines.push(Line {
                start: at,
                end,
                lineno,
                // Only the start of the line was kept (for the dead-letter file).
                cut: oversized.then_some(n),
            });
            if chunk.lines.len() == CHUNK_LINES {
                sink.flush(engine, format, &name, &mut chunk, &mut signals)?;
                if sink.closed {
                    break 'files;
                }
                if let Some(every) = opts.progress_every {
                    let now = Instant::now();
                    if now.duration_since(last_progress) >= every {
                        last_progress = now;
                        let el = now.duration_since(start).as_secs_f64();
                        let _ = writeln!(
                            progress,
                            "replay: {} lines, {} events/s, {} signals, event time {}",
                            group(summary.lines),
                            group((summary.lines as f64 / el) as u64),
                            group(engine.stats().signals_total()),
                            engine.watermark_time().unwrap_or_default()
                        );
                    }
                }
            }
        }
        // Dead letters name the file a line came from: a chunk never spans two.
        sink.flush(engine, format, &name, &mut chunk, &mut signals)?;
        if sink.closed {
            break 'files;
        }
    }
    summary.output_closed = sink.closed;
    let (out, dlq, first) = (sink.out, sink.dlq, sink.first);
    match out.flush() {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => summary.output_closed = true,
        Err(e) => return Err(ReplayError::Write(e)),
        Ok(()) => {}
    }
    if let Some(mut d) = dlq {
        d.out.flush().map_err(|source| ReplayError::DeadLetter {
            path: d.path.clone(),
            source,
        })?;
    }
    summary.elapsed = start.elapsed();
    summary.stats = engine.stats().clone();
    summary.state = engine.state_size();
    summary.first_event_ms = engine.first_event_ms();
    summary.last_event_ms = engine.max_event_ms();
    summary.first_invalid = InvalidReason::ALL
        .iter()
        .zip(first)
        .filter(|(_, v)| !v.is_empty())
        .map(|(r, v)| (*r, v))
        .collect();
    Ok(summary)
}

/// Lines read before the engine runs on them: enough for each line's state to be loaded
/// a few lines ahead (`engine::Ahead`), few enough that signals still follow the input
/// closely.
pub const CHUNK_LINES: usize = 64;

/// Lines read and not yet processed, in one buffer.
#[derive(Default)]
struct Chunk {
    bytes: Vec<u8>,
    lines: Vec<Line>,
}

struct Line {
    start: usize,
    /// Without the line end.
    end: usize,
    lineno: u64,
    /// Set for a line cut for size: its full length.
    cut: Option<usize>,
}

/// Where replay's results go: signals to the output, invalid lines to the dead-letter
/// file and the summary's line list.
struct Sink<'o> {
    out: &'o mut dyn Write,
    dlq: Option<DeadLetters>,
    pseudo: Option<crate::privacy::Pseudonymizer>,
    output_format: SignalFormat,
    line_out: Vec<u8>,
    first: Vec<Vec<String>>,
    /// The signal reader went away (e.g. `| head`).
    closed: bool,
}

impl Sink<'_> {
    /// Runs the engine on the chunk's lines, writes what they yield, and empties it.
    fn flush(
        &mut self,
        engine: &mut Engine,
        format: crate::formats::Format,
        name: &str,
        chunk: &mut Chunk,
        signals: &mut Vec<Signal>,
    ) -> Result<(), ReplayError> {
        let max = engine.config().input.max_event_bytes;
        let lines = chunk.lines.iter().map(|l| match l.cut {
            Some(n) => Err(crate::formats::oversized(n, max)),
            None => Ok(&chunk.bytes[l.start..l.end]),
        });
        let mut failed = None;
        crate::formats::process_many(engine, format, lines, signals, |i, processed, sigs| {
            if failed.is_some() || self.closed {
                return;
            }
            let l = &chunk.lines[i];
            let line = &chunk.bytes[l.start..l.end];
            if let Err(e) = self.accept(name, l.lineno, line, processed, sigs) {
                failed = Some(e);
            }
        });
        chunk.bytes.clear();
        chunk.lines.clear();
        failed.map_or(Ok(()), Err)
    }

    fn accept(
        &mut self,
        name: &str,
        lineno: u64,
        line: &[u8],
        processed: Processed,
        signals: &mut [Signal],
    ) -> Result<(), ReplayError> {
        if let Processed::Invalid(e) = processed {
            let slot = &mut self.first[e.reason.index()];
            if slot.len() < FIRST_LINES {
                slot.push(format!("{name}:{lineno}"));
            }
            if let Some(d) = self.dlq.as_mut() {
                let rec = serde_json::json!({
                    "reason": e.reason.as_str(),
                    "detail": e.detail,
                    "source": name,
                    "line": lineno,
                    "raw": String::from_utf8_lossy(line),
                });
                writeln!(d.out, "{rec}").map_err(|source| ReplayError::DeadLetter {
                    path: d.path.clone(),
                    source,
                })?;
            }
        }
        for s in signals.iter_mut() {
            if let Some(p) = &self.pseudo {
                p.signal(s);
            }
            self.line_out.clear();
            crate::finding::render_into(s, self.output_format, &mut self.line_out);
            self.line_out.push(b'\n');
            if let Err(e) = self.out.write_all(&self.line_out) {
                if e.kind() == io::ErrorKind::BrokenPipe {
                    self.closed = true;
                    return Ok(());
                }
                return Err(ReplayError::Write(e));
            }
        }
        Ok(())
    }
}

/// Appends one line to `buf`, keeping at most `limit` bytes of it; the rest of a longer
/// line is read and dropped, so one huge line cannot exhaust memory. Returns the line's
/// full length and whether it was cut.
fn read_line_bounded<R: BufRead>(
    r: &mut R,
    buf: &mut Vec<u8>,
    limit: usize,
) -> io::Result<(usize, bool)> {
    let n = r.by_ref().take(limit as u64).read_until(b'\n', buf)?;
    if n < limit || buf.last() == Some(&b'\n') {
        return Ok((n, false));
    }
    let mut total = n;
    loop {
        let chunk = r.fill_buf()?;
        if chunk.is_empty() {
            return Ok((total, true));
        }
        match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => {
                r.consume(i + 1);
                return Ok((total + i + 1, true));
            }
            None => {
                let len = chunk.len();
                r.consume(len);
                total += len;
            }
        }
    }
}

fn trim_line(b: &[u8]) -> &[u8] {
    let mut end = b.len();
    while end > 0 && (b[end - 1] == b'\n' || b[end - 1] == b'\r') {
        end -= 1;
    }
    &b[..end]
}

/// Convenience for tests and benches: replays in-memory JSON lines, returns the signals.
pub fn replay_bytes(engine: &mut Engine, input: &[u8]) -> Vec<Signal> {
    let mut out = Vec::new();
    for line in input.split(|b| *b == b'\n') {
        let line = trim_line(line);
        if line.iter().all(|b| b.is_ascii_whitespace()) {
            continue;
        }
        engine.process_json(line, &mut out);
    }
    out
}

pub fn display_inputs(inputs: &[PathBuf]) -> Vec<String> {
    if inputs.is_empty() {
        return vec!["<stdin>".into()];
    }
    inputs
        .iter()
        .map(|p| {
            if p == Path::new("-") {
                "<stdin>".to_string()
            } else {
                p.display().to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_huge_line_is_cut_and_the_next_line_is_read_whole() {
        let mut input = vec![b'x'; 10_000];
        input.push(b'\n');
        input.extend_from_slice(b"short\nlast");
        let mut r = BufReader::with_capacity(64, &input[..]);
        let mut buf = Vec::new();
        assert_eq!(
            read_line_bounded(&mut r, &mut buf, 100).unwrap(),
            (10_001, true)
        );
        assert_eq!(buf.len(), 100);
        buf.clear();
        assert_eq!(
            read_line_bounded(&mut r, &mut buf, 100).unwrap(),
            (6, false)
        );
        assert_eq!(buf, b"short\n");
        buf.clear();
        assert_eq!(
            read_line_bounded(&mut r, &mut buf, 100).unwrap(),
            (4, false)
        );
        buf.clear();
        assert_eq!(
            read_line_bounded(&mut r, &mut buf, 100).unwrap(),
            (0, false)
        );
    }
}
