//! `aos status [--json]`: the whole system's state on one screen ([`crate::status`]), and the
//! verdict as the exit code — 0 healthy, 1 degraded, 3 broken (2 for bad settings, as every
//! command).
//!
//! Storage settings are required (the archive's account and the queue connection); the Altinn
//! checks (key, certificate, subscriptions) run when the full settings are there and are
//! reported as "not checked" otherwise, so a storage-only shell still gets the queue picture.

use std::fmt::Write as _;

use super::error::CliError;
use super::settings::{SettingsFrom, register_secrets, register_storage_secrets};
use crate::config::{Settings, StorageSettings};
use crate::domain::Printable;
use crate::redact::redact;
use crate::status::report::{AltinnPart, StoragePart};
use crate::status::{StatusReport, Verdict};

#[derive(clap::Args)]
pub struct Args {
    /// Print the report as one JSON object (the same fields as the text).
    #[arg(long)]
    json: bool,
}

/// Gathers and prints the report; the verdict is the exit status.
pub async fn run(args: Args, from: &SettingsFrom) -> Result<(), CliError> {
    status(args, from).await.map_err(|e| e.named("status"))
}

async fn status(Args { json }: Args, from: &SettingsFrom) -> Result<(), CliError> {
    let source = from.source()?;
    let storage = StorageSettings::from_source(&source).map_err(CliError::usage)?;
    register_storage_secrets(&storage.blob, &storage.queues);
    if let Ok(settings) = Settings::from_source(&source) {
        register_secrets(&settings);
    }
    let report = crate::status::gather(&storage, &source)
        .await
        .map_err(CliError::from)?;
    let out = if json {
        serde_json::to_string_pretty(&report).expect("the report serialises")
    } else {
        text(&report)
    };
    println!("{}", redact(&out));
    match report.status {
        Verdict::Healthy => Ok(()),
        Verdict::Degraded => Err(CliError::Reported),
        Verdict::Broken => Err(CliError::ReportedBroken),
    }
}

/// The one screen: verdict, problems, then each part in a fixed order.
fn text(report: &StatusReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "aos status: {}", report.status.as_str());
    if !report.problems.is_empty() {
        let _ = writeln!(out, "problems:");
        for p in &report.problems {
            let _ = writeln!(out, "  {}: {}", p.severity.as_str(), Printable(&p.what));
        }
    }
    storage_text(&report.storage, &mut out);
    altinn_text(&report.altinn, &mut out);
    out.trim_end().to_string()
}

fn storage_text(part: &StoragePart, out: &mut String) {
    let archive = &part.archive;
    let state = match (archive.reachable, archive.exists, archive.writable) {
        (false, _, _) => "NOT reachable",
        (true, false, _) => {
            "reachable, not created yet (the first archive creates it; check \
                              StorageContainer if archives should be there)"
        }
        (true, true, Some(false)) => "reachable, NOT writable",
        (true, true, _) => "reachable, writable",
    };
    let _ = write!(out, "archive: container {}: {state}", archive.container);
    if let Some(e) = &archive.error {
        let _ = write!(out, " ({})", Printable(e));
    }
    let _ = writeln!(
        out,
        "\nstate:   container {}: {}",
        part.state.container,
        match (part.state.reachable, part.state.exists) {
            (false, _) => "NOT reachable",
            (true, false) => "reachable, empty (created with the first record)",
            (true, true) => "reachable",
        }
    );
    let _ = writeln!(out, "queues (messages):");
    let width = part.queues.iter().map(|q| q.name.len()).max().unwrap_or(0);
    for q in &part.queues {
        let count = match (q.messages, &q.error) {
            (Some(n), _) => n.to_string(),
            (None, Some(e)) => format!("unreadable ({})", Printable(e)),
            (None, None) => "unreadable".into(),
        };
        let _ = writeln!(out, "  {:width$}  {count}", q.name);
    }
    match &part.failures {
        None => {
            let _ = writeln!(out, "failures: unknown");
        }
        Some(f) if f.recent == 0 => {
            let _ = writeln!(out, "failures (last {} h): none", f.hours);
        }
        Some(f) => {
            let kinds: Vec<String> = f.by_kind.iter().map(|(k, n)| format!("{k} {n}")).collect();
            let _ = write!(
                out,
                "failures (last {} h): {} event(s); of the newest {}: {}",
                f.hours,
                f.recent,
                f.read,
                Printable(&kinds.join(", "))
            );
            if f.unreadable > 0 {
                let _ = write!(out, ", {} unreadable", f.unreadable);
            }
            out.push('\n');
        }
    }
    match part.holds {
        Some(n) => {
            let _ = writeln!(out, "holds: {n} instance(s) held after a permanent failure");
        }
        None => {
            let _ = writeln!(out, "holds: unknown");
        }
    }
    match &part.last_reconcile {
        Some(run) => {
            let s = &run.summary;
            let _ = writeln!(
                out,
                "reconcile: last run {} by {}: found {}, already confirmed {}, queued {}, held {}, failed {}",
                Printable(&run.at),
                Printable(&run.by),
                s.found,
                s.already_done,
                s.queued,
                s.held,
                s.failed,
            );
        }
        None if part.unknown.iter().any(|u| u.what.contains("reconciler")) => {
            let _ = writeln!(out, "reconcile: unknown");
        }
        None => {
            let _ = writeln!(out, "reconcile: no run recorded");
        }
    }
    if part.unknown.iter().any(|u| u.what.contains("cursors")) {
        let _ = writeln!(out, "catch-up: unknown");
    } else if part.catch_up.is_empty() {
        let _ = writeln!(out, "catch-up: no cursors");
    } else {
        let _ = writeln!(out, "catch-up cursors:");
        for c in &part.catch_up {
            let _ = writeln!(
                out,
                "  {}  after {}  (written {})",
                Printable(&c.app),
                Printable(c.after.as_deref().unwrap_or("?")),
                Printable(c.updated.as_deref().unwrap_or("?"))
            );
        }
    }
}

fn altinn_text(part: &AltinnPart, out: &mut String) {
    let key = &part.key;
    let _ = write!(
        out,
        "key: {} ({})",
        key.status.as_str(),
        Printable(&key.source)
    );
    if let Some(cert) = &key.certificate {
        let _ = write!(
            out,
            ", certificate {} valid until {} ({} days left)",
            Printable(&cert.subject),
            cert.not_after,
            cert.days_left
        );
    }
    if let Some(e) = &key.error {
        let _ = write!(out, ": {}", Printable(e));
    }
    let subs = &part.subscriptions;
    if !subs.checked {
        let _ = writeln!(
            out,
            "\nsubscriptions: not listed ({})",
            Printable(subs.error.as_deref().unwrap_or("?"))
        );
        return;
    }
    let validated = subs.items.iter().filter(|s| s.validated).count();
    let _ = writeln!(
        out,
        "\nsubscriptions: {} ({validated} validated)",
        subs.items.len()
    );
    for s in &subs.items {
        let line = super::subscriptions::subscription_line(
            s.id,
            s.validated,
            s.source.as_deref(),
            s.type_filter.as_deref(),
            s.endpoint.as_deref(),
        );
        let _ = writeln!(out, "  {line}");
    }
    for app in &subs.missing {
        let _ = writeln!(out, "  missing: {}", Printable(app));
    }
}
