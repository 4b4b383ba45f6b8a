//! Logs: where they go and in which shape.

use tracing_subscriber::EnvFilter;

use crate::redact::RedactingWriter;

/// Logs go to stdout (the Functions host records stdout as Information and stderr as Error).
/// JSON lines under the Functions host or with `AOS_LOG_FORMAT=json`; human lines otherwise.
/// `level` is the default for this crate; `AOS_LOG` (an `EnvFilter`) overrides everything.
/// Every formatted line passes [`crate::redact`] on its way out: whatever a field, a message or
/// a dependency's own log (the storage SDK logs request URLs at debug) carried, no credential
/// reaches stdout, the host or App Insights.
pub fn init(level: &str) {
    let default = format!("{level},typespec_client_core=warn,azure_core=warn,azure_identity=warn");
    let filter = EnvFilter::try_from_env("AOS_LOG").unwrap_or_else(|_| EnvFilter::new(&default));
    let json = std::env::var("AOS_LOG_FORMAT")
        .map(|v| v == "json")
        .unwrap_or(false)
        || std::env::var_os("FUNCTIONS_CUSTOMHANDLER_PORT").is_some();
    // Colour codes only on a terminal (and never with `NO_COLOR`): in a pipe or a log store
    // they are noise, and they would split `name=value` pairs the redaction looks for.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(RedactingWriter(std::io::stdout));
    if json {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
}
