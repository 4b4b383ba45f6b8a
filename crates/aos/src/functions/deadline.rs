//! Every invocation ends before the host's `functionTimeout`.
//!
//! When an invocation runs past `functionTimeout` the Functions host restarts the handler
//! process, failing every invocation that was running in it. So the handler reads the timeout
//! from `host.json` at start and ends each invocation itself a margin before it: the step is
//! dropped (what it stored stays: the archive resumes element by element), and the invocation
//! fails retryably, so the host tries the message again later. Waiting for block buffers counts
//! against the deadline too: it is part of the step.

use std::path::Path;
use std::time::Duration;

use anyhow::anyhow;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

use super::routes::failed;
use crate::pipeline::error::{ErrorKind, StepError};

/// The deadline for invocations under `host.json`'s `functionTimeout` in `app_root`: the
/// timeout less a margin of a tenth of it, at least 1 s and at most 30 s (time to answer and to
/// record the failure). `None` when the file has no bounded timeout (`-1`, or none: the host's
/// default is then the plan's, at least 5 minutes — the margin then applies to that).
pub fn from_host_json(app_root: &Path) -> Option<Duration> {
    let text = std::fs::read_to_string(app_root.join("host.json")).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    let timeout = json
        .as_object()?
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case("functionTimeout"))
        .and_then(|(_, value)| value.as_str())
        .map_or(Some(DEFAULT_TIMEOUT), parse_timespan)?;
    Some(before(timeout))
}

/// The Consumption plan's default `functionTimeout`, the shortest any plan uses.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// `timeout` less the margin.
fn before(timeout: Duration) -> Duration {
    let margin = (timeout / 10).clamp(Duration::from_secs(1), Duration::from_secs(30));
    timeout.saturating_sub(margin)
}

/// A .NET `TimeSpan` as `host.json` writes it: `[d.]hh:mm:ss[.fff]`; `None` for `-1`
/// (unbounded) or anything unreadable.
fn parse_timespan(text: &str) -> Option<Duration> {
    let text = text.trim();
    let (days, rest) = match text.split_once('.') {
        Some((d, rest)) if !d.contains(':') => (d.parse::<u64>().ok()?, rest),
        _ => (0, text),
    };
    let mut parts = rest.split(':');
    let hours: u64 = parts.next()?.parse().ok()?;
    let minutes: u64 = parts.next()?.parse().ok()?;
    let seconds: f64 = parts.next()?.parse().ok()?;
    if parts.next().is_some() || !(0.0..60.0).contains(&seconds) {
        return None;
    }
    Some(
        Duration::from_secs(days * 86_400 + hours * 3_600 + minutes * 60)
            + Duration::from_secs_f64(seconds),
    )
}

/// Middleware: runs the invocation under `deadline`; past it, the invocation fails retryably.
pub async fn enforce(State(deadline): State<Duration>, request: Request, next: Next) -> Response {
    let function = request.uri().path().trim_start_matches('/').to_string();
    match tokio::time::timeout(deadline, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            let error = StepError::retry(anyhow!(
                "stopped after {deadline:?}, before the host's functionTimeout; \
                 what was stored is kept and the next attempt resumes"
            ));
            failed(&function, "deadline", &error, ErrorKind::Retry)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_timespans_as_host_json_writes_them() {
        assert_eq!(parse_timespan("00:10:00"), Some(Duration::from_secs(600)));
        assert_eq!(parse_timespan("01:00:05"), Some(Duration::from_secs(3605)));
        assert_eq!(
            parse_timespan("1.00:00:00"),
            Some(Duration::from_secs(86_400))
        );
        assert_eq!(
            parse_timespan("00:00:08.5"),
            Some(Duration::from_millis(8500))
        );
        assert_eq!(parse_timespan("-1"), None);
        assert_eq!(parse_timespan("10 minutes"), None);
    }

    #[test]
    fn the_deadline_leaves_a_tenth_between_one_and_thirty_seconds() {
        assert_eq!(before(Duration::from_secs(600)), Duration::from_secs(570));
        assert_eq!(before(Duration::from_secs(100)), Duration::from_secs(90));
        assert_eq!(before(Duration::from_secs(8)), Duration::from_secs(7));
        assert_eq!(before(Duration::from_secs(7200)), Duration::from_secs(7170));
    }

    #[test]
    fn the_repository_host_json_gives_nine_and_a_half_minutes() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        assert_eq!(from_host_json(&root), Some(Duration::from_secs(570)));
    }
}
