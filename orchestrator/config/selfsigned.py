"""A private CA and a server certificate for labs and tests (never for production trunks)."""

from __future__ import annotations

import datetime as dt
import errno
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from orchestrator.config.types import is_hostname, quote


@dataclass(frozen=True)
class GeneratedFiles:
    """Paths written by :func:`generate`."""

    ca_certificate: Path
    certificate: Path
    private_key: Path


def _write(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(path, mode)


def generate(
    out: Path, names: Sequence[str], ips: Sequence[str] = (), days: int = 365, force: bool = False
) -> GeneratedFiles:
    """Write ``ca.crt``, ``<name>.crt`` (leaf + CA) and ``<name>.key`` (mode 0600) into ``out``."""
    if not names:
        raise ValueError("give at least one DNS name")
    for name in names:
        if not is_hostname(name):
            raise ValueError(f"--name {quote(name)} is not a DNS name (letters, digits, '-' and '.')")
    addresses = []
    for ip in ips:
        try:
            if "%" in ip:
                raise ValueError("zone id")
            addresses.append(ipaddress.ip_address(ip))
        except ValueError:
            raise ValueError(f"--ip {quote(ip)} is not an IP address") from None
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "not a directory", str(out))
    out.mkdir(parents=True, exist_ok=True)
    files = GeneratedFiles(out / "ca.crt", out / f"{names[0]}.crt", out / f"{names[0]}.key")
    existing = [p for p in (files.ca_certificate, files.certificate, files.private_key) if p.exists()]
    if existing and not force:
        raise FileExistsError(", ".join(str(p) for p in existing))

    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"sipagent test CA ({names[0]})")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=days + 1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    alt: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
    alt += [x509.IPAddress(ip) for ip in addresses]
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    _write(files.ca_certificate, ca.public_bytes(pem), 0o644)
    _write(files.certificate, leaf.public_bytes(pem) + ca.public_bytes(pem), 0o644)
    _write(
        files.private_key,
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
        0o600,
    )
    return files
