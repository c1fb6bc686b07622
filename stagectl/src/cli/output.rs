//! Rendering engine events: a live display on a terminal, plain timestamped lines when piped,
//! JSON lines with `--json`. Writing to a closed pipe ends the program quietly with exit 0.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use crate::orchestrator::{Phase, Reporter};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Live per-service lines on a terminal.
    Live,
    /// One line per event on stderr.
    Plain,
    /// JSON lines on stdout.
    Json,
}

impl Mode {
    pub fn detect(json: bool) -> Mode {
        if json {
            Mode::Json
        } else if std::io::stderr().is_terminal() && std::env::var_os("CI").is_none() {
            Mode::Live
        } else {
            Mode::Plain
        }
    }
}

/// Writes a line to stdout; a closed pipe (`stagectl status | head -1`) exits 0 at once.
pub fn out(line: &str) {
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = writeln!(stdout, "{line}").and_then(|_| stdout.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
    }
}

/// Writes text as it is (no newline added) to stdout; a closed pipe exits 0 at once.
pub fn raw(text: &[u8]) {
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_all(text).and_then(|_| stdout.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
    }
}

pub fn json<T: Serialize>(value: &T) {
    out(&serde_json::to_string(value).expect("reports serialise"));
}

fn phase_word(p: Phase) -> &'static str {
    match p {
        Phase::Building => "building",
        Phase::Pulling => "pulling",
        Phase::ImageReady => "image",
        Phase::Waiting => "waiting",
        Phase::Removing => "removing",
        Phase::Creating => "creating",
        Phase::Starting => "starting",
        Phase::Probing => "probing",
        Phase::Migrating => "migrate",
        Phase::Loading => "data",
        Phase::Ready => "ready",
        Phase::Completed => "completed",
        Phase::Kept => "unchanged",
        Phase::Failed => "FAILED",
        Phase::Skipped => "skipped",
        Phase::Removed => "removed",
        Phase::Stopping => "stopping",
        Phase::Stopped => "stopped",
        Phase::Pushing => "pushing",
        Phase::Pushed => "pushed",
    }
}

pub struct Console {
    mode: Mode,
    started: Instant,
    multi: MultiProgress,
    bars: Mutex<HashMap<String, ProgressBar>>,
    verbose: bool,
}

impl Console {
    pub fn new(mode: Mode, verbose: bool) -> Self {
        let multi =
            MultiProgress::with_draw_target(if mode == Mode::Live { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() });
        Console { mode, started: Instant::now(), multi, bars: Mutex::new(HashMap::new()), verbose }
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    fn bar(&self, subject: &str) -> ProgressBar {
        let mut bars = self.bars.lock().expect("progress lock");
        bars.entry(subject.to_string())
            .or_insert_with(|| {
                let pb = self.multi.add(ProgressBar::new_spinner());
                pb.set_style(
                    ProgressStyle::with_template("{spinner:.cyan} {prefix:<14.bold} {msg} {elapsed:.dim}").expect("valid template"),
                );
                pb.set_prefix(subject.to_string());
                pb.enable_steady_tick(Duration::from_millis(80));
                pb
            })
            .clone()
    }

    /// A line of text above the live display (or plain on stderr).
    pub fn note(&self, line: &str) {
        match self.mode {
            Mode::Live => {
                let _ = self.multi.println(line);
            }
            Mode::Plain => eprintln!("{line}"),
            Mode::Json => {}
        }
    }

    /// Ends the live display so final output is not interleaved with spinners.
    pub fn finish(&self) {
        for (_, bar) in self.bars.lock().expect("progress lock").drain() {
            if !bar.is_finished() {
                bar.finish();
            }
        }
    }
}

#[derive(Serialize)]
struct Event<'a> {
    event: &'static str,
    t: f64,
    service: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    phase: Option<Phase>,
    #[serde(skip_serializing_if = "str::is_empty")]
    detail: &'a str,
}

impl Reporter for Console {
    fn phase(&self, subject: &str, phase: Phase, detail: &str) {
        let t = self.started.elapsed().as_secs_f64();
        match self.mode {
            Mode::Json => json(&Event { event: "phase", t, service: subject, phase: Some(phase), detail }),
            Mode::Plain => {
                let sep = if detail.is_empty() { "" } else { ": " };
                eprintln!("{t:>7.2}s {subject} {}{sep}{detail}", phase_word(phase));
            }
            Mode::Live => {
                let bar = self.bar(subject);
                let first_line = detail.lines().next().unwrap_or("");
                let msg = if first_line.is_empty() { phase_word(phase).to_string() } else { format!("{} {first_line}", phase_word(phase)) };
                if phase.is_final() {
                    let mark = match phase {
                        Phase::Failed => "✗",
                        Phase::Skipped => "-",
                        _ => "✓",
                    };
                    bar.set_style(ProgressStyle::with_template("{prefix:<16.bold} {msg}").expect("valid template"));
                    bar.set_prefix(format!("{mark} {subject}"));
                    bar.finish_with_message(msg);
                    if phase == Phase::Failed && detail.contains('\n') {
                        let _ = self.multi.println(detail.lines().skip(1).collect::<Vec<_>>().join("\n"));
                    }
                } else {
                    bar.set_message(msg);
                }
            }
        }
    }

    fn bytes(&self, subject: &str, current: u64, total: u64) {
        if self.mode == Mode::Live {
            self.bar(subject).set_message(format!("transferring {} / {}", indicatif::HumanBytes(current), indicatif::HumanBytes(total)));
        }
    }

    fn output(&self, subject: &str, line: &str) {
        if !self.verbose {
            return;
        }
        match self.mode {
            Mode::Json => {
                json(&Event { event: "output", t: self.started.elapsed().as_secs_f64(), service: subject, phase: None, detail: line })
            }
            _ => self.note(&format!("{subject} | {line}")),
        }
    }

    fn note(&self, line: &str) {
        Console::note(self, line);
    }
}
