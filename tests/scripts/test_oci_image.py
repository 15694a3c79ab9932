"""scripts/oci_image.py: image config from a Dockerfile stage, OCI archives written, read, unpacked."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile

import pytest

from tests.scripts.helpers import REPO, load_script

oci = load_script("oci_image")

DOCKERFILE = """\
# syntax=docker/dockerfile:1
ARG BASE=debian:bookworm
FROM ${BASE} AS build
ENV NOT_IN_RUNTIME=1
USER builder

FROM ${BASE} AS runtime
LABEL org.opencontainers.image.title="demo" \\
      version=2
ENV PATH=/opt/app/bin:$PATH LANG=C.UTF-8
ENV LEGACY value with spaces
RUN useradd app
WORKDIR /srv
WORKDIR data
VOLUME ["/srv/data"]
VOLUME /cache
EXPOSE 8080 53/udp
CMD ["ignored"]
ENTRYPOINT ["app", "serve"]
HEALTHCHECK --interval=1m30s --timeout=500ms --retries=2 \\
    CMD ["app", "health"]
STOPSIGNAL SIGINT
USER app:app
"""


@pytest.fixture
def dockerfile(tmp_path):
    path = tmp_path / "Dockerfile"
    path.write_text(DOCKERFILE)
    return path


def test_stage_config_follows_docker_semantics(dockerfile):
    cfg = oci.stage_config(dockerfile, "runtime")
    env = dict(e.split("=", 1) for e in cfg["Env"])
    assert env["PATH"] == "/opt/app/bin:" + oci.DEFAULT_ENV["PATH"]  # $PATH from the base image
    assert env["LANG"] == "C.UTF-8" and env["LEGACY"] == "value with spaces"
    assert "NOT_IN_RUNTIME" not in env  # another stage
    assert cfg["Labels"] == {"org.opencontainers.image.title": "demo", "version": "2"}
    assert cfg["WorkingDir"] == "/srv/data"  # a relative WORKDIR continues the previous one
    assert cfg["Volumes"] == {"/srv/data": {}, "/cache": {}}
    assert cfg["ExposedPorts"] == {"8080/tcp": {}, "53/udp": {}}
    assert cfg["Entrypoint"] == ["app", "serve"] and cfg["Cmd"] is None  # ENTRYPOINT resets CMD
    assert cfg["Healthcheck"] == {"Test": ["CMD", "app", "health"], "Interval": 90 * 10**9,
                                  "Timeout": 500 * 10**6, "Retries": 2}
    assert cfg["StopSignal"] == "SIGINT" and cfg["User"] == "app:app"
    assert oci.stage_runs(dockerfile, "runtime") == ["useradd app"]


def test_shell_forms_and_refusals(tmp_path):
    path = tmp_path / "Dockerfile"
    path.write_text("FROM x AS s\nCMD echo hi\nHEALTHCHECK CMD test -f /ok\n")
    cfg = oci.stage_config(path, "s")
    assert cfg["Cmd"] == ["/bin/sh", "-c", "echo hi"]
    assert cfg["Healthcheck"] == {"Test": ["CMD-SHELL", "test -f /ok"]}
    with pytest.raises(oci.ImageError, match="no stage"):
        oci.stage_config(path, "other")
    path.write_text("FROM x AS s\nONBUILD RUN make\n")
    with pytest.raises(oci.ImageError, match="ONBUILD"):
        oci.stage_config(path, "s")
    path.write_text("FROM x AS s\nHEALTHCHECK --interval=soon CMD true\n")
    with pytest.raises(oci.ImageError, match="duration"):
        oci.stage_config(path, "s")


def test_dockerfile_arm64_runtime_stage():
    cfg = oci.stage_config(REPO / "Dockerfile.arm64", "runtime")
    assert cfg["User"] == "unimeter:unimeter" and cfg["Entrypoint"] == ["unimeter", "agent"]
    assert cfg["Cmd"] == ["--config", "/etc/unimeter/agent.toml"]
    assert cfg["Volumes"] == {"/var/lib/unimeter": {}} and cfg["WorkingDir"] == "/var/lib/unimeter"
    assert cfg["Healthcheck"]["Test"][1:4] == ["unimeter", "agent", "health"]
    runs = oci.stage_runs(REPO / "Dockerfile.arm64", "runtime")
    assert len(runs) == 1 and "--groups dialout" in runs[0] and "--uid 10001" in runs[0]


def _tree(root):
    (root / "etc").mkdir(parents=True)
    (root / "etc/hello").write_text("hello\n")
    (root / "bin").mkdir()
    (root / "bin/tool").write_bytes(b"\x7fELF tool")
    (root / "bin/tool").chmod(0o755)
    os.link(root / "bin/tool", root / "bin/tool-alias")
    (root / "bin/sh").symlink_to("tool")
    (root / "var/lib/app").mkdir(parents=True)
    os.chown(root / "var/lib/app", 10001, 10001)
    (root / "var/lib/app").chmod(0o750)
    (root / "dev").mkdir()
    (root / "dev/null-copy").write_text("not in the image")
    (root / "proc").mkdir()


def _build(root, out, epoch=1_700_000_000, **kw):
    return oci.write_archive(root, {"User": "app", "Entrypoint": ["tool"]}, out, platform="linux/arm64",
                             tag="demo:1", epoch=epoch, **kw)


def test_archive_round_trip_keeps_owners_modes_links_and_leaves_mount_points_empty(tmp_path):
    src = tmp_path / "src"
    _tree(src)
    digest = _build(src, tmp_path / "image.tar")
    image = oci.read_image(tmp_path / "image.tar")
    assert image.tag == "demo:1" and image.index["manifests"][0]["digest"] == digest
    assert image.index["manifests"][0]["platform"] == {"architecture": "arm64", "os": "linux"}
    assert image.config["architecture"] == "arm64" and image.config["os"] == "linux"
    assert image.config["config"] == {"User": "app", "Entrypoint": ["tool"]}
    assert image.config["created"] == "2023-11-14T22:13:20Z"

    dest = tmp_path / "dest"
    oci.unpack(tmp_path / "image.tar", dest)
    assert (dest / "etc/hello").read_text() == "hello\n"
    assert (dest / "bin/tool").stat().st_mode & 0o777 == 0o755
    assert os.readlink(dest / "bin/sh") == "tool"
    assert (dest / "bin/tool").stat().st_ino == (dest / "bin/tool-alias").stat().st_ino
    state = (dest / "var/lib/app").stat()
    assert (state.st_uid, state.st_gid, state.st_mode & 0o777) == (10001, 10001, 0o750)
    assert (dest / "dev").is_dir() and not any((dest / "dev").iterdir())
    assert (dest / "proc").is_dir()
    with tarfile.open(tmp_path / "image.tar") as tar:
        layer_desc = image.manifest["layers"][0]
        blob = tar.extractfile(f"blobs/sha256/{layer_desc['digest'].split(':')[1]}").read()
    diff_id = hashlib.sha256(gzip.decompress(blob)).hexdigest()
    assert image.config["rootfs"]["diff_ids"] == [f"sha256:{diff_id}"]


def test_same_tree_same_digest_and_any_change_shows(tmp_path):
    src = tmp_path / "src"
    _tree(src)
    first = _build(src, tmp_path / "a.tar")
    os.utime(src / "etc/hello", (2_000_000_000, 2_000_000_000))  # newer than the epoch: clamped
    assert _build(src, tmp_path / "b.tar") == first
    (src / "etc/hello").write_text("hello!\n")
    assert _build(src, tmp_path / "c.tar") != first


def _layer(entries) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue())


def _layout_with_layers(path, layers: list[bytes]) -> None:
    """An OCI archive written by hand (not by the module), with several layers."""
    blobs = {}

    def put(data: bytes, media: str) -> dict:
        digest = hashlib.sha256(data).hexdigest()
        blobs[digest] = data
        return {"mediaType": media, "digest": f"sha256:{digest}", "size": len(data)}

    layer_descs = [put(b, oci.MEDIA_LAYER_GZIP) for b in layers]
    config = put(json.dumps({"architecture": "arm64", "os": "linux", "config": {},
                             "rootfs": {"type": "layers", "diff_ids": []}}).encode(), oci.MEDIA_CONFIG)
    manifest = put(json.dumps({"schemaVersion": 2, "config": config, "layers": layer_descs}).encode(),
                   oci.MEDIA_MANIFEST)
    index = json.dumps({"schemaVersion": 2, "manifests": [manifest]}).encode()
    with tarfile.open(path, "w") as tar:
        for name, data in [("oci-layout", b'{"imageLayoutVersion": "1.0.0"}'), ("index.json", index),
                           *((f"blobs/sha256/{d}", b) for d, b in blobs.items())]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_unpack_applies_whiteouts_of_later_layers(tmp_path):
    base = _layer([("etc", None), ("etc/keep", b"1"), ("etc/drop", b"2"), ("cache", None), ("cache/a", b"3")])
    top = _layer([("etc/.wh.drop", b""), ("cache/.wh..wh..opq", b""), ("cache/b", b"4"), ("etc/keep", b"5")])
    _layout_with_layers(tmp_path / "image.tar", [base, top])
    dest = tmp_path / "dest"
    oci.unpack(tmp_path / "image.tar", dest)
    assert (dest / "etc/keep").read_bytes() == b"5"
    assert not (dest / "etc/drop").exists()
    assert sorted(p.name for p in (dest / "cache").iterdir()) == ["b"]


def test_corrupt_or_foreign_archives_are_refused(tmp_path):
    src = tmp_path / "src"
    _tree(src)
    _build(src, tmp_path / "image.tar")
    with tarfile.open(tmp_path / "image.tar") as tar:
        members = [(m, tar.extractfile(m).read() if m.isfile() else None) for m in tar.getmembers()]
    with tarfile.open(tmp_path / "bad.tar", "w") as tar:
        for m, data in members:
            if data is not None and m.name.startswith("blobs/") and data.startswith(b"{") and b"layers" in data:
                data = data.replace(b'"schemaVersion":2', b'"schemaVersion":3')  # the manifest, edited
                m.size = len(data)
            tar.addfile(m, io.BytesIO(data) if data is not None else None)
    with pytest.raises(oci.ImageError, match="does not match its digest"):
        oci.read_image(tmp_path / "bad.tar")
    (tmp_path / "plain.tar").write_bytes(b"not a tar at all")
    with pytest.raises(oci.ImageError, match="not a readable tar"):
        oci.read_image(tmp_path / "plain.tar")
    _layout_with_layers(tmp_path / "escape.tar", [_layer([("../outside", b"x")])])
    with pytest.raises(oci.ImageError, match="escapes"):
        oci.unpack(tmp_path / "escape.tar", tmp_path / "dest")
