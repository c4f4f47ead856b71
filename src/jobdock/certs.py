"""A small certificate authority for mutual TLS: ``jobdock certs init`` and
``jobdock certs issue``.

Keys are ECDSA P-256 (accepted by every TLS stack Python's ssl and httpx
sit on; Ed25519 certificates are not, by browsers and some OpenSSL builds),
signed with SHA-256. A directory holds ``ca.pem``/``ca-key.pem``,
``server.pem``/``server-key.pem`` and ``NAME.pem``/``NAME-key.pem`` per
client; keys are written 0600. The client's name is its certificate's
subject common name: that is the user jobdock sees.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from jobdock.auth import check_user_name
from jobdock.errors import ConfigError

CA_DAYS = 3650
SERVER_DAYS = 825
CLIENT_DAYS = 365


@dataclass(frozen=True, slots=True)
class Pair:
    """Where a certificate and its key were written."""

    cert: Path
    key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "jobdock"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _write(pair: Pair, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> Pair:
    pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(pair.key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    return pair


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    start: dt.datetime,
    days: float,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )


def _now() -> dt.datetime:
    # A minute back, so that a clock a little behind still accepts it.
    return dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)


def init_ca(directory: Path, hosts: list[str]) -> tuple[Pair, Pair]:
    """A new CA and a server certificate for ``hosts`` (names or IP
    addresses) in ``directory``; refuses to overwrite an existing CA."""
    if not hosts:
        raise ConfigError("give at least one --host the server is reached at")
    directory.mkdir(parents=True, exist_ok=True)
    ca = Pair(directory / "ca.pem", directory / "ca-key.pem")
    if ca.cert.exists() or ca.key.exists():
        raise ConfigError(f"{directory} already holds a CA (ca.pem); use another directory")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("jobdock CA")
    ca_cert = (
        _builder(ca_name, ca_name, ca_key, _now(), CA_DAYS)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    _write(ca, ca_cert, ca_key)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (
        _leaf(
            _name(hosts[0]),
            ca_cert,
            server_key,
            _now(),
            SERVER_DAYS,
            ExtendedKeyUsageOID.SERVER_AUTH,
        )
        .add_extension(x509.SubjectAlternativeName([_san(host) for host in hosts]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return ca, _write(
        Pair(directory / "server.pem", directory / "server-key.pem"), server_cert, server_key
    )


def issue_client(
    directory: Path,
    name: str,
    *,
    days: float = CLIENT_DAYS,
    not_before: dt.datetime | None = None,
) -> Pair:
    """A client certificate for user ``name``, signed by the CA in ``directory``."""
    try:
        check_user_name(name)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    ca_cert, ca_key = _load_ca(directory)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _leaf(
        _name(name), ca_cert, key, not_before or _now(), days, ExtendedKeyUsageOID.CLIENT_AUTH
    ).sign(ca_key, hashes.SHA256())
    return _write(Pair(directory / f"{name}.pem", directory / f"{name}-key.pem"), cert, key)


def _leaf(
    subject: x509.Name,
    ca_cert: x509.Certificate,
    key: ec.EllipticCurvePrivateKey,
    start: dt.datetime,
    days: float,
    usage: x509.ObjectIdentifier,
) -> x509.CertificateBuilder:
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return (
        _builder(subject, ca_cert.subject, key, start, days)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
    )


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _load_ca(directory: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    try:
        cert = x509.load_pem_x509_certificate((directory / "ca.pem").read_bytes())
        key = serialization.load_pem_private_key(
            (directory / "ca-key.pem").read_bytes(), password=None
        )
    except FileNotFoundError:
        raise ConfigError(
            f"no CA in {directory} (create one with `jobdock certs init {directory}`)"
        ) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigError(f"{directory / 'ca-key.pem'} is not an ECDSA key")
    return cert, key
