"""Signed model bundles: ed25519 over the manifest, which holds the sha256 of every artifact.

A bundle is signed by writing ``signature.json`` beside ``manifest.json``::

    {"format": "unimeter-bundle-signature", "version": 1, "algorithm": "ed25519",
     "key_id": "<first 16 hex of sha256(raw public key)>",
     "manifest_sha256": "<hex>", "signature": "<base64, 64 bytes>"}

The signature is ed25519 (RFC 8032, via the ``cryptography`` package) over
``SIGNING_CONTEXT + <the exact bytes of manifest.json>``. The manifest lists the sha256 and size
of every artifact and ``edge.bundle.load_bundle`` checks each file against it, so one signature
covers the manifest (every field: ``resolution_s``, task shapes, versions) and every model file.
The context prefix keeps a signature made for a bundle from meaning anything elsewhere.

Keys are PEM files: the private key (PKCS#8) stays on the workstation that exports
(``unimeter bundle keygen``, ``unimeter export --sign KEY``, ``unimeter bundle sign``); the
gateway holds only public keys (``model.public_key_file`` in the agent config).

Policy for unsigned bundles (:class:`BundleTrust`, ``model.unsigned_bundles``): ``refuse`` or
``allow`` (with a warning at every load). ``auto`` refuses them when a public key is configured
and allows them otherwise. A signature that does not verify, or that was made by a key the
gateway does not trust, is always refused, whatever the policy.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from edge.bundle import MANIFEST_NAME, BundleError, BundleSignatureError, load_bundle
from edge.errors import UnimeterError

SIGNATURE_NAME = "signature.json"
SIGNATURE_FORMAT = "unimeter-bundle-signature"
SIGNATURE_VERSION = 1
SIGNING_CONTEXT = b"unimeter-bundle-manifest-v1\n"
UNSIGNED_POLICIES = ("auto", "refuse", "allow")


class SigningError(UnimeterError):
    """A key cannot be read or written, or a bundle cannot be signed; the message says why."""


def _crypto():
    """The ed25519 and serialization modules (imported late: the edge CLI starts without them)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    return ed25519, serialization


def key_id(public_key) -> str:
    """First 16 hex digits of sha256 over the 32 raw public-key bytes (names a key in logs)."""
    _, serialization = _crypto()
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def generate_keypair(private_path: str | Path, public_path: str | Path) -> str:
    """Write a new ed25519 key pair (private PEM with mode 0600, public PEM); returns its key id."""
    ed25519, serialization = _crypto()
    private_path, public_path = Path(private_path), Path(public_path)
    for p in (private_path, public_path):
        if p.exists():
            raise SigningError(f"{p} exists; not overwriting a key")
    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    public_path.write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return key_id(key.public_key())


def load_private_key(path: str | Path):
    """An ed25519 private key from a PEM file; :class:`SigningError` saying why not."""
    ed25519, serialization = _crypto()
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except OSError as e:
        raise SigningError(f"cannot read the signing key {path}: {e.strerror}") from e
    except (ValueError, TypeError) as e:
        raise SigningError(f"{path} is not an unencrypted PEM private key: {e}") from e
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise SigningError(f"{path} holds a {type(key).__name__}, not an ed25519 key")
    return key


def load_public_key(path: str | Path):
    """An ed25519 public key from a PEM file; :class:`SigningError` saying why not."""
    ed25519, serialization = _crypto()
    try:
        key = serialization.load_pem_public_key(Path(path).read_bytes())
    except OSError as e:
        raise SigningError(f"cannot read the public key {path}: {e.strerror}") from e
    except ValueError as e:
        raise SigningError(f"{path} is not a PEM public key: {e}") from e
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise SigningError(f"{path} holds a {type(key).__name__}, not an ed25519 public key")
    return key


def sign_bundle(bundle_dir: str | Path, private_key) -> Path:
    """Sign ``bundle_dir/manifest.json`` as it is on disk; writes and returns ``signature.json``.

    The bundle is verified (``load_bundle``) first: a bundle whose files do not match its manifest
    is never signed.
    """

    root = Path(bundle_dir)
    try:
        load_bundle(root, check_runtimes=False)
    except BundleError as e:
        raise SigningError(f"not signing {root}: {e}") from e
    manifest = (root / MANIFEST_NAME).read_bytes()
    signature = private_key.sign(SIGNING_CONTEXT + manifest)
    doc = {"format": SIGNATURE_FORMAT, "version": SIGNATURE_VERSION, "algorithm": "ed25519",
           "key_id": key_id(private_key.public_key()),
           "manifest_sha256": hashlib.sha256(manifest).hexdigest(),
           "signature": base64.b64encode(signature).decode()}
    out = root / SIGNATURE_NAME
    out.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return out


@dataclass(frozen=True)
class BundleTrust:
    """What a gateway accepts: ``public_keys`` (key id -> ed25519 public key) and the policy for
    unsigned bundles (``refuse`` | ``allow``; :meth:`from_config` resolves ``auto``)."""

    public_keys: dict = field(default_factory=dict)
    unsigned: str = "allow"

    @classmethod
    def from_config(cls, public_key_files: list[str] | tuple[str, ...], unsigned: str = "auto") -> BundleTrust:
        if unsigned not in UNSIGNED_POLICIES:
            raise SigningError(f"unsigned bundle policy must be one of {UNSIGNED_POLICIES}, got {unsigned!r}")
        keys = {}
        for path in public_key_files:
            key = load_public_key(path)
            keys[key_id(key)] = key
        if unsigned == "auto":
            unsigned = "refuse" if keys else "allow"
        if unsigned == "refuse" and not keys:
            raise SigningError("refusing unsigned bundles needs at least one public key")
        return cls(keys, unsigned)

    def check(self, root: Path, manifest: bytes) -> str:
        """Verify ``root``'s signature over ``manifest`` (the bytes about to be used).

        Returns a short status for logs and health ("valid (key <id>)", "unsigned (allowed)",
        ...); raises ``edge.bundle.BundleSignatureError`` when the bundle must be refused.
        """

        path = root / SIGNATURE_NAME
        if not path.exists():
            if self.unsigned == "allow":
                return "unsigned (allowed by policy)"
            raise BundleSignatureError(f"{root} is not signed ({SIGNATURE_NAME} missing) and this gateway "
                                       "refuses unsigned bundles (model.unsigned_bundles)")
        doc = _read_signature(path)
        if not self.public_keys:
            return f"signed by key {doc['key_id']}, not verified: no public key configured (allowed by policy)"
        key = self.public_keys.get(doc["key_id"])
        if key is None:
            raise BundleSignatureError(f"{root} is signed by key {doc['key_id']}, which this gateway does not "
                                       f"trust (trusted: {', '.join(sorted(self.public_keys))})")
        from cryptography.exceptions import InvalidSignature

        try:
            key.verify(base64.b64decode(doc["signature"], validate=True), SIGNING_CONTEXT + manifest)
        except (InvalidSignature, ValueError) as e:
            raise BundleSignatureError(
                f"{root}: the signature does not match {'manifest.json'} (manifest sha256 "
                f"{hashlib.sha256(manifest).hexdigest()[:16]}..., signed "
                f"{str(doc.get('manifest_sha256', ''))[:16]}...): the manifest was changed after "
                "signing; refusing the bundle") from e
        return f"valid (key {doc['key_id']})"


def _read_signature(path: Path) -> dict:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise BundleSignatureError(f"{path} is not readable JSON: {e}") from e
    if (not isinstance(doc, dict) or doc.get("format") != SIGNATURE_FORMAT
            or doc.get("algorithm") != "ed25519" or not {"key_id", "signature"} <= doc.keys()):
        raise BundleSignatureError(f"{path} is not a {SIGNATURE_FORMAT} (ed25519) document")
    if doc.get("version") != SIGNATURE_VERSION:
        raise BundleSignatureError(f"{path}: signature format version {doc.get('version')!r} is not "
                                   f"{SIGNATURE_VERSION}")
    return doc
