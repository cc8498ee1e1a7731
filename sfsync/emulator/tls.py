"""Key material the emulator keeps in its state dir, made on first start.

* a private CA (``ca.pem``) that clients trust (``ca_bundle`` in connection.json);
* the HTTPS server certificate it signs (``server.pem``/``server-key.pem``) for
  ``localhost``, ``127.0.0.1`` and ``::1``, because simple-salesforce only speaks https;
* the connected app's JWT signing key (``jwt-key.pem``) and certificate (``jwt-cert.pem``):
  the token endpoint verifies RS256 assertions against the certificate.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class TlsFiles:
    """Paths of the emulator's key material."""

    ca_cert: Path
    server_cert: Path
    server_key: Path
    jwt_key: Path
    jwt_cert: Path


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _write_key(path: Path, key: rsa.RSAPrivateKey) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "sfsync emulator"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _builder(subject: x509.Name, issuer: x509.Name, public_key: rsa.RSAPublicKey, years: int) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=365 * years))
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False))


def make_jwt_keypair(common_name: str = "sfsync emulator connected app") -> tuple[bytes, bytes]:
    """A fresh RSA key and self-signed certificate (PEM) for the JWT bearer flow."""
    key = _key()
    cert = _builder(_name(common_name), _name(common_name), key.public_key(), 10).sign(key, hashes.SHA256())
    pem_key = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return pem_key, cert.public_bytes(serialization.Encoding.PEM)


def ensure_tls(state_dir: Path) -> TlsFiles:
    """Create whatever key material is missing under ``state_dir/tls`` and return the paths."""
    base = Path(state_dir) / "tls"
    base.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(base / "ca.pem", base / "server.pem", base / "server-key.pem", base / "jwt-key.pem",
                     base / "jwt-cert.pem")
    if not (files.ca_cert.exists() and files.server_cert.exists() and files.server_key.exists()):
        ca_key = _key()
        ca_name = _name("sfsync emulator local CA")
        ca_cert = (_builder(ca_name, ca_name, ca_key.public_key(), 10)
                   .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                   .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                                crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
                   .sign(ca_key, hashes.SHA256()))
        server_key = _key()
        san = x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(ipaddress.ip_address("::1")),
        ])
        server_cert = (_builder(_name("localhost"), ca_name, server_key.public_key(), 5)
                       .add_extension(san, critical=False)
                       .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                       .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                       .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                                      critical=False)
                       .sign(ca_key, hashes.SHA256()))
        files.ca_cert.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
        files.server_cert.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
        _write_key(files.server_key, server_key)
    if not (files.jwt_key.exists() and files.jwt_cert.exists()):
        pem_key, pem_cert = make_jwt_keypair()
        files.jwt_key.write_bytes(pem_key)
        files.jwt_key.chmod(0o600)
        files.jwt_cert.write_bytes(pem_cert)
    return files
