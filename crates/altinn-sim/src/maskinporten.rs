//! A Maskinporten token endpoint that verifies grants the way Maskinporten does
//! (`docs/specs/altinn.md` §4.1), so a client that gets a token here sends
//! grants Maskinporten would accept, and a test can show each rule biting.
//!
//! Served at `{base}maskinporten/token`; the issuer (the grant's `aud`) is
//! `{base}maskinporten/`. Clients are registered through the handle with either
//! a certificate trust anchor (grants carry `x5c`, the chain must lead to it)
//! or a public JWK (grants carry its `kid`). Every refusal is
//! `400 {"error":"invalid_grant","error_description":…}` naming the rule, like
//! Maskinporten's answers.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer as _;

use super::state::{SimState, lock};

/// Path of the token endpoint.
pub(crate) const TOKEN_PATH: &str = "/maskinporten/token";
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// Claims a grant may carry; anything else is refused, as Maskinporten does.
const KNOWN_CLAIMS: [&str; 9] = [
    "aud",
    "iss",
    "scope",
    "iat",
    "exp",
    "jti",
    "resource",
    "consumer_org",
    "pid",
];
const MAX_GRANT_LIFETIME: i64 = 120;
const MAX_CLOCK_SKEW: i64 = 10;

/// How Maskinporten knows a client's key.
#[derive(Clone, Debug)]
pub enum ClientKey {
    /// Business certificate: the grant's `x5c` chain must be signed link by
    /// link and end at (or be issued by) this certificate (DER).
    Certificate { trust_anchor: Vec<u8> },
    /// A registered key: the grant's `kid` must be `kid`, and its signature
    /// must verify with the RSA public key (`n`, `e` base64url, as in a JWK).
    Jwk { kid: String, n: String, e: String },
}

struct Client {
    key: ClientKey,
    scopes: HashSet<String>,
}

/// What a Maskinporten access token issued here stands for.
#[derive(Clone, Debug)]
pub(crate) struct Issued {
    pub client_id: String,
    pub scope: String,
    pub expires: Instant,
}

pub(crate) struct MaskinportenState {
    clients: Mutex<HashMap<String, Client>>,
    used_jti: Mutex<HashSet<String>>,
    issued: Mutex<HashMap<String, Issued>>,
    token_lifetime: Mutex<Duration>,
    grants: AtomicUsize,
    refusals: Mutex<Vec<String>>,
}

impl Default for MaskinportenState {
    fn default() -> Self {
        Self {
            clients: Mutex::default(),
            used_jti: Mutex::default(),
            issued: Mutex::default(),
            // Maskinporten's default access-token lifetime.
            token_lifetime: Mutex::new(Duration::from_secs(120)),
            grants: AtomicUsize::new(0),
            refusals: Mutex::default(),
        }
    }
}

impl MaskinportenState {
    pub(crate) fn register(&self, client_id: &str, key: ClientKey, scopes: &[&str]) {
        let scopes = scopes.iter().map(|s| (*s).to_owned()).collect();
        lock(&self.clients).insert(client_id.to_owned(), Client { key, scopes });
    }

    pub(crate) fn set_token_lifetime(&self, lifetime: Duration) {
        *lock(&self.token_lifetime) = lifetime;
    }

    pub(crate) fn grants(&self) -> usize {
        self.grants.load(Ordering::SeqCst)
    }

    pub(crate) fn refusals(&self) -> Vec<String> {
        lock(&self.refusals).clone()
    }

    /// The grant behind a Maskinporten access token, if it was issued here
    /// and has not expired.
    pub(crate) fn issued(&self, token: &str) -> Option<Issued> {
        lock(&self.issued)
            .get(token)
            .filter(|i| Instant::now() < i.expires)
            .cloned()
    }

    /// Checks a grant; on success records its `jti` and issues a token.
    fn grant(
        &self,
        issuer: &str,
        form: &HashMap<String, String>,
    ) -> Result<(String, Issued, u64), Refusal> {
        match form.get("grant_type").map(String::as_str) {
            Some(JWT_BEARER) => {}
            Some(other) => {
                return Err(Refusal::new(
                    "unsupported_grant_type",
                    format!("grant_type `{other}` is not {JWT_BEARER}"),
                ));
            }
            None => return Err(Refusal::new("invalid_request", "grant_type is missing")),
        }
        let assertion = form
            .get("assertion")
            .ok_or_else(|| Refusal::new("invalid_request", "assertion is missing"))?;
        let claims = self.verify(
            issuer,
            assertion,
            OffsetDateTime::now_utc().unix_timestamp(),
        )?;

        let client_id = str_claim(&claims, "iss")?.to_owned();
        let scope = str_claim(&claims, "scope")?.to_owned();
        let jti = str_claim(&claims, "jti")?.to_owned();
        if !lock(&self.used_jti).insert(jti.clone()) {
            return Err(Refusal::grant(format!("jti `{jti}` has already been used")));
        }
        let lifetime = *lock(&self.token_lifetime);
        let token =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
        let issued = Issued {
            client_id,
            scope,
            expires: Instant::now() + lifetime,
        };
        lock(&self.issued).insert(token.clone(), issued.clone());
        Ok((token, issued, lifetime.as_secs()))
    }

    /// Every rule but `jti` reuse, in the order Maskinporten would find them.
    fn verify(
        &self,
        issuer: &str,
        assertion: &str,
        now: i64,
    ) -> Result<Map<String, Value>, Refusal> {
        let header = jsonwebtoken::decode_header(assertion)
            .map_err(|e| Refusal::grant(format!("the assertion is not a JWT ({e})")))?;
        if let Some(typ) = &header.typ {
            return Err(Refusal::grant(format!(
                "the header has `typ` ({typ}); grants must not"
            )));
        }
        if !matches!(
            header.alg,
            Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512
        ) {
            return Err(Refusal::grant(format!(
                "alg {:?} is not RS256, RS384 or RS512",
                header.alg
            )));
        }
        let unverified = unverified_claims(assertion)?;
        if let Some(unknown) = unverified
            .keys()
            .find(|k| !KNOWN_CLAIMS.contains(&k.as_str()))
        {
            return Err(Refusal::grant(format!("unknown claim `{unknown}`")));
        }
        let client_id = str_claim(&unverified, "iss")?;
        let key = {
            let clients = lock(&self.clients);
            let client = clients.get(client_id).ok_or_else(|| {
                Refusal::grant(format!("iss `{client_id}` is not a registered client"))
            })?;
            (client.key.clone(), client.scopes.clone())
        };
        let (client_key, allowed_scopes) = key;
        let decoding_key = match &client_key {
            ClientKey::Certificate { trust_anchor } => certificate_key(&header, trust_anchor, now)?,
            ClientKey::Jwk { kid, n, e } => {
                if header.x5c.is_some() && header.kid.is_none() {
                    return Err(Refusal::grant(
                        "this client has a registered key: the header must name its kid",
                    ));
                }
                match header.kid.as_deref() {
                    Some(k) if k == kid => {}
                    Some(k) => {
                        return Err(Refusal::grant(format!(
                            "kid `{k}` is not registered for this client"
                        )));
                    }
                    None => return Err(Refusal::grant("the header has no kid")),
                }
                DecodingKey::from_rsa_components(n, e)
                    .map_err(|e| Refusal::grant(format!("registered key unusable: {e}")))?
            }
        };
        let mut validation = Validation::new(header.alg);
        validation.validate_exp = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let claims =
            jsonwebtoken::decode::<Map<String, Value>>(assertion, &decoding_key, &validation)
                .map_err(|e| Refusal::grant(format!("the signature does not verify ({e})")))?
                .claims;

        match claims.get("aud") {
            Some(Value::String(aud)) if aud == issuer => {}
            other => {
                return Err(Refusal::grant(format!(
                    "aud must be exactly `{issuer}`, not {}",
                    other
                        .map(Value::to_string)
                        .unwrap_or_else(|| "missing".into())
                )));
            }
        }
        let iat = int_claim(&claims, "iat")?;
        let exp = int_claim(&claims, "exp")?;
        if (iat - now).abs() > MAX_CLOCK_SKEW {
            return Err(Refusal::grant(format!(
                "iat is {} s from the server's clock; at most {MAX_CLOCK_SKEW} s is allowed",
                iat - now
            )));
        }
        if exp - iat > MAX_GRANT_LIFETIME {
            return Err(Refusal::grant(format!(
                "exp - iat is {} s; at most {MAX_GRANT_LIFETIME} s is allowed",
                exp - iat
            )));
        }
        if exp <= now {
            return Err(Refusal::grant("the grant has expired"));
        }
        let scope = str_claim(&claims, "scope")?;
        if scope.split(' ').all(str::is_empty) {
            return Err(Refusal::grant("scope is empty"));
        }
        if let Some(denied) = scope
            .split(' ')
            .filter(|s| !s.is_empty())
            .find(|s| !allowed_scopes.contains(*s))
        {
            return Err(Refusal::grant(format!(
                "scope `{denied}` is not allowed for this client"
            )));
        }
        if str_claim(&claims, "jti")?.is_empty() {
            return Err(Refusal::grant("jti is empty"));
        }
        Ok(claims)
    }
}

/// The leaf's key, after checking the `x5c` chain against the client's trust
/// anchor and the leaf's validity period.
fn certificate_key(
    header: &jsonwebtoken::Header,
    anchor_der: &[u8],
    now: i64,
) -> Result<DecodingKey, Refusal> {
    if header.kid.is_some() && header.x5c.is_none() {
        return Err(Refusal::grant(
            "this client uses a business certificate: the header must carry x5c",
        ));
    }
    let chain_der = header
        .x5c_der()
        .map_err(|_| Refusal::grant("x5c is not base64"))?
        .filter(|c| !c.is_empty())
        .ok_or_else(|| Refusal::grant("the header has no x5c"))?;
    let chain = chain_der
        .iter()
        .map(|d| parse(d))
        .collect::<Result<Vec<_>, _>>()?;
    let anchor = parse(anchor_der)?;
    for pair in chain.windows(2) {
        let (child, parent) = (&pair[0], &pair[1]);
        if child.issuer().as_raw() != parent.subject().as_raw()
            || child.verify_signature(Some(parent.public_key())).is_err()
        {
            return Err(Refusal::grant(
                "x5c is not a chain: a certificate is not signed by the next one",
            ));
        }
    }
    let last_index = chain.len() - 1;
    let last = &chain[last_index];
    let anchored = chain_der[last_index] == anchor_der
        || (last.issuer().as_raw() == anchor.subject().as_raw()
            && last.verify_signature(Some(anchor.public_key())).is_ok());
    if !anchored {
        return Err(Refusal::grant(
            "the x5c chain does not lead to the client's trusted certificate (is the chain complete?)",
        ));
    }
    let leaf = &chain[0];
    if now < leaf.validity().not_before.timestamp() {
        return Err(Refusal::grant("the certificate is not valid yet"));
    }
    if now >= leaf.validity().not_after.timestamp() {
        return Err(Refusal::grant("the certificate has expired"));
    }
    Ok(DecodingKey::from_rsa_der(
        leaf.public_key().subject_public_key.data.as_ref(),
    ))
}

fn parse(der: &[u8]) -> Result<X509Certificate<'_>, Refusal> {
    X509Certificate::from_der(der)
        .map(|(_, c)| c)
        .map_err(|e| Refusal::grant(format!("x5c holds an unreadable certificate ({e})")))
}

fn unverified_claims(assertion: &str) -> Result<Map<String, Value>, Refusal> {
    let payload = assertion
        .split('.')
        .nth(1)
        .ok_or_else(|| Refusal::grant("the assertion is not a JWT"))?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| Refusal::grant("the claims are not base64url"))?;
    serde_json::from_slice(&bytes).map_err(|_| Refusal::grant("the claims are not a JSON object"))
}

fn str_claim<'a>(claims: &'a Map<String, Value>, name: &str) -> Result<&'a str, Refusal> {
    claims
        .get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| Refusal::grant(format!("{name} is missing or not a string")))
}

fn int_claim(claims: &Map<String, Value>, name: &str) -> Result<i64, Refusal> {
    claims
        .get(name)
        .and_then(Value::as_i64)
        .ok_or_else(|| Refusal::grant(format!("{name} is missing or not an integer")))
}

/// A 400 answer in OAuth's error format.
struct Refusal {
    error: &'static str,
    description: String,
}

impl Refusal {
    fn new(error: &'static str, description: impl Into<String>) -> Self {
        Self {
            error,
            description: description.into(),
        }
    }

    fn grant(description: impl Into<String>) -> Self {
        Self::new("invalid_grant", description)
    }
}

/// `POST {base}maskinporten/token`, form-encoded.
pub(crate) async fn token_endpoint(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mp = &state.maskinporten;
    mp.grants.fetch_add(1, Ordering::SeqCst);
    let form_encoded = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let result = if form_encoded {
        let form: HashMap<String, String> =
            url::form_urlencoded::parse(&body).into_owned().collect();
        let issuer = format!("{}maskinporten/", state.base);
        mp.grant(&issuer, &form)
    } else {
        Err(Refusal::new(
            "invalid_request",
            "the body must be application/x-www-form-urlencoded",
        ))
    };
    match result {
        Ok((token, issued, expires_in)) => Json(json!({
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": expires_in,
            "scope": issued.scope,
        }))
        .into_response(),
        Err(refusal) => {
            lock(&mp.refusals).push(refusal.description.clone());
            (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": refusal.error, "error_description": refusal.description})),
            )
                .into_response()
        }
    }
}
