"""Makes the test-only key fixtures in this directory (no real keys; never use them).

Run from this directory with Python's `cryptography` package (tested with 48.0):
    python3 make_pkcs12_fixtures.py
Then, for the classic legacy format (certificates RC2-40, key 3DES, SHA-1 MAC) that
Windows and OpenSSL 1.x write, with the OpenSSL 3 command line:
    openssl pkcs12 -export -legacy -inkey test-only-legacy-key.pem -in test-only-legacy-cert.pem \
        -name test-only -passout pass:test-only-password -out test-only-rc2-3des.p12
    rm test-only-legacy-key.pem

They are independent of the Rust PKCS#12 code under test (the tests also generate modern and
legacy archives with p12-keystore's writer; these files guard against a reader and writer that
share a mistake).
"""
import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

PASSWORD = b"test-only-password"


def self_signed(cn, key_size=2048):
    key = rsa.generate_private_key(public_exponent=65537, key_size=key_size)
    name = x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "NO"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "altinn-aos test fixture"),
        x509.NameAttribute(NameOID.COMMON_NAME, cn),
    ])
    now = datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=365 * 100))
        .sign(key, hashes.SHA256())
    )
    return key, cert


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)


# 3DES keys and certificates, SHA-1 MAC: what cryptography calls the "legacy" PKCS#12.
key, cert = self_signed("test-only 3des")
enc = (
    serialization.PrivateFormat.PKCS12.encryption_builder()
    .kdf_rounds(2048)
    .key_cert_algorithm(pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC)
    .hmac_hash(hashes.SHA1())
    .build(PASSWORD)
)
write("test-only-3des.p12", pkcs12.serialize_key_and_certificates(b"test-only", key, cert, None, enc))

# AES-256/PBES2 with the same kind of key: the modern format.
key, cert = self_signed("test-only aes")
enc = (
    serialization.PrivateFormat.PKCS12.encryption_builder()
    .kdf_rounds(2048)
    .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
    .hmac_hash(hashes.SHA256())
    .build(PASSWORD)
)
write("test-only-aes.p12", pkcs12.serialize_key_and_certificates(b"test-only", key, cert, None, enc))

# No password at all, as a Key Vault secret may hold it.
key, cert = self_signed("test-only no password")
write(
    "test-only-no-password.p12",
    pkcs12.serialize_key_and_certificates(b"test-only", key, cert, None, serialization.NoEncryption()),
)

# PEM bundle with an encrypted PKCS#8 key (PBES2), which needs the certificate password.
key, cert = self_signed("test-only encrypted pem")
write(
    "test-only-encrypted-key.pem",
    cert.public_bytes(serialization.Encoding.PEM)
    + key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(PASSWORD)
    ),
)

# A 1024-bit key, which Maskinporten refuses (PKCS#1 "RSA PRIVATE KEY" PEM).
key, cert = self_signed("test-only rsa1024", key_size=1024)
write(
    "test-only-rsa1024.pem",
    key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption())
    + cert.public_bytes(serialization.Encoding.PEM),
)

# Input for the openssl -legacy (RC2-40 + 3DES) file; the key file is deleted afterwards.
key, cert = self_signed("test-only rc2")
write(
    "test-only-legacy-key.pem",
    key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
)
write("test-only-legacy-cert.pem", cert.public_bytes(serialization.Encoding.PEM))
