"""A local public-key infrastructure for the servers: one CA, TLS certificates, signing keys.

``qnet pki init`` uses this to give a new user a working mutual-TLS setup in one command:

- a CA (ECDSA P-256, self-signed, 10 years);
- one TLS certificate per KME, valid as a server (SAN ``localhost`` and ``127.0.0.1``) and as a
  client (KM-to-KM calls), its subject CN the KME_ID;
- one TLS client certificate per SAE, its subject CN the SAE_ID: the KME takes the caller's SAE_ID
  from this and from nothing else (ETSI GS QKD 014 sec. 4.3);
- every certificate's subject OU is its role (:data:`~qnet.security.names.ROLES`: ``kme``, ``sae``,
  ``controller``, ``operator``, ``monitor``), set by the CA: the servers grant rights by role and name together,
  never by a name alone (an SAE named like a node or ``operator`` gets neither's rights), and a
  certificate without a role is refused;
- one ML-DSA-65 (FIPS 204) key pair per KME, which signs every KM-to-KM message.

Everything is ``cryptography``; private keys are written with mode 0600. An operator with their own
CA only needs to put its files at the same paths, with each certificate's role in its subject OU.
Names are checked (:func:`~qnet.security.names.check_name`) before they become file names.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, mldsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from qnet.security.names import ROLES, check_name

__all__ = ["PKI", "CertPaths", "certificate_role", "load_signing_key", "load_verify_key", "subject_cn",
           "subject_role"]

_VALID = dt.timedelta(days=3650)


@dataclass(frozen=True)
class CertPaths:
    """Where one identity's certificate and private key are."""

    cert: Path
    key: Path


def _name(common_name: str, role: str | None = None) -> x509.Name:
    unit = [x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role)] if role else []
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "qnet"), *unit])


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey | mldsa.MLDSA65PrivateKey) -> None:
    data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


class PKI:
    """A CA kept in ``root``: ``ca.pem``/``ca.key``, and the identities it issued under it."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @property
    def ca_cert(self) -> Path:
        """The CA certificate every party trusts."""
        return self.root / "ca.pem"

    def paths(self, kind: str, name: str) -> CertPaths:
        """Where identity ``name`` of ``kind`` (a role: "kme", "sae", "controller", "operator",
        "monitor") lives.

        Raises:
            ValueError: for a kind that is not a role, or a name that is not a safe identity name (a
                KME or an SAE named like a role is refused too).
        """
        if kind not in ROLES:
            raise ValueError(f"unknown kind of identity {kind!r} (known: {', '.join(ROLES)})")
        check_name(name, f"{kind} name", reserved=kind in ("kme", "sae"))
        return CertPaths(self.root / kind / f"{name}.pem", self.root / kind / f"{name}.key")

    def signing_key_path(self, kme_id: str) -> Path:
        """The KME's ML-DSA-65 private key (PEM, PKCS#8); its public key sits beside it (.pub)."""
        return self.root / "kme" / f"{check_name(kme_id, 'KME_ID')}.mldsa.key"

    def create_ca(self) -> None:
        """Make the CA (refusing to overwrite one)."""
        if self.ca_cert.exists():
            raise FileExistsError(f"{self.ca_cert} exists: this directory already holds a CA")
        self.root.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        cert = (x509.CertificateBuilder().subject_name(_name("qnet local CA")).issuer_name(_name("qnet local CA"))
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + _VALID)
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                             data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                             crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
                .sign(key, hashes.SHA256()))
        _write_key(self.root / "ca.key", key)
        self.ca_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, kind: str, name: str) -> CertPaths:
        """Issue a certificate with subject CN ``name`` and OU ``kind`` (its role): KMEs and the
        controller get server and client use, SAEs and operators client use; KMEs also get an
        ML-DSA-65 signing pair.

        Raises:
            ValueError: as :meth:`paths`, before anything is written.
        """
        paths = self.paths(kind, name)
        ca_key = serialization.load_pem_private_key((self.root / "ca.key").read_bytes(), None)
        ca = x509.load_pem_x509_certificate(self.ca_cert.read_bytes())
        assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        server = kind in ("kme", "controller")
        usages = [ExtendedKeyUsageOID.CLIENT_AUTH] + ([ExtendedKeyUsageOID.SERVER_AUTH] if server else [])
        builder = (x509.CertificateBuilder().subject_name(_name(name, kind)).issuer_name(ca.subject)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + _VALID)
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.ExtendedKeyUsage(usages), critical=False))
        if server:
            builder = builder.add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        paths.cert.parent.mkdir(parents=True, exist_ok=True)
        _write_key(paths.key, key)
        paths.cert.write_bytes(builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
        if kind == "kme":
            self._signing_pair(name)
        return paths

    def _signing_pair(self, kme_id: str) -> None:
        key = mldsa.MLDSA65PrivateKey.generate()
        path = self.signing_key_path(kme_id)
        _write_key(path, key)
        path.with_suffix(".pub").write_bytes(key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))


def load_signing_key(path: Path) -> mldsa.MLDSA65PrivateKey:
    """An ML-DSA-65 private key from PEM.

    Raises:
        ValueError: if the file holds another kind of key.
    """
    key = serialization.load_pem_private_key(Path(path).read_bytes(), None)
    if not isinstance(key, mldsa.MLDSA65PrivateKey):
        raise ValueError(f"{path}: not an ML-DSA-65 private key")
    return key


def load_verify_key(path: Path) -> mldsa.MLDSA65PublicKey:
    """An ML-DSA-65 public key from PEM.

    Raises:
        ValueError: if the file holds another kind of key.
    """
    key = serialization.load_pem_public_key(Path(path).read_bytes())
    if not isinstance(key, mldsa.MLDSA65PublicKey):
        raise ValueError(f"{path}: not an ML-DSA-65 public key")
    return key


def certificate_role(path: Path) -> str | None:
    """The role (subject OU) of the PEM certificate at ``path``; None if it names none of
    :data:`~qnet.security.names.ROLES` (a certificate from before roles, or another CA's)."""
    cert = x509.load_pem_x509_certificate(Path(path).read_bytes())
    units = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)]
    return units[0] if len(units) == 1 and units[0] in ROLES else None


def _subject(peercert: dict[str, object] | None, attribute: str) -> list[str]:
    return [str(value) for rdn in (peercert or {}).get("subject", ())  # type: ignore[attr-defined]
            for attr, value in rdn if attr == attribute]


def subject_cn(peercert: dict[str, object] | None) -> str | None:
    """The subject CN of a peer certificate as ``ssl.SSLSocket.getpeercert()`` returns it."""
    names = _subject(peercert, "commonName")
    return names[0] if names else None


def subject_role(peercert: dict[str, object] | None) -> str | None:
    """The role (subject OU, one of :data:`~qnet.security.names.ROLES`) of a peer certificate as
    ``getpeercert()`` returns it; None when it has none, another, or more than one OU."""
    units = _subject(peercert, "organizationalUnitName")
    return units[0] if len(units) == 1 and units[0] in ROLES else None
