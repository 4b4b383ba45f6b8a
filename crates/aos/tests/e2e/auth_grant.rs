//! The Maskinporten grant: the client's grant has exactly Maskinporten's shape and is accepted
//! by the simulator's verifier, and the verifier refuses each rule violation (so acceptance
//! means something). Refusal tests start from a hand-made grant that is accepted, then break
//! one rule.

use std::collections::BTreeSet;

use altinn_aos::altinn_provider;
use altinn_aos::config::TokenSettings;
use altinn_sim::SimulatorHandle;
use aos_testkit::auth::*;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use base64::Engine as _;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;

const B64URL: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn decode_part(part: &str) -> Map<String, Value> {
    serde_json::from_slice(&B64URL.decode(part).expect("base64url")).expect("JSON object")
}

fn keys(map: &Map<String, Value>) -> BTreeSet<&str> {
    map.keys().map(String::as_str).collect()
}

fn maskinporten(world: &CertWorld) -> &altinn_aos::config::MaskinportenSettings {
    match &world.settings.token {
        TokenSettings::Maskinporten(m) => m,
        other => panic!("expected Maskinporten settings, got {other:?}"),
    }
}

#[tokio::test]
async fn client_grant_has_exactly_maskinportens_shape() {
    let world = cert_world(&[]).await;
    let provider = altinn_provider(maskinporten(&world), &world.settings.platform_base_url)
        .await
        .expect("provider");
    let now = OffsetDateTime::now_utc();
    let grant = provider.maskinporten().assertion(now).expect("grant");
    let parts: Vec<&str> = grant.split('.').collect();
    assert_eq!(parts.len(), 3);

    let header = decode_part(parts[0]);
    assert_eq!(
        keys(&header),
        BTreeSet::from(["alg", "x5c"]),
        "no typ, no kid with a certificate"
    );
    assert_eq!(header["alg"], "RS256");
    let x5c: Vec<Vec<u8>> = header["x5c"]
        .as_array()
        .expect("x5c array")
        .iter()
        .map(|c| {
            B64.decode(c.as_str().expect("string"))
                .expect("standard base64, not base64url")
        })
        .collect();
    assert_eq!(
        x5c,
        vec![
            world.pki.leaf.clone(),
            world.pki.intermediate.clone(),
            world.pki.root.clone()
        ]
    );

    let claims = decode_part(parts[1]);
    assert_eq!(
        keys(&claims),
        BTreeSet::from(["aud", "exp", "iat", "iss", "jti", "scope"])
    );
    assert_eq!(claims["aud"], format!("{}/", world.sim.maskinporten_url()));
    assert!(
        claims["aud"].as_str().unwrap().ends_with("maskinporten/"),
        "exactly one trailing slash"
    );
    assert_eq!(claims["iss"], CLIENT_ID);
    assert_eq!(
        claims["scope"],
        "altinn:serviceowner/instances.read altinn:serviceowner/instances.write"
    );
    let iat = claims["iat"].as_i64().expect("integer iat");
    let exp = claims["exp"].as_i64().expect("integer exp");
    assert_eq!(iat, now.unix_timestamp());
    assert!(exp > iat && exp - iat <= 120, "exp - iat = {}", exp - iat);
    let jti = uuid::Uuid::parse_str(claims["jti"].as_str().expect("jti")).expect("uuid jti");
    assert_eq!(jti.get_version_num(), 4);

    let again = decode_part(
        provider
            .maskinporten()
            .assertion(now)
            .expect("grant")
            .split('.')
            .nth(1)
            .unwrap(),
    );
    assert_ne!(again["jti"], claims["jti"], "every grant has a fresh jti");
}

#[tokio::test]
async fn audience_has_one_trailing_slash_whatever_the_setting() {
    let sim = simulator().await;
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "c.pem", pki.pem().as_bytes());
    let path = path.to_str().unwrap();
    for base in [
        "https://test.maskinporten.no",
        "https://test.maskinporten.no/",
        "https://test.maskinporten.no//",
    ] {
        let settings = settings(
            &sim,
            &[
                (CERT_PATH, path),
                (
                    "AltinnApplicationOwnerSystemSettings__MaskinportenBaseAddress",
                    base,
                ),
            ],
        );
        let TokenSettings::Maskinporten(m) = &settings.token else {
            panic!("Maskinporten settings")
        };
        let provider = altinn_provider(m, &settings.platform_base_url)
            .await
            .expect("provider");
        let grant = provider
            .maskinporten()
            .assertion(OffsetDateTime::now_utc())
            .unwrap();
        let claims = decode_part(grant.split('.').nth(1).unwrap());
        assert_eq!(claims["aud"], "https://test.maskinporten.no/", "for {base}");
        assert_eq!(
            provider.maskinporten().token_endpoint().as_str(),
            "https://test.maskinporten.no/token"
        );
    }
}

#[tokio::test]
async fn configured_scopes_are_sent() {
    let world = cert_world(&[(
        "AltinnApplicationOwnerSystemSettings__MaskinPortenScopes",
        "altinn:serviceowner/instances.read, altinn:events.subscribe",
    )])
    .await;
    let provider = altinn_provider(maskinporten(&world), &world.settings.platform_base_url)
        .await
        .unwrap();
    let grant = provider
        .maskinporten()
        .assertion(OffsetDateTime::now_utc())
        .unwrap();
    let claims = decode_part(grant.split('.').nth(1).unwrap());
    assert_eq!(
        claims["scope"],
        "altinn:serviceowner/instances.read altinn:events.subscribe"
    );
}

#[tokio::test]
async fn certificate_grant_is_accepted() {
    let world = cert_world(&[]).await;
    let provider = altinn_provider(maskinporten(&world), &world.settings.platform_base_url)
        .await
        .unwrap();
    let token = provider
        .maskinporten()
        .fetch_token()
        .await
        .expect("Maskinporten accepts the grant");
    assert_eq!(token.expires_in, Some(120));
    assert_eq!(
        token.scope.as_deref(),
        Some("altinn:serviceowner/instances.read altinn:serviceowner/instances.write")
    );
    assert_eq!(world.sim.grants(), 1);
    assert!(world.sim.grant_refusals().is_empty());
}

#[tokio::test]
async fn jwk_grant_carries_kid_and_is_accepted() {
    let sim = simulator().await;
    let key = jwk_key("test-only-kid-1");
    sim.register_client(CLIENT_ID, key.client_key.clone(), &SCOPES);
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "client.jwk",
        key.private_jwk.to_string().as_bytes(),
    );
    let settings = settings(&sim, &[(JWK_PATH, path.to_str().unwrap())]);
    let TokenSettings::Maskinporten(m) = &settings.token else {
        panic!("Maskinporten settings")
    };
    let provider = altinn_provider(m, &settings.platform_base_url)
        .await
        .expect("provider");
    let grant = provider
        .maskinporten()
        .assertion(OffsetDateTime::now_utc())
        .unwrap();
    let header = decode_part(grant.split('.').next().unwrap());
    assert_eq!(keys(&header), BTreeSet::from(["alg", "kid"]));
    assert_eq!(header["kid"], "test-only-kid-1");
    provider
        .maskinporten()
        .fetch_token()
        .await
        .expect("Maskinporten accepts the grant");
    assert!(sim.grant_refusals().is_empty());
}

// ---- the verifier: one refusal per rule ----

/// A hand-made grant: a valid one by default, signed with `key` (PKCS#8).
struct Grant {
    header: Value,
    claims: Value,
    key: Vec<u8>,
}

impl Grant {
    fn valid(sim: &SimulatorHandle, pki: &Pki) -> Grant {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        Grant {
            header: json!({"alg": "RS256", "x5c": pki.chain().iter().map(|c| B64.encode(c)).collect::<Vec<_>>()}),
            claims: json!({
                "aud": format!("{}/", sim.maskinporten_url()),
                "iss": CLIENT_ID,
                "scope": "altinn:serviceowner/instances.read",
                "iat": now,
                "exp": now + 60,
                "jti": uuid::Uuid::new_v4().to_string(),
            }),
            key: pki.leaf_key.clone(),
        }
    }

    fn sign(&self) -> String {
        let message = format!(
            "{}.{}",
            B64URL.encode(self.header.to_string()),
            B64URL.encode(self.claims.to_string())
        );
        let pair = RsaKeyPair::from_pkcs8(&self.key).expect("RSA key");
        let mut signature = vec![0; pair.public_modulus_len()];
        pair.sign(
            &RSA_PKCS1_SHA256,
            &SystemRandom::new(),
            message.as_bytes(),
            &mut signature,
        )
        .expect("signed");
        format!("{message}.{}", B64URL.encode(signature))
    }
}

/// POSTs `assertion` as Maskinporten's form; returns status and JSON body.
async fn post_grant(sim: &SimulatorHandle, assertion: &str) -> (u16, Value) {
    post_form(
        sim,
        &[
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("assertion", assertion),
        ],
    )
    .await
}

async fn post_form(sim: &SimulatorHandle, form: &[(&str, &str)]) -> (u16, Value) {
    let response = http()
        .post(format!("{}/token", sim.maskinporten_url()))
        .form(form)
        .send()
        .await
        .expect("sent");
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON body"))
}

/// Asserts `grant` is refused as `invalid_grant` for a reason mentioning `reason`.
async fn assert_refused(sim: &SimulatorHandle, grant: &Grant, reason: &str) {
    let (status, body) = post_grant(sim, &grant.sign()).await;
    assert_eq!(status, 400, "refused: {body}");
    assert_eq!(body["error"], "invalid_grant");
    let description = body["error_description"].as_str().expect("description");
    assert!(
        description.contains(reason),
        "`{description}` should mention `{reason}`"
    );
}

async fn verifier() -> (SimulatorHandle, Pki) {
    let sim = simulator().await;
    let pki = Pki::new();
    sim.register_client(CLIENT_ID, pki.client_key(), &SCOPES);
    (sim, pki)
}

#[tokio::test]
async fn hand_made_valid_grant_is_accepted() {
    let (sim, pki) = verifier().await;
    let (status, body) = post_grant(&sim, &Grant::valid(&sim, &pki).sign()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert!(body["access_token"].as_str().is_some_and(|t| !t.is_empty()));
}

#[tokio::test]
async fn refuses_typ_header() {
    let (sim, pki) = verifier().await;
    let mut grant = Grant::valid(&sim, &pki);
    grant.header["typ"] = json!("JWT");
    assert_refused(&sim, &grant, "typ").await;
}

#[tokio::test]
async fn refuses_wrong_audience() {
    let (sim, pki) = verifier().await;
    let issuer = sim.maskinporten_url().to_string();
    for aud in [
        issuer.clone(),
        format!("{issuer}/token"),
        format!("{issuer}//"),
        "https://ver2.maskinporten.no/".into(),
    ] {
        let mut grant = Grant::valid(&sim, &pki);
        grant.claims["aud"] = json!(aud);
        assert_refused(&sim, &grant, "aud must be exactly").await;
    }
}

#[tokio::test]
async fn refuses_unregistered_issuer() {
    let (sim, pki) = verifier().await;
    let mut grant = Grant::valid(&sim, &pki);
    grant.claims["iss"] = json!("someone-else");
    assert_refused(&sim, &grant, "not a registered client").await;
}

#[tokio::test]
async fn refuses_scope_the_client_does_not_have() {
    let (sim, pki) = verifier().await;
    let mut grant = Grant::valid(&sim, &pki);
    grant.claims["scope"] = json!("altinn:serviceowner/instances.read altinn:events.subscribe");
    assert_refused(
        &sim,
        &grant,
        "scope `altinn:events.subscribe` is not allowed",
    )
    .await;
}

#[tokio::test]
async fn refuses_lifetime_over_120_seconds() {
    let (sim, pki) = verifier().await;
    let mut grant = Grant::valid(&sim, &pki);
    grant.claims["exp"] = json!(grant.claims["iat"].as_i64().unwrap() + 121);
    assert_refused(&sim, &grant, "exp - iat is 121 s").await;
    // 120 exactly is fine.
    let mut grant = Grant::valid(&sim, &pki);
    grant.claims["exp"] = json!(grant.claims["iat"].as_i64().unwrap() + 120);
    assert_eq!(post_grant(&sim, &grant.sign()).await.0, 200);
}

#[tokio::test]
async fn refuses_iat_more_than_10_seconds_off() {
    let (sim, pki) = verifier().await;
    for skew in [-30, 30] {
        let mut grant = Grant::valid(&sim, &pki);
        let iat = grant.claims["iat"].as_i64().unwrap() + skew;
        grant.claims["iat"] = json!(iat);
        grant.claims["exp"] = json!(iat + 60);
        assert_refused(&sim, &grant, "iat is").await;
    }
}

#[tokio::test]
async fn refuses_expired_grant() {
    let (sim, pki) = verifier().await;
    let mut grant = Grant::valid(&sim, &pki);
    let iat = grant.claims["iat"].as_i64().unwrap() - 5;
    grant.claims["iat"] = json!(iat);
    grant.claims["exp"] = json!(iat + 2);
    assert_refused(&sim, &grant, "expired").await;
}

#[tokio::test]
async fn refuses_reused_jti() {
    let (sim, pki) = verifier().await;
    let grant = Grant::valid(&sim, &pki);
    assert_eq!(post_grant(&sim, &grant.sign()).await.0, 200);
    assert_refused(&sim, &grant, "already been used").await;
}

#[tokio::test]
async fn refuses_missing_jti() {
    let (sim, pki) = verifier().await;
    let mut grant = Grant::valid(&sim, &pki);
    grant.claims.as_object_mut().unwrap().remove("jti");
    assert_refused(&sim, &grant, "jti").await;
}

#[tokio::test]
async fn refuses_unknown_claim() {
    let (sim, pki) = verifier().await;
    let mut grant = Grant::valid(&sim, &pki);
    grant.claims["sub"] = json!(CLIENT_ID);
    assert_refused(&sim, &grant, "unknown claim `sub`").await;
}

#[tokio::test]
async fn refuses_signature_by_another_key() {
    let (sim, pki) = verifier().await;
    let mut grant = Grant::valid(&sim, &pki);
    grant.key = Pki::new().leaf_key;
    assert_refused(&sim, &grant, "signature does not verify").await;
}

#[tokio::test]
async fn refuses_chain_without_intermediate() {
    let (sim, pki) = verifier().await;
    let mut grant = Grant::valid(&sim, &pki);
    grant.header["x5c"] = json!([B64.encode(&pki.leaf)]);
    assert_refused(
        &sim,
        &grant,
        "does not lead to the client's trusted certificate",
    )
    .await;
}

#[tokio::test]
async fn refuses_chain_from_another_ca() {
    let (sim, pki) = verifier().await;
    let other = Pki::new();
    let mut grant = Grant::valid(&sim, &pki);
    grant.header["x5c"] = json!(
        other
            .chain()
            .iter()
            .map(|c| B64.encode(c))
            .collect::<Vec<_>>()
    );
    grant.key = other.leaf_key.clone();
    assert_refused(
        &sim,
        &grant,
        "does not lead to the client's trusted certificate",
    )
    .await;
}

#[tokio::test]
async fn refuses_chain_out_of_order() {
    let (sim, pki) = verifier().await;
    let mut grant = Grant::valid(&sim, &pki);
    grant.header["x5c"] = json!([B64.encode(&pki.intermediate), B64.encode(&pki.leaf)]);
    assert_refused(&sim, &grant, "not a chain").await;
}

#[tokio::test]
async fn refuses_expired_certificate() {
    let sim = simulator().await;
    let now = OffsetDateTime::now_utc();
    let pki = Pki::with_leaf_validity(
        now - time::Duration::days(30),
        now - time::Duration::days(1),
    );
    sim.register_client(CLIENT_ID, pki.client_key(), &SCOPES);
    assert_refused(&sim, &Grant::valid(&sim, &pki), "certificate has expired").await;
}

#[tokio::test]
async fn refuses_kid_for_a_certificate_client() {
    let (sim, pki) = verifier().await;
    let mut grant = Grant::valid(&sim, &pki);
    grant.header = json!({"alg": "RS256", "kid": "some-kid"});
    assert_refused(&sim, &grant, "must carry x5c").await;
}

#[tokio::test]
async fn refuses_unknown_kid() {
    let sim = simulator().await;
    let key = jwk_key("registered-kid");
    sim.register_client(CLIENT_ID, key.client_key.clone(), &SCOPES);
    let pki = Pki::new();
    let mut grant = Grant::valid(&sim, &pki);
    grant.key = key.pkcs8.clone();
    grant.header = json!({"alg": "RS256", "kid": "registered-kid"});
    assert_eq!(
        post_grant(&sim, &grant.sign()).await.0,
        200,
        "the registered kid works"
    );
    let mut grant = Grant::valid(&sim, &pki);
    grant.key = key.pkcs8.clone();
    grant.header = json!({"alg": "RS256", "kid": "other-kid"});
    assert_refused(&sim, &grant, "kid `other-kid` is not registered").await;
}

#[tokio::test]
async fn refuses_non_rsa_algorithm() {
    let (sim, pki) = verifier().await;
    let mut grant = Grant::valid(&sim, &pki);
    grant.header["alg"] = json!("HS256");
    assert_refused(&sim, &grant, "is not RS256").await;
}

#[tokio::test]
async fn refuses_other_grant_types_and_non_form_bodies() {
    let (sim, pki) = verifier().await;
    let assertion = Grant::valid(&sim, &pki).sign();
    let (status, body) = post_form(
        &sim,
        &[
            ("grant_type", "client_credentials"),
            ("assertion", &assertion),
        ],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("unsupported_grant_type"))
    );
    let response = http()
        .post(format!("{}/token", sim.maskinporten_url()))
        .json(&json!({"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": assertion}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(
        response.json::<Value>().await.unwrap()["error"],
        "invalid_request"
    );
}
