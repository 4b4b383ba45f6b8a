//! The Altinn token: a fixed token for local development, or Maskinporten and its key.

use std::path::PathBuf;

use super::error::{InvalidSettings, Problems, SettingsError};
use super::source::{SettingSource, aos, key_vault};
use crate::domain::{BaseUrl, Secret};

/// The Maskinporten scopes an application owner system needs: read instances and data, and
/// confirm completion (`docs/specs/altinn.md` §4.1).
pub const DEFAULT_MASKINPORTEN_SCOPES: &str =
    "altinn:serviceowner/instances.read altinn:serviceowner/instances.write";

/// The Key Vault secret the reference system reads its Maskinporten certificate from.
pub const DEFAULT_CERT_SECRET_NAME: &str = "maskinportenclientcert";

/// Where the Altinn token comes from.
#[derive(Clone, Debug)]
pub enum TokenSettings {
    /// A fixed bearer token (`AltinnApplicationOwnerSystemSettings__AltinnToken`): for local
    /// development against the simulator. Chosen when that setting is present and no
    /// Maskinporten setting is (both is a settings error naming both).
    Static(Secret),
    /// The production flow: Maskinporten JWT grant, then Altinn token exchange. (Boxed: it is
    /// much larger than `Static`.)
    Maskinporten(Box<MaskinportenSettings>),
}

/// Everything the Maskinporten grant and the Altinn exchange need.
#[derive(Clone, Debug)]
pub struct MaskinportenSettings {
    /// The issuer, e.g. `https://test.maskinporten.no/` (always exactly one trailing slash, which
    /// is what the grant's `aud` must be); the token endpoint is `{issuer}token`.
    pub issuer: BaseUrl,
    /// `MaskinPortenClientId`: the grant's `iss`.
    pub client_id: String,
    /// Space-separated scopes for the grant's `scope`.
    pub scopes: String,
    /// Where the signing key (and certificate chain) comes from.
    pub key: KeySource,
    /// `TestMode`: adds `test=true` to the exchange (only meaningful for Digdir).
    pub test_mode: bool,
}

/// Where the Maskinporten signing key comes from, in order of precedence.
#[derive(Clone, Debug)]
pub enum KeySource {
    /// `MaskinPortenCertPath` (+ `MaskinPortenCertPassword`): a PKCS#12 (`.p12`/`.pfx`) file, or
    /// a PEM file with the private key and the certificate chain. The format is detected from
    /// the content, not the file name. The grant carries the chain as `x5c`.
    File {
        setting: String,
        path: PathBuf,
        password: Secret,
    },
    /// `MaskinPortenJwkPath`: a JSON Web Key with the RSA private key and the `kid` registered
    /// in Maskinporten. The grant carries the `kid`.
    Jwk { setting: String, path: PathBuf },
    /// `KeyVault__KeyVaultURI` + `KeyVault__MaskinPortenCertSecretId`: a secret holding a base64
    /// PKCS#12 with an empty password (how the reference system and Key Vault certificates store
    /// it), or a PEM bundle.
    KeyVault {
        setting: String,
        vault: BaseUrl,
        secret_name: String,
    },
}

impl KeySource {
    /// The setting an operator must fix when the key material cannot be loaded.
    pub fn setting(&self) -> &str {
        match self {
            KeySource::File { setting, .. }
            | KeySource::Jwk { setting, .. }
            | KeySource::KeyVault { setting, .. } => setting,
        }
    }
}

/// The settings that mean "use Maskinporten" (or configure it). With `AltinnToken` they are a
/// contradiction that must not be resolved silently: a production shell that picked up a
/// development token would otherwise report (and use) the fixed token as its credential.
fn maskinporten_settings() -> impl Iterator<Item = String> {
    [
        "MaskinportenBaseAddress",
        "MaskinPortenClientId",
        "MaskinPortenScopes",
        "MaskinPortenCertPath",
        "MaskinPortenCertPassword",
        "MaskinPortenJwkPath",
    ]
    .map(aos)
    .into_iter()
    .chain(["KeyVaultURI", "MaskinPortenCertSecretId"].map(key_vault))
}

impl TokenSettings {
    /// `Static` when `AltinnToken` is set (local development) and no Maskinporten setting is;
    /// otherwise the Maskinporten settings are required. Every Maskinporten problem is reported,
    /// not only the first.
    pub(super) fn from_source(src: &SettingSource) -> Result<Self, InvalidSettings> {
        let token_name = aos("AltinnToken");
        if let Some(token) = src.secret(&token_name) {
            let maskinporten: Vec<String> = maskinporten_settings()
                .filter(|name| src.get(name).is_some())
                .collect();
            if maskinporten.is_empty() {
                return Ok(TokenSettings::Static(token));
            }
            return Err(SettingsError::new(
                &token_name,
                format!(
                    "cannot be used together with {}: a fixed token is for local development, \
                     Maskinporten for a deployment; remove one",
                    maskinporten.join(", ")
                ),
            )
            .into());
        }

        let mut problems = Problems::default();
        let issuer = problems.check(src.required_url(&aos("MaskinportenBaseAddress")));
        let client_id = problems.check(src.required(&aos("MaskinPortenClientId")));
        let scopes = problems.check(scopes(src));
        let test_mode = problems.check(src.bool(&aos("TestMode"), false));
        let key = problems.check(key_source(src));
        let (Some(issuer), Some(client_id), Some(scopes), Some(test_mode), Some(key)) =
            (issuer, client_id, scopes, test_mode, key)
        else {
            return Err(problems.into_error());
        };
        Ok(TokenSettings::Maskinporten(Box::new(
            MaskinportenSettings {
                issuer,
                client_id,
                scopes,
                key,
                test_mode,
            },
        )))
    }
}

/// `MaskinPortenScopes`, space- or comma-separated, as one space-separated string.
fn scopes(src: &SettingSource) -> Result<String, SettingsError> {
    let scopes_name = aos("MaskinPortenScopes");
    let scopes = src
        .string_or(&scopes_name, DEFAULT_MASKINPORTEN_SCOPES)
        .split([' ', ',', '\t', '\n'])
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    if scopes.is_empty() {
        return Err(SettingsError::new(&scopes_name, "names no scope"));
    }
    Ok(scopes)
}

/// A local file wins over Key Vault (as in the reference system); a certificate file and a JWK
/// file together are ambiguous and refused.
fn key_source(src: &SettingSource) -> Result<KeySource, SettingsError> {
    let cert_name = aos("MaskinPortenCertPath");
    let jwk_name = aos("MaskinPortenJwkPath");
    let vault_name = key_vault("KeyVaultURI");
    match (src.get(&cert_name), src.get(&jwk_name)) {
        (Some(_), Some(_)) => Err(SettingsError::new(
            &jwk_name,
            format!("cannot be used together with {cert_name}"),
        )),
        (Some(path), None) => Ok(KeySource::File {
            setting: cert_name,
            path: PathBuf::from(path),
            password: src
                .secret(&aos("MaskinPortenCertPassword"))
                .unwrap_or_default(),
        }),
        (None, Some(path)) => Ok(KeySource::Jwk {
            setting: jwk_name,
            path: PathBuf::from(path),
        }),
        (None, None) => {
            let Some(vault) = src.url(&vault_name)? else {
                return Err(SettingsError::new(
                    &vault_name,
                    format!(
                        "is required when neither {}, {cert_name} nor {jwk_name} is set \
                         (the Maskinporten key must come from somewhere)",
                        aos("AltinnToken")
                    ),
                ));
            };
            let secret_setting = key_vault("MaskinPortenCertSecretId");
            let secret_name = src.string_or(&secret_setting, DEFAULT_CERT_SECRET_NAME);
            let valid = (1..=127).contains(&secret_name.len())
                && secret_name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-');
            if !valid {
                return Err(SettingsError::new(
                    &secret_setting,
                    format!(
                        "`{secret_name}` is not a Key Vault secret name (1-127 letters, digits and hyphens)"
                    ),
                ));
            }
            Ok(KeySource::KeyVault {
                setting: vault_name,
                vault,
                secret_name,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::{Settings, minimal};
    use super::*;

    fn maskinporten(extra: &[(&'static str, &'static str)]) -> Result<Settings, InvalidSettings> {
        let mut pairs = minimal();
        pairs.retain(|(k, _)| !k.ends_with("AltinnToken"));
        pairs.push((
            "AltinnApplicationOwnerSystemSettings__MaskinportenBaseAddress",
            "https://test.maskinporten.no",
        ));
        pairs.push((
            "AltinnApplicationOwnerSystemSettings__MaskinPortenClientId",
            "client-1",
        ));
        pairs.extend_from_slice(extra);
        Settings::from_source(&SettingSource::from_pairs(pairs))
    }

    const CERT: (&str, &str) = (
        "AltinnApplicationOwnerSystemSettings__MaskinPortenCertPath",
        "/keys/client.p12",
    );

    #[test]
    fn static_token_wins_when_set() {
        let s = Settings::from_source(&SettingSource::from_pairs(minimal())).unwrap();
        assert!(matches!(s.token, TokenSettings::Static(_)));
        assert_eq!(format!("{:?}", s.token), "Static(<redacted>)");
    }

    #[test]
    fn maskinporten_settings_with_defaults() {
        let s = maskinporten(&[
            CERT,
            (
                "AltinnApplicationOwnerSystemSettings__MaskinPortenCertPassword",
                "hunter2",
            ),
        ])
        .unwrap();
        let TokenSettings::Maskinporten(m) = &s.token else {
            panic!("Maskinporten expected")
        };
        assert_eq!(m.issuer.to_string(), "https://test.maskinporten.no/");
        assert_eq!(m.client_id, "client-1");
        assert_eq!(m.scopes, DEFAULT_MASKINPORTEN_SCOPES);
        assert!(!m.test_mode);
        assert!(
            matches!(&m.key, KeySource::File { path, .. } if path == Path::new("/keys/client.p12"))
        );
        let debug = format!("{s:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
    }

    #[test]
    fn missing_maskinporten_settings_are_named() {
        let err = maskinporten(&[]).unwrap_err();
        assert_eq!(err.names(), ["KeyVault__KeyVaultURI"]);
        let mut pairs = minimal();
        pairs.retain(|(k, _)| !k.ends_with("AltinnToken"));
        let err = Settings::from_source(&SettingSource::from_pairs(pairs)).unwrap_err();
        // All of them at once, in the order they are read.
        assert_eq!(
            err.names(),
            [
                "AltinnApplicationOwnerSystemSettings__MaskinportenBaseAddress",
                "AltinnApplicationOwnerSystemSettings__MaskinPortenClientId",
                "KeyVault__KeyVaultURI",
            ]
        );
    }

    #[test]
    fn maskinporten_must_be_https_except_loopback() {
        let mut pairs = minimal();
        pairs.retain(|(k, _)| !k.ends_with("AltinnToken"));
        pairs.push((
            "AltinnApplicationOwnerSystemSettings__MaskinportenBaseAddress",
            "http://test.maskinporten.no",
        ));
        pairs.push((
            "AltinnApplicationOwnerSystemSettings__MaskinPortenClientId",
            "c",
        ));
        pairs.push(CERT);
        let err = Settings::from_source(&SettingSource::from_pairs(pairs.clone())).unwrap_err();
        assert_eq!(
            err.names(),
            ["AltinnApplicationOwnerSystemSettings__MaskinportenBaseAddress"]
        );
        let at = pairs.len() - 3;
        pairs[at].1 = "http://127.0.0.1:5101/maskinporten";
        assert!(Settings::from_source(&SettingSource::from_pairs(pairs)).is_ok());
    }

    #[test]
    fn scopes_test_mode_and_key_sources() {
        let s = maskinporten(&[
            CERT,
            (
                "AltinnApplicationOwnerSystemSettings__MaskinPortenScopes",
                " a:b,c:d  e:f ",
            ),
            ("AltinnApplicationOwnerSystemSettings__TestMode", "True"),
        ])
        .unwrap();
        let TokenSettings::Maskinporten(m) = &s.token else {
            panic!()
        };
        assert_eq!(m.scopes, "a:b c:d e:f");
        assert!(m.test_mode);

        let err = maskinporten(&[
            CERT,
            ("AltinnApplicationOwnerSystemSettings__TestMode", "yes"),
        ])
        .unwrap_err();
        assert_eq!(
            err.names(),
            ["AltinnApplicationOwnerSystemSettings__TestMode"]
        );

        let err = maskinporten(&[
            CERT,
            (
                "AltinnApplicationOwnerSystemSettings__MaskinPortenJwkPath",
                "/k.jwk",
            ),
        ])
        .unwrap_err();
        assert_eq!(
            err.names(),
            ["AltinnApplicationOwnerSystemSettings__MaskinPortenJwkPath"]
        );

        let s = maskinporten(&[("KeyVault__KeyVaultURI", "https://aos.vault.azure.net")]).unwrap();
        let TokenSettings::Maskinporten(m) = &s.token else {
            panic!()
        };
        assert!(
            matches!(&m.key, KeySource::KeyVault { secret_name, .. } if secret_name == DEFAULT_CERT_SECRET_NAME)
        );

        let err = maskinporten(&[
            ("KeyVault__KeyVaultURI", "https://aos.vault.azure.net"),
            ("KeyVault__MaskinPortenCertSecretId", "no/slashes"),
        ])
        .unwrap_err();
        assert_eq!(err.names(), ["KeyVault__MaskinPortenCertSecretId"]);
        let err =
            maskinporten(&[("KeyVault__KeyVaultURI", "http://aos.vault.azure.net")]).unwrap_err();
        assert_eq!(err.names(), ["KeyVault__KeyVaultURI"]);
    }

    #[test]
    fn a_fixed_token_with_any_maskinporten_setting_is_refused_naming_both() {
        for name in maskinporten_settings() {
            let mut pairs: Vec<(String, String)> = minimal()
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            pairs.push((name.replace("__", ":"), "x".into()));
            let err = Settings::from_source(&SettingSource::from_pairs(pairs)).unwrap_err();
            assert_eq!(
                err.names(),
                ["AltinnApplicationOwnerSystemSettings__AltinnToken"]
            );
            assert!(err.to_string().contains(&name), "{name}: {err}");
        }

        let mut pairs = minimal();
        pairs.push(CERT);
        pairs.push((
            "AltinnApplicationOwnerSystemSettings__MaskinPortenClientId",
            "c",
        ));
        let err = Settings::from_source(&SettingSource::from_pairs(pairs)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "setting AltinnApplicationOwnerSystemSettings__AltinnToken: cannot be used together with \
             AltinnApplicationOwnerSystemSettings__MaskinPortenClientId, \
             AltinnApplicationOwnerSystemSettings__MaskinPortenCertPath: a fixed token is for local \
             development, Maskinporten for a deployment; remove one"
        );
    }
}
