#!/usr/bin/env python3
"""OCI image archives without a container engine: build one from a root filesystem, read, unpack.

    python3 scripts/oci_image.py build --rootfs DIR --dockerfile Dockerfile.arm64 --stage runtime \
        --platform linux/arm64 --tag unimeter-agent:arm64 --out unimeter-agent-arm64.oci.tar
    python3 scripts/oci_image.py config unimeter-agent-arm64.oci.tar      # the image config (JSON)
    python3 scripts/oci_image.py unpack unimeter-agent-arm64.oci.tar DIR  # the root filesystem
    python3 scripts/oci_image.py runs --dockerfile Dockerfile.arm64 --stage runtime  # its RUN steps

The archive is an OCI image layout (OCI image spec v1.1, "image-layout.md") in a tar file:
``oci-layout``, ``index.json`` -> manifest -> config + one gzip layer, every blob under
``blobs/sha256/<digest>``. ``docker load``, ``podman load`` and ``skopeo`` read it.

The image configuration (user, environment, working directory, volumes, entrypoint, command,
stop signal, labels, health check) is read from one stage of a Dockerfile, so the image built
here and the one ``docker buildx build`` makes from the same Dockerfile carry the same settings.
The health check goes into the config's ``Healthcheck`` field, as Docker writes it into the OCI
images it builds (moby's image spec extension; the OCI spec has no health check, which is why
OCI-only builders such as buildah drop ``HEALTHCHECK`` unless told to write Docker's format).

The layer is reproducible: entries sorted, owners numeric, mtimes clamped to ``--epoch``
(default ``$SOURCE_DATE_EPOCH`` or 0), gzip header without a timestamp; the same tree gives the
same digest. The contents of ``dev``, ``proc`` and ``sys`` (runtime mount points) are left out.
Standard library only, so it runs with any Python 3.11 (also Debian's).
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import hashlib
import io
import json
import os
import re
import shlex
import shutil
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MEDIA_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
REF_NAME = "org.opencontainers.image.ref.name"
MOUNT_POINTS = ("dev", "proc", "sys")  # contents left out of the layer (the runtime mounts them)
DEFAULT_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"


class ImageError(Exception):
    """A Dockerfile this tool cannot turn into a config, or an archive that is not a valid image."""


# --- Dockerfile -> image config ------------------------------------------------------------------


@dataclass
class Instruction:
    keyword: str  # upper case: FROM, ENV, USER, ...
    args: str
    line: int


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions in order: comments dropped, ``\\`` continuations joined (Dockerfile reference)."""
    out: list[Instruction] = []
    buf, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not buf and (not stripped or stripped.startswith("#")):
            continue
        if buf and stripped.startswith("#"):  # comment lines inside a continuation are skipped
            continue
        if not buf:
            start = number
        if stripped.endswith("\\"):
            buf += stripped[:-1] + " "
            continue
        buf += stripped
        keyword, _, args = buf.partition(" ")
        out.append(Instruction(keyword.upper(), args.strip(), start))
        buf = ""
    if buf:
        raise ImageError(f"Dockerfile line {start}: continuation at end of file")
    return out


def _expand(value: str, env: dict[str, str]) -> str:
    """``$VAR`` and ``${VAR}`` from ``env`` (unknown names expand to ""), as Docker's ENV does."""
    return re.sub(r"\$(?:\{(\w+)\}|(\w+))", lambda m: env.get(m.group(1) or m.group(2), ""), value)


def _exec_form(args: str, where: str) -> list[str]:
    """``["a", "b"]`` -> list; shell form ``a b`` -> ``["/bin/sh", "-c", "a b"]``."""
    if args.startswith("["):
        try:
            value = json.loads(args)
        except json.JSONDecodeError as e:
            raise ImageError(f"{where}: not a JSON array: {args}") from e
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ImageError(f"{where}: expected a JSON array of strings: {args}")
        return value
    return ["/bin/sh", "-c", args]


def _duration_ns(text: str, where: str) -> int:
    """Docker durations (``60s``, ``1m30s``, ``500ms``) -> nanoseconds."""
    units = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ns|us|ms|s|m|h)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ImageError(f"{where}: bad duration {text!r}")
    return int(sum(float(n) * units[u] for n, u in parts))


def _healthcheck(args: str, where: str) -> dict:
    """``HEALTHCHECK [--interval=..] CMD ...`` -> Docker's ``Healthcheck`` (durations in ns)."""
    if args.strip().upper() == "NONE":
        return {"Test": ["NONE"]}
    options: dict[str, int] = {}
    rest = args
    while rest.startswith("--"):
        opt, _, rest = rest.partition(" ")
        name, _, value = opt[2:].partition("=")
        rest = rest.lstrip()
        if name == "retries":
            options["Retries"] = int(value)
        elif name in ("interval", "timeout", "start-period", "start-interval"):
            key = {"interval": "Interval", "timeout": "Timeout", "start-period": "StartPeriod",
                   "start-interval": "StartInterval"}[name]
            options[key] = _duration_ns(value, where)
        else:
            raise ImageError(f"{where}: unknown HEALTHCHECK option --{name}")
    keyword, _, command = rest.partition(" ")
    if keyword.upper() != "CMD":
        raise ImageError(f"{where}: HEALTHCHECK needs CMD, got {rest!r}")
    command = command.strip()
    test = (["CMD", *_exec_form(command, where)] if command.startswith("[")
            else ["CMD-SHELL", command])
    return {"Test": test, **options}


def _pairs(args: str, where: str) -> list[tuple[str, str]]:
    """``k=v k2="v 2"`` -> pairs; the legacy ``ENV key value`` form -> one pair."""
    words = shlex.split(args, posix=True)
    if words and "=" not in words[0]:
        key, _, value = args.partition(" ")
        return [(key, value.strip())]
    pairs = []
    for word in words:
        key, sep, value = word.partition("=")
        if not sep or not key:
            raise ImageError(f"{where}: expected key=value, got {word!r}")
        pairs.append((key, value))
    return pairs


def stage_config(dockerfile: str | Path, stage: str, base_env: dict[str, str] | None = None) -> dict:
    """The image config (the ``config`` object of the OCI image config) of one Dockerfile stage.

    Reads ENV, USER, WORKDIR, VOLUME, EXPOSE, LABEL, STOPSIGNAL, HEALTHCHECK, ENTRYPOINT and CMD of
    ``FROM ... AS <stage>``; RUN, COPY, ADD and ARG shape the filesystem (built by the caller) and
    are not config. ``base_env`` stands for the base image's environment (default: Docker's PATH).
    Raises ImageError for a missing stage or an instruction whose effect it cannot reproduce.
    """
    instructions = parse_dockerfile(Path(dockerfile).read_text(encoding="utf-8"))
    env = dict(DEFAULT_ENV if base_env is None else base_env)
    cfg: dict = {}
    in_stage = found = False
    for ins in instructions:
        where = f"{dockerfile}:{ins.line} {ins.keyword}"
        if ins.keyword == "FROM":
            words = ins.args.split()
            in_stage = len(words) >= 3 and words[-2].upper() == "AS" and words[-1] == stage
            found = found or in_stage
            continue
        if not in_stage:
            continue
        _apply(cfg, env, ins, where)
    if not found:
        raise ImageError(f"{dockerfile}: no stage 'FROM ... AS {stage}'")
    cfg["Env"] = [f"{k}={v}" for k, v in env.items()]
    if "Entrypoint" in cfg and "Cmd" not in cfg:
        cfg["Cmd"] = None
    return cfg


def stage_runs(dockerfile: str | Path, stage: str) -> list[str]:
    """The shell-form RUN commands of one stage, in order (for building its filesystem elsewhere)."""
    runs, in_stage, found = [], False, False
    for ins in parse_dockerfile(Path(dockerfile).read_text(encoding="utf-8")):
        if ins.keyword == "FROM":
            words = ins.args.split()
            in_stage = len(words) >= 3 and words[-2].upper() == "AS" and words[-1] == stage
            found = found or in_stage
        elif in_stage and ins.keyword == "RUN":
            if ins.args.startswith(("[", "--")):
                raise ImageError(f"{dockerfile}:{ins.line}: only shell-form RUN without options is supported")
            runs.append(ins.args)
    if not found:
        raise ImageError(f"{dockerfile}: no stage 'FROM ... AS {stage}'")
    return runs


def _apply(cfg: dict, env: dict[str, str], ins: Instruction, where: str) -> None:
    kw, args = ins.keyword, ins.args
    if kw in ("RUN", "COPY", "ADD", "ARG"):
        return
    if kw == "ENV":
        for key, value in _pairs(args, where):
            env[key] = _expand(value, env)
    elif kw == "LABEL":
        cfg.setdefault("Labels", {}).update(_pairs(args, where))
    elif kw == "USER":
        cfg["User"] = _expand(args, env)
    elif kw == "WORKDIR":
        cfg["WorkingDir"] = str(PurePosixPath(cfg.get("WorkingDir", "/")) / _expand(args, env))
    elif kw == "VOLUME":
        paths = json.loads(args) if args.startswith("[") else args.split()
        cfg.setdefault("Volumes", {}).update({p: {} for p in paths})
    elif kw == "EXPOSE":
        ports = (p if "/" in p else f"{p}/tcp" for p in args.split())
        cfg.setdefault("ExposedPorts", {}).update({p: {} for p in ports})
    elif kw == "STOPSIGNAL":
        cfg["StopSignal"] = args
    elif kw == "HEALTHCHECK":
        cfg["Healthcheck"] = _healthcheck(args, where)
    elif kw == "ENTRYPOINT":
        cfg["Entrypoint"] = _exec_form(args, where)
        cfg.pop("Cmd", None)  # Docker: ENTRYPOINT resets a CMD inherited or set before it
    elif kw == "CMD":
        cfg["Cmd"] = _exec_form(args, where)
    else:
        raise ImageError(f"{where}: not supported here (it would change the image config)")


# --- writing ----------------------------------------------------------------------------------------


class _HashingWriter(io.RawIOBase):
    """A write-only stream that hashes and counts what passes through to ``sink``."""

    def __init__(self, sink) -> None:
        self.sink, self.sha256, self.size = sink, hashlib.sha256(), 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.sha256.update(data)
        self.size += len(data)
        self.sink.write(data)
        return len(data)


def _ordered(rootfs: Path) -> list[Path]:
    """Parents before children, siblings by name (a stable, reproducible order)."""
    out: list[Path] = []

    def visit(directory: Path) -> None:
        with os.scandir(directory) as it:
            entries = sorted(it, key=lambda e: e.name)
        for entry in entries:
            path = Path(entry.path)
            out.append(path)
            rel = path.relative_to(rootfs)
            if entry.is_dir(follow_symlinks=False) and str(rel) not in MOUNT_POINTS:
                visit(path)

    visit(rootfs)
    return out


def write_layer(rootfs: Path, blob_dir: Path, epoch: int) -> dict:
    """Tar + gzip ``rootfs`` into ``blob_dir``; returns the layer descriptor plus its ``diff_id``."""
    tmp = blob_dir / "layer.tmp"
    with open(tmp, "wb") as raw:
        compressed = _HashingWriter(raw)
        with gzip.GzipFile(fileobj=compressed, mode="wb", mtime=0, compresslevel=6) as gz:
            uncompressed = _HashingWriter(gz)
            with tarfile.open(fileobj=uncompressed, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                for path in _ordered(rootfs):
                    info = tar.gettarinfo(str(path), arcname=str(path.relative_to(rootfs)))
                    if info is None:  # a socket: nothing a container can use
                        continue
                    info.uname = info.gname = ""
                    info.mtime = min(int(info.mtime), epoch)
                    if info.isreg():
                        with open(path, "rb") as f:
                            tar.addfile(info, f)
                    else:
                        tar.addfile(info)
    digest = compressed.sha256.hexdigest()
    tmp.rename(blob_dir / digest)
    return {"mediaType": MEDIA_LAYER_GZIP, "digest": f"sha256:{digest}", "size": compressed.size,
            "diff_id": f"sha256:{uncompressed.sha256.hexdigest()}"}


def _put_json(blob_dir: Path, obj: dict, media_type: str) -> dict:
    data = json.dumps(obj, indent=None, separators=(",", ":"), sort_keys=True).encode()
    digest = hashlib.sha256(data).hexdigest()
    (blob_dir / digest).write_bytes(data)
    return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data)}


def write_archive(rootfs: str | Path, config: dict, out: str | Path, *, platform: str = "linux/arm64",
                  tag: str = "latest", epoch: int = 0, history: str = "") -> str:
    """Write an OCI image archive of ``rootfs`` with image config ``config``; returns the
    manifest digest. ``platform`` is ``os/arch[/variant]``; ``epoch`` (s) is the creation time."""
    rootfs = Path(rootfs)
    if not rootfs.is_dir():
        raise ImageError(f"{rootfs} is not a directory")
    os_name, arch, *variant = platform.split("/")
    created = datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    with tempfile.TemporaryDirectory(dir=Path(out).resolve().parent) as tmp:
        layout = Path(tmp)
        blobs = layout / "blobs" / "sha256"
        blobs.mkdir(parents=True)
        layer = write_layer(rootfs, blobs, epoch)
        diff_id = layer.pop("diff_id")
        image = {"created": created, "architecture": arch, "os": os_name, "config": config,
                 "rootfs": {"type": "layers", "diff_ids": [diff_id]},
                 "history": [{"created": created, "created_by": history or f"root filesystem {rootfs.name}"}]}
        if variant:
            image["variant"] = variant[0]
        config_desc = _put_json(blobs, image, MEDIA_CONFIG)
        manifest = {"schemaVersion": 2, "mediaType": MEDIA_MANIFEST, "config": config_desc,
                    "layers": [layer]}
        manifest_desc = _put_json(blobs, manifest, MEDIA_MANIFEST)
        platform_desc = {"architecture": arch, "os": os_name, **({"variant": variant[0]} if variant else {})}
        index = {"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": [
            {**manifest_desc, "platform": platform_desc, "annotations": {REF_NAME: tag}}]}
        (layout / "index.json").write_text(json.dumps(index, indent=2))
        (layout / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
        partial = Path(f"{out}.partial")
        with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as tar:
            for name in ("oci-layout", "index.json", "blobs"):
                tar.add(layout / name, arcname=name, filter=_normalised(epoch))
        partial.replace(out)
    return manifest_desc["digest"]


def _normalised(epoch: int):
    def normalise(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.mtime = epoch
        info.mode = 0o755 if info.isdir() else 0o644
        return info

    return normalise


# --- reading ------------------------------------------------------------------------------------------


@dataclass
class Image:
    """One image of an archive: its index, manifest and config, as parsed JSON."""

    path: Path
    index: dict
    manifest: dict
    config: dict
    tag: str = ""


def _blob_name(descriptor: dict) -> str:
    algorithm, _, digest = str(descriptor.get("digest", "")).partition(":")
    if algorithm != "sha256" or not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise ImageError(f"unsupported or malformed digest in {descriptor}")
    return f"blobs/sha256/{digest}"


def _read_blob(tar: tarfile.TarFile, descriptor: dict) -> bytes:
    name = _blob_name(descriptor)
    try:
        data = tar.extractfile(name).read()
    except (KeyError, AttributeError) as e:
        raise ImageError(f"{tar.name}: blob {name} is missing") from e
    if hashlib.sha256(data).hexdigest() != name.rsplit("/", 1)[1] or len(data) != descriptor.get("size"):
        raise ImageError(f"{tar.name}: blob {name} does not match its digest or size")
    return data


def read_image(path: str | Path, platform: str | None = None) -> Image:
    """index.json -> manifest -> config of the archive (the one image, or the one for ``platform``),
    every blob checked against its digest and size."""
    path = Path(path)
    try:
        with tarfile.open(path) as tar:
            return _read_layout(path, tar, platform)
    except (OSError, tarfile.TarError) as e:
        raise ImageError(f"{path}: not a readable tar archive: {e}") from e


def _read_layout(path: Path, tar: tarfile.TarFile, platform: str | None) -> Image:
    try:
        layout = json.loads(tar.extractfile("oci-layout").read())
        index = json.loads(tar.extractfile("index.json").read())
    except (KeyError, AttributeError, json.JSONDecodeError) as e:
        raise ImageError(f"{path}: no OCI layout (oci-layout, index.json): {e}") from e
    if layout.get("imageLayoutVersion") != "1.0.0":
        raise ImageError(f"{path}: unknown image layout version {layout}")
    candidates = [m for m in index.get("manifests", []) if m.get("mediaType") == MEDIA_MANIFEST]
    if platform:
        os_name, arch = platform.split("/")[:2]
        candidates = [m for m in candidates if m.get("platform", {}).get("os") == os_name
                      and m.get("platform", {}).get("architecture") == arch] or candidates
    if len(candidates) != 1:
        raise ImageError(f"{path}: expected one image manifest, found {len(candidates)}")
    manifest = json.loads(_read_blob(tar, candidates[0]))
    config = json.loads(_read_blob(tar, manifest["config"]))
    tag = candidates[0].get("annotations", {}).get(REF_NAME, "")
    return Image(path, index, manifest, config, tag)


def _safe(name: str) -> PurePosixPath:
    rel = PurePosixPath(name.lstrip("/"))
    if ".." in rel.parts:
        raise ImageError(f"layer entry {name!r} escapes the root")
    return rel


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _apply_layer(layer: tarfile.TarFile, dest: Path) -> None:
    """Apply one layer: OCI whiteouts (``.wh.name`` deletes, ``.wh..wh..opq`` empties a directory)."""
    members = []
    for m in layer:
        rel = _safe(m.name)
        if rel.name == OPAQUE:
            target = dest / rel.parent
            if target.is_dir():
                for child in target.iterdir():
                    _remove(child)
            continue
        if rel.name.startswith(WHITEOUT):
            _remove(dest / rel.parent / rel.name[len(WHITEOUT):])
            continue
        existing = dest / rel
        if (existing.exists() or existing.is_symlink()) and not (m.isdir() and existing.is_dir()):
            _remove(existing)
        members.append(m)
    layer.extractall(dest, members=members, numeric_owner=True, filter="fully_trusted")


def unpack(path: str | Path, dest: str | Path) -> Image:
    """Extract the image's root filesystem into ``dest`` (layers in order, whiteouts applied,
    owners and modes kept: run as root). Every layer is checked against its digest."""
    image = read_image(path)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(image.path) as outer:
        for descriptor in image.manifest["layers"]:
            media = descriptor.get("mediaType", "")
            if media not in (MEDIA_LAYER_GZIP, MEDIA_LAYER_TAR,
                             "application/vnd.docker.image.rootfs.diff.tar.gzip"):
                raise ImageError(f"{path}: unsupported layer media type {media!r}")
            with tempfile.TemporaryFile() as blob:
                shutil.copyfileobj(outer.extractfile(_blob_name(descriptor)), blob)
                blob.seek(0)
                digest = hashlib.sha256()
                while chunk := blob.read(1 << 20):
                    digest.update(chunk)
                if f"sha256:{digest.hexdigest()}" != descriptor["digest"]:
                    raise ImageError(f"{path}: layer {descriptor['digest']} is corrupt")
                blob.seek(0)
                with tarfile.open(fileobj=blob, mode="r:*") as layer:
                    _apply_layer(layer, dest)
    return image


# --- command line -------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="write an OCI archive of a root filesystem")
    b.add_argument("--rootfs", required=True, help="root filesystem directory (run as root: owners kept)")
    b.add_argument("--dockerfile", required=True, help="Dockerfile whose stage gives the image config")
    b.add_argument("--stage", required=True, help="the stage name (FROM ... AS <stage>)")
    b.add_argument("--base-env", action="append", default=[], metavar="K=V",
                   help="environment of the base image (default: Docker's PATH)")
    b.add_argument("--platform", default="linux/arm64")
    b.add_argument("--tag", default="latest", help="ref name annotation, e.g. unimeter-agent:arm64")
    b.add_argument("--epoch", type=int, default=int(os.environ.get("SOURCE_DATE_EPOCH", "0")),
                   help="creation time and mtime clamp in epoch seconds (default $SOURCE_DATE_EPOCH or 0)")
    b.add_argument("--history", default="", help="created_by text of the layer")
    b.add_argument("--out", required=True)
    r = sub.add_parser("runs", help="print the RUN commands of a Dockerfile stage as a shell script")
    r.add_argument("--dockerfile", required=True)
    r.add_argument("--stage", required=True)
    c = sub.add_parser("config", help="print the image config of an archive")
    c.add_argument("archive")
    u = sub.add_parser("unpack", help="extract the root filesystem of an archive")
    u.add_argument("archive")
    u.add_argument("dest")
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            base_env = dict(DEFAULT_ENV)
            base_env.update(kv.split("=", 1) for kv in args.base_env)
            config = stage_config(args.dockerfile, args.stage, base_env)
            digest = write_archive(args.rootfs, config, args.out, platform=args.platform, tag=args.tag,
                                   epoch=args.epoch, history=args.history)
            print(f"{args.out}: {args.tag} {args.platform} manifest {digest}")
        elif args.command == "runs":
            print("\n".join(stage_runs(args.dockerfile, args.stage)))
        elif args.command == "config":
            print(json.dumps(read_image(args.archive).config, indent=2))
        else:
            image = unpack(args.archive, args.dest)
            print(f"{args.dest}: {image.tag or image.path.name} unpacked")
    except ImageError as e:
        print(f"oci_image: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
