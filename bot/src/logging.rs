//! Where log lines go and in what shape.
//!
//! `ONCALL_LOG` filters (`warn` unless set, e.g. `info` or
//! `oncall=debug`); `ONCALL_LOG_FORMAT=json` writes one JSON object per line
//! (what a cluster's log pipeline parses), each with the fields of the spans
//! it happened in: a command's lines carry its `invocation` span (`id`,
//! `platform`, `principal`, `verb`, `decision`, `outcome`). The command text
//! and secrets are never span fields or log fields.

use tracing_subscriber::EnvFilter;

/// The log line formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

impl Format {
    /// From `ONCALL_LOG_FORMAT`: unset or `text`, or `json`.
    pub fn from_env() -> Result<Format, String> {
        match std::env::var("ONCALL_LOG_FORMAT") {
            Err(_) => Ok(Format::Text),
            Ok(v) => match v.to_ascii_lowercase().as_str() {
                "" | "text" => Ok(Format::Text),
                "json" => Ok(Format::Json),
                other => Err(format!(
                    "ONCALL_LOG_FORMAT: expected `text` or `json`, got {other:?}"
                )),
            },
        }
    }
}

/// Installs the process's subscriber, writing to standard error.
pub fn init() -> Result<(), String> {
    let format = Format::from_env()?;
    let filter = EnvFilter::try_from_env("ONCALL_LOG").unwrap_or_else(|_| "warn".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        Format::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .flatten_event(true)
            .init(),
        // Colours only for a person at a terminal, never in files or pods' logs.
        Format::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
    Ok(())
}
