//! What a command prints: a table for people, one JSON object for scripts, and the exit code.

use std::io::{IsTerminal as _, Write};
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

/// The command ran, but its check or operation failed.
pub const EXIT_FAILED: i32 = 1;
/// The configuration or the command line is wrong.
pub const EXIT_CONFIG: i32 = 2;

/// A command's result, printed by [`Report::print`].
#[derive(Debug)]
pub(crate) struct Report {
    pub(crate) code: i32,
    /// For people, on stdout.
    pub(crate) human: String,
    /// For people, on stderr (what went wrong).
    pub(crate) human_err: String,
    pub(crate) json: Value,
}

impl Report {
    /// A successful report (`ok: true` is added to the JSON).
    pub(crate) fn ok(human: String, mut json: Value) -> Report {
        json["ok"] = Value::Bool(true);
        Report {
            code: 0,
            human,
            human_err: String::new(),
            json,
        }
    }

    /// A report whose check failed: printed like a success, with exit code 1.
    pub(crate) fn failed(human: String, mut json: Value) -> Report {
        json["ok"] = Value::Bool(false);
        Report {
            code: EXIT_FAILED,
            human,
            human_err: String::new(),
            json,
        }
    }

    pub(crate) fn print(self, json: bool, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
        if json {
            let text = serde_json::to_string_pretty(&self.json).unwrap_or_default();
            let _ = writeln!(out, "{text}");
        } else {
            let _ = write!(out, "{}", self.human);
            let _ = write!(err, "{}", self.human_err);
        }
        self.code
    }
}

/// A command that could not run to the end.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) code: i32,
    pub(crate) kind: &'static str,
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn config(message: impl Into<String>) -> Failure {
        Failure {
            code: EXIT_CONFIG,
            kind: "config",
            message: message.into(),
        }
    }

    pub(crate) fn failed(kind: &'static str, message: impl Into<String>) -> Failure {
        Failure {
            code: EXIT_FAILED,
            kind,
            message: message.into(),
        }
    }

    /// A failure of the core crate: its message is already free of secrets.
    pub(crate) fn from_error(error: &tokenward::Error) -> Failure {
        use tokenward::Error;
        let cause = error.cause();
        let kind = match cause {
            Error::InvalidClient(_) => "invalid_client",
            Error::InsufficientScope { .. } => "insufficient_scope",
            Error::Transport(_) => "unreachable",
            Error::Timeout(_) => "timeout",
            Error::RateLimited { .. } => "rate_limited",
            Error::Store(_) => "store",
            Error::Config(_) => "config",
            e if e.is_reauthorization_required() => "reauthorization_required",
            _ => "endpoint",
        };
        let code = if kind == "config" {
            EXIT_CONFIG
        } else {
            EXIT_FAILED
        };
        Failure {
            code,
            kind,
            message: tokenward::error::chain(error).to_string(),
        }
    }

    pub(crate) fn into_report(self) -> Report {
        // A server's text can carry terminal escapes: never sent to a terminal raw.
        let shown: String = self
            .message
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        Report {
            code: self.code,
            human: String::new(),
            human_err: format!("error: {shown}\n"),
            json: json!({
                "ok": false,
                "error": { "kind": self.kind, "message": self.message },
            }),
        }
    }
}

impl From<crate::config::ConfigError> for Failure {
    fn from(e: crate::config::ConfigError) -> Failure {
        Failure::config(e.message)
    }
}

impl From<tokenward::Error> for Failure {
    fn from(e: tokenward::Error) -> Failure {
        Failure::from_error(&e)
    }
}

/// `key  value` lines, the keys padded to one width.
pub(crate) fn pairs(rows: &[(&str, String)]) -> String {
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    rows.iter()
        .map(|(k, v)| format!("{k:<width$}  {v}\n"))
        .collect()
}

/// A table: a header row and aligned columns (two spaces apart).
pub(crate) fn grid(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(visible_len(cell));
        }
    }
    let line = |cells: Vec<String>| {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                text.push_str(cell);
            } else {
                let pad = widths[i] - visible_len(cell);
                text.push_str(cell);
                text.push_str(&" ".repeat(pad + 2));
            }
        }
        text.trim_end().to_owned() + "\n"
    };
    let mut text = line(header.iter().map(|h| (*h).to_owned()).collect());
    for row in rows {
        text.push_str(&line(row.clone()));
    }
    text
}

/// The length of `s` without ANSI colour codes.
fn visible_len(s: &str) -> usize {
    strip(s).chars().count()
}

/// `s` without ANSI colour codes.
fn strip(s: &str) -> String {
    let mut out = String::new();
    let mut in_code = false;
    for c in s.chars() {
        match (in_code, c) {
            (false, '\u{1b}') => in_code = true,
            (true, 'm') => in_code = false,
            (true, _) => {}
            (false, c) => out.push(c),
        }
    }
    out
}

/// Whether to colour: stdout is a terminal and `NO_COLOR` is unset.
pub(crate) fn colour_on_terminal() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

/// `text` in green, yellow or red when `colour`.
pub(crate) fn paint(text: &str, level: Level, colour: bool) -> String {
    if !colour {
        return text.to_owned();
    }
    let code = match level {
        Level::Good => "32",
        Level::Warn => "33",
        Level::Bad => "31",
    };
    format!("\u{1b}[{code}m{text}\u{1b}[0m")
}

/// How a state reads.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Level {
    Good,
    Warn,
    Bad,
}

/// A wall-clock time as RFC 3339, seconds; past the year 9999 (an `exp` in milliseconds),
/// the seconds since the epoch.
pub(crate) fn time(t: SystemTime) -> String {
    const YEAR_10000: u64 = 253_402_300_800;
    if unix(t) >= YEAR_10000 {
        return format!("{} s after the epoch", unix(t));
    }
    humantime::format_rfc3339_seconds(t).to_string()
}

/// A duration in seconds and larger units (`59m 58s`).
pub(crate) fn span(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

/// Seconds since the Unix epoch.
pub(crate) fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A spinner on stderr while a wait lasts longer than a second, on a terminal only. Cleared
/// when dropped, before anything else is printed.
pub(crate) struct Spinner {
    bar: Option<indicatif::ProgressBar>,
}

impl Spinner {
    pub(crate) fn start(message: &str, terminal: bool) -> Spinner {
        if !terminal || !std::io::stderr().is_terminal() {
            return Spinner { bar: None };
        }
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_message(message.to_owned());
        // Drawn only once the wait has lasted a second.
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
        let shown = bar.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(1));
            if !shown.is_finished() {
                shown.set_draw_target(indicatif::ProgressDrawTarget::stderr());
                shown.enable_steady_tick(Duration::from_millis(100));
            }
        });
        Spinner { bar: Some(bar) }
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}
