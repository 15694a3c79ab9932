"""``unimeter bundle``: make signing keys, sign a bundle, verify one as a gateway would.

    unimeter bundle keygen --private bundle-signing.key --public bundle-signing.pub
    unimeter bundle sign BUNDLE --key bundle-signing.key        (or: unimeter export ... --sign KEY)
    unimeter bundle verify BUNDLE --public-key bundle-signing.pub [--allow-unsigned]

``verify`` runs the agent's checks (signature over the manifest, every artifact's sha256, format,
runtime versions) and exits 0 when the gateway would load the bundle, 1 (with the reason) when it
would refuse it, 2 on bad arguments (an unreadable key). Keys and the signature format:
edge/signing.py.
"""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("bundle", help="sign and verify model bundles (ed25519)", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="bundle_command", metavar="ACTION", required=True)
    k = sub.add_parser("keygen", help="write a new ed25519 key pair (PEM)")
    k.add_argument("--private", required=True, help="private key file to write (mode 0600); keep it off the Pi")
    k.add_argument("--public", required=True, help="public key file to write; model.public_key_file on the Pi")
    k.set_defaults(func=cmd_keygen)
    s = sub.add_parser("sign", help="sign a bundle directory (writes signature.json)")
    s.add_argument("bundle", help="bundle directory")
    s.add_argument("--key", required=True, help="ed25519 private key (PEM)")
    s.set_defaults(func=cmd_sign)
    v = sub.add_parser("verify", help="check a bundle as the agent would; exit 0 if it would load it")
    v.add_argument("bundle", help="bundle directory")
    v.add_argument("--public-key", action="append", default=[], help="trusted public key (PEM); repeatable")
    v.add_argument("--allow-unsigned", action="store_true", help="accept a bundle without signature")
    v.add_argument("--no-runtime-check", action="store_true",
                   help="skip the installed-runtime check (verifying on a machine without onnxruntime)")
    v.set_defaults(func=cmd_verify)


def cmd_keygen(args: argparse.Namespace) -> int:
    from edge.signing import SigningError, generate_keypair

    try:
        kid = generate_keypair(args.private, args.public)
    except (SigningError, OSError) as e:
        print(f"unimeter bundle keygen: {e}", file=sys.stderr)
        return 2
    print(f"key {kid}: private {args.private} (keep it on the exporting machine), public {args.public}")
    return 0


def cmd_sign(args: argparse.Namespace) -> int:
    from edge.signing import SigningError, load_private_key, sign_bundle

    try:
        out = sign_bundle(args.bundle, load_private_key(args.key))
    except SigningError as e:
        print(f"unimeter bundle sign: {e}", file=sys.stderr)
        return 1
    print(f"signed: {out}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from edge.bundle import BundleError, load_bundle
    from edge.signing import BundleTrust, SigningError

    try:
        trust = BundleTrust.from_config(args.public_key, "allow" if args.allow_unsigned else "auto")
    except SigningError as e:
        print(f"unimeter bundle verify: {e}", file=sys.stderr)
        return 2
    if not args.public_key and not args.allow_unsigned:
        print("unimeter bundle verify: give --public-key (or --allow-unsigned to check an unsigned bundle)",
              file=sys.stderr)
        return 2
    try:
        bundle = load_bundle(args.bundle, trust=trust, check_runtimes=not args.no_runtime_check)
    except BundleError as e:
        print(f"refused: {e}")
        return 1
    print(f"ok: bundle {bundle.path} model {bundle.model_version}, {len(bundle.tasks)} task(s), "
          f"{len(bundle.manifest['artifacts'])} artifact(s) match their sha256; signature {bundle.signature}")
    return 0
