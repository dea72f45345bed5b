//! Logging. Nothing here ever sees a token's secret: surfaces log reasons,
//! ids and names only.

use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, Settings};

/// Logs to stderr. `serve` logs at the configured level; the other commands
/// only warnings and errors unless a level was set explicitly.
pub fn init(settings: &Settings, serving: bool) {
    let level = if serving || std::env::var_os("GATEPASS_LOG_LEVEL").is_some() {
        settings.log_level.as_str()
    } else {
        "warn"
    };
    // A bare level keeps chatty dependencies at warn; a full directive is
    // taken as written.
    let directive = if level.contains(['=', ',']) {
        level.to_owned()
    } else {
        format!("{level},sqlx=warn,actix_server=warn")
    };
    let filter = EnvFilter::try_new(directive).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let installed = match settings.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    if installed.is_err() {
        eprintln!("gatepass: a logger was already installed");
    }
}
