"""Certificates for the Security Whitepaper, with the `cryptography` package: PEM chains, chain and
signature checks, the CA certificate store, the charge point's key pair and CSR.

Imported only when a certificate is handled, so a charger on security profile 0 or 1 never loads
`cryptography` (about 9 MB of resident memory on a small board).
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import logging
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from cryptography.x509.oid import NameOID

from agent.security.events import CertificateUse, SecurityError
from agent.security.files import write_secret

LOGGER = logging.getLogger(__name__)


def load_pem_chain(text: str | bytes) -> list[x509.Certificate]:
    """Every certificate in a PEM text, in order; SecurityError when there is none or one is damaged."""
    data = text.encode() if isinstance(text, str) else text
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as err:
        raise SecurityError(f"not a PEM certificate: {err}") from err
    if not certs:
        raise SecurityError("no certificate in the PEM text")
    return certs


def _der_length(data: bytes, pos: int) -> tuple[int, int]:
    first = data[pos]
    if first < 0x80:
        return first, pos + 1
    count = first & 0x7F
    return int.from_bytes(data[pos + 1:pos + 1 + count], "big"), pos + 1 + count


def public_key_bits(key: Any) -> bytes:
    """The subjectPublicKey BIT STRING contents of a public key (what issuerKeyHash is computed over)."""
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    # SubjectPublicKeyInfo ::= SEQUENCE { algorithm AlgorithmIdentifier, subjectPublicKey BIT STRING }
    _, pos = _der_length(der, 1)
    alg_len, alg_start = _der_length(der, pos + 1)
    pos = alg_start + alg_len
    bits_len, bits_start = _der_length(der, pos + 1)
    return der[bits_start + 1:bits_start + bits_len]  # the first byte counts unused bits


@dataclass(frozen=True)
class CertificateHash:
    """1.6 CertificateHashDataType (SHA256)."""

    issuer_name_hash: str
    issuer_key_hash: str
    serial_number: str
    hash_algorithm: str = "SHA256"

    def to_ocpp(self) -> dict[str, str]:
        """The camelCase dict."""
        return {"hashAlgorithm": self.hash_algorithm, "issuerNameHash": self.issuer_name_hash,
                "issuerKeyHash": self.issuer_key_hash, "serialNumber": self.serial_number}

    def matches(self, other: dict[str, Any]) -> bool:
        """Whether an OCPP certificateHashData (camelCase) names this certificate."""
        try:
            serial = int(str(other.get("serialNumber", "")), 16)
        except ValueError:
            return False
        return (str(other.get("hashAlgorithm")) == self.hash_algorithm
                and str(other.get("issuerNameHash", "")).lower() == self.issuer_name_hash
                and str(other.get("issuerKeyHash", "")).lower() == self.issuer_key_hash
                and serial == int(self.serial_number, 16))


def certificate_hash(cert: x509.Certificate, issuer: x509.Certificate | None = None) -> CertificateHash:
    """The hash data of cert; a root (or a cert whose issuer is unknown) uses its own key."""
    key = (issuer or cert).public_key()
    return CertificateHash(
        issuer_name_hash=hashlib.sha256(cert.issuer.public_bytes()).hexdigest(),
        issuer_key_hash=hashlib.sha256(public_key_bits(key)).hexdigest(),
        serial_number=format(cert.serial_number, "x"),
    )


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
        return True
    except (ValueError, TypeError, InvalidSignature):
        return False


def verify_chain(chain: list[x509.Certificate], roots: list[x509.Certificate], now: float | None = None) -> None:
    """Check a chain (leaf first): dates, each link's signature, and the top issued by one of the roots."""
    if not chain:
        raise SecurityError("empty certificate chain")
    moment = datetime.fromtimestamp(now if now is not None else time.time(), UTC)
    for cert in chain:
        if not cert.not_valid_before_utc <= moment <= cert.not_valid_after_utc:
            raise SecurityError(f"certificate {cert.subject.rfc4514_string()} is not valid now "
                                f"({cert.not_valid_before_utc:%Y-%m-%d} to {cert.not_valid_after_utc:%Y-%m-%d})")
    for child, parent in itertools.pairwise(chain):
        if not _issued_by(child, parent):
            raise SecurityError(f"{child.subject.rfc4514_string()} is not signed by "
                                f"{parent.subject.rfc4514_string()}")
    top = chain[-1]
    for root in roots:
        if top == root or _issued_by(top, root):
            moment_ok = root.not_valid_before_utc <= moment <= root.not_valid_after_utc
            if moment_ok:
                return
    raise SecurityError(f"{top.issuer.rfc4514_string()} is not an installed root certificate")


def verify_firmware_signature(path: Path, signing_certificate: x509.Certificate, signature_b64: str) -> None:
    """Check the base64 signature over SHA-256 of the file with the signing certificate's key (RSA or ECDSA)."""
    try:
        signature = base64.b64decode(signature_b64, validate=True)
    except ValueError as err:
        raise SecurityError(f"the signature is not base64: {err}") from err
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 16):
            digest.update(chunk)
    key = signing_certificate.public_key()
    prehashed = utils.Prehashed(hashes.SHA256())
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, digest.digest(), padding.PKCS1v15(), prehashed)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, digest.digest(), ec.ECDSA(prehashed))
        else:
            raise SecurityError(f"unsupported signing key type {type(key).__name__}")
    except InvalidSignature as err:
        raise SecurityError(f"the signature over {path.name} does not match its signing certificate") from err


class CertificateStore:
    """CA certificates installed over OCPP and the charge point's own key and certificate chain."""

    def __init__(self, directory: Path, max_count: int = 20) -> None:
        self.directory = directory
        self.max_count = max_count
        self.cp_dir = directory / "cp"

    def _use_dir(self, use: CertificateUse) -> Path:
        return self.directory / use.value

    def installed(self, use: CertificateUse) -> list[x509.Certificate]:
        """The installed CA certificates of one use."""
        out: list[x509.Certificate] = []
        folder = self._use_dir(use)
        for path in sorted(folder.glob("*.pem")) if folder.is_dir() else []:
            try:
                out.extend(load_pem_chain(path.read_bytes()))
            except (OSError, SecurityError) as err:
                LOGGER.warning("ignoring installed certificate %s: %s", path, err)
        return out

    def count(self) -> int:
        """How many CA certificates are installed."""
        return sum(len(self.installed(use)) for use in CertificateUse)

    def _hash(self, cert: x509.Certificate) -> CertificateHash:
        issuer = None
        if cert.issuer != cert.subject:
            issuer = next((c for use in CertificateUse for c in self.installed(use)
                           if c.subject == cert.issuer and _issued_by(cert, c)), None)
        return certificate_hash(cert, issuer)

    def install(self, use: CertificateUse, pem: str) -> str:
        """InstallCertificate: Accepted, Rejected (store full, not a CA) or Failed (unreadable)."""
        try:
            certs = load_pem_chain(pem)
        except SecurityError as err:
            LOGGER.warning("InstallCertificate %s failed: %s", use.value, err)
            return "Failed"
        cert = certs[0]
        try:
            is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        except x509.ExtensionNotFound:
            is_ca = cert.issuer == cert.subject
        if not is_ca:
            LOGGER.warning("InstallCertificate %s refused: %s is not a CA certificate", use.value,
                           cert.subject.rfc4514_string())
            return "Rejected"
        moment = datetime.now(UTC)
        if not cert.not_valid_before_utc <= moment <= cert.not_valid_after_utc:
            LOGGER.warning("InstallCertificate %s refused: %s is expired or not yet valid", use.value,
                           cert.subject.rfc4514_string())
            return "Rejected"
        name = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()[:32] + ".pem"
        target = self._use_dir(use) / name
        if not target.exists() and self.count() >= self.max_count:
            return "Rejected"  # CertificateStoreMaxLength
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        tmp.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        tmp.replace(target)
        LOGGER.info("installed %s %s", use.value, cert.subject.rfc4514_string())
        return "Accepted"

    def hashes(self, uses: list[CertificateUse]) -> list[CertificateHash]:
        """GetInstalledCertificateIds."""
        return [self._hash(cert) for use in uses for cert in self.installed(use)]

    def delete(self, hash_data: dict[str, Any]) -> str:
        """DeleteCertificate: Accepted, NotFound, or Failed (the file could not be removed)."""
        for use in CertificateUse:
            folder = self._use_dir(use)
            for path in sorted(folder.glob("*.pem")) if folder.is_dir() else []:
                try:
                    cert = load_pem_chain(path.read_bytes())[0]
                except (OSError, SecurityError):
                    continue
                if self._hash(cert).matches(hash_data):
                    try:
                        path.unlink()
                    except OSError as err:
                        LOGGER.error("cannot delete %s: %s", path, err)
                        return "Failed"
                    LOGGER.info("deleted %s %s", use.value, cert.subject.rfc4514_string())
                    return "Accepted"
        return "NotFound"

    def roots_pem(self, use: CertificateUse) -> str:
        """The installed certificates of one use as one PEM text."""
        return "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in self.installed(use))

    # ---- the charge point certificate ------------------------------------------------------------

    def generate_csr(self, common_name: str, organization: str | None) -> str:
        """A new EC P-256 key pair (kept here, mode 0600) and its CSR in PEM."""
        key = ec.generate_private_key(ec.SECP256R1())
        write_secret(self.cp_dir / "pending-key.pem", key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        names = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
        if organization:
            names.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
        csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(names)).sign(key, hashes.SHA256())
        return csr.public_bytes(serialization.Encoding.PEM).decode()

    def _pending_key(self) -> Any:
        path = self.cp_dir / "pending-key.pem"
        try:
            return serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (OSError, ValueError) as err:
            raise SecurityError("no key pair is waiting for a certificate (send SignCertificate first)") from err

    def accept_signed_chain(self, pem: str, roots: list[x509.Certificate]) -> None:
        """CertificateSigned: the leaf must carry our pending key and the chain lead to a trusted root."""
        chain = load_pem_chain(pem)
        key = self._pending_key()
        ours = public_key_bits(key.public_key())
        if public_key_bits(chain[0].public_key()) != ours:
            raise SecurityError("the certificate does not carry this charge point's public key")
        verify_chain(chain, roots)
        self.cp_dir.mkdir(parents=True, exist_ok=True)
        (self.cp_dir / "chain.tmp").write_text(pem if pem.endswith("\n") else pem + "\n")
        os.replace(self.cp_dir / "pending-key.pem", self.cp_dir / "key.pem")
        os.replace(self.cp_dir / "chain.tmp", self.cp_dir / "chain.pem")
        LOGGER.info("charge point certificate %s installed (valid until %s)",
                    chain[0].subject.rfc4514_string(), chain[0].not_valid_after_utc.isoformat())

    def client_certificate(self) -> tuple[Path, Path] | None:
        """(chain, key) installed with CertificateSigned while the leaf is valid, else None."""
        chain, key = self.cp_dir / "chain.pem", self.cp_dir / "key.pem"
        if not (chain.exists() and key.exists()):
            return None
        try:
            leaf = load_pem_chain(chain.read_bytes())[0]
        except (OSError, SecurityError):
            return None
        moment = datetime.now(UTC)
        return (chain, key) if leaf.not_valid_before_utc <= moment <= leaf.not_valid_after_utc else None
