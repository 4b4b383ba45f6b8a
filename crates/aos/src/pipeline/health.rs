//! Readiness: what `GET /health` reports in both runtimes (`aos run` serves it at `/health`,
//! the Function App as the `Health` function at `/api/health`).
//!
//! Two checks, each bounded by [`CHECK_TIMEOUT`] so a probe never hangs:
//! - `storage`: the archive's account answers (the archive container's properties; a container
//!   not created yet still means the account answered);
//! - `key`: the Altinn token's key material can be had now (held, or loadable from its file or
//!   Key Vault), without asking Maskinporten or Altinn — a probe must cost them nothing.
//!
//! The answer says only `ok` or what is wrong in a few words (`unreachable`, `not loadable`):
//! it may be served without a key, so no error text, URL or setting value is in it; the reason
//! goes to the log (redacted, like every line).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use super::Pipeline;

/// The longest one check may take.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// The readiness report: `healthy` when every check is `ok`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Health {
    pub status: &'static str,
    pub checks: BTreeMap<&'static str, &'static str>,
}

impl Health {
    pub fn healthy(&self) -> bool {
        self.status == "healthy"
    }

    /// 200 when healthy, 503 otherwise (load balancers and probes read the status).
    pub fn http_status(&self) -> u16 {
        if self.healthy() { 200 } else { 503 }
    }
}

impl Pipeline {
    /// Runs both checks at once.
    pub async fn health(&self) -> Health {
        let storage = async {
            match tokio::time::timeout(CHECK_TIMEOUT, self.archive.probe()).await {
                Ok(Ok(())) => "ok",
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "health: the archive's storage did not answer");
                    "unreachable"
                }
                Err(_) => {
                    tracing::warn!("health: the archive's storage did not answer in time");
                    "unreachable"
                }
            }
        };
        let key = async {
            match tokio::time::timeout(CHECK_TIMEOUT, self.altinn.key_ready()).await {
                Ok(Ok(())) => "ok",
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "health: the Altinn token's key is not loadable");
                    "not loadable"
                }
                Err(_) => {
                    tracing::warn!("health: loading the Altinn token's key took too long");
                    "not loadable"
                }
            }
        };
        let (storage, key) = tokio::join!(storage, key);
        let checks = BTreeMap::from([("storage", storage), ("key", key)]);
        let status = if checks.values().all(|c| *c == "ok") {
            "healthy"
        } else {
            "unhealthy"
        };
        Health { status, checks }
    }
}
