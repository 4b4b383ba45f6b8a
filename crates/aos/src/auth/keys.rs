//! Maskinporten key material: the RSA private key that signs the grant, and what the grant's
//! header says about it (the certificate chain as `x5c`, or the registered key's `kid`).
//!
//! Sources, as [`KeySource`] names them: a PKCS#12 file (modern AES/PBES2 and legacy 3DES/RC2
//! encryption, both in use: Windows and older OpenSSL still write the legacy kind), a PEM file
//! (key + chain, the key optionally an encrypted PKCS#8), a JWK with `kid`, or an Azure Key
//! Vault secret holding a base64 PKCS#12 (how the reference system stores it).
//!
//! Everything is checked when loading, not at the first grant: the key must be RSA of at least
//! 2048 bits, and a certificate's public key must be the private key's, so a wrong file is one
//! clear line (at start-up for a local file, in the failing step's error for Key Vault, which is
//! read when first needed: `key_store.rs`) instead of an `invalid_grant` from Maskinporten later. The key itself
//! never leaves this module except as a `jsonwebtoken::EncodingKey`, and `Debug` shows only the
//! certificate subject or `kid`.

use std::path::Path;

use aws_lc_rs::signature::KeyPair as _;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer as _;

use super::error::KeyError;
use super::keyvault;
use crate::config::KeySource;

/// Maskinporten rejects shorter RSA keys.
const MIN_RSA_BITS: usize = 2048;
/// A certificate that expires sooner than this is reported as a warning at start-up.
pub const EXPIRY_WARNING: time::Duration = time::Duration::days(30);
/// `rsaEncryption`, the PKCS#8 algorithm of an RSA key.
const RSA_ENCRYPTION: der::oid::ObjectIdentifier =
    der::oid::ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
/// A chain longer than this is not a certificate chain but a loop or a junk bundle.
const MAX_CHAIN: usize = 8;

/// The key that signs Maskinporten grants, with the header that identifies it.
pub struct SigningKey {
    key: EncodingKey,
    /// The public key (PKCS#1 `RSAPublicKey` DER): with `reference`, what tells a reloaded key
    /// from the one held before (`auth/key_store.rs`).
    public: Vec<u8>,
    reference: KeyReference,
}

/// Same public key, same certificate chain or `kid`: the same key as far as Maskinporten can
/// tell.
impl PartialEq for SigningKey {
    fn eq(&self, other: &Self) -> bool {
        self.public == other.public && self.reference == other.reference
    }
}

/// How Maskinporten finds the public key for a grant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyReference {
    /// `x5c`: the business certificate chain, leaf first, DER.
    Certificate {
        chain: Vec<Vec<u8>>,
        leaf: CertificateInfo,
    },
    /// `kid`: a key registered on the Maskinporten client.
    Kid(String),
}

/// What an operator needs to know about the leaf certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateInfo {
    pub subject: String,
    pub issuer: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

/// Where a certificate stands relative to now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expiry {
    Valid {
        days_left: i64,
    },
    /// Expires within [`EXPIRY_WARNING`].
    ExpiresSoon {
        days_left: i64,
    },
    Expired,
    NotYetValid,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("key", &"<redacted>")
            .field("reference", &self.describe())
            .finish()
    }
}

/// Loads and checks the key material named by the settings.
pub async fn load(source: &KeySource) -> Result<SigningKey, KeyError> {
    match source {
        KeySource::File { path, password, .. } => {
            SigningKey::from_file_bytes(&read(path).await?, password.expose())
        }
        KeySource::Jwk { path, .. } => SigningKey::from_jwk(&read(path).await?),
        KeySource::KeyVault {
            vault, secret_name, ..
        } => {
            let secret = keyvault::fetch_secret(vault, secret_name).await?;
            SigningKey::from_key_vault_secret(secret.value())
        }
    }
}

/// The file's bytes (key material): overwritten when dropped, once parsed.
async fn read(path: &Path) -> Result<zeroize::Zeroizing<Vec<u8>>, KeyError> {
    tokio::fs::read(path)
        .await
        .map(zeroize::Zeroizing::new)
        .map_err(|e| KeyError::Read {
            path: path.display().to_string(),
            detail: e.to_string(),
        })
}

impl SigningKey {
    /// A PKCS#12 or PEM file; the format is detected from the content.
    pub fn from_file_bytes(bytes: &[u8], password: &str) -> Result<Self, KeyError> {
        if looks_like_pem(bytes) {
            Self::from_pem(bytes, password)
        } else {
            Self::from_pkcs12(bytes, password)
        }
    }

    /// A Key Vault secret value: base64 PKCS#12 with an empty password (the reference system's
    /// format, and what Key Vault stores behind an imported certificate), or a PEM bundle.
    pub fn from_key_vault_secret(value: &str) -> Result<Self, KeyError> {
        if looks_like_pem(value.as_bytes()) {
            return Self::from_pem(value.as_bytes(), "");
        }
        let compact = zeroize::Zeroizing::new(
            value
                .chars()
                .filter(|c| !c.is_ascii_whitespace())
                .collect::<String>(),
        );
        let der = zeroize::Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(compact.as_bytes())
                .map_err(|_| {
                    KeyError::KeyVault("the secret is neither base64 (PKCS#12) nor PEM".into())
                })?,
        );
        Self::from_pkcs12(&der, "")
    }

    /// A PKCS#12 archive with exactly one private key and its certificate chain.
    pub fn from_pkcs12(bytes: &[u8], password: &str) -> Result<Self, KeyError> {
        use p12_keystore::error::Error as P12Error;
        let archive =
            p12_keystore::Pkcs12Archive::from_pkcs12(bytes, password).map_err(|e| match e {
                P12Error::MacError(_) => KeyError::WrongPassword,
                P12Error::UnpadError => {
                    KeyError::Pkcs12("cannot decrypt it (wrong password?)".into())
                }
                other => KeyError::Pkcs12(other.to_string()),
            })?;
        let key = match archive.keys.as_slice() {
            [one] => RsaKey::from_pkcs8(one.key.as_der())?,
            [] => return Err(KeyError::Pkcs12("it contains no private key".into())),
            many => {
                return Err(KeyError::Pkcs12(format!(
                    "it contains {} private keys; expected one",
                    many.len()
                )));
            }
        };
        let certs = archive
            .certs
            .iter()
            .map(|bag| bag.cert.as_der().to_vec())
            .collect();
        Self::with_chain(key, certs)
    }

    /// A PEM bundle: one private key (PKCS#1, PKCS#8, or encrypted PKCS#8 with `password`) and
    /// the certificates, in any order.
    pub fn from_pem(bytes: &[u8], password: &str) -> Result<Self, KeyError> {
        use rustls_pki_types::pem::{Error as PemError, PemObject};
        use rustls_pki_types::{CertificateDer, PrivateKeyDer};

        let certs = CertificateDer::pem_slice_iter(bytes)
            .map(|c| c.map(|c| c.to_vec()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| KeyError::Pem(e.to_string()))?;
        let key = if let Some(encrypted) = pem_block(bytes, "ENCRYPTED PRIVATE KEY")? {
            let info = pkcs8::EncryptedPrivateKeyInfoRef::try_from(encrypted.as_slice())
                .map_err(|e| KeyError::Pem(format!("encrypted private key: {e}")))?;
            let plain = info.decrypt(password).map_err(|_| {
                KeyError::Pem("cannot decrypt the private key (wrong password?)".into())
            })?;
            RsaKey::from_pkcs8(plain.as_bytes())?
        } else {
            match PrivateKeyDer::from_pem_slice(bytes) {
                Ok(PrivateKeyDer::Pkcs1(k)) => RsaKey::from_pkcs1(k.secret_pkcs1_der())?,
                Ok(PrivateKeyDer::Pkcs8(k)) => RsaKey::from_pkcs8(k.secret_pkcs8_der())?,
                Ok(_) => return Err(not_rsa()),
                Err(PemError::NoItemsFound) => {
                    return Err(KeyError::Pem("it contains no private key".into()));
                }
                Err(e) => return Err(KeyError::Pem(e.to_string())),
            }
        };
        Self::with_chain(key, certs)
    }

    /// A JSON Web Key (or a JWK set with exactly one key) holding an RSA private key and the
    /// `kid` it is registered under in Maskinporten.
    pub fn from_jwk(bytes: &[u8]) -> Result<Self, KeyError> {
        let jwk = Jwk::parse(bytes)?;
        let kid = jwk
            .kid
            .clone()
            .filter(|k| !k.trim().is_empty())
            .ok_or_else(|| {
                KeyError::Jwk("it has no `kid` (the id Maskinporten knows the key by)".into())
            })?;
        if let Some(alg) = &jwk.alg
            && !matches!(alg.as_str(), "RS256" | "RS384" | "RS512")
        {
            return Err(KeyError::Jwk(format!(
                "`alg` is {alg}; Maskinporten grants need an RSA key"
            )));
        }
        let key = RsaKey::from_pkcs1(&jwk.to_pkcs1()?)?;
        if key.public_n_e()? != (jwk.component("n")?, jwk.component("e")?) {
            return Err(KeyError::Jwk(
                "its public part (`n`, `e`) does not match its private part".into(),
            ));
        }
        Ok(SigningKey {
            key: key.encoding,
            public: key.public,
            reference: KeyReference::Kid(kid),
        })
    }

    /// Puts the certificate whose public key is `key`'s first, then its issuers as far as the
    /// file has them: Maskinporten wants the full chain, leaf first.
    fn with_chain(key: RsaKey, certs: Vec<Vec<u8>>) -> Result<Self, KeyError> {
        if certs.is_empty() {
            return Err(KeyError::Unusable(
                "the file has no certificate; Maskinporten needs the business certificate chain (or use a JWK with `kid`)"
                    .into(),
            ));
        }
        let parsed = certs
            .iter()
            .map(|der| {
                X509Certificate::from_der(der)
                    .map(|(_, c)| c)
                    .map_err(|e| KeyError::Unusable(format!("unreadable certificate: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let leaf = parsed
            .iter()
            .position(|c| c.public_key().subject_public_key.data.as_ref() == key.public.as_slice())
            .ok_or_else(|| {
                KeyError::Unusable(
                    "the private key does not belong to any certificate in the file".into(),
                )
            })?;
        let mut order = vec![leaf];
        while order.len() < MAX_CHAIN {
            let current = &parsed[order[order.len() - 1]];
            if current.subject().as_raw() == current.issuer().as_raw() {
                break;
            }
            let issuer = parsed.iter().enumerate().find(|(i, c)| {
                !order.contains(i) && c.subject().as_raw() == current.issuer().as_raw()
            });
            match issuer {
                Some((i, _)) => order.push(i),
                None => break,
            }
        }
        let info = certificate_info(&parsed[leaf])?;
        let chain = order.into_iter().map(|i| certs[i].clone()).collect();
        Ok(SigningKey {
            key: key.encoding,
            public: key.public,
            reference: KeyReference::Certificate { chain, leaf: info },
        })
    }

    /// RS256, `x5c` or `kid`, and no `typ` (Maskinporten's grant format).
    pub fn header(&self) -> Header {
        let mut header = Header::new(Algorithm::RS256);
        header.typ = None;
        match &self.reference {
            KeyReference::Certificate { chain, .. } => {
                let engine = base64::engine::general_purpose::STANDARD;
                header.x5c = Some(chain.iter().map(|der| engine.encode(der)).collect());
            }
            KeyReference::Kid(kid) => header.kid = Some(kid.clone()),
        }
        header
    }

    pub fn encoding_key(&self) -> &EncodingKey {
        &self.key
    }

    pub fn reference(&self) -> &KeyReference {
        &self.reference
    }

    pub fn certificate(&self) -> Option<&CertificateInfo> {
        match &self.reference {
            KeyReference::Certificate { leaf, .. } => Some(leaf),
            KeyReference::Kid(_) => None,
        }
    }

    /// One line for operators: the certificate subject and expiry, or the `kid`.
    pub fn describe(&self) -> String {
        match &self.reference {
            KeyReference::Certificate { chain, leaf } => format!(
                "certificate `{}` issued by `{}`, valid until {} ({} in chain)",
                leaf.subject,
                leaf.issuer,
                rfc3339(leaf.not_after),
                chain.len()
            ),
            KeyReference::Kid(kid) => format!("JWK with kid `{kid}`"),
        }
    }

    /// `None` for a JWK: it carries no validity period.
    pub fn expiry(&self, now: OffsetDateTime) -> Option<Expiry> {
        self.certificate().map(|c| c.expiry(now))
    }

    /// The start-up report: an expired (or not yet valid) certificate is an error line, one that
    /// expires within 30 days a warning.
    pub fn log_expiry(&self) {
        crate::metrics::note_certificate(self.certificate().map(|cert| cert.not_after));
        let Some(cert) = self.certificate() else {
            return;
        };
        let subject = cert.subject.as_str();
        let not_after = rfc3339(cert.not_after);
        match cert.expiry(OffsetDateTime::now_utc()) {
            Expiry::Expired => {
                tracing::error!(
                    subject,
                    not_after,
                    "the Maskinporten certificate has expired; every grant will be refused"
                )
            }
            Expiry::NotYetValid => tracing::error!(
                subject,
                not_before = rfc3339(cert.not_before),
                "the Maskinporten certificate is not valid yet; every grant will be refused"
            ),
            Expiry::ExpiresSoon { days_left } => {
                tracing::warn!(
                    subject,
                    not_after,
                    days_left,
                    "the Maskinporten certificate expires soon; renew it"
                )
            }
            Expiry::Valid { days_left } => tracing::info!(
                subject,
                not_after,
                days_left,
                "Maskinporten certificate loaded"
            ),
        }
    }
}

impl CertificateInfo {
    pub fn expiry(&self, now: OffsetDateTime) -> Expiry {
        if now < self.not_before {
            Expiry::NotYetValid
        } else if now >= self.not_after {
            Expiry::Expired
        } else {
            let left = self.not_after - now;
            if left < EXPIRY_WARNING {
                Expiry::ExpiresSoon {
                    days_left: left.whole_days(),
                }
            } else {
                Expiry::Valid {
                    days_left: left.whole_days(),
                }
            }
        }
    }
}

pub(crate) fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

fn certificate_info(cert: &X509Certificate<'_>) -> Result<CertificateInfo, KeyError> {
    let time = |t: &x509_parser::time::ASN1Time| {
        OffsetDateTime::from_unix_timestamp(t.timestamp())
            .map_err(|_| KeyError::Unusable("certificate validity is out of range".into()))
    };
    Ok(CertificateInfo {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        not_before: time(&cert.validity().not_before)?,
        not_after: time(&cert.validity().not_after)?,
    })
}

fn looks_like_pem(bytes: &[u8]) -> bool {
    bytes.windows(11).any(|w| w == b"-----BEGIN ")
}

/// The DER inside the first `-----BEGIN {label}-----` block, if there is one. (The PEM reader
/// in `rustls-pki-types` skips encrypted keys, so they are found here.)
fn pem_block(bytes: &[u8], label: &str) -> Result<Option<Vec<u8>>, KeyError> {
    let text = String::from_utf8_lossy(bytes);
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let Some(start) = text.find(&begin) else {
        return Ok(None);
    };
    let body = &text[start + begin.len()..];
    let stop = body
        .find(&end)
        .ok_or_else(|| KeyError::Pem(format!("`{begin}` has no end line")))?;
    let compact: String = body[..stop]
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(compact)
        .map(Some)
        .map_err(|_| KeyError::Pem(format!("`{label}` is not base64")))
}

fn not_rsa() -> KeyError {
    KeyError::Unusable("the private key is not RSA (Maskinporten grants are signed RS256)".into())
}

/// A checked RSA private key: signing key plus its public key (PKCS#1 `RSAPublicKey` DER, the
/// same bytes a certificate's `subjectPublicKey` holds) to match against certificates.
struct RsaKey {
    encoding: EncodingKey,
    public: Vec<u8>,
}

impl RsaKey {
    fn from_pkcs8(der: &[u8]) -> Result<Self, KeyError> {
        let info = pkcs8::PrivateKeyInfoRef::try_from(der)
            .map_err(|e| KeyError::Unusable(format!("unreadable PKCS#8 private key: {e}")))?;
        if info.algorithm.oid != RSA_ENCRYPTION {
            return Err(not_rsa());
        }
        // For rsaEncryption the PKCS#8 payload is exactly the PKCS#1 RSAPrivateKey that
        // `jsonwebtoken` (aws-lc) signs with.
        Self::from_pkcs1(info.private_key.as_bytes())
    }

    fn from_pkcs1(der: &[u8]) -> Result<Self, KeyError> {
        let pair = aws_lc_rs::signature::RsaKeyPair::from_der(der).map_err(|e| {
            match e.description_() {
                "TooSmall" => KeyError::Unusable(format!(
                    "the RSA key is too short; Maskinporten needs at least {MIN_RSA_BITS} bits"
                )),
                _ => KeyError::Unusable(format!("not a valid RSA private key ({e})")),
            }
        })?;
        let bits = pair.public_modulus_len() * 8;
        if bits < MIN_RSA_BITS {
            return Err(KeyError::Unusable(format!(
                "the RSA key has {bits} bits; Maskinporten needs at least {MIN_RSA_BITS}"
            )));
        }
        Ok(RsaKey {
            encoding: EncodingKey::from_rsa_der(der),
            public: pair.public_key().as_ref().to_vec(),
        })
    }

    /// `(n, e)` as unsigned big-endian bytes without leading zeros.
    fn public_n_e(&self) -> Result<(Vec<u8>, Vec<u8>), KeyError> {
        #[derive(der::Sequence)]
        struct RsaPublicKey<'a> {
            n: der::asn1::UintRef<'a>,
            e: der::asn1::UintRef<'a>,
        }
        use der::Decode as _;
        let key = RsaPublicKey::from_der(&self.public)
            .map_err(|e| KeyError::Unusable(format!("public key: {e}")))?;
        Ok((key.n.as_bytes().to_vec(), key.e.as_bytes().to_vec()))
    }
}

/// The RSA private JWK members (RFC 7518 §6.3).
#[derive(serde::Deserialize)]
struct Jwk {
    kty: String,
    kid: Option<String>,
    alg: Option<String>,
    #[serde(flatten)]
    members: std::collections::HashMap<String, serde_json::Value>,
}

impl Jwk {
    fn parse(bytes: &[u8]) -> Result<Self, KeyError> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum JwkOrSet {
            Set { keys: Vec<Jwk> },
            One(Jwk),
        }
        let parsed: JwkOrSet = serde_json::from_slice(bytes)
            .map_err(|e| KeyError::Jwk(format!("not a JSON Web Key ({e})")))?;
        let jwk = match parsed {
            JwkOrSet::One(jwk) => jwk,
            JwkOrSet::Set { mut keys } if keys.len() == 1 => keys.remove(0),
            JwkOrSet::Set { keys } => {
                return Err(KeyError::Jwk(format!(
                    "the key set has {} keys; expected exactly one",
                    keys.len()
                )));
            }
        };
        if jwk.kty != "RSA" {
            return Err(KeyError::Jwk(format!(
                "`kty` is {}; Maskinporten grants need an RSA key",
                jwk.kty
            )));
        }
        Ok(jwk)
    }

    /// A base64url member as unsigned big-endian bytes, leading zeros stripped.
    fn component(&self, name: &str) -> Result<Vec<u8>, KeyError> {
        let value = self
            .members
            .get(name)
            .and_then(|v| v.as_str())
            .ok_or_else(|| {
                KeyError::Jwk(format!(
                    "`{name}` is missing (a private RSA JWK needs n, e, d, p, q, dp, dq, qi)"
                ))
            })?;
        let engine = base64::engine::GeneralPurpose::new(
            &base64::alphabet::URL_SAFE,
            base64::engine::GeneralPurposeConfig::new()
                .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
        );
        let bytes = engine
            .decode(value)
            .map_err(|_| KeyError::Jwk(format!("`{name}` is not base64url")))?;
        let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
        Ok(bytes[start..].to_vec())
    }

    /// PKCS#1 `RSAPrivateKey` DER built from the JWK members.
    fn to_pkcs1(&self) -> Result<Vec<u8>, KeyError> {
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
        let parts = ["n", "e", "d", "p", "q", "dp", "dq", "qi"]
            .into_iter()
            .map(|name| self.component(name))
            .collect::<Result<Vec<_>, _>>()?;
        let uint = |i: usize| {
            der::asn1::UintRef::new(&parts[i])
                .map_err(|e| KeyError::Jwk(format!("invalid RSA component: {e}")))
        };
        let key = RsaPrivateKey {
            version: 0,
            n: uint(0)?,
            e: uint(1)?,
            d: uint(2)?,
            p: uint(3)?,
            q: uint(4)?,
            dp: uint(5)?,
            dq: uint(6)?,
            qi: uint(7)?,
        };
        der::Encode::to_der(&key).map_err(|e| KeyError::Jwk(format!("cannot encode the key: {e}")))
    }
}
