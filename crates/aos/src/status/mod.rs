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
//! Every check is bounded by [`CHECK_TIMEOUT`] and runs at the same time as the others, so a
//! dead dependency costs one timeout, not one per check. The report reads and does not repair:
//! its only write is the archive's write probe, a blob deleted at once (`storage.rs`).

pub mod report;

mod altinn;
mod storage;

use std::time::Duration;

pub use report::{StatusReport, Verdict};

use crate::config::InvalidSettings;
use crate::config::{Settings, StorageSettings};

/// The longest one check may take (a storage call retries inside this bound).
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// Gathers the report. `altinn` is the full settings when they are complete; without them
/// (a storage-only shell) the Altinn checks say why they were not made, and that alone is not a
/// problem.
pub async fn gather(
    storage: &StorageSettings,
    altinn: Result<&Settings, &InvalidSettings>,
) -> Result<StatusReport, crate::config::SettingsError> {
    let storage_part = storage::gather(storage);
    let altinn_part = altinn::gather(altinn);
    let (storage_part, altinn_part) = tokio::join!(storage_part, altinn_part);
    Ok(StatusReport::new(storage_part?, altinn_part))
}
