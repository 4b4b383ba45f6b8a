//! The Entra ID credential behind every storage client without a key and every Key Vault read.
//!
//! Which credential: managed identity or the developer's Azure CLI / azd login, decided from
//! what the operator said ([`choose`]). The Azure SDK's own `ManagedIdentityCredential` does the
//! rest: with `IDENTITY_ENDPOINT`/`MSI_ENDPOINT` (App Service, Functions, Container Apps) it
//! asks that endpoint, without them it asks IMDS (`http://169.254.169.254/metadata/identity/
//! oauth2/token` with `Metadata: true`), as on an Azure VM, a scale set or an AKS node.
//!
//! Managed identity is chosen only on an explicit sign, never by probing IMDS: a probe costs
//! every developer run a timeout and, on an Azure dev box, would silently swap the developer's
//! login for the machine's identity.
//!
//! One credential per identity for the process ([`credential`]), wrapped in [`CachedCredential`]
//! so storage clients (one per blob operation) and Key Vault reads (a new client per read)
//! share its tokens, and a token is refreshed a margin before it expires.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use async_trait::async_trait;
use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
use azure_core::http::{AsyncRawResponse, ClientOptions, HttpClient, Request, Transport, Url};
use time::{Duration, OffsetDateTime};

/// The Azure SDKs' switch for their default credential chain (.NET, Java, JS, Python, Go):
/// `ManagedIdentityCredential` (or `prod`) or `dev`. The Rust SDK has no chain; `aos` reads it
/// so the setting an operator knows from the other SDKs means the same here.
const TOKEN_CREDENTIALS_ENV: &str = "AZURE_TOKEN_CREDENTIALS";
/// TEST ONLY: sends the requests meant for IMDS's fixed address to this URL's host instead, so
/// an end-to-end test can run the real binary against a fake IMDS (`tests/e2e/imds_e2e.rs`).
/// Not a setting for users: IMDS lives at one link-local address on every Azure host.
const TEST_IMDS_ENV: &str = "AOS_TEST_IMDS_ENDPOINT";
/// IMDS's address (the SDK's constant).
const IMDS_HOST: &str = "169.254.169.254";
/// A token is refreshed this long before it expires at most (half its lifetime for a shorter
/// one), so no request carries a token that expires on the way.
const REFRESH_MARGIN: Duration = Duration::minutes(5);

/// The two credentials `aos` uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Choice {
    ManagedIdentity,
    DeveloperTools,
}

/// Managed identity when the operator asked for it or the platform provides one:
///
/// 1. `AZURE_TOKEN_CREDENTIALS=ManagedIdentityCredential` (or `prod`) / `dev` decides; any
///    other value is refused rather than silently using another identity;
/// 2. `IDENTITY_ENDPOINT` or `MSI_ENDPOINT` is set (App Service, Functions, Container Apps);
/// 3. a user-assigned identity is named (`AZURE_CLIENT_ID`, a connection's `__clientId`) — a
///    developer's login has no client id — or the connection says `__credential=managedidentity`;
///
/// the developer tools otherwise. `env` reads an environment variable (empty counts as unset).
pub(crate) fn choose(
    env: impl Fn(&str) -> Option<String>,
    client_id: Option<&str>,
    connection_says_managed_identity: bool,
) -> Result<Choice, String> {
    let set = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    if let Some(value) = set(TOKEN_CREDENTIALS_ENV) {
        let value = value.trim();
        return match value.to_ascii_lowercase().as_str() {
            "managedidentitycredential" | "prod" => Ok(Choice::ManagedIdentity),
            "dev" | "azureclicredential" | "azuredeveloperclicredential" => {
                Ok(Choice::DeveloperTools)
            }
            _ => Err(format!(
                "{TOKEN_CREDENTIALS_ENV}=`{value}` is not supported by aos (use \
                 `ManagedIdentityCredential` or `dev`)"
            )),
        };
    }
    let platform_endpoint = set("IDENTITY_ENDPOINT").is_some() || set("MSI_ENDPOINT").is_some();
    if platform_endpoint || client_id.is_some() || connection_says_managed_identity {
        Ok(Choice::ManagedIdentity)
    } else {
        Ok(Choice::DeveloperTools)
    }
}

/// The user-assigned identity named by `AZURE_CLIENT_ID` (the Azure SDKs' convention;
/// `infra/main.bicep` sets it), if set (empty counts as unset).
pub(crate) fn env_client_id() -> Option<String> {
    std::env::var("AZURE_CLIENT_ID")
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// Which credential, for which user-assigned identity (none: system-assigned, or the developer).
type IdentityKey = (Choice, Option<String>);

/// The process's credential for the identity `client_id` (user-assigned; system-assigned when
/// `None`), chosen by [`choose`] from the process environment. Every caller asking for the same
/// identity gets the same credential, and so the same cached tokens.
pub(crate) fn credential(
    client_id: Option<String>,
    connection_says_managed_identity: bool,
) -> azure_core::Result<Arc<dyn TokenCredential>> {
    let choice = choose(
        |name| std::env::var(name).ok(),
        client_id.as_deref(),
        connection_says_managed_identity,
    )
    .map_err(|e| azure_core::Error::with_message(azure_core::error::ErrorKind::Credential, e))?;
    // A developer's login has one identity whatever the settings name.
    let key = match choice {
        Choice::ManagedIdentity => (choice, client_id),
        Choice::DeveloperTools => (choice, None),
    };
    static CREDENTIALS: OnceLock<Mutex<HashMap<IdentityKey, Arc<CachedCredential>>>> =
        OnceLock::new();
    let mut credentials = CREDENTIALS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(existing) = credentials.get(&key) {
        return Ok(existing.clone());
    }
    let inner: Arc<dyn TokenCredential> = match choice {
        Choice::ManagedIdentity => {
            let options = azure_identity::ManagedIdentityCredentialOptions {
                user_assigned_id: key.1.clone().map(azure_identity::UserAssignedId::ClientId),
                client_options: ClientOptions {
                    transport: Some(identity_transport()?),
                    ..Default::default()
                },
            };
            azure_identity::ManagedIdentityCredential::new(Some(options))?
        }
        Choice::DeveloperTools => azure_identity::DeveloperToolsCredential::new(None)?,
    };
    let cached = Arc::new(CachedCredential::new(inner));
    credentials.insert(key, cached.clone());
    Ok(cached)
}

/// The HTTP client for the managed identity endpoint, which is link-local (IMDS) or on the
/// host (App Service): never through a proxy from `HTTP_PROXY` — IMDS refuses proxied
/// requests, and a token must not pass through a third party.
fn identity_transport() -> azure_core::Result<Transport> {
    let client = reqwest_sdk::Client::builder()
        .no_proxy()
        .connect_timeout(std::time::Duration::from_secs(5))
        .read_timeout(std::time::Duration::from_secs(30))
        .redirect(reqwest_sdk::redirect::Policy::none())
        .build()
        .map_err(|e| {
            azure_core::Error::with_message(
                azure_core::error::ErrorKind::Credential,
                format!("cannot set up the managed identity client: {e}"),
            )
        })?;
    let client: Arc<dyn HttpClient> = Arc::new(client);
    match test_imds_endpoint() {
        Some(to) => Ok(Transport::new(Arc::new(ImdsRedirect { inner: client, to }))),
        None => Ok(Transport::new(client)),
    }
}

fn test_imds_endpoint() -> Option<Url> {
    let value = std::env::var(TEST_IMDS_ENV).ok()?;
    Url::parse(value.trim()).ok()
}

/// TEST ONLY ([`TEST_IMDS_ENV`]): requests to IMDS's address go to the fake's scheme, host and
/// port; path, query and headers are the SDK's.
#[derive(Debug)]
struct ImdsRedirect {
    inner: Arc<dyn HttpClient>,
    to: Url,
}

#[async_trait]
impl HttpClient for ImdsRedirect {
    async fn execute_request(&self, request: &Request) -> azure_core::Result<AsyncRawResponse> {
        if request.url().host_str() != Some(IMDS_HOST) {
            return self.inner.execute_request(request).await;
        }
        let mut request = request.clone();
        let url = request.url_mut();
        let moved = url
            .set_scheme(self.to.scheme())
            .and_then(|()| url.set_host(self.to.host_str()).map_err(|_| ()))
            .and_then(|()| url.set_port(self.to.port_or_known_default()));
        if moved.is_err() {
            return Err(azure_core::Error::with_message(
                azure_core::error::ErrorKind::Credential,
                format!("{TEST_IMDS_ENV} is not a usable URL"),
            ));
        }
        self.inner.execute_request(&request).await
    }
}

/// A token and when to fetch the next one.
#[derive(Clone)]
struct Cached {
    token: AccessToken,
    refresh_at: OffsetDateTime,
}

/// Keeps each scope's token until a margin before it expires ([`refresh_at`]); one fetch at a
/// time, so a burst of clients asks the identity endpoint once. When a refresh fails while the
/// held token is still valid, the held token is used (the endpoint is asked again next time).
///
/// The SDK caches too, but with a fixed five-minute margin: a token with less left is fetched
/// anew for every request, and a shorter-lived one is never reused.
pub(crate) struct CachedCredential {
    inner: Arc<dyn TokenCredential>,
    tokens: tokio::sync::Mutex<HashMap<Vec<String>, Cached>>,
}

impl std::fmt::Debug for CachedCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedCredential").finish_non_exhaustive()
    }
}

impl CachedCredential {
    pub(crate) fn new(inner: Arc<dyn TokenCredential>) -> Self {
        CachedCredential {
            inner,
            tokens: tokio::sync::Mutex::new(HashMap::new()),
        }
    }
}

/// When a token fetched at `fetched` and expiring at `expires_on` is refreshed: the
/// [`REFRESH_MARGIN`] before its expiry, or half-way for a token shorter-lived than twice that.
pub(crate) fn refresh_at(fetched: OffsetDateTime, expires_on: OffsetDateTime) -> OffsetDateTime {
    let lifetime = expires_on - fetched;
    expires_on - REFRESH_MARGIN.min(lifetime / 2)
}

#[async_trait]
impl TokenCredential for CachedCredential {
    async fn get_token(
        &self,
        scopes: &[&str],
        options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        let key: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
        let mut tokens = self.tokens.lock().await;
        let now = OffsetDateTime::now_utc();
        let held = tokens.get(&key).cloned();
        if let Some(held) = &held
            && now < held.refresh_at
        {
            return Ok(held.token.clone());
        }
        match self.inner.get_token(scopes, options).await {
            Ok(token) => {
                let refresh_at = refresh_at(OffsetDateTime::now_utc(), token.expires_on);
                tokens.insert(
                    key,
                    Cached {
                        token: token.clone(),
                        refresh_at,
                    },
                );
                Ok(token)
            }
            Err(e) => match held {
                Some(held) if OffsetDateTime::now_utc() < held.token.expires_on => {
                    tracing::warn!(error = %crate::redact::redact(&e.to_string()), "cannot refresh the Entra ID token; using the held one until it expires");
                    Ok(held.token)
                }
                _ => Err(e),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn developer_tools_unless_something_says_managed_identity() {
        assert_eq!(choose(env(&[]), None, false), Ok(Choice::DeveloperTools));
        // Empty values count as unset.
        assert_eq!(
            choose(
                env(&[("IDENTITY_ENDPOINT", ""), (TOKEN_CREDENTIALS_ENV, " ")]),
                None,
                false
            ),
            Ok(Choice::DeveloperTools)
        );
    }

    #[test]
    fn platform_endpoint_client_id_or_connection_choose_managed_identity() {
        let mi = Ok(Choice::ManagedIdentity);
        assert_eq!(
            choose(
                env(&[("IDENTITY_ENDPOINT", "http://localhost:8081/msi/token")]),
                None,
                false
            ),
            mi
        );
        assert_eq!(
            choose(env(&[("MSI_ENDPOINT", "http://x")]), None, false),
            mi
        );
        // A user-assigned identity (IMDS on a VM), or the connection's own setting.
        assert_eq!(choose(env(&[]), Some("11111111-2222"), false), mi);
        assert_eq!(choose(env(&[]), None, true), mi);
    }

    #[test]
    fn the_sdks_switch_decides_and_unknown_values_are_refused() {
        for value in [
            "ManagedIdentityCredential",
            "managedidentitycredential",
            "prod",
        ] {
            let e: &'static str = Box::leak(value.to_string().into_boxed_str());
            let pairs: &'static [(&str, &str)] =
                Box::leak(vec![(TOKEN_CREDENTIALS_ENV, e)].into_boxed_slice());
            assert_eq!(choose(env(pairs), None, false), Ok(Choice::ManagedIdentity));
        }
        // `dev` wins over a client id and the platform's endpoint.
        assert_eq!(
            choose(
                env(&[
                    (TOKEN_CREDENTIALS_ENV, "dev"),
                    ("IDENTITY_ENDPOINT", "http://x")
                ]),
                Some("11111111-2222"),
                true
            ),
            Ok(Choice::DeveloperTools)
        );
        let refused = choose(
            env(&[(TOKEN_CREDENTIALS_ENV, "EnvironmentCredential")]),
            None,
            false,
        )
        .unwrap_err();
        assert!(
            refused.contains("AZURE_TOKEN_CREDENTIALS=`EnvironmentCredential` is not supported"),
            "{refused}"
        );
    }

    #[test]
    fn refresh_margin_is_five_minutes_or_half_a_short_lifetime() {
        let t = OffsetDateTime::UNIX_EPOCH;
        // IMDS's usual 24 h token: five minutes before it expires.
        assert_eq!(
            refresh_at(t, t + Duration::hours(24)),
            t + Duration::hours(24) - Duration::minutes(5)
        );
        // A 10 s token: after 5 s.
        assert_eq!(
            refresh_at(t, t + Duration::seconds(10)),
            t + Duration::seconds(5)
        );
        // An already expired one: at once.
        assert!(refresh_at(t, t - Duration::seconds(1)) <= t);
    }

    /// Counts fetches and hands out tokens valid for `lifetime`.
    #[derive(Debug)]
    struct Counting {
        fetches: AtomicU32,
        lifetime: Duration,
        fail: std::sync::atomic::AtomicBool,
    }

    #[async_trait]
    impl TokenCredential for Counting {
        async fn get_token(
            &self,
            _: &[&str],
            _: Option<TokenRequestOptions<'_>>,
        ) -> azure_core::Result<AccessToken> {
            let n = self.fetches.fetch_add(1, Ordering::SeqCst) + 1;
            if self.fail.load(Ordering::SeqCst) {
                return Err(azure_core::Error::with_message(
                    azure_core::error::ErrorKind::Credential,
                    "endpoint down",
                ));
            }
            Ok(AccessToken::new(
                format!("token-{n}"),
                OffsetDateTime::now_utc() + self.lifetime,
            ))
        }
    }

    fn counting(lifetime: Duration) -> (Arc<Counting>, CachedCredential) {
        let inner = Arc::new(Counting {
            fetches: AtomicU32::new(0),
            lifetime,
            fail: Default::default(),
        });
        (inner.clone(), CachedCredential::new(inner))
    }

    #[tokio::test]
    async fn reuses_a_token_per_scope_and_refreshes_it_half_way_through_a_short_life() {
        // Generous spans: the first calls must fall well inside the first half of the life.
        let (inner, cached) = counting(Duration::seconds(4));
        let a = cached.get_token(&["a/.default"], None).await.unwrap();
        let again = cached.get_token(&["a/.default"], None).await.unwrap();
        assert_eq!(a.token.secret(), again.token.secret());
        let b = cached.get_token(&["b/.default"], None).await.unwrap();
        assert_ne!(a.token.secret(), b.token.secret(), "one token per scope");
        assert_eq!(inner.fetches.load(Ordering::SeqCst), 2);

        tokio::time::sleep(std::time::Duration::from_millis(2_200)).await;
        let later = cached.get_token(&["a/.default"], None).await.unwrap();
        assert_ne!(a.token.secret(), later.token.secret(), "refreshed");
        assert!(later.expires_on > OffsetDateTime::now_utc());
        assert_eq!(inner.fetches.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_failed_refresh_keeps_a_still_valid_token_and_fails_once_it_expired() {
        let (inner, cached) = counting(Duration::seconds(4));
        let first = cached.get_token(&["a"], None).await.unwrap();
        inner.fail.store(true, Ordering::SeqCst);
        // Past the refresh point (2 s), before the expiry (4 s).
        tokio::time::sleep(std::time::Duration::from_millis(2_500)).await;
        let held = cached.get_token(&["a"], None).await.unwrap();
        assert_eq!(first.token.secret(), held.token.secret());
        assert_eq!(
            inner.fetches.load(Ordering::SeqCst),
            2,
            "a refresh was tried"
        );
        tokio::time::sleep(std::time::Duration::from_millis(1_700)).await;
        assert!(cached.get_token(&["a"], None).await.is_err());
    }

    #[tokio::test]
    async fn concurrent_callers_share_one_fetch() {
        let (inner, cached) = counting(Duration::hours(1));
        let cached = Arc::new(cached);
        let calls: Vec<_> = (0..16)
            .map(|_| {
                let cached = cached.clone();
                tokio::spawn(async move { cached.get_token(&["a"], None).await.unwrap() })
            })
            .collect();
        for call in calls {
            call.await.unwrap();
        }
        assert_eq!(inner.fetches.load(Ordering::SeqCst), 1);
    }
}
