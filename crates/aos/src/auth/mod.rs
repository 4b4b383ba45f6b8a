//! The Altinn token, behind the interface every Altinn call uses.
//!
//! [`TokenProvider`] is what the Altinn client asks for a bearer token and tells when Altinn
//! answered 401. Two providers implement it:
//!
//! - [`StaticToken`]: a fixed token from `AltinnApplicationOwnerSystemSettings__AltinnToken`,
//!   for local development against the simulator.
//! - [`token::AltinnTokenProvider`]: production. [`keys`] loads the signing key (PKCS#12, PEM,
//!   JWK or Key Vault via [`keyvault`]), [`maskinporten`] builds and sends the JWT grant,
//!   [`token`] exchanges the Maskinporten token for an Altinn token and caches it single-flight
//!   until shortly before its `exp`.
//!
//! [`provider_from_settings`] picks one from [`TokenSettings`] and loads the key material at
//! start-up, so a bad key is one clear line naming the setting, not a failure per request.

pub mod error;
pub mod keys;
pub mod keyvault;
pub mod maskinporten;
mod provider;
pub mod token;

use std::sync::Arc;
use std::time::Duration;

pub use error::{KeyError, TokenError};
pub use provider::{AccessToken, StaticToken, TokenProvider};

use crate::config::{MaskinportenSettings, SettingsError, TokenSettings};
use crate::domain::BaseUrl;

/// The provider `token` asks for. For Maskinporten this loads and checks the key material (and
/// logs the certificate's expiry); failures name the setting to fix.
pub async fn provider_from_settings(
    token: &TokenSettings,
    platform: &BaseUrl,
) -> Result<Arc<dyn TokenProvider>, SettingsError> {
    match token {
        TokenSettings::Static(token) => Ok(Arc::new(StaticToken::new(token.expose()))),
        TokenSettings::Maskinporten(settings) => {
            Ok(Arc::new(altinn_provider(settings, platform).await?))
        }
    }
}

/// The production provider with its key loaded (also what `aos check-config` inspects).
pub async fn altinn_provider(
    settings: &MaskinportenSettings,
    platform: &BaseUrl,
) -> Result<token::AltinnTokenProvider, SettingsError> {
    let key = keys::load(&settings.key)
        .await
        .map_err(|e| SettingsError::new(settings.key.setting(), e.to_string()))?;
    key.log_expiry();
    let http = http_client();
    let maskinporten = maskinporten::MaskinportenClient::new(http.clone(), settings, Arc::new(key));
    Ok(token::AltinnTokenProvider::new(
        http,
        maskinporten,
        settings,
        platform,
    ))
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

    #[test]
    fn tokens_are_redacted_in_debug() {
        let token = AccessToken::new("eyJsecret");
        assert!(!format!("{token:?}").contains("eyJ"));
    }
}
