//! Logs on standard output: text for people (colour codes only when standard output is a terminal)
//! by default, or one JSON object a line for machines (`log.format = "json"`).

use tracing_subscriber::EnvFilter;

use crate::config::LogConfig;

pub fn init(cfg: &LogConfig) {
    let filter = EnvFilter::try_new(&cfg.level).unwrap_or_else(|_| EnvFilter::new("info"));
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(true).with_ansi(terminal);
    // A second init (tests, admin commands after serve) is harmless: ignore "already set".
    let _ = if cfg.format == "json" { builder.json().flatten_event(false).try_init() } else { builder.try_init() };
}
