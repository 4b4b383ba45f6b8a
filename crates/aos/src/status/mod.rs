//! `aos status`: the whole system's state in one report, and one verdict on it.
//!
//! - [`report`] — what the report holds ([`StatusReport`]) and how its findings become one
//!   [`Verdict`] with the problems that made it (pure: no I/O, unit-tested);
//! - `storage.rs` — what storage shows: the archive container reachable and writable, the
//!   depth of every queue the product or the host uses, recent failure records by kind, holds,
//!   the catch-up cursors and the reconciler's last run (all in `aos-state`);
//! - `altinn.rs` — the Altinn side: the Maskinporten key loadable and its certificate's
//!   expiry, the subscriptions and whether each is validated.
//!
//! Every request is bounded by [`CHECK_TIMEOUT`] and the parts run at the same time, so a
//! dead dependency costs a few timeouts at most (a part's requests that depend on each other —
//! the archive's existence, then its write probe — run one after the other: 20 s at worst).
//! The report reads and does not repair: the archive's write probe stages a block it never
//! commits (`storage.rs`), so nothing appears in the archive.

pub mod report;

mod altinn;
mod storage;

use std::future::Future;
use std::time::Duration;

pub use report::{StatusReport, Verdict};

use crate::config::{SettingSource, Settings, StorageSettings};
use crate::redact::Redacted;

/// The longest one request may take (a storage call retries inside this bound).
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs `check` within [`CHECK_TIMEOUT`]; its error (or the timeout) as a short redacted text
/// with its cause chain.
async fn bounded<T, E>(check: impl Future<Output = Result<T, E>>) -> Result<T, String>
where
    E: Into<anyhow::Error>,
{
    match tokio::time::timeout(CHECK_TIMEOUT, check).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(Redacted(e.into()).to_string()),
        Err(_) => Err(format!("no answer within {} s", CHECK_TIMEOUT.as_secs())),
    }
}

/// Gathers the report. `source` gives the full settings when they are complete; when the
/// Altinn settings are absent (a storage-only shell) the Altinn checks say why they were not
/// made, which alone is not a problem; a setting that is set but malformed is one (broken).
pub async fn gather(
    storage: &StorageSettings,
    source: &SettingSource,
) -> Result<StatusReport, crate::config::SettingsError> {
    let full = Settings::from_source(source);
    let webhook = source.get(altinn::WEBHOOK_URL_SETTING);
    let storage_part = storage::gather(storage);
    let altinn_part = altinn::gather(full.as_ref(), source, webhook.as_deref());
    let (storage_part, altinn_part) = tokio::join!(storage_part, altinn_part);
    Ok(StatusReport::new(storage_part?, altinn_part))
}
