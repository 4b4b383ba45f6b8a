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
use axum::response::Response;

use super::routes::failed;
use crate::pipeline::error::{ErrorKind, StepError};

/// The deadline for invocations under `host.json`'s `functionTimeout` in `app_root`: the
/// timeout less a margin of a tenth of it, at least 1 s and at most 30 s (time to answer and to
/// record the failure). `Ok(None)` when there is no `host.json` (not run by the host) or the
/// timeout is unbounded (`-1`); no `functionTimeout` means the host's default, the plan's, at
/// least 5 minutes — the margin then applies to that.
///
/// A `host.json` that is not JSON, or a `functionTimeout` that is not a TimeSpan, is an error
/// naming the file and the value: the host would still apply *some* timeout (its default, or
/// refuse to start), so going on without a deadline would let one long invocation get the
/// handler restarted, failing every invocation in flight.
pub fn from_host_json(app_root: &Path) -> Result<Option<Duration>, String> {
    let path = app_root.join("host.json");
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: cannot read it: {e}", path.display())),
    };
    let json: serde_json::Value = serde_json::from_str(text.trim_start_matches('\u{feff}'))
        .map_err(|e| format!("{}: not JSON ({e})", path.display()))?;
    let object = json
        .as_object()
        .ok_or_else(|| format!("{}: not a JSON object", path.display()))?;
    let timeout = match object
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case("functionTimeout"))
    {
        None | Some((_, serde_json::Value::Null)) => return Ok(Some(before(DEFAULT_TIMEOUT))),
        Some((_, value)) => value,
    };
    let unreadable = || {
        format!(
            "{}: functionTimeout {timeout} is not a TimeSpan like \"00:10:00\" (or \"-1\" for none)",
            path.display()
        )
    };
    let text = timeout.as_str().ok_or_else(unreadable)?.trim();
    if text == "-1" {
        return Ok(None);
    }
    parse_timespan(text)
        .map(|t| Some(before(t)))
        .ok_or_else(unreadable)
}

/// The Consumption plan's default `functionTimeout`, the shortest any plan uses.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// `timeout` less the margin.
fn before(timeout: Duration) -> Duration {
    let margin = (timeout / 10).clamp(Duration::from_secs(1), Duration::from_secs(30));
    timeout.saturating_sub(margin)
}

/// A .NET `TimeSpan` as `host.json` writes it: `[d.]hh:mm:ss[.fff]`; `None` for anything else
/// (`-1`, unbounded, is handled by the caller).
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
    // Out-of-range fields are refused, as .NET's `TimeSpan.Parse` refuses them.
    if parts.next().is_some() || hours >= 24 || minutes >= 60 || !(0.0..60.0).contains(&seconds) {
        return None;
    }
    Some(
        Duration::from_secs(days * 86_400 + hours * 3_600 + minutes * 60)
            + Duration::from_secs_f64(seconds),
    )
}

/// Runs `work`, an invocation of `function`, under `deadline`; past it, the invocation fails
/// retryably.
pub async fn enforce(
    function: &str,
    deadline: Duration,
    work: impl Future<Output = Response>,
) -> Response {
    match tokio::time::timeout(deadline, work).await {
        Ok(response) => response,
        Err(_) => {
            let error = StepError::retry(anyhow!(
                "stopped after {deadline:?}, before the host's functionTimeout; \
                 what was stored is kept and the next attempt resumes"
            ));
            failed(function, "deadline", &error, ErrorKind::Retry)
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
        assert_eq!(from_host_json(&root), Ok(Some(Duration::from_secs(570))));
    }

    #[test]
    fn host_json_variants() {
        let dir = tempfile::tempdir().unwrap();
        let with = |text: &str| {
            std::fs::write(dir.path().join("host.json"), text).unwrap();
            from_host_json(dir.path())
        };
        assert_eq!(from_host_json(Path::new("/nonexistent-app-root")), Ok(None));
        assert_eq!(with(r#"{"functionTimeout": "-1"}"#), Ok(None));
        assert_eq!(
            with(r#"{"version": "2.0"}"#),
            Ok(Some(Duration::from_secs(270)))
        );
        assert_eq!(
            with(r#"{"FunctionTimeout": "00:00:10"}"#),
            Ok(Some(Duration::from_secs(9)))
        );
        for (bad, shows) in [
            (
                r#"{"functionTimeout": "10 minutes"}"#,
                "functionTimeout \"10 minutes\"",
            ),
            (r#"{"functionTimeout": 600}"#, "functionTimeout 600"),
            (r#"{"functionTimeout": "00:61:00"}"#, "00:61:00"),
            ("{not json", "not JSON"),
            ("[]", "not a JSON object"),
        ] {
            let e = with(bad).unwrap_err();
            assert!(e.contains("host.json") && e.contains(shows), "{bad}: {e}");
        }
    }
}
