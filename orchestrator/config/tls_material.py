"""Read and check the TLS certificate, key and CA bundle a deployment points at."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import os
import re
import ssl
import stat
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from orchestrator.config.files import CA_BUNDLE_LIMIT, TLS_FILE_LIMIT, FileReadError, read_bounded
from orchestrator.config.model import TlsTransport

EXPIRY_WARNING_DAYS = 21
#: Most PBKDF2 / PKCS#12 iterations an encrypted key may ask for (OpenSSL writes 2048; 5 million take seconds).
MAX_KDF_ITERATIONS = 5_000_000
#: Most memory (128·N·r bytes) and work (times p) an scrypt-encrypted key may ask for.
MAX_SCRYPT_MEMORY = 256 * 1024 * 1024
MAX_SCRYPT_WORK = 1024 * 1024 * 1024


class TlsMaterialError(Exception):
    """A TLS file is missing or unusable; ``setting`` names the deployment key it came from."""

    def __init__(self, setting: str, message: str):
        super().__init__(message)
        self.setting = setting
        self.message = message


@dataclass(frozen=True)
class TlsMaterial:
    """The PEM texts FreeSWITCH needs, plus facts about the certificate for warnings."""

    certificate_pem: bytes
    private_key_pem: bytes
    ca_pem: bytes | None
    not_after: dt.datetime
    warnings: tuple[tuple[str, str], ...] = field(default=())

    @property
    def agent_pem(self) -> bytes:
        """Certificate chain followed by the key: the ``agent.pem`` sofia-sip loads."""
        return _ensure_newline(self.certificate_pem) + _ensure_newline(self.private_key_pem)


def _ensure_newline(data: bytes) -> bytes:
    return data if data.endswith(b"\n") else data + b"\n"


def resolve(base_dir: Path, value: str) -> Path:
    """A path from the deployment file, relative to that file's directory."""
    path = Path(os.path.expanduser(value))
    return path if path.is_absolute() else base_dir / path


def _read(base_dir: Path, setting: str, value: str) -> tuple[Path, bytes]:
    path = resolve(base_dir, value)
    limit = CA_BUNDLE_LIMIT if setting == "ca_bundle" else TLS_FILE_LIMIT
    try:
        return path, read_bounded(path, limit)
    except FileReadError as exc:
        raise TlsMaterialError(setting, f"cannot read {exc}") from None


# -- the cost of decrypting a key, read before asking OpenSSL to decrypt it ---------------------------
_ENCRYPTED_PEM = re.compile(rb"-----BEGIN ENCRYPTED PRIVATE KEY-----(.*?)-----END ENCRYPTED PRIVATE KEY-----", re.S)
_PBES2 = bytes.fromhex("2a864886f70d01050d")
_PBKDF2 = bytes.fromhex("2a864886f70d01050c")
_SCRYPT = bytes.fromhex("2b06010401da47040b")
_SEQUENCE, _INTEGER, _OID = 0x30, 0x02, 0x06


def _der(data: bytes) -> list[tuple[int, bytes]]:
    """The (tag, content) elements of a DER sequence's contents; ValueError when malformed."""
    out, i = [], 0
    while i < len(data):
        if i + 2 > len(data):
            raise ValueError("truncated")
        tag, length = data[i], data[i + 1]
        i += 2
        if length & 0x80:
            n = length & 0x7F
            if not 0 < n <= 4 or i + n > len(data):
                raise ValueError("bad length")
            length = int.from_bytes(data[i : i + n], "big")
            i += n
        if i + length > len(data):
            raise ValueError("truncated")
        out.append((tag, data[i : i + length]))
        i += length
    return out


def _int(element: tuple[int, bytes]) -> int:
    if element[0] != _INTEGER:
        raise ValueError("not an integer")
    return int.from_bytes(element[1], "big", signed=True)


def _kdf_problem(der: bytes) -> str | None:
    """Why decrypting a PKCS#8 ``EncryptedPrivateKeyInfo`` would take too long, or None."""
    [(tag, info)] = _der(der)
    algorithm = _der(_der(info)[0][1])
    if tag != _SEQUENCE or algorithm[0][0] != _OID or len(algorithm) < 2:
        raise ValueError("not an EncryptedPrivateKeyInfo")
    oid, params = algorithm[0][1], _der(algorithm[1][1])
    if oid != _PBES2:  # PKCS#5 v1.5 and PKCS#12 schemes: SEQUENCE { salt, iterations }
        iterations = _int(params[1])
    else:
        kdf = _der(params[0][1])
        kdf_oid, kdf_params = kdf[0][1], _der(kdf[1][1])
        if kdf_oid == _SCRYPT:
            n, r, p = (_int(e) for e in kdf_params[1:4])
            memory = 128 * n * r
            if memory > MAX_SCRYPT_MEMORY or memory * p > MAX_SCRYPT_WORK:
                return f"the key's scrypt parameters (N={n}, r={r}, p={p}) need too much memory and time to decrypt"
            return None
        if kdf_oid != _PBKDF2:
            return None  # OpenSSL refuses what it does not know, at once
        iterations = _int(kdf_params[1])
    if iterations > MAX_KDF_ITERATIONS:
        return (
            f"the key is encrypted with {iterations:,} key-derivation iterations: decrypting it would take too long "
            f"(at most {MAX_KDF_ITERATIONS:,}; re-encrypt it, e.g. openssl pkcs8 -topk8 -v2 aes-256-cbc)"
        )
    return None


def _check_kdf_cost(pem: bytes) -> None:
    for match in _ENCRYPTED_PEM.finditer(pem):
        try:
            problem = _kdf_problem(base64.b64decode(b"".join(match.group(1).split()), validate=True))
        except (ValueError, IndexError, binascii.Error):
            continue  # malformed: OpenSSL will say so
        if problem:
            raise TlsMaterialError("private_key", problem)


def load(tls: TlsTransport, base_dir: Path, now: dt.datetime | None = None) -> TlsMaterial:
    """Load and cross-check the TLS files; raise :class:`TlsMaterialError` naming the bad setting."""
    now = now or dt.datetime.now(dt.UTC)
    warnings: list[tuple[str, str]] = []
    if not tls.certificate:
        raise TlsMaterialError("certificate", "the TLS transport needs a certificate (PEM chain, leaf first)")
    if not tls.private_key:
        raise TlsMaterialError("private_key", "the TLS transport needs the certificate's private key (PEM)")

    _, cert_pem = _read(base_dir, "certificate", tls.certificate)
    try:
        chain = x509.load_pem_x509_certificates(cert_pem)
    except ValueError:
        raise TlsMaterialError(
            "certificate", "not a PEM certificate (expected '-----BEGIN CERTIFICATE-----')"
        ) from None
    leaf = chain[0]

    key_path, key_pem = _read(base_dir, "private_key", tls.private_key)
    password = tls.private_key_passphrase.get_secret_value().encode() if tls.private_key_passphrase else None
    if password is not None:
        _check_kdf_cost(key_pem)
    try:
        key = serialization.load_pem_private_key(key_pem, password=password)
    except TypeError:
        raise TlsMaterialError(
            "private_key",
            "the key is encrypted: set private_key_passphrase"
            if password is None
            else "the key is not encrypted: remove private_key_passphrase",
        ) from None
    except ValueError:
        raise TlsMaterialError("private_key", "not a readable PEM private key (or wrong passphrase)") from None
    pub = serialization.PublicFormat.SubjectPublicKeyInfo
    enc = serialization.Encoding.DER
    if key.public_key().public_bytes(enc, pub) != leaf.public_key().public_bytes(enc, pub):
        raise TlsMaterialError("private_key", "this key does not belong to the certificate")
    try:
        if key_path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            warnings.append(("private_key", f"{key_path} is readable by other users: chmod 600 it"))
    except OSError:  # pragma: no cover - file vanished between reads
        pass

    not_after = leaf.not_valid_after_utc
    if not_after <= now:
        raise TlsMaterialError("certificate", f"the certificate expired on {not_after:%Y-%m-%d}")
    if leaf.not_valid_before_utc > now:
        raise TlsMaterialError(
            "certificate", f"the certificate is not valid before {leaf.not_valid_before_utc:%Y-%m-%d}"
        )
    if not_after - now < dt.timedelta(days=EXPIRY_WARNING_DAYS):
        warnings.append(("certificate", f"the certificate expires on {not_after:%Y-%m-%d}: renew it"))

    ca_pem = None
    if tls.ca_bundle:
        _, ca_pem = _read(base_dir, "ca_bundle", tls.ca_bundle)
        try:
            x509.load_pem_x509_certificates(ca_pem)
        except ValueError:
            raise TlsMaterialError("ca_bundle", "no PEM certificates found in the CA bundle") from None
    elif tls.verify_peer != "none":
        raise TlsMaterialError(
            "ca_bundle", f"verify_peer is '{tls.verify_peer}', which needs a ca_bundle of trusted CA certificates"
        )
    return TlsMaterial(cert_pem, key_pem, ca_pem, not_after, tuple(warnings))


def check_ciphers(ciphers: list[str]) -> list[tuple[int, str]]:
    """Problems with a cipher list as ``(index, message)``: unknown names and suites that are not modern.

    Modern means TLS 1.2 suites with forward-secret key exchange (ECDHE/DHE) and an AEAD cipher.
    OpenSSL itself (through :mod:`ssl`) decides what each name expands to.
    """
    problems = []
    for i, name in enumerate(ciphers):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            ctx.set_ciphers(name)
        except ssl.SSLError:
            if name.startswith("TLS_"):
                problems.append((i, f"'{name}' is a TLS 1.3 suite: those are always on; list TLS 1.2 suites here"))
            else:
                problems.append((i, f"'{name}' is not a cipher suite OpenSSL knows"))
            continue
        weak = sorted(
            {
                c["name"]
                for c in ctx.get_ciphers()
                if c["protocol"] != "TLSv1.3" and (not c["aead"] or c["kea"] not in ("kx-ecdhe", "kx-dhe"))
            }
        )
        if weak:
            shown = ", ".join(weak[:4]) + (" …" if len(weak) > 4 else "")
            problems.append((i, f"'{name}' allows suites that are not modern (need ECDHE/DHE with AEAD): {shown}"))
    return problems
