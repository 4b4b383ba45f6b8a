//! Key material: PKCS#12 (modern and legacy encryption, generated here and made by other
//! tools), PEM, JWK, the checks that turn a wrong file into one clear error, expiry reporting,
//! and redaction.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use altinn_aos::KeyError;
use altinn_aos::config::KeySource;
use altinn_aos::domain::Secret;
use altinn_aos::keys::{self, Expiry, KeyReference, SigningKey};
use aos_testkit::auth::*;
use base64::Engine as _;
use jsonwebtoken::{DecodingKey, Validation};
use p12_keystore::EncryptionAlgorithm;
use time::OffsetDateTime;
use x509_parser::prelude::FromDer as _;

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The key signs a JWT that verifies with the public key of the leaf it names in `x5c`.
fn assert_signs_for_its_certificate(key: &SigningKey) -> Vec<Vec<u8>> {
    let header = key.header();
    assert!(header.typ.is_none());
    let chain = header.x5c_der().expect("x5c decodes").expect("x5c present");
    let (_, leaf) =
        x509_parser::certificate::X509Certificate::from_der(&chain[0]).expect("leaf parses");
    let claims = serde_json::json!({"iss": "x", "exp": 4_000_000_000u64});
    let token = jsonwebtoken::encode(&header, &claims, key.encoding_key()).expect("signs");
    let decoding = DecodingKey::from_rsa_der(leaf.public_key().subject_public_key.data.as_ref());
    jsonwebtoken::decode::<serde_json::Value>(
        &token,
        &decoding,
        &Validation::new(jsonwebtoken::Algorithm::RS256),
    )
    .expect("signature verifies with the leaf certificate");
    chain
}

#[test]
fn pkcs12_modern_and_legacy_encryption_generated_here() {
    let pki = Pki::new();
    for encryption in [
        EncryptionAlgorithm::PbeWithHmacSha256AndAes256,
        EncryptionAlgorithm::PbeWithShaAnd3KeyTripleDesCbc,
        // Despite the name, p12-keystore writes pbeWithSHAAnd40BitRC2-CBC here.
        EncryptionAlgorithm::PbeWithShaAnd40BitRc4Cbc,
    ] {
        let p12 = pki.pkcs12(PASSWORD, encryption);
        let key = SigningKey::from_file_bytes(&p12, PASSWORD)
            .unwrap_or_else(|e| panic!("{encryption:?}: {e}"));
        let chain = assert_signs_for_its_certificate(&key);
        assert_eq!(
            chain,
            vec![pki.leaf.clone(), pki.intermediate.clone(), pki.root.clone()],
            "{encryption:?}"
        );
        let cert = key.certificate().expect("certificate");
        assert!(
            cert.subject.contains("test-only business certificate"),
            "{}",
            cert.subject
        );
        assert!(
            cert.issuer.contains("test-only intermediate CA"),
            "{}",
            cert.issuer
        );
    }
}

#[test]
fn pkcs12_files_made_by_other_tools() {
    // See tests/data/make_pkcs12_fixtures.py for how each file was made.
    for (file, password, subject) in [
        ("test-only-aes.p12", PASSWORD, "test-only aes"),
        ("test-only-3des.p12", PASSWORD, "test-only 3des"),
        ("test-only-rc2-3des.p12", PASSWORD, "test-only rc2"),
        ("test-only-no-password.p12", "", "test-only no password"),
    ] {
        let key = SigningKey::from_file_bytes(&fixture(file), password)
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_signs_for_its_certificate(&key);
        assert!(
            key.certificate().unwrap().subject.contains(subject),
            "{file}"
        );
    }
}

#[test]
fn key_vault_secret_is_base64_pkcs12_with_empty_password() {
    let b64 = base64::engine::general_purpose::STANDARD;
    let key = SigningKey::from_key_vault_secret(&b64.encode(fixture("test-only-no-password.p12")))
        .expect("loads");
    assert_signs_for_its_certificate(&key);
    let pki = Pki::new();
    // An empty-password archive written with legacy encryption, and base64 wrapped in lines.
    let encoded = b64.encode(pki.pkcs12("", EncryptionAlgorithm::PbeWithShaAnd3KeyTripleDesCbc));
    let wrapped: Vec<String> = encoded
        .as_bytes()
        .chunks(76)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    let key = SigningKey::from_key_vault_secret(&wrapped.join("\r\n")).expect("loads");
    assert_signs_for_its_certificate(&key);
    // A PEM bundle in the secret also works.
    let key = SigningKey::from_key_vault_secret(&pki.pem()).expect("PEM secret loads");
    assert_signs_for_its_certificate(&key);
    assert!(matches!(
        SigningKey::from_key_vault_secret("not base64!"),
        Err(KeyError::KeyVault(_))
    ));
}

#[test]
fn wrong_pkcs12_password_is_named() {
    let pki = Pki::new();
    let p12 = pki.pkcs12(PASSWORD, EncryptionAlgorithm::PbeWithHmacSha256AndAes256);
    let err = SigningKey::from_file_bytes(&p12, "wrong").unwrap_err();
    assert!(matches!(err, KeyError::WrongPassword), "{err}");
    assert!(err.to_string().contains("wrong password"));
    let err = SigningKey::from_file_bytes(&fixture("test-only-rc2-3des.p12"), "").unwrap_err();
    assert!(matches!(err, KeyError::WrongPassword), "{err}");
    let err = SigningKey::from_file_bytes(b"\x30\x03\x02\x01\x05", PASSWORD).unwrap_err();
    assert!(matches!(err, KeyError::Pkcs12(_)), "{err}");
}

#[test]
fn pem_bundle_in_any_order_gives_leaf_first() {
    let pki = Pki::new();
    let key = SigningKey::from_file_bytes(pki.pem().as_bytes(), "").expect("loads");
    let chain = assert_signs_for_its_certificate(&key);
    assert_eq!(chain, pki.chain(), "leaf, then its issuer");
}

#[test]
fn pem_with_encrypted_pkcs8_key_uses_the_password() {
    let pem = fixture("test-only-encrypted-key.pem");
    let key = SigningKey::from_file_bytes(&pem, PASSWORD).expect("decrypts");
    assert_signs_for_its_certificate(&key);
    let err = SigningKey::from_file_bytes(&pem, "wrong").unwrap_err();
    assert!(err.to_string().contains("wrong password"), "{err}");
}

#[test]
fn short_rsa_keys_are_refused() {
    let err = SigningKey::from_file_bytes(&fixture("test-only-rsa1024.pem"), "").unwrap_err();
    assert!(err.to_string().contains("at least 2048 bits"), "{err}");
}

#[test]
fn mismatched_or_missing_certificates_are_refused() {
    let pki = Pki::new();
    let other = Pki::new();
    let key_only = pem("PRIVATE KEY", &pki.leaf_key);
    let err = SigningKey::from_file_bytes(key_only.as_bytes(), "").unwrap_err();
    assert!(err.to_string().contains("no certificate"), "{err}");
    let wrong_cert = [pem("CERTIFICATE", &other.leaf), key_only].concat();
    let err = SigningKey::from_file_bytes(wrong_cert.as_bytes(), "").unwrap_err();
    assert!(err.to_string().contains("does not belong"), "{err}");
    let cert_only = pem("CERTIFICATE", &pki.leaf);
    let err = SigningKey::from_file_bytes(cert_only.as_bytes(), "").unwrap_err();
    assert!(err.to_string().contains("no private key"), "{err}");
}

#[test]
fn ec_keys_are_refused() {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["x".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let bundle = [cert.pem(), key.serialize_pem()].concat();
    let err = SigningKey::from_file_bytes(bundle.as_bytes(), "").unwrap_err();
    assert!(err.to_string().contains("not RSA"), "{err}");
}

#[test]
fn jwk_with_kid() {
    let jwk = jwk_key("kid-1");
    let key = SigningKey::from_jwk(jwk.private_jwk.to_string().as_bytes()).expect("loads");
    assert!(matches!(key.reference(), KeyReference::Kid(kid) if kid == "kid-1"));
    let header = key.header();
    assert_eq!(
        (
            header.kid.as_deref(),
            header.x5c.is_none(),
            header.typ.is_none()
        ),
        (Some("kid-1"), true, true)
    );
    let altinn_sim::ClientKey::Jwk { n, e, .. } = &jwk.client_key else {
        panic!("JWK client key")
    };
    let token = jsonwebtoken::encode(
        &header,
        &serde_json::json!({"exp": 4_000_000_000u64}),
        key.encoding_key(),
    )
    .expect("signs");
    jsonwebtoken::decode::<serde_json::Value>(
        &token,
        &DecodingKey::from_rsa_components(n, e).unwrap(),
        &Validation::new(jsonwebtoken::Algorithm::RS256),
    )
    .expect("verifies with the public JWK");
    assert!(key.certificate().is_none());
    assert!(key.expiry(OffsetDateTime::now_utc()).is_none());

    let set = serde_json::json!({"keys": [jwk.private_jwk]});
    assert!(
        SigningKey::from_jwk(set.to_string().as_bytes()).is_ok(),
        "a set with one key"
    );
}

#[test]
fn unusable_jwks_are_named() {
    let jwk = jwk_key("kid-1");
    let mut no_kid = jwk.private_jwk.clone();
    no_kid.as_object_mut().unwrap().remove("kid");
    assert!(
        SigningKey::from_jwk(no_kid.to_string().as_bytes())
            .unwrap_err()
            .to_string()
            .contains("kid")
    );
    let mut public_only = jwk.private_jwk.clone();
    public_only.as_object_mut().unwrap().remove("d");
    assert!(
        SigningKey::from_jwk(public_only.to_string().as_bytes())
            .unwrap_err()
            .to_string()
            .contains("`d` is missing")
    );
    let mut other_n = jwk.private_jwk.clone();
    other_n["n"] = jwk_key("x").private_jwk["n"].clone();
    assert!(
        SigningKey::from_jwk(other_n.to_string().as_bytes()).is_err(),
        "n of another key"
    );
    let mut ec = jwk.private_jwk.clone();
    ec["kty"] = serde_json::json!("EC");
    assert!(
        SigningKey::from_jwk(ec.to_string().as_bytes())
            .unwrap_err()
            .to_string()
            .contains("kty")
    );
    assert!(SigningKey::from_jwk(b"not json").is_err());
}

#[tokio::test]
async fn missing_file_is_named() {
    let source = KeySource::File {
        setting: CERT_PATH.into(),
        path: "/nonexistent/client.p12".into(),
        password: Secret::new(PASSWORD),
    };
    let err = keys::load(&source).await.unwrap_err();
    assert!(err.to_string().contains("/nonexistent/client.p12"), "{err}");
}

#[test]
fn expiry_classification() {
    let now = OffsetDateTime::now_utc();
    let day = time::Duration::days(1);
    let status = |not_before, not_after| {
        let pki = Pki::with_leaf_validity(not_before, not_after);
        let key = SigningKey::from_file_bytes(pki.pem().as_bytes(), "").unwrap();
        key.expiry(now).unwrap()
    };
    assert_eq!(
        status(now - day, now + day * 100),
        Expiry::Valid { days_left: 99 }
    );
    assert_eq!(
        status(now - day, now + day * 29 + time::Duration::hours(1)),
        Expiry::ExpiresSoon { days_left: 29 }
    );
    assert_eq!(status(now - day * 30, now - day), Expiry::Expired);
    assert_eq!(status(now + day, now + day * 30), Expiry::NotYetValid);
}

/// Collects formatted log output.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn logged(f: impl FnOnce()) -> String {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, f);
    let bytes = captured.0.lock().unwrap().clone();
    String::from_utf8(bytes).unwrap()
}

#[test]
fn expiry_is_reported_at_start_up() {
    let now = OffsetDateTime::now_utc();
    let day = time::Duration::days(1);
    let key_for = |not_before, not_after| {
        SigningKey::from_file_bytes(
            Pki::with_leaf_validity(not_before, not_after)
                .pem()
                .as_bytes(),
            "",
        )
        .unwrap()
    };
    let expired = logged(|| key_for(now - day * 30, now - day).log_expiry());
    assert!(
        expired.contains("ERROR") && expired.contains("has expired"),
        "{expired}"
    );
    let soon = logged(|| key_for(now - day, now + day * 10).log_expiry());
    assert!(
        soon.contains("WARN") && soon.contains("expires soon") && soon.contains("days_left=9"),
        "{soon}"
    );
    let fine = logged(|| key_for(now - day, now + day * 300).log_expiry());
    assert!(
        fine.contains("INFO") && !fine.contains("WARN") && !fine.contains("ERROR"),
        "{fine}"
    );
}

#[test]
fn key_material_never_shows_in_debug() {
    let pki = Pki::new();
    let key = SigningKey::from_file_bytes(pki.pem().as_bytes(), "").unwrap();
    let debug = format!("{key:?}");
    let b64 = base64::engine::general_purpose::STANDARD;
    let key_b64 = b64.encode(&pki.leaf_key);
    assert!(
        debug.contains("<redacted>") && debug.contains("test-only business certificate"),
        "{debug}"
    );
    for probe in key_b64.as_bytes().chunks(16).take(20) {
        assert!(
            !debug.contains(std::str::from_utf8(probe).unwrap()),
            "{debug}"
        );
    }
    let jwk = jwk_key("kid-1");
    let key = SigningKey::from_jwk(jwk.private_jwk.to_string().as_bytes()).unwrap();
    let debug = format!("{key:?}");
    assert!(
        !debug.contains(jwk.private_jwk["d"].as_str().unwrap()),
        "{debug}"
    );
    let source = KeySource::File {
        setting: CERT_PATH.into(),
        path: "/k.p12".into(),
        password: Secret::new("hunter2"),
    };
    let debug = format!("{source:?}");
    assert!(!debug.contains("hunter2"), "{debug}");
    let _ = std::io::stderr().flush();
}
