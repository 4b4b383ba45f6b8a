//! Typed settings, parsed once at start.
//!
//! Names are the reference system's (`AltinnApplicationOwnerSystemSettings__…`,
//! `QueueStorageSettings__…`) so existing Function App settings keep working. Each name is
//! looked up as given (`__`), then with `:` as the separator, first in the environment and then
//! in the `Values` of `local.settings.json` in the working directory. A missing or malformed
//! required setting is a [`SettingsError`] that names the setting; `main` prints it as one line
//! and exits, so it never surfaces later as a panic or a storm of 500s.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use url::Url;

use crate::event::{AppName, OrgName};

const AOS: &str = "AltinnApplicationOwnerSystemSettings__";
const QUEUES: &str = "QueueStorageSettings__";

/// The event type archived by default: only completed instances are ready to archive.
pub const DEFAULT_EVENT_TYPE: &str = "app.instance.process.completed";

/// A setting that is missing or malformed; the message names the setting.
#[derive(Debug, thiserror::Error)]
#[error("setting {name}: {problem}")]
pub struct SettingsError {
    pub name: String,
    pub problem: String,
}

impl SettingsError {
    pub fn new(name: &str, problem: impl Into<String>) -> Self {
        SettingsError {
            name: name.to_string(),
            problem: problem.into(),
        }
    }
}

/// Where setting values come from: the environment, then `local.settings.json` `Values`.
#[derive(Clone, Debug, Default)]
pub struct SettingSource {
    env: HashMap<String, String>,
    file: HashMap<String, String>,
}

impl SettingSource {
    /// The process environment plus `local.settings.json` in the working directory, if any.
    ///
    /// Under the Functions host (`FUNCTIONS_CUSTOMHANDLER_PORT` set) the file is not read: the
    /// host is the authority for app settings (`func start` already puts the file's `Values`
    /// into the environment), and a stray file must not add settings the host did not give.
    pub fn from_process() -> Result<Self, SettingsError> {
        let env: HashMap<String, String> = std::env::vars().collect();
        let file = if env.contains_key("FUNCTIONS_CUSTOMHANDLER_PORT") {
            HashMap::new()
        } else {
            read_local_settings(Path::new("local.settings.json"))?
        };
        Ok(SettingSource { env, file })
    }

    /// A source from explicit pairs (tests, tools).
    pub fn from_pairs<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let env = pairs
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        SettingSource {
            env,
            file: HashMap::new(),
        }
    }

    /// The value of `name` (written with `__`), also accepted with `:`; empty counts as unset.
    pub fn get(&self, name: &str) -> Option<String> {
        let colon = name.replace("__", ":");
        [&self.env, &self.file]
            .into_iter()
            .flat_map(|map| [map.get(name), map.get(&colon)])
            .flatten()
            .map(|v| v.trim().to_string())
            .find(|v| !v.is_empty())
    }

    fn required(&self, name: &str) -> Result<String, SettingsError> {
        self.get(name)
            .ok_or_else(|| SettingsError::new(name, "is required but not set"))
    }
}

fn read_local_settings(path: &Path) -> Result<HashMap<String, String>, SettingsError> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(HashMap::new());
    };
    #[derive(serde::Deserialize)]
    struct LocalSettings {
        #[serde(rename = "Values", default)]
        values: HashMap<String, serde_json::Value>,
    }
    let parsed: LocalSettings = serde_json::from_str(&text).map_err(|e| {
        SettingsError::new("local.settings.json", format!("is not valid JSON: {e}"))
    })?;
    Ok(parsed
        .values
        .into_iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => (k, s),
            other => (k, other.to_string()),
        })
        .collect())
}

/// A base URL that is `https` (or `http` on a loopback address) and ends with exactly one `/`,
/// so `{base}{path}` joins never produce `//` or drop a segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BaseUrl(Url);

impl BaseUrl {
    pub fn parse(name: &str, value: &str) -> Result<Self, SettingsError> {
        let mut url = Url::parse(value.trim())
            .map_err(|e| SettingsError::new(name, format!("`{value}` is not a URL ({e})")))?;
        let loopback = match url.host() {
            Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
            Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
            Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
            None => false,
        };
        match url.scheme() {
            "https" => {}
            "http" if loopback => {}
            _ => {
                return Err(SettingsError::new(
                    name,
                    format!(
                        "`{value}` must be https (http is accepted only for loopback addresses)"
                    ),
                ));
            }
        }
        if url.host().is_none() || url.query().is_some() || url.fragment().is_some() {
            return Err(SettingsError::new(
                name,
                format!("`{value}` must be a plain base URL"),
            ));
        }
        let path = format!("{}/", url.path().trim_end_matches('/'));
        url.set_path(&path);
        Ok(BaseUrl(url))
    }

    pub fn url(&self) -> &Url {
        &self.0
    }

    /// `self` joined with a relative path made of already-validated segments.
    pub fn join(&self, relative: &str) -> Url {
        let mut url = self.0.clone();
        let path = format!("{}{}", url.path(), relative.trim_start_matches('/'));
        url.set_path(&path);
        url
    }

    /// Host and port as they must appear in URLs we trust (e.g. an event `source`).
    pub fn same_origin(&self, other: &Url) -> bool {
        other.scheme() == self.0.scheme()
            && other.host() == self.0.host()
            && other.port_or_known_default() == self.0.port_or_known_default()
    }
}

impl std::fmt::Display for BaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// How the archive storage account is reached.
#[derive(Clone)]
pub struct BlobSettings {
    /// e.g. `https://acct.blob.core.windows.net/` or `http://127.0.0.1:10000/devstoreaccount1/`.
    pub endpoint: BaseUrl,
    /// Account name and key: when the key is set, requests carry a short-lived account SAS;
    /// when absent, managed identity is used.
    pub account: Option<(String, String)>,
    /// Archive container, default `inbound`.
    pub container: String,
}

impl std::fmt::Debug for BlobSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobSettings")
            .field("endpoint", &self.endpoint.to_string())
            .field("account", &self.account.as_ref().map(|(name, _)| name))
            .field("container", &self.container)
            .finish()
    }
}

/// Queue names (and the connection used by the standalone runtime and tools).
#[derive(Clone)]
pub struct QueueSettings {
    pub connection: Option<QueueConnection>,
    /// The blob service of the same connection when it is identity-based
    /// (`QueueStorageSettings__ConnectionString__blobServiceUri`, or `__accountName`): the
    /// account the blob-triggered subscription functions watch. A connection string names
    /// its blob endpoint itself.
    pub blob_service_uri: Option<BaseUrl>,
    pub inbound: String,
    pub feedback: String,
    pub confirmation: String,
}

impl std::fmt::Debug for QueueSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueSettings")
            .field("connection", &self.connection)
            .field(
                "blob_service_uri",
                &self.blob_service_uri.as_ref().map(ToString::to_string),
            )
            .field("inbound", &self.inbound)
            .field("feedback", &self.feedback)
            .field("confirmation", &self.confirmation)
            .finish()
    }
}

/// How the queue account is reached: the two shapes the Functions host accepts for the
/// binding connection `QueueStorageSettings:ConnectionString`, so one set of app settings
/// serves the host, `aos run` and `aos poison`.
#[derive(Clone, PartialEq, Eq)]
pub enum QueueConnection {
    /// `QueueStorageSettings__ConnectionString`: a storage connection string (may hold a key).
    ConnectionString(String),
    /// Identity-based: `QueueStorageSettings__ConnectionString__queueServiceUri` (or
    /// `__accountName`), with `__credential=managedidentity` and, for a user-assigned identity,
    /// `__clientId`. No secret is involved.
    Identity {
        service_uri: BaseUrl,
        client_id: Option<String>,
    },
}

impl std::fmt::Debug for QueueConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QueueConnection::ConnectionString(_) => f.write_str("ConnectionString(<redacted>)"),
            QueueConnection::Identity {
                service_uri,
                client_id,
            } => f
                .debug_struct("Identity")
                .field("service_uri", &service_uri.to_string())
                .field("client_id", client_id)
                .finish(),
        }
    }
}

/// The queue connection from the settings; a plain connection string wins (as in the host,
/// where a setting with the exact connection name is a connection string).
fn queue_connection(src: &SettingSource) -> Result<Option<QueueConnection>, SettingsError> {
    let base = format!("{QUEUES}ConnectionString");
    if let Some(text) = src.get(&base) {
        return Ok(Some(QueueConnection::ConnectionString(text)));
    }
    let uri_name = format!("{base}__queueServiceUri");
    let account_name = format!("{base}__accountName");
    let service_uri = match (src.get(&uri_name), src.get(&account_name)) {
        (Some(uri), _) => BaseUrl::parse(&uri_name, &uri)?,
        (None, Some(account)) => {
            let valid = (3..=24).contains(&account.len())
                && account
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
            if !valid {
                return Err(SettingsError::new(
                    &account_name,
                    format!("`{account}` is not a storage account name"),
                ));
            }
            BaseUrl::parse(
                &account_name,
                &format!("https://{account}.queue.core.windows.net/"),
            )?
        }
        (None, None) => return Ok(None),
    };
    // The host knows one credential kind for these connections; refuse anything else rather
    // than silently using a different identity than the host does.
    let credential_name = format!("{base}__credential");
    if let Some(kind) = src.get(&credential_name)
        && !kind.eq_ignore_ascii_case("managedidentity")
    {
        return Err(SettingsError::new(
            &credential_name,
            format!("`{kind}` is not supported (only `managedidentity`)"),
        ));
    }
    Ok(Some(QueueConnection::Identity {
        service_uri,
        client_id: src.get(&format!("{base}__clientId")),
    }))
}

/// The blob service of an identity-based `QueueStorageSettings:ConnectionString`: the
/// host's blob trigger reads `__blobServiceUri` (or derives it from `__accountName`), so the
/// handler uses the same account for the subscription containers.
fn connection_blob_service_uri(src: &SettingSource) -> Result<Option<BaseUrl>, SettingsError> {
    let base = format!("{QUEUES}ConnectionString");
    let uri_name = format!("{base}__blobServiceUri");
    if let Some(uri) = src.get(&uri_name) {
        return BaseUrl::parse(&uri_name, &uri).map(Some);
    }
    let account_name = format!("{base}__accountName");
    match src.get(&account_name) {
        // Validated by `queue_connection`, which runs first.
        Some(account) => BaseUrl::parse(
            &account_name,
            &format!("https://{account}.blob.core.windows.net/"),
        )
        .map(Some),
        None => Ok(None),
    }
}

/// Every setting the handler needs, parsed and checked.
#[derive(Clone, Debug)]
pub struct Settings {
    pub apps_base_url: BaseUrl,
    pub platform_base_url: BaseUrl,
    /// The org, for work that has no event to read it from (reconciliation).
    pub org: Option<OrgName>,
    /// `ReconcileApps`: the apps the reconciler queries (comma-separated `org/app`); empty means
    /// every app of `org` that Storage returns for an org-wide query.
    pub reconcile_apps: Vec<(OrgName, AppName)>,
    pub blob: BlobSettings,
    pub queues: QueueSettings,
    /// `RegisteredSubStorageContainer`: where `EventsSubscriber` stores Altinn's answer for
    /// each added subscription file; default `active-subscriptions`.
    pub active_subscriptions_container: String,
    /// CloudEvent types that are archived; others are answered 200 and dropped.
    pub event_types: Vec<String>,
    pub token: TokenSettings,
    /// The `?code=` secret the standalone webhook requires (`aos run`); unused under Functions,
    /// where the function key plays this role.
    pub webhook_secret: Option<Secret>,
    /// The feedback step (`XMLFeedbackDataType` + `XMLFeedbackEventType`); `None` = off.
    pub feedback: Option<crate::pipeline::feedback::FeedbackSettings>,
    /// Catch-up from the Events pull API (`EventsCatchUp`, `EventsCatchUpFrom`).
    pub catch_up: CatchUpSettings,
}

/// Catch-up from the Events pull API (`crate::pipeline::catchup`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CatchUpSettings {
    /// `EventsCatchUp=true`: the `EventsReconciler` timer also catches up (off by default; the
    /// `aos catch-up` command runs whatever this says). Requires `ReconcileApps`.
    pub enabled: bool,
    /// `EventsCatchUpFrom`: where an app without a cursor starts (RFC 3339 or `YYYY-MM-DD`);
    /// `None` = one day before the run.
    pub first_from: Option<time::OffsetDateTime>,
}

/// An RFC 3339 time (`2024-05-01T00:00:00Z`) or a date (`2024-05-01`, midnight UTC).
pub fn parse_time(value: &str) -> Option<time::OffsetDateTime> {
    use time::format_description::well_known::Rfc3339;
    let value = value.trim();
    if let Ok(at) = time::OffsetDateTime::parse(value, &Rfc3339) {
        return Some(at);
    }
    time::Date::parse(
        value,
        time::macros::format_description!("[year]-[month]-[day]"),
    )
    .ok()
    .map(|d| d.midnight().assume_utc())
}

fn catch_up_settings(
    src: &SettingSource,
    reconcile_apps: &[(OrgName, AppName)],
) -> Result<CatchUpSettings, SettingsError> {
    let enabled_name = format!("{AOS}EventsCatchUp");
    let enabled = match src.get(&enabled_name) {
        None => false,
        Some(v) if v.eq_ignore_ascii_case("true") => true,
        Some(v) if v.eq_ignore_ascii_case("false") => false,
        Some(v) => {
            return Err(SettingsError::new(
                &enabled_name,
                format!("`{v}` is neither true nor false"),
            ));
        }
    };
    let from_name = format!("{AOS}EventsCatchUpFrom");
    let first_from = match src.get(&from_name) {
        None => None,
        Some(v) => Some(parse_time(&v).ok_or_else(|| {
            SettingsError::new(
                &from_name,
                format!("`{v}` is neither an RFC 3339 time nor a YYYY-MM-DD date"),
            )
        })?),
    };
    if enabled && reconcile_apps.is_empty() {
        return Err(SettingsError::new(
            &format!("{AOS}ReconcileApps"),
            "is required when EventsCatchUp is true (the Events pull API is per app)",
        ));
    }
    Ok(CatchUpSettings {
        enabled,
        first_from,
    })
}

/// A secret setting value: never shown by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Where the Altinn token comes from.
#[derive(Clone)]
pub enum TokenSettings {
    /// A fixed bearer token (`AltinnApplicationOwnerSystemSettings__AltinnToken`): for local
    /// development against the simulator. Chosen whenever that setting is present.
    Static(String),
    /// The production flow: Maskinporten JWT grant, then Altinn token exchange. (Boxed: it is
    /// much larger than `Static`.)
    Maskinporten(Box<MaskinportenSettings>),
}

impl std::fmt::Debug for TokenSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenSettings::Static(_) => f.write_str("Static(<redacted>)"),
            TokenSettings::Maskinporten(m) => f.debug_tuple("Maskinporten").field(m).finish(),
        }
    }
}

/// The Maskinporten scopes an application owner system needs: read instances and data, and
/// confirm completion (`specs/altinn.md` §4.1).
pub const DEFAULT_MASKINPORTEN_SCOPES: &str =
    "altinn:serviceowner/instances.read altinn:serviceowner/instances.write";

/// The Key Vault secret the reference system reads its Maskinporten certificate from.
pub const DEFAULT_CERT_SECRET_NAME: &str = "maskinportenclientcert";

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

/// A password from the settings; never shown by `Debug`.
#[derive(Clone, Default)]
pub struct Password(String);

impl Password {
    pub fn new(value: impl Into<String>) -> Self {
        Password(value.into())
    }

    /// The password itself, for decrypting key material only.
    pub fn secret(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
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
        password: Password,
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

impl Settings {
    pub fn from_source(src: &SettingSource) -> Result<Self, SettingsError> {
        let apps_name = format!("{AOS}AppsBaseUrl");
        let apps_base_url = BaseUrl::parse(&apps_name, &src.required(&apps_name)?)?;
        let platform_name = format!("{AOS}PlatformBaseUrl");
        let platform_base_url = BaseUrl::parse(&platform_name, &src.required(&platform_name)?)?;

        let org_name = format!("{AOS}Org");
        let org = match src.get(&org_name) {
            Some(value) => Some(
                OrgName::parse(&value)
                    .map_err(|e| SettingsError::new(&org_name, format!("`{value}`: {e}")))?,
            ),
            None => org_from_apps_host(&apps_base_url),
        };

        let reconcile_apps = reconcile_apps(src)?;
        let catch_up = catch_up_settings(src, &reconcile_apps)?;

        let endpoint_name = format!("{AOS}BlobEndpoint");
        let endpoint = BaseUrl::parse(&endpoint_name, &src.required(&endpoint_name)?)?;
        let account_name = src.get(&format!("{AOS}AccountName"));
        let account_key = src.get(&format!("{AOS}AccountKey"));
        let account = match (account_name, account_key) {
            (Some(name), Some(key)) => {
                use base64::Engine;
                if base64::engine::general_purpose::STANDARD
                    .decode(&key)
                    .is_err()
                {
                    return Err(SettingsError::new(
                        &format!("{AOS}AccountKey"),
                        "is not base64",
                    ));
                }
                Some((name, key))
            }
            (None, Some(_)) => {
                return Err(SettingsError::new(
                    &format!("{AOS}AccountName"),
                    "is required when AccountKey is set",
                ));
            }
            _ => None,
        };
        let container = src
            .get(&format!("{AOS}StorageContainer"))
            .unwrap_or_else(|| "inbound".into());
        check_container_name(&format!("{AOS}StorageContainer"), &container)?;

        let active_name = format!("{AOS}RegisteredSubStorageContainer");
        let active_subscriptions_container = src
            .get(&active_name)
            .unwrap_or_else(|| "active-subscriptions".into());
        check_container_name(&active_name, &active_subscriptions_container)?;

        let queue = |key: &str, default: &str| -> Result<String, SettingsError> {
            let name = format!("{QUEUES}{key}");
            let value = src.get(&name).unwrap_or_else(|| default.to_string());
            check_queue_name(&name, &value)?;
            Ok(value)
        };
        let queues = QueueSettings {
            connection: queue_connection(src)?,
            blob_service_uri: connection_blob_service_uri(src)?,
            inbound: queue("InboundQueueName", "events-inbound")?,
            feedback: queue("FeedbackQueueName", "events-feedback")?,
            confirmation: queue("ConfirmationQueueName", "events-confirmation")?,
        };

        let event_types = src
            .get(&format!("{AOS}EventTypes"))
            .map(|v| {
                v.split(',')
                    .map(|t| t.trim().to_string())
                    .filter(|t| !t.is_empty())
                    .collect()
            })
            .unwrap_or_else(|| vec![DEFAULT_EVENT_TYPE.to_string()]);

        let token = token_settings(src)?;

        Ok(Settings {
            apps_base_url,
            platform_base_url,
            org,
            reconcile_apps,
            blob: BlobSettings {
                endpoint,
                account,
                container,
            },
            queues,
            active_subscriptions_container,
            event_types,
            token,
            webhook_secret: src.get(&format!("{AOS}WebhookSecret")).map(Secret),
            feedback: crate::pipeline::feedback::FeedbackSettings::from_source(src)?,
            catch_up,
        })
    }

    pub fn processes_event_type(&self, event_type: &str) -> bool {
        self.event_types.iter().any(|t| t == event_type)
    }
}

/// `ReconcileApps`: comma-separated `org/app`, each name checked like an event's.
fn reconcile_apps(src: &SettingSource) -> Result<Vec<(OrgName, AppName)>, SettingsError> {
    let name = format!("{AOS}ReconcileApps");
    let Some(value) = src.get(&name) else {
        return Ok(Vec::new());
    };
    value
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| {
            let bad = |problem: String| SettingsError::new(&name, format!("`{item}`: {problem}"));
            let (org, app) = item
                .split_once('/')
                .ok_or_else(|| bad("is not `org/app`".into()))?;
            Ok((
                OrgName::parse(org).map_err(|e| bad(format!("org {e}")))?,
                AppName::parse(app).map_err(|e| bad(format!("app {e}")))?,
            ))
        })
        .collect()
}

/// `Static` when `AltinnToken` is set (local development); otherwise the Maskinporten settings
/// are required.
fn token_settings(src: &SettingSource) -> Result<TokenSettings, SettingsError> {
    if let Some(token) = src.get(&format!("{AOS}AltinnToken")) {
        return Ok(TokenSettings::Static(token));
    }
    let issuer_name = format!("{AOS}MaskinportenBaseAddress");
    let issuer = BaseUrl::parse(&issuer_name, &src.required(&issuer_name)?)?;
    let client_id = src.required(&format!("{AOS}MaskinPortenClientId"))?;

    let scopes_name = format!("{AOS}MaskinPortenScopes");
    let scopes = src
        .get(&scopes_name)
        .unwrap_or_else(|| DEFAULT_MASKINPORTEN_SCOPES.to_string());
    let scopes = scopes
        .split([' ', ',', '\t', '\n'])
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    if scopes.is_empty() {
        return Err(SettingsError::new(&scopes_name, "names no scope"));
    }

    let test_mode_name = format!("{AOS}TestMode");
    let test_mode = match src.get(&test_mode_name) {
        None => false,
        Some(v) if v.eq_ignore_ascii_case("true") => true,
        Some(v) if v.eq_ignore_ascii_case("false") => false,
        Some(v) => {
            return Err(SettingsError::new(
                &test_mode_name,
                format!("`{v}` is neither true nor false"),
            ));
        }
    };

    let key = key_source(src)?;
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

/// A local file wins over Key Vault (as in the reference system); a certificate file and a JWK
/// file together are ambiguous and refused.
fn key_source(src: &SettingSource) -> Result<KeySource, SettingsError> {
    let cert_name = format!("{AOS}MaskinPortenCertPath");
    let jwk_name = format!("{AOS}MaskinPortenJwkPath");
    let vault_name = "KeyVault__KeyVaultURI";
    match (src.get(&cert_name), src.get(&jwk_name)) {
        (Some(_), Some(_)) => Err(SettingsError::new(
            &jwk_name,
            format!("cannot be used together with {cert_name}"),
        )),
        (Some(path), None) => {
            let password = Password::new(
                src.get(&format!("{AOS}MaskinPortenCertPassword"))
                    .unwrap_or_default(),
            );
            Ok(KeySource::File {
                setting: cert_name,
                path: PathBuf::from(path),
                password,
            })
        }
        (None, Some(path)) => Ok(KeySource::Jwk {
            setting: jwk_name,
            path: PathBuf::from(path),
        }),
        (None, None) => {
            let Some(vault) = src.get(vault_name) else {
                return Err(SettingsError::new(
                    vault_name,
                    format!(
                        "is required when neither {AOS}AltinnToken, {cert_name} nor {jwk_name} is set \
                         (the Maskinporten key must come from somewhere)"
                    ),
                ));
            };
            let vault = BaseUrl::parse(vault_name, &vault)?;
            let secret_setting = "KeyVault__MaskinPortenCertSecretId";
            let secret_name = src
                .get(secret_setting)
                .unwrap_or_else(|| DEFAULT_CERT_SECRET_NAME.to_string());
            let valid = (1..=127).contains(&secret_name.len())
                && secret_name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-');
            if !valid {
                return Err(SettingsError::new(
                    secret_setting,
                    format!(
                        "`{secret_name}` is not a Key Vault secret name (1-127 letters, digits and hyphens)"
                    ),
                ));
            }
            Ok(KeySource::KeyVault {
                setting: vault_name.to_string(),
                vault,
                secret_name,
            })
        }
    }
}

/// `ttd` from `https://ttd.apps.tt02.altinn.no/`; `None` for plain hosts (tests, simulators).
fn org_from_apps_host(base: &BaseUrl) -> Option<OrgName> {
    let host = base.url().host_str()?;
    let mut labels = host.split('.');
    let first = labels.next()?;
    (labels.next() == Some("apps"))
        .then(|| OrgName::parse(first).ok())
        .flatten()
}

/// Azure container names: 3–63 chars of lower-case letters, digits and single hyphens.
fn check_container_name(name: &str, value: &str) -> Result<(), SettingsError> {
    check_storage_name(name, value, "container")
}

/// Azure queue names follow the same rule as container names.
fn check_queue_name(name: &str, value: &str) -> Result<(), SettingsError> {
    check_storage_name(name, value, "queue")
}

fn check_storage_name(name: &str, value: &str, what: &str) -> Result<(), SettingsError> {
    let ok = (3..=63).contains(&value.len())
        && value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !value.starts_with('-')
        && !value.ends_with('-')
        && !value.contains("--");
    if ok {
        Ok(())
    } else {
        Err(SettingsError::new(
            name,
            format!("`{value}` is not a valid {what} name"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal() -> Vec<(&'static str, &'static str)> {
        vec![
            (
                "AltinnApplicationOwnerSystemSettings__AppsBaseUrl",
                "https://ttd.apps.tt02.altinn.no",
            ),
            (
                "AltinnApplicationOwnerSystemSettings:PlatformBaseUrl",
                "https://platform.tt02.altinn.no/",
            ),
            (
                "AltinnApplicationOwnerSystemSettings__BlobEndpoint",
                "http://127.0.0.1:10000/devstoreaccount1",
            ),
            ("AltinnApplicationOwnerSystemSettings__AltinnToken", "t"),
        ]
    }

    #[test]
    fn parses_minimal_settings_with_defaults() {
        let s = Settings::from_source(&SettingSource::from_pairs(minimal())).unwrap();
        assert_eq!(
            s.apps_base_url.to_string(),
            "https://ttd.apps.tt02.altinn.no/"
        );
        assert_eq!(
            s.platform_base_url.to_string(),
            "https://platform.tt02.altinn.no/"
        );
        assert_eq!(
            s.blob.endpoint.to_string(),
            "http://127.0.0.1:10000/devstoreaccount1/"
        );
        assert_eq!(s.blob.container, "inbound");
        assert_eq!(s.queues.inbound, "events-inbound");
        assert_eq!(s.queues.confirmation, "events-confirmation");
        assert_eq!(s.org.as_ref().map(|o| o.as_str()), Some("ttd"));
        assert_eq!(s.event_types, vec![DEFAULT_EVENT_TYPE.to_string()]);
    }

    #[test]
    fn missing_setting_is_named() {
        let mut pairs = minimal();
        pairs.remove(0);
        let err = Settings::from_source(&SettingSource::from_pairs(pairs)).unwrap_err();
        assert_eq!(
            err.name,
            "AltinnApplicationOwnerSystemSettings__AppsBaseUrl"
        );
        assert!(err.to_string().contains("is required"));
    }

    #[test]
    fn http_is_refused_except_on_loopback() {
        assert!(BaseUrl::parse("X", "http://platform.tt02.altinn.no/").is_err());
        assert!(BaseUrl::parse("X", "http://127.0.0.1:1234").is_ok());
        assert!(BaseUrl::parse("X", "http://localhost:1234/").is_ok());
        assert!(BaseUrl::parse("X", "ftp://127.0.0.1/").is_err());
        assert!(BaseUrl::parse("X", "not a url").is_err());
    }

    #[test]
    fn org_is_not_required_from_plain_hosts() {
        let mut pairs = minimal();
        pairs[0].1 = "http://127.0.0.1:5000/";
        let s = Settings::from_source(&SettingSource::from_pairs(pairs)).unwrap();
        assert!(s.org.is_none());
    }

    #[test]
    fn reconcile_apps_are_parsed_and_checked() {
        let s = Settings::from_source(&SettingSource::from_pairs(minimal())).unwrap();
        assert!(s.reconcile_apps.is_empty());
        let mut pairs = minimal();
        pairs.push((
            "AltinnApplicationOwnerSystemSettings__ReconcileApps",
            " ttd/app-one, ttd/app2 ,",
        ));
        let s = Settings::from_source(&SettingSource::from_pairs(pairs)).unwrap();
        let apps: Vec<String> = s
            .reconcile_apps
            .iter()
            .map(|(o, a)| format!("{}/{}", o.as_str(), a.as_str()))
            .collect();
        assert_eq!(apps, ["ttd/app-one", "ttd/app2"]);
        for bad in ["ttd", "ttd/../x", "TTD/app", "ttd/app/extra"] {
            let mut pairs = minimal();
            pairs.push(("AltinnApplicationOwnerSystemSettings__ReconcileApps", bad));
            let err = Settings::from_source(&SettingSource::from_pairs(pairs)).unwrap_err();
            assert!(err.name.ends_with("ReconcileApps"), "{bad}: {err}");
        }
    }

    #[test]
    fn bad_queue_name_is_refused() {
        let mut pairs = minimal();
        pairs.push(("QueueStorageSettings__InboundQueueName", "Bad_Name"));
        let err = Settings::from_source(&SettingSource::from_pairs(pairs)).unwrap_err();
        assert_eq!(err.name, "QueueStorageSettings__InboundQueueName");
    }

    #[test]
    fn base_url_join_keeps_one_slash() {
        let b = BaseUrl::parse("X", "https://platform.tt02.altinn.no").unwrap();
        assert_eq!(
            b.join("/storage/api/v1/x").as_str(),
            "https://platform.tt02.altinn.no/storage/api/v1/x"
        );
    }

    fn maskinporten(extra: &[(&'static str, &'static str)]) -> Result<Settings, SettingsError> {
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
        assert_eq!(err.name, "KeyVault__KeyVaultURI");
        let mut pairs = minimal();
        pairs.retain(|(k, _)| !k.ends_with("AltinnToken"));
        let err = Settings::from_source(&SettingSource::from_pairs(pairs)).unwrap_err();
        assert_eq!(
            err.name,
            "AltinnApplicationOwnerSystemSettings__MaskinportenBaseAddress"
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
            err.name,
            "AltinnApplicationOwnerSystemSettings__MaskinportenBaseAddress"
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
        assert_eq!(err.name, "AltinnApplicationOwnerSystemSettings__TestMode");

        let err = maskinporten(&[
            CERT,
            (
                "AltinnApplicationOwnerSystemSettings__MaskinPortenJwkPath",
                "/k.jwk",
            ),
        ])
        .unwrap_err();
        assert_eq!(
            err.name,
            "AltinnApplicationOwnerSystemSettings__MaskinPortenJwkPath"
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
        assert_eq!(err.name, "KeyVault__MaskinPortenCertSecretId");
        let err =
            maskinporten(&[("KeyVault__KeyVaultURI", "http://aos.vault.azure.net")]).unwrap_err();
        assert_eq!(err.name, "KeyVault__KeyVaultURI");
    }

    fn with(extra: &[(&'static str, &'static str)]) -> Result<Settings, SettingsError> {
        let mut pairs = minimal();
        pairs.extend_from_slice(extra);
        Settings::from_source(&SettingSource::from_pairs(pairs))
    }

    #[test]
    fn queue_connection_string_is_used_as_given() {
        let s = with(&[(
            "QueueStorageSettings__ConnectionString",
            "UseDevelopmentStorage=true",
        )])
        .unwrap();
        assert_eq!(
            s.queues.connection,
            Some(QueueConnection::ConnectionString(
                "UseDevelopmentStorage=true".into()
            ))
        );
        assert!(!format!("{s:?}").contains("UseDevelopmentStorage"));
        assert_eq!(with(&[]).unwrap().queues.connection, None);
    }

    #[test]
    fn identity_based_queue_connection() {
        // The app settings infra/main.bicep writes (user-assigned identity).
        let s = with(&[
            (
                "QueueStorageSettings__ConnectionString__queueServiceUri",
                "https://aosacct.queue.core.windows.net",
            ),
            (
                "QueueStorageSettings__ConnectionString__credential",
                "managedidentity",
            ),
            (
                "QueueStorageSettings__ConnectionString__clientId",
                "11111111-2222-3333-4444-555555555555",
            ),
        ])
        .unwrap();
        let Some(QueueConnection::Identity {
            service_uri,
            client_id,
        }) = &s.queues.connection
        else {
            panic!("identity connection expected: {:?}", s.queues.connection)
        };
        assert_eq!(
            service_uri.to_string(),
            "https://aosacct.queue.core.windows.net/"
        );
        assert_eq!(
            client_id.as_deref(),
            Some("11111111-2222-3333-4444-555555555555")
        );

        // `:` separators and the account-name shape; system-assigned when no client id.
        let s = with(&[(
            "QueueStorageSettings:ConnectionString:accountName",
            "aosacct",
        )])
        .unwrap();
        assert_eq!(
            s.queues.connection,
            Some(QueueConnection::Identity {
                service_uri: BaseUrl::parse("X", "https://aosacct.queue.core.windows.net/")
                    .unwrap(),
                client_id: None,
            })
        );
    }

    #[test]
    fn connection_string_wins_over_identity_settings() {
        let s = with(&[
            (
                "QueueStorageSettings__ConnectionString",
                "UseDevelopmentStorage=true",
            ),
            (
                "QueueStorageSettings__ConnectionString__queueServiceUri",
                "https://aosacct.queue.core.windows.net",
            ),
        ])
        .unwrap();
        assert!(matches!(
            s.queues.connection,
            Some(QueueConnection::ConnectionString(_))
        ));
    }

    #[test]
    fn bad_identity_queue_settings_are_named() {
        let err = with(&[(
            "QueueStorageSettings__ConnectionString__queueServiceUri",
            "http://aosacct.queue.core.windows.net",
        )])
        .unwrap_err();
        assert_eq!(
            err.name,
            "QueueStorageSettings__ConnectionString__queueServiceUri"
        );
        let err = with(&[(
            "QueueStorageSettings__ConnectionString__accountName",
            "Not_An_Account",
        )])
        .unwrap_err();
        assert_eq!(
            err.name,
            "QueueStorageSettings__ConnectionString__accountName"
        );
        let err = with(&[
            (
                "QueueStorageSettings__ConnectionString__queueServiceUri",
                "https://aosacct.queue.core.windows.net",
            ),
            (
                "QueueStorageSettings__ConnectionString__credential",
                "secret",
            ),
        ])
        .unwrap_err();
        assert_eq!(
            err.name,
            "QueueStorageSettings__ConnectionString__credential"
        );
    }
}
