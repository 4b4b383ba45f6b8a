//! The Altinn token, behind the interface every Altinn call uses.
//!
//! [`TokenProvider`] is what the Altinn client asks for a bearer token and tells when Altinn
//! answered 401. Two providers implement it:
//!
//! - [`StaticToken`]: a fixed token from `AltinnApplicationOwnerSystemSettings__AltinnToken`,
//!   for local development against the simulator.
//! - [`token::AltinnTokenProvider`]: production. [`keys`] loads the signing key (PKCS#12, PEM,
//!   JWK or Key Vault via [`keyvault`]), [`key_store`] holds it (loaded when first needed,
//!   reloaded hourly and after Maskinporten refused it), [`maskinporten`] builds and sends the
//!   JWT grant, [`token`] exchanges the Maskinporten token for an Altinn token and caches it
//!   single-flight until shortly before its `exp`.
//!
//! [`azure_credential`] is the Entra ID credential (managed identity through the platform's
//! endpoint or IMDS, or the developer's login) that Key Vault reads and key-less storage use.
//!
//! [`provider_from_settings`] picks one from [`TokenSettings`] for `aos serve`, `aos run` and
//! the CLI. A *local* key (`MaskinPortenCertPath`, `MaskinPortenJwkPath`) is loaded and checked
//! there, at start: a bad file is a settings error the operator must fix, one clear line, and
//! reading a file cannot fail for reasons that go away by themselves. A *Key Vault* key is not:
//! the vault may be unreachable or not yet authorise the identity for minutes after a
//! deployment, and the webhook needs no key, so it is read at the first grant and a failure
//! fails only the steps that need a token, retryably ([`key_store`]).

pub mod azure_credential;
pub mod error;
pub mod key_store;
pub mod keys;
pub mod keyvault;
pub mod maskinporten;
mod provider;
pub mod token;

use std::sync::Arc;
use std::time::Duration;

pub use error::{KeyError, TokenError};
pub use provider::{AccessToken, StaticToken, TokenProvider};

use crate::config::{KeySource, MaskinportenSettings, SettingsError, TokenSettings};
use crate::domain::BaseUrl;
use key_store::KeyStore;
use keys::SigningKey;

/// TEST ONLY: replaces [`key_store::RELOAD_INTERVAL`] with this many seconds, so an end-to-end
/// test can see a rotated certificate picked up on the timer. Not a setting for users: an hour
/// is what rotation needs, and a shorter interval only reads the vault more often.
const TEST_RELOAD_ENV: &str = "AOS_TEST_MASKINPORTEN_KEY_RELOAD_SECS";

/// The provider `token` asks for. For Maskinporten with a local key file this loads and checks
/// the key (and logs the certificate's expiry), failing with the setting to fix; a Key Vault
/// key is read at the first grant instead (see the module documentation).
pub async fn provider_from_settings(
    token: &TokenSettings,
    platform: &BaseUrl,
) -> Result<Arc<dyn TokenProvider>, SettingsError> {
    match token {
        TokenSettings::Static(token) => Ok(Arc::new(StaticToken::new(token.expose()))),
        TokenSettings::Maskinporten(settings) => {
            let keys = match &settings.key {
                KeySource::KeyVault { .. } => lazy_key(&settings.key),
                KeySource::File { .. } | KeySource::Jwk { .. } => loaded_key(&settings.key).await?,
            };
            Ok(Arc::new(provider_with(settings, platform, keys)))
        }
    }
}

/// The production provider with its key loaded now, whatever its source: `aos check-config`
/// (where loading the key *is* the check) and tests of the token flow.
pub async fn altinn_provider(
    settings: &MaskinportenSettings,
    platform: &BaseUrl,
) -> Result<token::AltinnTokenProvider, SettingsError> {
    let keys = loaded_key(&settings.key).await?;
    Ok(provider_with(settings, platform, keys))
}

fn provider_with(
    settings: &MaskinportenSettings,
    platform: &BaseUrl,
    keys: KeyStore<SigningKey>,
) -> token::AltinnTokenProvider {
    let http = http_client();
    let maskinporten =
        maskinporten::MaskinportenClient::new(http.clone(), settings, Arc::new(keys));
    token::AltinnTokenProvider::new(http, maskinporten, settings, platform)
}

/// A store that reads the key at the first grant.
fn lazy_key(source: &KeySource) -> KeyStore<SigningKey> {
    KeyStore::new(source.setting(), reload_interval(), loader(source))
}

/// A store holding the key, loaded now; failure is a settings error naming the source.
async fn loaded_key(source: &KeySource) -> Result<KeyStore<SigningKey>, SettingsError> {
    let key = keys::load(source)
        .await
        .map_err(|e| SettingsError::new(source.setting(), e.to_string()))?;
    key.log_expiry();
    Ok(KeyStore::with_key(
        key,
        source.setting(),
        reload_interval(),
        loader(source),
    ))
}

/// Every (re)load reads the source afresh and reports the certificate's expiry.
fn loader(source: &KeySource) -> impl Fn() -> key_store::LoadFuture<SigningKey> + use<> {
    let source = source.clone();
    move || {
        let source = source.clone();
        Box::pin(async move {
            let key = keys::load(&source).await?;
            key.log_expiry();
            Ok(key)
        })
    }
}

fn reload_interval() -> Duration {
    std::env::var(TEST_RELOAD_ENV)
        .ok()
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|s| *s > 0.0)
        .map_or(key_store::RELOAD_INTERVAL, Duration::from_secs_f64)
}

/// The client for Maskinporten and the exchange: short timeouts (a token call that hangs holds
/// every request waiting for the token), no redirects (a bearer token must not follow one).
fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("altinn-aos/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bearer token is overwritten in memory when its last copy is dropped (checked at
    /// compile time: `ZeroizeOnDrop`).
    #[test]
    fn tokens_are_zeroised_on_drop() {
        fn zeroised_on_drop<T: zeroize::ZeroizeOnDrop>(_: &T) {}
        zeroised_on_drop(&AccessToken::new("eyJsecret"));
    }

    #[test]
    fn tokens_are_redacted_in_debug() {
        let token = AccessToken::new("eyJsecret");
        assert!(!format!("{token:?}").contains("eyJ"));
    }
}
