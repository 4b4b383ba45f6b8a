//! Reads the Maskinporten certificate secret from Azure Key Vault.
//!
//! This is the reference system's deployment model: the Function App's managed identity reads
//! secret `maskinportenclientcert` (a base64 PKCS#12 with an empty password). The credential
//! is the one the storage clients use ([`super::azure_credential`]: managed identity through
//! the platform's endpoint or IMDS, the developer's Azure CLI / azd login otherwise), shared with
//! them and across reads, so one identity needs "Key Vault Secrets User" and storage roles,
//! nothing else, and a reload on the timer reuses a token still valid. The SDK client speaks the Key Vault challenge protocol (an unauthenticated first
//! request, then a token for the scope the 401 names) and insists on https.

use std::sync::Arc;
use std::time::Duration;

use azure_core::http::{ClientOptions, Transport};
use azure_security_keyvault_secrets::{SecretClient, SecretClientOptions};

use super::error::{KeyError, with_causes};
use crate::domain::{BaseUrl, Secret};

/// A secret value: `Debug` never shows it and it is overwritten when dropped ([`Secret`]).
#[derive(Debug)]
pub struct VaultSecret {
    value: Secret,
}

impl VaultSecret {
    pub fn value(&self) -> &str {
        self.value.expose()
    }
}

/// The current version of secret `name` in `vault`.
pub async fn fetch_secret(vault: &BaseUrl, name: &str) -> Result<VaultSecret, KeyError> {
    let client_options = ClientOptions {
        retry: crate::storage::default_retry(),
        transport: Some(transport()?),
        ..Default::default()
    };
    let credential = crate::storage::default_credential()
        .map_err(|e| KeyError::KeyVault(format!("no Azure credential available: {e}")))?;
    let options = SecretClientOptions {
        client_options,
        ..Default::default()
    };
    let client = SecretClient::new(vault.url().as_str(), credential, Some(options))
        .map_err(|e| KeyError::KeyVault(format!("cannot use {vault}: {e}")))?;
    let failed = |e: azure_core::Error| {
        KeyError::KeyVault(format!(
            "cannot read secret `{name}` from {vault}: {}",
            with_causes(&e)
        ))
    };
    let secret = client
        .get_secret(name, None)
        .await
        .map_err(failed)?
        .into_model()
        .map_err(failed)?;
    let value = secret
        .value
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| KeyError::KeyVault(format!("secret `{name}` in {vault} is empty")))?;
    // The Maskinporten key itself: masked exactly in every output from now on.
    crate::redact::register_secret(&value);
    Ok(VaultSecret {
        value: Secret::new(value),
    })
}

/// The HTTP client for Key Vault, like the SDK's default
/// (rustls with the platform's roots, which honour `SSL_CERT_FILE`; system proxies; no
/// redirects) but built here so that a machine without CA certificates is an error line rather
/// than the SDK's panic.
fn transport() -> Result<Transport, KeyError> {
    let client = reqwest_sdk::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .read_timeout(Duration::from_secs(30))
        .redirect(reqwest_sdk::redirect::Policy::none())
        .build()
        .map_err(|e| KeyError::KeyVault(format!("cannot set up HTTPS ({})", with_causes(&e))))?;
    Ok(Transport::new(Arc::new(client)))
}
