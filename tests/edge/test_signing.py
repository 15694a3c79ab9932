"""Signed bundles (edge/signing.py): ed25519 over the manifest, whose hashes cover every artifact.

Bundles are built by hand (as in test_bundle.py: the checks are on bytes); keys are real ed25519
keys from ``cryptography``.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from edge.bundle import BundleIntegrityError, BundleSignatureError, load_bundle
from edge.signing import (
    SIGNATURE_NAME,
    BundleTrust,
    SigningError,
    generate_keypair,
    load_private_key,
    sign_bundle,
)
from tests.edge.test_bundle import make_bundle


@pytest.fixture
def keys(tmp_path):
    kid = generate_keypair(tmp_path / "k.key", tmp_path / "k.pub")
    return tmp_path / "k.key", tmp_path / "k.pub", kid


def _signed(tmp_path, keys, name="b"):
    root = make_bundle(tmp_path / name)
    sign_bundle(root, load_private_key(keys[0]))
    return root


def test_signed_bundle_verifies_with_the_trusted_key(tmp_path, keys):
    root = _signed(tmp_path, keys)
    trust = BundleTrust.from_config([str(keys[1])])
    assert trust.unsigned == "refuse"  # auto: a key is configured
    bundle = load_bundle(root, trust=trust, check_runtimes=False)
    assert bundle.signature == f"valid (key {keys[2]})"
    assert (tmp_path / "k.key").stat().st_mode & 0o777 == 0o600


def test_edited_manifest_is_refused(tmp_path, keys):
    root = _signed(tmp_path, keys)
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["tasks"]["imputation"]["input_spec"]["resolution_s"] = 60  # was 1800
    (root / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleSignatureError, match="manifest was changed after signing"):
        load_bundle(root, trust=BundleTrust.from_config([str(keys[1])]), check_runtimes=False)
    # without a trust policy the edit is invisible: that is why the agent always passes one
    assert load_bundle(root, check_runtimes=False).tasks["imputation"].input_spec["resolution_s"] == 60


def test_artifact_swapped_under_a_valid_signature_is_refused(tmp_path, keys):
    root = _signed(tmp_path, keys)
    victim = root / "imputation.int8.onnx"
    victim.write_bytes(victim.read_bytes()[::-1])  # same size, other bytes
    with pytest.raises(BundleIntegrityError, match="sha256"):
        load_bundle(root, trust=BundleTrust.from_config([str(keys[1])]), check_runtimes=False)


def test_untrusted_key_unsigned_and_garbage_signatures(tmp_path, keys):
    other = generate_keypair(tmp_path / "o.key", tmp_path / "o.pub")
    trust = BundleTrust.from_config([str(keys[1])])
    root = make_bundle(tmp_path / "by-other")
    sign_bundle(root, load_private_key(tmp_path / "o.key"))
    with pytest.raises(BundleSignatureError, match=f"signed by key {other}, which this gateway does not trust"):
        load_bundle(root, trust=trust, check_runtimes=False)
    unsigned = make_bundle(tmp_path / "unsigned")
    with pytest.raises(BundleSignatureError, match="refuses unsigned bundles"):
        load_bundle(unsigned, trust=trust, check_runtimes=False)
    allow = BundleTrust.from_config([str(keys[1])], "allow")
    assert load_bundle(unsigned, trust=allow, check_runtimes=False).signature == "unsigned (allowed by policy)"
    assert "not verified" in load_bundle(root, trust=BundleTrust.from_config([]), check_runtimes=False).signature
    (root / SIGNATURE_NAME).write_text("{not json")
    with pytest.raises(BundleSignatureError, match="not readable JSON"):
        load_bundle(root, trust=trust, check_runtimes=False)


def test_key_and_policy_errors_are_clear(tmp_path, keys):
    with pytest.raises(SigningError, match="needs at least one public key"):
        BundleTrust.from_config([], "refuse")
    with pytest.raises(SigningError, match="not a PEM public key"):
        bad = tmp_path / "bad.pub"
        bad.write_text("nonsense")
        BundleTrust.from_config([str(bad)])
    with pytest.raises(SigningError, match="exists; not overwriting"):
        generate_keypair(keys[0], tmp_path / "x.pub")
    tampered = make_bundle(tmp_path / "t")
    (tampered / "imputation.fp32.onnx").write_bytes(b"changed")
    with pytest.raises(SigningError, match="not signing"):
        sign_bundle(tampered, load_private_key(keys[0]))


def test_bundle_verify_command(tmp_path, keys):
    root = _signed(tmp_path, keys)

    def verify(*args):
        return subprocess.run([sys.executable, "-m", "edge.cli", "bundle", "verify", str(root),
                               "--no-runtime-check", *args], capture_output=True, text=True, timeout=60)

    ok = verify("--public-key", str(keys[1]))
    assert ok.returncode == 0 and f"signature valid (key {keys[2]})" in ok.stdout
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["model_version"] = "9.9.9"
    (root / "manifest.json").write_text(json.dumps(manifest))
    refused = verify("--public-key", str(keys[1]))
    assert refused.returncode == 1 and refused.stdout.startswith("refused:")
    assert verify().returncode == 2  # neither a key nor --allow-unsigned
