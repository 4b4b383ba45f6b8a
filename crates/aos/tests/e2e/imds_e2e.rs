//! Managed identity through the Azure Instance Metadata Service (IMDS), as on an Azure VM or an
//! AKS node: no `IDENTITY_ENDPOINT`, tokens from `http://169.254.169.254/metadata/identity/
//! oauth2/token`. The real binary reads the Maskinporten certificate from (a stand-in for) Key
//! Vault with a token from a local fake of IMDS.
//!
//! - The fake speaks the IMDS contract: it refuses a request without `Metadata: true` (as IMDS
//!   does, so no page or proxy can be tricked into fetching a token), wants the `resource` and
//!   the user-assigned identity's `client_id` when one is configured, and answers with
//!   `expires_in`/`expires_on` as strings. It is reached through the test-only
//!   `AOS_TEST_IMDS_ENDPOINT`, which moves the SDK's fixed IMDS address to loopback.
//! - The vault stand-in and its HTTPS proxy are the ones of `auth_keyvault`; here the vault takes
//!   only tokens the fake IMDS issued and that have not expired, and records any other.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aos_testkit::auth::*;
use aos_testkit::standalone::Standalone;
use aos_testkit::world::{Backends, element, instance};
use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tokio::net::TcpListener;

use crate::auth_keyvault::{Fakes, VAULT_HOST, VaultAnswer, fakes_accepting, vault_secret};

const USER_ASSIGNED: &str = "00000000-0000-0000-0000-0000000000aa";
const TEST_IMDS_ENV: &str = "AOS_TEST_IMDS_ENDPOINT";

/// One token request as IMDS saw it.
#[derive(Clone, Debug)]
struct TokenRequest {
    query: HashMap<String, String>,
    metadata: Option<String>,
}

#[derive(Default)]
struct Seen {
    requests: Vec<TokenRequest>,
    /// Issued token → its `expires_on` (Unix seconds).
    issued: HashMap<String, i64>,
    /// Tokens presented to the vault after their `expires_on`.
    expired: Vec<String>,
    /// Bearer tokens presented to the vault that IMDS never issued.
    unknown: usize,
}

/// A local fake of IMDS's managed identity token endpoint.
struct Imds {
    seen: Arc<Mutex<Seen>>,
    addr: SocketAddr,
}

#[derive(Clone)]
struct ImdsState {
    seen: Arc<Mutex<Seen>>,
    client_id: Option<&'static str>,
    lifetime_secs: i64,
}

fn now_unix() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn refuse(description: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({"error": "invalid_request", "error_description": description})),
    )
        .into_response()
}

/// `GET /metadata/identity/oauth2/token?api-version=…&resource=…[&client_id=…]`.
async fn token(
    State(state): State<ImdsState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let query: HashMap<String, String> =
        url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let metadata = headers
        .get("metadata")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut seen = state.seen.lock().unwrap();
    seen.requests.push(TokenRequest {
        query: query.clone(),
        metadata: metadata.clone(),
    });
    if metadata.as_deref() != Some("true") {
        return refuse("Required metadata header not specified");
    }
    if !query.contains_key("api-version") {
        return refuse("Required query variable 'api-version' is missing");
    }
    let Some(resource) = query.get("resource") else {
        return refuse("Required query variable 'resource' is missing");
    };
    if query.get("client_id").map(String::as_str) != state.client_id {
        return refuse("Identity not found");
    }
    let token = format!("test-only-imds-token-{}", seen.requests.len());
    let expires_on = now_unix() + state.lifetime_secs;
    seen.issued.insert(token.clone(), expires_on);
    axum::Json(json!({
        "access_token": token,
        "refresh_token": "",
        "expires_in": state.lifetime_secs.to_string(),
        "expires_on": expires_on.to_string(),
        "not_before": now_unix().to_string(),
        "resource": resource,
        "token_type": "Bearer",
    }))
    .into_response()
}

impl Imds {
    /// Issues tokens valid for `lifetime_secs` to the identity `client_id` (system-assigned
    /// when `None`).
    async fn start(client_id: Option<&'static str>, lifetime_secs: i64) -> Imds {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let state = ImdsState {
            seen: seen.clone(),
            client_id,
            lifetime_secs,
        };
        let app = Router::new()
            .route("/metadata/identity/oauth2/token", axum::routing::get(token))
            .with_state(state);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Imds { seen, addr }
    }

    /// The vault's check: a token this IMDS issued, presented before its `expires_on`.
    fn accept(&self) -> crate::auth_keyvault::Accept {
        let seen = self.seen.clone();
        Arc::new(move |token| {
            let mut seen = seen.lock().unwrap();
            match seen.issued.get(token).copied() {
                Some(expires_on) if now_unix() < expires_on => true,
                Some(_) => {
                    seen.expired.push(token.to_string());
                    false
                }
                None => {
                    seen.unknown += 1;
                    false
                }
            }
        })
    }

    fn requests(&self) -> Vec<TokenRequest> {
        self.seen.lock().unwrap().requests.clone()
    }

    /// The environment of a VM: the vault's proxy and CA, no App Service identity endpoint,
    /// IMDS moved to this fake.
    fn vm_env(&self, vault: &Fakes) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = vault
            .env()
            .iter()
            .filter(|(k, _)| !k.starts_with("IDENTITY_"))
            .cloned()
            .collect();
        env.push((
            TEST_IMDS_ENV.into(),
            format!("http://{}/metadata/identity/oauth2/token", self.addr),
        ));
        env
    }

    /// Every request carried `Metadata: true` and asked for Key Vault's resource, as `client_id`.
    fn assert_requests_well_formed(&self, client_id: Option<&str>) {
        let requests = self.requests();
        assert!(!requests.is_empty(), "IMDS was asked");
        for r in &requests {
            assert_eq!(r.metadata.as_deref(), Some("true"), "{r:?}");
            assert_eq!(
                r.query.get("resource").map(String::as_str),
                Some("https://vault.azure.net"),
                "the scope from the vault's challenge: {r:?}"
            );
            assert_eq!(
                r.query.get("client_id").map(String::as_str),
                client_id,
                "{r:?}"
            );
            assert!(r.query.contains_key("api-version"), "{r:?}");
        }
        let seen = self.seen.lock().unwrap();
        assert_eq!(seen.expired, Vec::<String>::new(), "no expired token used");
        assert_eq!(seen.unknown, 0, "no token but IMDS's was presented");
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `aos check-config` on a VM with a user-assigned identity named by `AZURE_CLIENT_ID`: the key
/// is read from Key Vault with a token from IMDS for that identity.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_reads_the_vault_with_a_user_assigned_identity_from_imds() {
    let sim = simulator().await;
    let pki = Pki::new();
    sim.register_client(CLIENT_ID, pki.client_key(), &SCOPES);
    let imds = Imds::start(Some(USER_ASSIGNED), 3600).await;
    let vault = fakes_accepting(VaultAnswer::Secret(vault_secret(&pki)), imds.accept()).await;

    let vault_uri = format!("https://{VAULT_HOST}/");
    let mut env = settings_pairs(&sim, &[("KeyVault__KeyVaultURI", vault_uri.as_str())]);
    env.extend(imds.vm_env(&vault));
    env.push(("AZURE_CLIENT_ID".into(), USER_ASSIGNED.into()));
    let cwd = tempfile::tempdir().unwrap();
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_aos"))
        .arg("check-config")
        .current_dir(cwd.path())
        .env_clear()
        .envs(env)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("check-config finishes")
        .expect("aos runs");
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(
        output.status.success(),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("altinn: token exchanged"), "{stdout}");
    assert!(!format!("{stdout}{stderr}").contains("test-only-imds-token"));
    assert_eq!(imds.requests().len(), 1, "one token: {:?}", imds.requests());
    imds.assert_requests_well_formed(Some(USER_ASSIGNED));
    assert_eq!(vault.authorised_reads(), 1);
}

/// `aos run` on a VM with its system-assigned identity (`AZURE_TOKEN_CREDENTIALS`, the Azure
/// SDKs' switch), IMDS tokens of 10 s and the key re-read from the vault every second: the run
/// outlives several token lifetimes, a token serves several reads before it is refreshed, and
/// none is ever presented after it expired. An event is archived and confirmed with the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aos_run_reuses_imds_tokens_and_refreshes_them_before_they_expire() {
    let pki = Pki::new();
    let imds = Imds::start(None, 10).await;
    let vault = fakes_accepting(VaultAnswer::Secret(vault_secret(&pki)), imds.accept()).await;
    let backends = Backends::start().await;
    backends
        .sim
        .register_client(CLIENT_ID, pki.client_key(), &SCOPES);

    let maskinporten = backends.sim.maskinporten_url().to_string();
    let vault_uri = format!("https://{VAULT_HOST}/");
    let mut env: Vec<(String, String)> = [
        ("AltinnApplicationOwnerSystemSettings__AltinnToken", ""),
        (
            "AltinnApplicationOwnerSystemSettings__MaskinportenBaseAddress",
            maskinporten.as_str(),
        ),
        (
            "AltinnApplicationOwnerSystemSettings__MaskinPortenClientId",
            CLIENT_ID,
        ),
        ("KeyVault__KeyVaultURI", vault_uri.as_str()),
        ("AZURE_TOKEN_CREDENTIALS", "ManagedIdentityCredential"),
        ("AZURE_CLIENT_ID", ""),
        ("AOS_TEST_MASKINPORTEN_KEY_RELOAD_SECS", "1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    env.extend(imds.vm_env(&vault));
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let runtime = Standalone::start_with_env(&backends, &env_refs).await;

    let inst = backends
        .sim
        .add_instance(instance(70_001, vec![element(1_000, Some("a.pdf"))]));
    let (status, body) = runtime
        .post_event(&backends.sim.completed_event(&inst))
        .await;
    assert_eq!(status, 200, "{body}");
    let wanted = [inst.instance_id()].into_iter().collect();
    backends
        .wait_all_confirmed(&wanted, Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("{e}\n--- aos run ---\n{}", runtime.output().join("\n")));
    backends.assert_archived(&inst).await;

    // Past two token lifetimes: at least three tokens.
    let refreshed = eventually(Duration::from_secs(90), || imds.requests().len() >= 3).await;
    let output = runtime.output().join("\n");
    assert!(
        refreshed,
        "tokens were refreshed: {:?}\n--- aos run ---\n{output}",
        imds.requests()
    );
    let tokens = imds.requests().len();
    let reads = vault.authorised_reads();
    eprintln!("imds_e2e: {reads} authorised vault reads with {tokens} IMDS tokens");
    assert!(
        reads > tokens,
        "a token serves several reads: {reads} reads with {tokens} tokens"
    );
    imds.assert_requests_well_formed(None);
    assert!(!output.contains("test-only-imds-token"), "{output}");
}
