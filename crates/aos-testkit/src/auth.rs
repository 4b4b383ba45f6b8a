//! Test-only keys and certificates (generated per
//! run, never real), settings pointing at an in-process simulator, and a plain HTTP client.

use std::path::{Path, PathBuf};
use std::time::Duration;

use altinn_aos::config::{SettingSource, Settings};
use altinn_sim::{self as simulator, ClientKey, SimulatorConfig, SimulatorHandle};
use base64::Engine as _;
use p12_keystore::{
    Certificate, EncryptionAlgorithm, KeyStore, KeyStoreEntry, PrivateKey, PrivateKeyChain,
};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, IsCa, KeyPair,
    KeyUsagePurpose,
};
use time::OffsetDateTime;

pub const CLIENT_ID: &str = "aos-test-client";
pub const SCOPES: [&str; 2] = [
    "altinn:serviceowner/instances.read",
    "altinn:serviceowner/instances.write",
];
pub const PASSWORD: &str = "test-only-password";

/// A simulator without a fixed token: only exchanged Altinn tokens open Storage.
pub async fn simulator() -> SimulatorHandle {
    simulator::start(SimulatorConfig {
        token: String::new(),
        ..Default::default()
    })
    .await
    .expect("simulator starts")
}

/// No proxy: a proxy from the environment must not intercept loopback calls.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client builds")
}

/// A business-certificate hierarchy: root CA → intermediate CA → RSA leaf (the client's key).
pub struct Pki {
    pub root: Vec<u8>,
    pub intermediate: Vec<u8>,
    pub leaf: Vec<u8>,
    /// The leaf's private key, PKCS#8 DER.
    pub leaf_key: Vec<u8>,
}

fn name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CountryName, "NO");
    dn.push(DnType::OrganizationName, "altinn-aos test-only PKI");
    dn.push(DnType::CommonName, cn);
    dn
}

fn ca_params(cn: &str) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.distinguished_name = name(cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = OffsetDateTime::now_utc() - time::Duration::days(1);
    params.not_after = OffsetDateTime::now_utc() + time::Duration::days(3650);
    params
}

impl Default for Pki {
    fn default() -> Self {
        Self::new()
    }
}

impl Pki {
    /// A leaf valid from yesterday for a year.
    pub fn new() -> Pki {
        let now = OffsetDateTime::now_utc();
        Pki::with_leaf_validity(
            now - time::Duration::days(1),
            now + time::Duration::days(365),
        )
    }

    pub fn with_leaf_validity(not_before: OffsetDateTime, not_after: OffsetDateTime) -> Pki {
        let root_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("root key");
        let root =
            CertifiedIssuer::self_signed(ca_params("test-only root CA"), root_key).expect("root");
        let intermediate_key =
            KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("intermediate key");
        let intermediate = CertifiedIssuer::signed_by(
            ca_params("test-only intermediate CA"),
            intermediate_key,
            &root,
        )
        .expect("intermediate");
        let leaf_key = KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).expect("leaf key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name = name("test-only business certificate");
        params
            .distinguished_name
            .push(DnType::CustomDnType(vec![2, 5, 4, 5]), "991825827");
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.not_before = not_before;
        params.not_after = not_after;
        let leaf = params.signed_by(&leaf_key, &intermediate).expect("leaf");
        Pki {
            root: root.der().to_vec(),
            intermediate: intermediate.der().to_vec(),
            leaf: leaf.der().to_vec(),
            leaf_key: leaf_key.serialize_der(),
        }
    }

    /// How the simulator's Maskinporten knows this client: by the root CA.
    pub fn client_key(&self) -> ClientKey {
        ClientKey::Certificate {
            trust_anchor: self.root.clone(),
        }
    }

    /// The chain a grant must carry: leaf, then intermediate.
    pub fn chain(&self) -> Vec<Vec<u8>> {
        vec![self.leaf.clone(), self.intermediate.clone()]
    }

    /// A PKCS#12 archive with the key and the full chain (leaf, intermediate, root).
    pub fn pkcs12(&self, password: &str, encryption: EncryptionAlgorithm) -> Vec<u8> {
        let certs = [&self.leaf, &self.intermediate, &self.root]
            .into_iter()
            .map(|der| Certificate::from_der(der).expect("certificate"));
        let key = PrivateKey::from_der(&self.leaf_key).expect("key");
        let chain = PrivateKeyChain::new(b"test-only-key".as_slice(), key, certs);
        let mut store = KeyStore::new();
        store.add_entry("test-only", KeyStoreEntry::PrivateKeyChain(chain));
        store
            .writer(password)
            .encryption_algorithm(encryption)
            .encryption_iterations(2048)
            .mac_iterations(2048)
            .write()
            .expect("PKCS#12 written")
    }

    /// PEM: certificates first and out of order (intermediate, leaf), then the PKCS#8 key.
    pub fn pem(&self) -> String {
        [
            pem("CERTIFICATE", &self.intermediate),
            pem("CERTIFICATE", &self.leaf),
            pem("PRIVATE KEY", &self.leaf_key),
        ]
        .concat()
    }
}

pub fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).expect("ascii"))
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

/// An RSA key as a private JWK (with `kid`) and as the simulator's registration.
pub struct JwkKey {
    pub private_jwk: serde_json::Value,
    pub client_key: ClientKey,
    pub kid: String,
    pub pkcs8: Vec<u8>,
}

pub fn jwk_key(kid: &str) -> JwkKey {
    #[derive(der::Sequence)]
    struct RsaPrivateKey<'a> {
        version: u8,
        n: der::asn1::UintRef<'a>,
        e: der::asn1::UintRef<'a>,
        d: der::asn1::UintRef<'a>,
        p: der::asn1::UintRef<'a>,
        q: der::asn1::UintRef<'a>,
        dp: der::asn1::UintRef<'a>,
        dq: der::asn1::UintRef<'a>,
        qi: der::asn1::UintRef<'a>,
    }
    use der::Decode as _;
    let key = KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).expect("key");
    let pkcs8 = key.serialize_der();
    let info = pkcs8::PrivateKeyInfoRef::try_from(pkcs8.as_slice()).expect("pkcs8");
    let rsa = RsaPrivateKey::from_der(info.private_key.as_bytes()).expect("pkcs1");
    let b64 = |u: der::asn1::UintRef<'_>| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(u.as_bytes())
    };
    let (n, e) = (b64(rsa.n), b64(rsa.e));
    let private_jwk = serde_json::json!({
        "kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig",
        "n": n, "e": e, "d": b64(rsa.d), "p": b64(rsa.p), "q": b64(rsa.q),
        "dp": b64(rsa.dp), "dq": b64(rsa.dq), "qi": b64(rsa.qi),
    });
    JwkKey {
        private_jwk,
        client_key: ClientKey::Jwk {
            kid: kid.into(),
            n,
            e,
        },
        kid: kid.into(),
        pkcs8,
    }
}

/// Settings for a deployment against `sim`, the key file at `key_setting` = `path`.
pub fn settings(sim: &SimulatorHandle, extra: &[(&str, &str)]) -> Settings {
    Settings::from_source(&SettingSource::from_pairs(settings_pairs(sim, extra))).expect("settings")
}

pub fn settings_pairs(sim: &SimulatorHandle, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let base = sim.base_url().to_string();
    let mut pairs: Vec<(String, String)> = vec![
        (
            "AltinnApplicationOwnerSystemSettings__AppsBaseUrl".into(),
            base.clone(),
        ),
        (
            "AltinnApplicationOwnerSystemSettings__PlatformBaseUrl".into(),
            base,
        ),
        (
            "AltinnApplicationOwnerSystemSettings__BlobEndpoint".into(),
            "http://127.0.0.1:10000/devstoreaccount1".into(),
        ),
        (
            "AltinnApplicationOwnerSystemSettings__MaskinportenBaseAddress".into(),
            sim.maskinporten_url().to_string(),
        ),
        (
            "AltinnApplicationOwnerSystemSettings__MaskinPortenClientId".into(),
            CLIENT_ID.into(),
        ),
    ];
    pairs.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    pairs
}

/// Writes `bytes` to a fresh file in `dir`.
pub fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("file written");
    path
}

pub const CERT_PATH: &str = "AltinnApplicationOwnerSystemSettings__MaskinPortenCertPath";
pub const CERT_PASSWORD: &str = "AltinnApplicationOwnerSystemSettings__MaskinPortenCertPassword";
pub const JWK_PATH: &str = "AltinnApplicationOwnerSystemSettings__MaskinPortenJwkPath";

/// A simulator with a certificate client registered, and settings whose key is that
/// certificate in a modern PKCS#12 file.
pub struct CertWorld {
    pub sim: SimulatorHandle,
    pub pki: Pki,
    pub dir: tempfile::TempDir,
    pub settings: Settings,
}

pub async fn cert_world(extra: &[(&str, &str)]) -> CertWorld {
    let sim = simulator().await;
    let pki = Pki::new();
    sim.register_client(CLIENT_ID, pki.client_key(), &SCOPES);
    let dir = tempfile::tempdir().expect("temp dir");
    let path = write(
        dir.path(),
        "client.p12",
        &pki.pkcs12(PASSWORD, EncryptionAlgorithm::PbeWithHmacSha256AndAes256),
    );
    let path = path.to_string_lossy().into_owned();
    let mut pairs = vec![(CERT_PATH, path.as_str()), (CERT_PASSWORD, PASSWORD)];
    pairs.extend_from_slice(extra);
    let settings = settings(&sim, &pairs);
    CertWorld {
        sim,
        pki,
        dir,
        settings,
    }
}

/// Waits until `f` holds or `limit` passes.
pub async fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f()
}
