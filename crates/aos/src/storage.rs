//! Reaching the storage account: blob and queue clients with the right credentials.
//!
//! The official Azure SDK has no shared-key signing, so with an account key (the reference
//! system's settings, and Azurite) requests carry a short-lived *account SAS* signed here with
//! `azure_core::hmac::hmac_sha256`. The SAS is not part of any client: a pipeline policy
//! ([`SasPolicy`]) puts a current one on every request as it is sent (each try of it), so a
//! client held for the life of the process — `aos run` keeps one per queue — never sends an
//! expired SAS, and a client's URL (which SDK errors print) holds no signature. A SAS is minted
//! for [`SAS_LIFETIME`] and re-minted once half of that has passed. A SAS given in a
//! connection string goes on the requests the same way. Without a key, clients use Entra ID:
//! managed identity (the platform's endpoint or IMDS) or the developer's Azure CLI / azd login,
//! as `auth::azure_credential` chooses; one cached credential per identity for the process.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use azure_core::credentials::TokenCredential;
use azure_core::http::policies::{Policy, PolicyResult};
use azure_core::http::{
    ClientOptions, Context, ExponentialRetryOptions, HttpClientOptions, Request, RetryOptions,
    Transport, Url, new_http_client,
};
use azure_storage_blob::{
    BlobClient, BlobClientOptions, BlobContainerClient, BlobContainerClientOptions,
};
use azure_storage_queue::{QueueClient, QueueClientOptions};
use time::{Duration, OffsetDateTime};

use crate::config::{BlobSettings, QueueConnection, SettingsError};
use crate::domain::{BaseUrl, Secret};

/// How long a minted account SAS is valid.
const SAS_LIFETIME: Duration = Duration::hours(2);
/// TEST ONLY: shortens [`SAS_LIFETIME`] to this many seconds, so an end-to-end test can run the
/// real binary past several lifetimes (`tests/e2e/long_run.rs`). Not a setting for users: a
/// SAS of seconds only adds signing work and clock-skew risk in production.
const TEST_SAS_LIFETIME_ENV: &str = "AOS_TEST_STORAGE_SAS_LIFETIME_SECS";
/// Storage API version named in the SAS (`sv`).
const SAS_VERSION: &str = "2022-11-02";

/// The well-known Azurite development account (public, documented by Microsoft).
pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// How requests are authorised.
#[derive(Clone)]
enum Auth {
    /// Account name + key: sign an account SAS.
    Key { account: String, key: Secret },
    /// A SAS given in a connection string.
    Sas(String),
    /// Entra ID (managed identity in Azure).
    Identity(Arc<dyn TokenCredential>),
}

/// One storage service endpoint (blob or queue) and its credentials.
#[derive(Clone)]
pub struct StorageEndpoint {
    endpoint: BaseUrl,
    auth: Auth,
    /// Signs every request of every client made from this endpoint (SAS auth only); shared, so
    /// all clients use one cached SAS.
    sas: Option<Arc<SasPolicy>>,
    retry: RetryOptions,
    /// One HTTP transport for every client made from this endpoint: connections are reused,
    /// and the TLS roots are loaded once instead of per blob operation.
    transport: Transport,
}

impl StorageEndpoint {
    /// The archive's blob endpoint from the `AltinnApplicationOwnerSystemSettings__…` settings.
    pub fn for_blobs(settings: &BlobSettings) -> Result<Self, SettingsError> {
        let auth = match &settings.account {
            Some((account, key)) => Auth::Key {
                account: account.clone(),
                key: key.clone(),
            },
            None => Auth::Identity(default_credential().map_err(|e| SettingsError {
                name: crate::config::aos("AccountKey"),
                problem: format!("is not set and no managed identity is available: {e}"),
            })?),
        };
        Ok(Self::new(settings.endpoint.clone(), auth))
    }

    /// The queue endpoint named by a storage connection string.
    pub fn for_queues(connection_string: &str) -> Result<Self, SettingsError> {
        let parsed = ConnectionString::parse(connection_string)?;
        Ok(Self::new(parsed.queue_endpoint, parsed.auth))
    }

    /// The queue endpoint of `QueueStorageSettings__ConnectionString` in either shape the
    /// Functions host accepts: a connection string, or identity-based sub-settings (managed
    /// identity; the connection's own `__clientId`, else `AZURE_CLIENT_ID`).
    pub fn for_queue_connection(connection: &QueueConnection) -> Result<Self, SettingsError> {
        match connection {
            QueueConnection::ConnectionString(text) => Self::for_queues(text.expose()),
            QueueConnection::Identity {
                service_uri,
                client_id,
                managed_identity,
            } => {
                let credential =
                    connection_credential(client_id, *managed_identity).map_err(|e| {
                        SettingsError {
                            name: crate::config::queue_storage("ConnectionString__queueServiceUri"),
                            problem: format!("is set but no managed identity is available: {e}"),
                        }
                    })?;
                Ok(Self::new(service_uri.clone(), Auth::Identity(credential)))
            }
        }
    }

    /// The blob service of the account behind `QueueStorageSettings__ConnectionString` — the
    /// account the Functions host's blob triggers on that connection watch. A connection string
    /// names it; the identity-based form needs `__blobServiceUri` (or `__accountName`), as the
    /// host's blob trigger does.
    pub fn blobs_for_queue_connection(
        connection: &QueueConnection,
        blob_service_uri: Option<&BaseUrl>,
    ) -> Result<Self, SettingsError> {
        match connection {
            QueueConnection::ConnectionString(text) => {
                Self::blobs_from_connection_string(text.expose())
            }
            QueueConnection::Identity {
                client_id,
                managed_identity,
                ..
            } => {
                let name = "QueueStorageSettings__ConnectionString__blobServiceUri";
                let uri = blob_service_uri.ok_or_else(|| SettingsError {
                    name: name.into(),
                    problem: "is required for the blob-triggered subscription functions when \
                              the connection is identity-based"
                        .into(),
                })?;
                let credential =
                    connection_credential(client_id, *managed_identity).map_err(|e| {
                        SettingsError {
                            name: name.into(),
                            problem: format!("is set but no managed identity is available: {e}"),
                        }
                    })?;
                Ok(Self::new(uri.clone(), Auth::Identity(credential)))
            }
        }
    }

    /// The blob endpoint named by a storage connection string.
    pub fn blobs_from_connection_string(connection_string: &str) -> Result<Self, SettingsError> {
        let parsed = ConnectionString::parse(connection_string)?;
        Ok(Self::new(parsed.blob_endpoint, parsed.auth))
    }

    fn new(endpoint: BaseUrl, auth: Auth) -> Self {
        // Storage clients need automatic decompression off (ranged downloads of compressed blobs).
        let http = new_http_client(Some(HttpClientOptions {
            automatic_decompression: false,
        }));
        let sas = match &auth {
            Auth::Identity(_) => None,
            Auth::Sas(sas) => Some(SasSource::Fixed(sas.clone())),
            Auth::Key { account, key } => Some(SasSource::AccountKey {
                account: account.clone(),
                key: key.clone(),
                https_only: endpoint.url().scheme() == "https",
                lifetime: sas_lifetime(),
                minted: Mutex::new(None),
            }),
        };
        StorageEndpoint {
            endpoint,
            auth,
            sas: sas.map(|source| Arc::new(SasPolicy { source })),
            retry: default_retry(),
            transport: Transport::new(http),
        }
    }

    /// Overrides the SDK's retry policy (tests use a short one so a stopped Azurite fails fast).
    pub fn with_retry(mut self, retry: RetryOptions) -> Self {
        self.retry = retry;
        self
    }

    pub fn endpoint(&self) -> &BaseUrl {
        &self.endpoint
    }

    /// The SAS policy runs per *try*, after the SDK's retry policy: a retry that follows a long
    /// back-off is signed anew.
    fn client_options(&self) -> ClientOptions {
        ClientOptions {
            retry: self.retry.clone(),
            transport: Some(self.transport.clone()),
            per_try_policies: self
                .sas
                .iter()
                .map(|p| p.clone() as Arc<dyn Policy>)
                .collect(),
            ..Default::default()
        }
    }

    /// `{endpoint}{path}`; never a SAS (the policy adds it to each request).
    fn url(&self, path: &str) -> Url {
        self.endpoint.join(path)
    }

    fn credential(&self) -> Option<Arc<dyn TokenCredential>> {
        match &self.auth {
            Auth::Identity(c) => Some(c.clone()),
            _ => None,
        }
    }

    /// The SAS a request sent now would carry (none with Entra ID).
    #[cfg(test)]
    fn current_sas(&self) -> Result<Option<String>, azure_core::Error> {
        self.sas
            .as_ref()
            .map(|p| p.source.at(OffsetDateTime::now_utc()))
            .transpose()
    }

    pub fn container(&self, container: &str) -> azure_core::Result<BlobContainerClient> {
        let options = BlobContainerClientOptions {
            client_options: self.client_options(),
            ..Default::default()
        };
        BlobContainerClient::new(self.url(container), self.credential(), Some(options))
    }

    /// A blob client; `blob_name` must consist of URL-safe segments (validated names only).
    pub fn blob(&self, container: &str, blob_name: &str) -> azure_core::Result<BlobClient> {
        let options = BlobClientOptions {
            client_options: self.client_options(),
            ..Default::default()
        };
        BlobClient::new(
            self.url(&format!("{container}/{blob_name}")),
            self.credential(),
            Some(options),
        )
    }

    pub fn queue(&self, queue: &str) -> azure_core::Result<QueueClient> {
        let options = QueueClientOptions {
            client_options: self.client_options(),
            ..Default::default()
        };
        QueueClient::new(self.url(queue), self.credential(), Some(options))
    }
}

/// Puts a current SAS on each request as it is sent, replacing the one a previous try of the
/// same request carried; everything else in the query (the operation's own parameters) is kept
/// as the SDK encoded it.
struct SasPolicy {
    source: SasSource,
}

/// Where the SAS comes from.
enum SasSource {
    /// Given in the connection string: used as is (its owner manages its lifetime).
    Fixed(String),
    /// Minted here from the account key and cached until half its lifetime has passed.
    AccountKey {
        account: String,
        key: Secret,
        https_only: bool,
        lifetime: Duration,
        /// The current SAS and its expiry (`se`, whole seconds).
        minted: Mutex<Option<(String, OffsetDateTime)>>,
    },
}

impl SasSource {
    /// The SAS to send at `now`: every request carries one with at least half its lifetime left.
    fn at(&self, now: OffsetDateTime) -> azure_core::Result<String> {
        match self {
            SasSource::Fixed(sas) => Ok(sas.clone()),
            SasSource::AccountKey {
                account,
                key,
                https_only,
                lifetime,
                minted,
            } => {
                let mut minted = minted.lock().unwrap_or_else(|p| p.into_inner());
                if let Some((sas, expiry)) = minted.as_ref()
                    && *expiry - now > *lifetime / 2
                {
                    return Ok(sas.clone());
                }
                // `se` has whole seconds: cache the expiry the service will actually apply.
                let expiry = (now + *lifetime).replace_nanosecond(0).unwrap_or(now);
                let sas = account_sas(account, key, *https_only, now, expiry)?;
                *minted = Some((sas.clone(), expiry));
                Ok(sas)
            }
        }
    }
}

/// No key material and no SAS in debug output (pipelines are `Debug`).
impl std::fmt::Debug for SasPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SasPolicy")
    }
}

#[async_trait]
impl Policy for SasPolicy {
    async fn send(
        &self,
        ctx: &Context,
        request: &mut Request,
        next: &[Arc<dyn Policy>],
    ) -> PolicyResult {
        let sas = self.source.at(OffsetDateTime::now_utc())?;
        let url = request.url_mut();
        let query = with_sas(url.query(), &sas);
        url.set_query(Some(&query));
        next[0]
            .send(ctx, request, &next[1..])
            .await
            .map_err(|e| without_sas_in_transport_error(e, &sas))
    }
}

/// `query` with every parameter the SAS names (`sv`, `se`, `sig`, …) replaced by `sas`.
fn with_sas(query: Option<&str>, sas: &str) -> String {
    let mut pairs = without_sas(query, sas);
    pairs.push(sas);
    pairs.join("&")
}

/// The pairs of `query` that are not parameters of `sas`, as they were encoded.
fn without_sas<'q>(query: Option<&'q str>, sas: &str) -> Vec<&'q str> {
    let key = |pair: &str| pair.split('=').next().unwrap_or_default().to_string();
    let sas_keys: Vec<String> = sas.split('&').map(key).collect();
    query
        .unwrap_or_default()
        .split('&')
        .filter(|pair| !pair.is_empty() && !sas_keys.contains(&key(pair)))
        .collect()
}

/// A transport error names the request URL (`error sending request for url (…)`); take the SAS
/// out of it so the signature cannot reach stderr, logs or stored failure records from here.
fn without_sas_in_transport_error(mut error: azure_core::Error, sas: &str) -> azure_core::Error {
    if let Some(url) = error
        .downcast_mut::<reqwest_sdk::Error>()
        .and_then(|e| e.url_mut())
    {
        let kept = without_sas(url.query(), sas).join("&");
        url.set_query((!kept.is_empty()).then_some(kept.as_str()));
    }
    error
}

/// The SAS lifetime: [`SAS_LIFETIME`], or the test-only [`TEST_SAS_LIFETIME_ENV`].
fn sas_lifetime() -> Duration {
    std::env::var(TEST_SAS_LIFETIME_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<u32>().ok())
        .filter(|secs| *secs > 0)
        .map(|secs| Duration::seconds(secs.into()))
        .unwrap_or(SAS_LIFETIME)
}

/// Bounded SDK retries: a few quick attempts, then the error reaches the pipeline, which leaves
/// the retry to the queue (so one stuck storage call never holds an invocation for minutes).
pub(crate) fn default_retry() -> RetryOptions {
    RetryOptions::exponential(ExponentialRetryOptions {
        initial_delay: azure_core::time::Duration::milliseconds(200),
        max_retries: 3,
        max_total_elapsed: azure_core::time::Duration::seconds(20),
        max_delay: azure_core::time::Duration::seconds(5),
    })
}

/// Entra ID credential for the archive blobs (no `AccountKey`) and Key Vault: the identity
/// named by `AZURE_CLIENT_ID` (system-assigned when unset), or the developer's login — see
/// `auth::azure_credential::choose`.
pub(crate) fn default_credential() -> azure_core::Result<Arc<dyn TokenCredential>> {
    crate::auth::azure_credential::credential(crate::auth::azure_credential::env_client_id(), false)
}

/// The credential of an identity-based queue connection: its own `__clientId`, else
/// `AZURE_CLIENT_ID`; `__credential=managedidentity` asks for managed identity even without one.
fn connection_credential(
    client_id: &Option<String>,
    managed_identity: bool,
) -> azure_core::Result<Arc<dyn TokenCredential>> {
    let client_id = client_id
        .clone()
        .or_else(crate::auth::azure_credential::env_client_id);
    crate::auth::azure_credential::credential(client_id, managed_identity)
}

/// An account SAS for the blob and queue services (service, container and object level).
fn account_sas(
    account: &str,
    key: &Secret,
    https_only: bool,
    start: OffsetDateTime,
    expiry: OffsetDateTime,
) -> azure_core::Result<String> {
    let fmt = |t: OffsetDateTime| {
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        )
    };
    // Start a few minutes back so clock skew between us and the service does not reject it.
    let st = fmt(start - Duration::minutes(5));
    let se = fmt(expiry);
    let (sp, ss, srt) = ("rwdlacup", "bq", "sco");
    let spr = if https_only { "https" } else { "https,http" };
    let to_sign = format!("{account}\n{sp}\n{ss}\n{srt}\n{st}\n{se}\n\n{spr}\n{SAS_VERSION}\n\n");
    let sig = hmac_sha256(&to_sign, key)?;
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    query
        .append_pair("sv", SAS_VERSION)
        .append_pair("ss", ss)
        .append_pair("srt", srt)
        .append_pair("sp", sp)
        .append_pair("st", &st)
        .append_pair("se", &se)
        .append_pair("spr", spr)
        .append_pair("sig", &sig);
    Ok(query.finish())
}

/// The base64 HMAC-SHA256 of `data` under the base64 account `key`. Not the SDK's
/// `azure_core::hmac::hmac_sha256`: that one takes the SDK's `Secret`, which is not overwritten
/// when dropped, and leaves the decoded key bytes in freed memory; here the key stays a zeroising
/// [`Secret`] and its decoded bytes are zeroised after use.
fn hmac_sha256(data: &str, key: &Secret) -> azure_core::Result<String> {
    use base64::Engine as _;
    let engine = base64::engine::general_purpose::STANDARD;
    let decoded = zeroize::Zeroizing::new(engine.decode(key.expose().trim()).map_err(|_| {
        azure_core::Error::with_message(
            azure_core::error::ErrorKind::Credential,
            "the storage account key is not base64",
        )
    })?);
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &decoded);
    Ok(engine.encode(aws_lc_rs::hmac::sign(&key, data.as_bytes())))
}

/// The parts of an Azure Storage connection string this system uses.
struct ConnectionString {
    blob_endpoint: BaseUrl,
    queue_endpoint: BaseUrl,
    auth: Auth,
}

impl ConnectionString {
    const SETTING: &'static str = "QueueStorageSettings__ConnectionString";

    fn parse(text: &str) -> Result<Self, SettingsError> {
        let err = |problem: String| SettingsError {
            name: Self::SETTING.into(),
            problem,
        };
        let mut pairs = std::collections::HashMap::new();
        for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| err(format!("`{part}` is not key=value")))?;
            pairs.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
        if pairs
            .get("usedevelopmentstorage")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
        {
            pairs.insert("accountname".into(), AZURITE_ACCOUNT.into());
            pairs.insert("accountkey".into(), AZURITE_KEY.into());
            pairs
                .entry("blobendpoint".into())
                .or_insert_with(|| format!("http://127.0.0.1:10000/{AZURITE_ACCOUNT}"));
            pairs
                .entry("queueendpoint".into())
                .or_insert_with(|| format!("http://127.0.0.1:10001/{AZURITE_ACCOUNT}"));
        }
        let account = pairs.get("accountname").cloned();
        // Out of the map at once, into a zeroising `Secret`.
        let account_key = pairs.remove("accountkey").map(Secret::new);
        let endpoint = |service: &str| -> Result<BaseUrl, SettingsError> {
            if let Some(explicit) = pairs.get(&format!("{service}endpoint")) {
                return BaseUrl::parse(explicit).map_err(err);
            }
            let account = account
                .as_ref()
                .ok_or_else(|| err("has neither AccountName nor endpoints".into()))?;
            let protocol = pairs
                .get("defaultendpointsprotocol")
                .map(String::as_str)
                .unwrap_or("https");
            let suffix = pairs
                .get("endpointsuffix")
                .map(String::as_str)
                .unwrap_or("core.windows.net");
            BaseUrl::parse(&format!("{protocol}://{account}.{service}.{suffix}/")).map_err(err)
        };
        let auth = if let Some(sas) = pairs.get("sharedaccesssignature") {
            Auth::Sas(sas.trim_start_matches('?').to_string())
        } else if let (Some(account), Some(key)) = (account.clone(), account_key) {
            Auth::Key { account, key }
        } else {
            Auth::Identity(
                default_credential()
                    .map_err(|e| err(format!("has no key and no identity is available: {e}")))?,
            )
        };
        Ok(ConnectionString {
            blob_endpoint: endpoint("blob")?,
            queue_endpoint: endpoint("queue")?,
            auth,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The account key held for signing is overwritten when dropped (checked at compile time:
    /// the key's type must be `ZeroizeOnDrop`).
    #[test]
    fn the_account_key_is_zeroised_on_drop() {
        fn zeroised_on_drop<T: zeroize::ZeroizeOnDrop>(_: &T) {}
        let cs = ConnectionString::parse(&format!(
            "DefaultEndpointsProtocol=https;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY}"
        ))
        .unwrap();
        let Auth::Key { key, .. } = &cs.auth else {
            panic!("a key-based connection");
        };
        zeroised_on_drop(key);
    }

    #[test]
    fn account_sas_matches_a_known_signature() {
        // Signature computed independently with Python's hmac for the same string-to-sign.
        let start = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let sas = account_sas(
            AZURITE_ACCOUNT,
            &Secret::new(AZURITE_KEY),
            false,
            start,
            start + Duration::hours(1),
        )
        .unwrap();
        assert!(sas.eq("sv=2022-11-02&ss=bq&srt=sco&sp=rwdlacup&st=2027-01-15T07%3A55%3A00Z&se=2027-01-15T09%3A00%3A00Z&spr=https%2Chttp&sig=DkagH4UIAS8p3MC46EGvGpaH4c6YNQO57VjKsoxH6XA%3D"), "{sas}");
    }

    fn key_source(lifetime: Duration) -> SasSource {
        SasSource::AccountKey {
            account: AZURITE_ACCOUNT.into(),
            key: Secret::new(AZURITE_KEY),
            https_only: false,
            lifetime,
            minted: Mutex::new(None),
        }
    }

    fn param<'a>(query: &'a str, name: &str) -> Vec<&'a str> {
        query
            .split('&')
            .filter_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
            .collect()
    }

    #[test]
    fn a_sas_is_reused_for_half_its_life_then_minted_anew() {
        let source = key_source(Duration::hours(2));
        let start = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let first = source.at(start).unwrap();
        assert_eq!(param(&first, "se"), ["2027-01-15T10%3A00%3A00Z"]);
        let later = start + Duration::minutes(59);
        assert_eq!(source.at(later).unwrap(), first);
        let past_half = start + Duration::minutes(61);
        let second = source.at(past_half).unwrap();
        assert_ne!(second, first);
        assert_eq!(param(&second, "se"), ["2027-01-15T11%3A01%3A00Z"]);
    }

    #[test]
    fn the_sas_replaces_an_earlier_one_and_keeps_the_operation_parameters() {
        let sas = "sv=2022-11-02&se=2027-01-15T11%3A01%3A00Z&sig=new%3D";
        assert_eq!(
            with_sas(Some("comp=list&prefix=a%20b"), sas),
            format!("comp=list&prefix=a%20b&{sas}")
        );
        assert_eq!(
            with_sas(
                Some("comp=list&sv=2022-11-02&se=2027-01-15T09%3A00%3A00Z&sig=old%3D&marker=m"),
                sas
            ),
            format!("comp=list&marker=m&{sas}")
        );
        assert_eq!(with_sas(None, sas), sas);
    }

    #[test]
    fn key_based_clients_hold_no_sas_in_their_url() {
        let endpoint = StorageEndpoint::for_queues(&format!(
            "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={AZURITE_KEY}"
        ))
        .unwrap();
        let queue = endpoint.queue("events-inbound").unwrap();
        assert_eq!(
            queue.url().as_str(),
            "https://acct.queue.core.windows.net/events-inbound"
        );
        let blob = endpoint.blob("archive", "a/b.json").unwrap();
        assert_eq!(blob.url().query(), None);
        assert!(endpoint.current_sas().unwrap().unwrap().contains("sig="));
    }

    /// A one-connection-per-request HTTP server that answers each request with the next status
    /// and records the request lines it saw.
    async fn scripted_server(statuses: Vec<u16>) -> (String, Arc<Mutex<Vec<String>>>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!(
            "http://{}/{AZURITE_ACCOUNT}",
            listener.local_addr().unwrap()
        );
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        tokio::spawn(async move {
            for status in statuses {
                let (mut socket, _) = listener.accept().await.unwrap();
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && socket.read(&mut byte).await.unwrap() == 1 {
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).to_string();
                record
                    .lock()
                    .unwrap()
                    .push(head.lines().next().unwrap_or_default().to_string());
                let answer = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
                socket.write_all(answer.as_bytes()).await.unwrap();
            }
        });
        (base, seen)
    }

    #[tokio::test]
    async fn every_try_of_a_request_carries_exactly_one_current_sas() {
        let (base, seen) = scripted_server(vec![503, 200]).await;
        let endpoint = StorageEndpoint::for_queues(&format!(
            "AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};QueueEndpoint={base}"
        ))
        .unwrap()
        .with_retry(RetryOptions::fixed(azure_core::http::FixedRetryOptions {
            delay: azure_core::time::Duration::milliseconds(10),
            max_retries: 2,
            ..Default::default()
        }));
        let queue = endpoint.queue("events-inbound").unwrap();
        queue.get_properties(None).await.unwrap();
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 2, "{seen:?}");
        for line in &seen {
            let query = line.split(' ').nth(1).unwrap().split_once('?').unwrap().1;
            assert_eq!(param(query, "sig").len(), 1, "{line}");
            assert_eq!(param(query, "se").len(), 1, "{line}");
            assert_eq!(param(query, "comp"), ["metadata"], "{line}");
        }
    }

    #[tokio::test]
    async fn a_transport_error_does_not_name_the_sas() {
        // A port nothing listens on: the connection is refused.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let endpoint = StorageEndpoint::for_queues(&format!(
            "AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};\
             QueueEndpoint=http://127.0.0.1:{port}/{AZURITE_ACCOUNT}"
        ))
        .unwrap()
        .with_retry(RetryOptions::none());
        let error = endpoint
            .queue("events-inbound")
            .unwrap()
            .get_properties(None)
            .await
            .unwrap_err();
        let mut text = format!("{error:?} {error}");
        let mut source: Option<&dyn std::error::Error> = std::error::Error::source(&error);
        while let Some(cause) = source {
            text.push_str(&format!(" {cause} {cause:?}"));
            source = cause.source();
        }
        assert!(text.contains("events-inbound"), "{text}");
        assert!(!text.contains("sig"), "{text}");
        assert!(!text.contains("se="), "{text}");
    }

    #[test]
    fn development_storage_connection_string() {
        let cs = ConnectionString::parse("UseDevelopmentStorage=true").unwrap();
        assert_eq!(
            cs.queue_endpoint.to_string(),
            "http://127.0.0.1:10001/devstoreaccount1/"
        );
        assert_eq!(
            cs.blob_endpoint.to_string(),
            "http://127.0.0.1:10000/devstoreaccount1/"
        );
    }

    #[test]
    fn account_connection_string() {
        let cs = ConnectionString::parse(&format!(
            "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={AZURITE_KEY};EndpointSuffix=core.windows.net"
        ))
        .unwrap();
        assert_eq!(
            cs.queue_endpoint.to_string(),
            "https://acct.queue.core.windows.net/"
        );
        assert!(ConnectionString::parse("nonsense").is_err());
    }

    #[test]
    fn identity_queue_connection_uses_the_service_uri_without_a_sas() {
        let connection = QueueConnection::Identity {
            service_uri: BaseUrl::parse("https://aosacct.queue.core.windows.net").unwrap(),
            client_id: Some("11111111-2222-3333-4444-555555555555".into()),
            managed_identity: true,
        };
        let endpoint = StorageEndpoint::for_queue_connection(&connection).unwrap();
        assert_eq!(
            endpoint.endpoint().to_string(),
            "https://aosacct.queue.core.windows.net/"
        );
        assert!(endpoint.credential().is_some());
        assert_eq!(endpoint.current_sas().unwrap(), None);
        let url = endpoint.queue("events-inbound").unwrap().url().clone();
        assert_eq!(
            url.as_str(),
            "https://aosacct.queue.core.windows.net/events-inbound"
        );
    }
}
