//! The Maskinporten certificate from Azure Key Vault, through the production code path: the
//! official SDK `SecretClient` with `ManagedIdentityCredential`, run as `aos check-config`.
//!
//! The environment is built the way a user's would be:
//! - `IDENTITY_ENDPOINT`/`IDENTITY_HEADER` point at a local fake of the App Service managed
//!   identity endpoint (plain http on loopback, as in App Service);
//! - the vault is `https://aos-test.vault.azure.net/` — a real Key Vault host name, so the
//!   SDK's challenge check (the 401's resource must be a parent domain of the vault) runs as in
//!   production — reached through an `HTTPS_PROXY` (a local CONNECT proxy) that tunnels to a
//!   local TLS stand-in speaking the Key Vault secret GET contract;
//! - the stand-in's certificate is issued by a test CA that the process trusts through
//!   `SSL_CERT_FILE` (the SDK's rustls platform verifier reads native roots, which honour it).
//!
//! Nothing in the product knows it is being tested.
//!
//! The same fakes under the Functions host harness show that Key Vault is not a start-up
//! dependency of `aos serve` (the webhook serves while the vault refuses; processing waits for
//! the key) and that a rotated certificate is picked up without a restart.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use altinn_sim::SimulatorHandle;
use aos_testkit::auth::*;
use aos_testkit::world::{Backends, TestApp, element, instance};
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use p12_keystore::EncryptionAlgorithm;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

pub(crate) const VAULT_HOST: &str = "aos-test.vault.azure.net";
const IDENTITY_SECRET: &str = "test-only-identity-header";
const MI_TOKEN: &str = "test-only-managed-identity-token";
const SECRET_NAME: &str = "maskinportenclientcert";

/// What the fakes saw.
#[derive(Default)]
struct Seen {
    /// Key Vault requests: (path, Authorization header).
    vault: Vec<(String, Option<String>)>,
    /// Managed identity requests: (query, X-IDENTITY-HEADER).
    identity: Vec<(String, Option<String>)>,
    /// CONNECT targets.
    tunnels: Vec<String>,
}

type Shared = Arc<Mutex<Seen>>;

/// What the vault stand-in answers an authorised secret GET with; tests switch it while the
/// process runs (a role assignment that has not propagated yet, a rotated certificate).
#[derive(Clone)]
pub(crate) enum VaultAnswer {
    /// 403 `ForbiddenByRbac`, as Key Vault answers an identity without "Key Vault Secrets User".
    Forbidden,
    /// The secret bundle with this value.
    Secret(String),
}

type Answer = Arc<Mutex<VaultAnswer>>;

/// Whether the vault stand-in takes a bearer token (the token without `Bearer `).
pub(crate) type Accept = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// A test CA and a server certificate for the vault host.
struct Tls {
    ca_pem: String,
    server_cert: Vec<u8>,
    server_key: Vec<u8>,
}

fn tls() -> Tls {
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name
        .push(DnType::CommonName, "test-only TLS CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    let ca = CertifiedIssuer::self_signed(
        ca,
        KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap(),
    )
    .unwrap();
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut server = CertificateParams::new(vec![VAULT_HOST.to_string()]).unwrap();
    server
        .distinguished_name
        .push(DnType::CommonName, VAULT_HOST);
    let server = server.signed_by(&key, &ca).unwrap();
    Tls {
        ca_pem: ca.pem(),
        server_cert: server.der().to_vec(),
        server_key: key.serialize_der(),
    }
}

/// A TLS listener for axum: the handshake happens in `accept`.
struct TlsListener {
    tcp: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, addr)) = self.tcp.accept().await else {
                continue;
            };
            if let Ok(tls) = self.acceptor.accept(tcp).await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }
}

/// The Key Vault secret GET contract: a 401 challenge without a token, the secret bundle with
/// the managed identity's token.
async fn key_vault(
    State((seen, answer, accept)): State<(Shared, Answer, Accept)>,
    req: Request,
) -> Response {
    let path = req.uri().path().to_string();
    let auth = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    seen.lock()
        .unwrap()
        .vault
        .push((path.clone(), auth.clone()));
    let token = auth.as_deref().and_then(|a| a.strip_prefix("Bearer "));
    if !token.is_some_and(|t| accept(t)) {
        return (
            StatusCode::UNAUTHORIZED,
            [(
                header::WWW_AUTHENTICATE,
                r#"Bearer authorization="https://login.microsoftonline.com/00000000-0000-0000-0000-000000000000", resource="https://vault.azure.net""#,
            )],
            axum::Json(json!({"error": {"code": "Unauthorized", "message": "AKV10000: Request is missing a Bearer or PoP token."}})),
        )
            .into_response();
    }
    let value = match answer.lock().unwrap().clone() {
        VaultAnswer::Secret(value) => value,
        VaultAnswer::Forbidden => {
            return (
                StatusCode::FORBIDDEN,
                axum::Json(json!({"error": {"code": "Forbidden", "message": "Caller is not authorized to perform action on resource. Action: 'Microsoft.KeyVault/vaults/secrets/getSecret/action'", "innererror": {"code": "ForbiddenByRbac"}}})),
            )
                .into_response();
        }
    };
    let name = path.trim_start_matches("/secrets/").trim_end_matches('/');
    if name != SECRET_NAME {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"error": {"code": "SecretNotFound", "message": format!("A secret with (name/id) {name} was not found in this key vault.")}})),
        )
            .into_response();
    }
    axum::Json(json!({
        "value": value,
        "contentType": "application/x-pkcs12",
        "id": format!("https://{VAULT_HOST}/secrets/{SECRET_NAME}/0123456789abcdef0123456789abcdef"),
        "managed": true,
        "attributes": {"enabled": true, "created": 1700000000, "updated": 1700000000, "recoveryLevel": "Recoverable+Purgeable"},
        "kid": format!("https://{VAULT_HOST}/keys/{SECRET_NAME}/0123456789abcdef0123456789abcdef"),
    }))
    .into_response()
}

/// App Service's managed identity endpoint (`api-version=2019-08-01`).
async fn identity(State(seen): State<Shared>, headers: HeaderMap, req: Request) -> Response {
    let query = req.uri().query().unwrap_or_default().to_string();
    let secret = headers
        .get("x-identity-header")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    seen.lock()
        .unwrap()
        .identity
        .push((query.clone(), secret.clone()));
    if secret.as_deref() != Some(IDENTITY_SECRET) {
        return (StatusCode::UNAUTHORIZED, "missing X-IDENTITY-HEADER").into_response();
    }
    let resource = url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "resource")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    let expires_on = time::OffsetDateTime::now_utc().unix_timestamp() + 3600;
    axum::Json(json!({
        "access_token": MI_TOKEN,
        "expires_on": expires_on.to_string(),
        "resource": resource,
        "token_type": "Bearer",
        "client_id": "00000000-0000-0000-0000-000000000001",
    }))
    .into_response()
}

/// A CONNECT proxy that tunnels the vault host to the stand-in and refuses everything else.
async fn proxy(listener: TcpListener, vault: SocketAddr, seen: Shared) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        let seen = seen.clone();
        tokio::spawn(async move {
            let mut client = BufReader::new(client);
            let mut request_line = String::new();
            if client.read_line(&mut request_line).await.is_err() {
                return;
            }
            loop {
                let mut line = String::new();
                match client.read_line(&mut line).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) if line == "\r\n" => break,
                    Ok(_) => {}
                }
            }
            let target = request_line
                .split_whitespace()
                .nth(1)
                .unwrap_or_default()
                .to_string();
            seen.lock().unwrap().tunnels.push(target.clone());
            let mut client = client.into_inner();
            if target != format!("{VAULT_HOST}:443") {
                let _ = client.write_all(b"HTTP/1.1 403 Forbidden\r\n\r\n").await;
                return;
            }
            let Ok(mut upstream) = TcpStream::connect(vault).await else {
                return;
            };
            if client
                .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                .await
                .is_ok()
            {
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            }
        });
    }
}

pub(crate) struct Fakes {
    seen: Shared,
    answer: Answer,
    env: Vec<(String, String)>,
    _dir: tempfile::TempDir,
}

/// Starts the identity endpoint, the vault stand-in (holding `secret_value`) and the proxy;
/// returns the environment a Function App in Azure would have.
pub(crate) async fn fakes(secret_value: String) -> Fakes {
    fakes_answering(VaultAnswer::Secret(secret_value)).await
}

/// [`fakes`] with the vault answering `answer` until the test changes it.
async fn fakes_answering(answer: VaultAnswer) -> Fakes {
    fakes_accepting(answer, Arc::new(|token| token == MI_TOKEN)).await
}

/// [`fakes_answering`] with the vault taking the bearer tokens `accept` takes (a test with its
/// own token issuer; `IDENTITY_*` still point at the App Service stand-in).
pub(crate) async fn fakes_accepting(answer: VaultAnswer, accept: Accept) -> Fakes {
    let seen = Shared::default();
    let answer = Answer::new(Mutex::new(answer));
    let tls = tls();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = write(dir.path(), "test-only-ca.pem", tls.ca_pem.as_bytes());

    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![tls.server_cert.clone().into()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(tls.server_key.clone().into()),
        )
        .unwrap();
    let vault_tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let vault_addr = vault_tcp.local_addr().unwrap();
    let listener = TlsListener {
        tcp: vault_tcp,
        acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
    };
    let vault_app =
        Router::new()
            .fallback(key_vault)
            .with_state((seen.clone(), answer.clone(), accept));
    tokio::spawn(async move { axum::serve(listener, vault_app).await });

    let identity_tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let identity_addr = identity_tcp.local_addr().unwrap();
    let identity_app = Router::new()
        .route("/msi/token", axum::routing::get(identity))
        .with_state(seen.clone());
    tokio::spawn(async move { axum::serve(identity_tcp, identity_app).await });

    let proxy_tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_addr = proxy_tcp.local_addr().unwrap();
    tokio::spawn(proxy(proxy_tcp, vault_addr, seen.clone()));

    let env = vec![
        (
            "IDENTITY_ENDPOINT".to_string(),
            format!("http://{identity_addr}/msi/token"),
        ),
        ("IDENTITY_HEADER".to_string(), IDENTITY_SECRET.to_string()),
        ("HTTPS_PROXY".to_string(), format!("http://{proxy_addr}")),
        (
            "SSL_CERT_FILE".to_string(),
            ca_file.to_string_lossy().into_owned(),
        ),
    ];
    Fakes {
        seen,
        answer,
        env,
        _dir: dir,
    }
}

async fn check_config(
    sim: &SimulatorHandle,
    fakes: &Fakes,
    extra: &[(&str, &str)],
) -> std::process::Output {
    let mut settings = vec![("KeyVault__KeyVaultURI", "https://aos-test.vault.azure.net/")];
    settings.extend_from_slice(extra);
    let mut env = settings_pairs(sim, &settings);
    env.extend(fakes.env.iter().cloned());
    let cwd = tempfile::tempdir().unwrap();
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_aos"))
        .arg("check-config")
        .current_dir(cwd.path())
        .env_clear()
        .envs(env)
        .output();
    tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("check-config finishes")
        .expect("aos runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The reference system's format: base64 PKCS#12 with an empty password.
pub(crate) fn vault_secret(pki: &Pki) -> String {
    base64::engine::general_purpose::STANDARD
        .encode(pki.pkcs12("", EncryptionAlgorithm::PbeWithShaAnd3KeyTripleDesCbc))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_from_key_vault_via_managed_identity() {
    let sim = simulator().await;
    let pki = Pki::new();
    sim.register_client(CLIENT_ID, pki.client_key(), &SCOPES);
    let fakes = fakes(vault_secret(&pki)).await;

    let output = check_config(&sim, &fakes, &[]).await;
    let stdout = text(&output.stdout);
    assert!(
        output.status.success(),
        "stdout:\n{stdout}\nstderr:\n{}",
        text(&output.stderr)
    );
    assert!(
        stdout.contains("key source: KeyVault__KeyVaultURI"),
        "{stdout}"
    );
    assert!(stdout.contains("certificate subject: C=NO, O=altinn-aos test-only PKI, CN=test-only business certificate"), "{stdout}");
    assert!(stdout.contains("altinn: token exchanged"), "{stdout}");
    assert!(!stdout.contains(MI_TOKEN), "{stdout}");
    assert_eq!((sim.grants(), sim.exchanges()), (1, 1));

    let seen = fakes.seen.lock().unwrap();
    assert_eq!(seen.tunnels, vec![format!("{VAULT_HOST}:443")]);
    // The SDK's challenge protocol: first without a token, then with the managed identity's.
    let expected_path = format!("/secrets/{SECRET_NAME}/");
    let vault: Vec<(&str, Option<&str>)> = seen
        .vault
        .iter()
        .map(|(p, a)| (p.as_str(), a.as_deref()))
        .collect();
    let bearer = format!("Bearer {MI_TOKEN}");
    assert_eq!(
        vault,
        vec![
            (expected_path.as_str(), None),
            (expected_path.as_str(), Some(bearer.as_str()))
        ]
    );
    assert_eq!(seen.identity.len(), 1);
    let (query, secret) = &seen.identity[0];
    assert_eq!(secret.as_deref(), Some(IDENTITY_SECRET));
    assert!(query.contains("api-version=2019-08-01"), "{query}");
    assert!(
        query.contains("resource=https%3A%2F%2Fvault.azure.net"),
        "the scope from the challenge: {query}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_secret_is_one_line_naming_the_setting() {
    let sim = simulator().await;
    let fakes = fakes(vault_secret(&Pki::new())).await;
    let output = check_config(
        &sim,
        &fakes,
        &[("KeyVault__MaskinPortenCertSecretId", "othercert")],
    )
    .await;
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("aos: setting KeyVault__KeyVaultURI: Key Vault: cannot read secret `othercert` from https://aos-test.vault.azure.net/"),
        "{stderr}"
    );
    assert!(
        stderr.contains("was not found in this key vault"),
        "{stderr}"
    );
    assert_eq!(sim.grants(), 0);
}

/// Points `SSL_CERT_FILE` at a file with `content`.
fn trust(fakes: &mut Fakes, name: &str, content: &[u8]) {
    let file = write(fakes._dir.path(), name, content);
    for (k, v) in &mut fakes.env {
        if k == "SSL_CERT_FILE" {
            *v = file.to_string_lossy().into_owned();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vault_certificate_from_an_untrusted_ca_is_refused() {
    let sim = simulator().await;
    let mut fakes = fakes(vault_secret(&Pki::new())).await;
    // Trust another CA only: the stand-in is a stranger, so TLS verification is really on.
    trust(&mut fakes, "other-ca.pem", tls().ca_pem.as_bytes());
    let output = check_config(&sim, &fakes, &[]).await;
    assert_eq!(
        output.status.code(),
        Some(2),
        "{}\n{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    let stderr = text(&output.stderr);
    // One error line, the last; before it only log lines (the TLS verifier's own, on stderr
    // with every log line of a command).
    let (last, logs) = stderr
        .trim_end()
        .lines()
        .collect::<Vec<_>>()
        .split_last()
        .map(|(l, r)| (*l, r.to_vec()))
        .unwrap();
    assert!(
        logs.iter().all(|l| l
            .split_whitespace()
            .nth(1)
            .is_some_and(|w| ["ERROR", "WARN"].contains(&w))),
        "{stderr}"
    );
    let stderr = last;
    assert!(
        stderr.starts_with("aos: setting KeyVault__KeyVaultURI: Key Vault: cannot read secret"),
        "{stderr}"
    );
    assert!(
        stderr.contains("invalid peer certificate"),
        "the cause is shown: {stderr}"
    );
    let seen = fakes.seen.lock().unwrap();
    assert!(!seen.tunnels.is_empty(), "the proxy was used");
    assert!(
        seen.vault.is_empty(),
        "no request got through: {:?}",
        seen.vault
    );
    assert!(
        seen.identity.is_empty(),
        "no token was fetched for a vault that could not be reached"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_ca_certificates_at_all_is_an_error_line_not_a_panic() {
    let sim = simulator().await;
    let mut fakes = fakes(vault_secret(&Pki::new())).await;
    trust(&mut fakes, "empty.pem", b"");
    let output = check_config(&sim, &fakes, &[]).await;
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    assert_eq!(
        stderr.trim_end(),
        "aos: setting KeyVault__KeyVaultURI: Key Vault: cannot set up HTTPS (builder error: unexpected error: No CA certificates were loaded from the system)"
    );
}

impl Fakes {
    /// The environment a process in Azure would have (identity endpoint, proxy, CA file).
    pub(crate) fn env(&self) -> &[(String, String)] {
        &self.env
    }

    pub(crate) fn answer(&self, answer: VaultAnswer) {
        *self.answer.lock().unwrap() = answer;
    }

    /// Secret GETs that carried the managed identity's token (the challenge round trips, which
    /// carry none, are not reads).
    pub(crate) fn authorised_reads(&self) -> usize {
        self.seen
            .lock()
            .unwrap()
            .vault
            .iter()
            .filter(|(_, auth)| auth.is_some())
            .count()
    }
}

/// `aos serve` under the host harness with Maskinporten settings whose key is in the (fake)
/// Key Vault, the client registered with the simulator under `pki`.
pub(crate) async fn serve_with_vault(fakes: &Fakes, extra: &[(&str, &str)]) -> TestApp {
    let backends = Backends::start().await;
    let mut overrides: Vec<(String, String)> = vec![
        // Remove the fixed token: this deployment uses Maskinporten.
        (
            "AltinnApplicationOwnerSystemSettings__AltinnToken".into(),
            String::new(),
        ),
        (
            "AltinnApplicationOwnerSystemSettings__MaskinportenBaseAddress".into(),
            backends.sim.maskinporten_url().to_string(),
        ),
        (
            "AltinnApplicationOwnerSystemSettings__MaskinPortenClientId".into(),
            CLIENT_ID.into(),
        ),
        (
            "KeyVault__KeyVaultURI".into(),
            format!("https://{VAULT_HOST}/"),
        ),
    ];
    overrides.extend(fakes.env.iter().cloned());
    overrides.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    TestApp::spawn_with(backends, Duration::from_secs(1), overrides).await
}

/// Archived, confirmed, nothing poisoned, the handler never restarted.
pub(crate) async fn assert_done(app: &TestApp, inst: &altinn_sim::CreatedInstance) {
    let wanted = [inst.instance_id()].into_iter().collect();
    app.wait_all_confirmed(&wanted, Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| {
            panic!(
                "{e}\n--- handler output ---\n{}",
                app.host.handler_output().join("\n")
            )
        });
    app.assert_archived(inst).await;
    app.assert_no_poison().await;
    assert_eq!(app.host.restarts(), 0, "the handler was never restarted");
}

/// A vault that refuses the identity at start (its role assignment has not propagated) does
/// not keep the handler from starting: the webhook queues events, processing fails retryably
/// naming the setting, and once the vault answers the next attempt archives and confirms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_starts_while_the_vault_refuses_and_processes_once_it_answers() {
    let pki = Pki::new();
    let fakes = fakes_answering(VaultAnswer::Forbidden).await;
    let app = serve_with_vault(&fakes, &[]).await;
    app.sim
        .register_client(CLIENT_ID, pki.client_key(), &SCOPES);

    let inst = app
        .sim
        .add_instance(instance(50_001, vec![element(2_000, Some("a.pdf"))]));
    let response = app.post_event(&app.sim.completed_event(&inst)).await;
    assert_eq!(response.status, 200, "{}", response.body_text());
    assert!(response.queued(), "the event was queued");

    app.wait_for_a_failed_invocation(
        "EventsProcessor",
        "a failed processing attempt",
        Duration::from_secs(30),
    )
    .await;
    assert!(!app.confirmed(&inst));
    assert_eq!(app.sim.grants(), 0, "no grant without a key");
    let output = app.host.handler_output().join("\n");
    assert!(
        output.contains("KeyVault__KeyVaultURI") && output.contains("not authorized"),
        "the failure names the setting and the vault's reason:\n{output}"
    );

    fakes.answer(VaultAnswer::Secret(vault_secret(&pki)));
    assert_done(&app, &inst).await;
    assert!(
        fakes.authorised_reads() >= 1,
        "read once the vault answered"
    );
}

/// The certificate is rotated while the handler runs: the vault's secret is replaced and
/// Maskinporten knows only the new certificate. After Maskinporten refuses the old one, the key
/// is read again and the work completes without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_certificate_is_picked_up_without_a_restart() {
    let app = rotate(&[]).await;
    assert!(
        !app.sim.grant_refusals().is_empty(),
        "the old certificate was refused first"
    );
}

/// The same rotation with a reload interval shorter than the wait: the new certificate is read
/// on the timer, before any grant is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_certificate_is_read_again_on_the_timer() {
    let app = rotate(&[("AOS_TEST_MASKINPORTEN_KEY_RELOAD_SECS", "2")]).await;
    assert_eq!(app.sim.grant_refusals(), Vec::<String>::new());
}

/// One instance with the old certificate, rotation, a pause past the Altinn token's lifetime,
/// one instance that needs a new grant; both archived and confirmed without a restart.
async fn rotate(extra: &[(&str, &str)]) -> TestApp {
    let old = Pki::new();
    let fakes = fakes(vault_secret(&old)).await;
    let app = serve_with_vault(&fakes, extra).await;
    app.sim
        .register_client(CLIENT_ID, old.client_key(), &SCOPES);
    // Altinn tokens that expire quickly, so the second instance needs a new grant.
    app.sim.set_altinn_token_lifetime(Duration::from_secs(2));

    let first = app.sim.add_instance(instance(50_002, vec![]));
    assert_eq!(
        app.post_event(&app.sim.completed_event(&first))
            .await
            .status,
        200
    );
    assert_done(&app, &first).await;
    let reads_before = fakes.authorised_reads();
    if extra.is_empty() {
        assert_eq!(reads_before, 1, "the key was read once");
    } else {
        // With a reload interval of seconds the timer may already have read it again.
        assert!(reads_before >= 1, "the key was read");
    }

    // Rotation: a new certificate in the vault, the old one no longer registered.
    let new = Pki::new();
    app.sim
        .register_client(CLIENT_ID, new.client_key(), &SCOPES);
    fakes.answer(VaultAnswer::Secret(vault_secret(&new)));
    // Past the Altinn token's lifetime, and two reload intervals of the timer variant (the timer
    // reads the vault in the background; two chances for it to have done so under load).
    tokio::time::sleep(Duration::from_secs(5)).await;

    let second = app.sim.add_instance(instance(50_003, vec![]));
    assert_eq!(
        app.post_event(&app.sim.completed_event(&second))
            .await
            .status,
        200
    );
    assert_done(&app, &second).await;
    assert!(
        fakes.authorised_reads() > reads_before,
        "the key was read again"
    );
    app
}
