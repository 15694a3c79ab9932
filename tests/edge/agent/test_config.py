"""Config validation: errors name the key; secrets come from files/env and are never printed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edge.agent.__main__ import main
from edge.agent.config import ConfigError, load_config, parse_config

REPO = Path(__file__).resolve().parents[3]
METER = {"id": "m1", "kind": "virtual"}


def test_example_config_is_valid():
    cfg = load_config(REPO / "deploy" / "agent.example.toml", resolve_secrets=False)
    assert cfg.gateway.id == "home"
    assert cfg.mqtt.tls and cfg.mqtt.port == 8883
    assert [m.id for m in cfg.meters] == ["p1"]
    assert cfg.store_path == Path("/var/lib/unimeter/agent.sqlite")


@pytest.mark.parametrize(("data", "key"), [
    ({"mqtt": {"port": "abc"}}, "mqtt.port"),
    ({"mqtt": {"port": 70000}}, "mqtt.port"),
    ({"mqtt": {"prot": 1883}}, "mqtt.prot"),
    ({"mqtt": {"qos": 3}}, "mqtt.qos"),
    ({"mqtt": {"tls": "yes"}}, "mqtt.tls"),
    ({"gateway": {"id": "bad/id"}}, "gateway.id"),
    ({"store": {"batch_interval_s": -1}}, "store.batch_interval_s"),
    ({"model": {"backend": "cuda"}}, "model.backend"),
    ({"schedule": {"nilm_every_s": 0}}, "schedule.nilm_every_s"),
    ({"meters": [{"id": "m1"}]}, "meters[0].kind"),
    ({"meters": [METER, METER]}, "meters[1].id"),
    ({"meters": []}, "meters"),
    ({"extra_section": {}}, "extra_section"),
    ({"meters": [dict(METER, appliances=["kettle", "jacuzzi"])]}, "meters[0].appliances[1]"),
    ({"meters": [dict(METER, appliances=["kettle", "Kettle"])]}, "meters[0].appliances[1]"),
    ({"meters": [dict(METER, appliances="kettle")]}, "meters[0].appliances"),
    ({"mqtt": {"password_env": "UNIMETER_TEST_NOT_SET", "username": "u"}}, "mqtt.password_env"),
    ({"mqtt": {"password_env": "HOME"}}, "mqtt.username"),
])
def test_errors_name_the_key(data, key):
    data.setdefault("meters", [METER])
    with pytest.raises(ConfigError) as err:
        parse_config(data)
    assert err.value.key == key
    assert str(err.value).startswith(f"{key}: ")


def test_password_from_file_and_env_is_never_shown(tmp_path, monkeypatch, capsys):
    secret_file = tmp_path / "pw"
    secret_file.write_text("s3cret-from-file\n")
    cfg = parse_config({"mqtt": {"username": "u", "password_file": str(secret_file)}, "meters": [METER]})
    assert cfg.mqtt.password.reveal() == "s3cret-from-file"
    assert "s3cret" not in repr(cfg) and "s3cret" not in str(cfg.mqtt.password)
    monkeypatch.setenv("UNIMETER_TEST_PW", "s3cret-from-env")
    monkeypatch.setenv("CREDS", str(tmp_path))
    cfg = parse_config({"mqtt": {"username": "u", "password_env": "UNIMETER_TEST_PW"}, "meters": [METER]})
    assert cfg.mqtt.password.reveal() == "s3cret-from-env"
    cfg = parse_config({"mqtt": {"username": "u", "password_file": "$CREDS/pw"}, "meters": [METER]})
    assert cfg.mqtt.password.reveal() == "s3cret-from-file"
    toml = tmp_path / "agent.toml"
    toml.write_text(f'[gateway]\nstate_dir = "{tmp_path}"\n[mqtt]\nusername = "u"\n'
                    'password_env = "UNIMETER_TEST_PW"\n[[meters]]\nid = "m1"\nkind = "virtual"\n')
    assert main(["check-config", "--config", str(toml)]) == 0
    out = capsys.readouterr()
    assert "s3cret" not in out.out + out.err
    assert '"password": "***"' in out.out


def test_check_config_verifies_the_bundle_as_the_agent_would(tiny_bundle, tmp_path, capsys):
    """A key is configured and the bundle is unsigned (or missing): the agent would refuse it and start
    without a model, and check-config warns with the reason (the config itself is valid: exit 0, as the
    unit's ExecStartPre needs); with unsigned bundles allowed, or signed, it is accepted."""
    import shutil

    from edge.signing import generate_keypair, load_private_key, sign_bundle

    generate_keypair(tmp_path / "k.key", tmp_path / "k.pub")
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    (bundle / "signature.json").unlink(missing_ok=True)
    toml = tmp_path / "agent.toml"

    def check(bundle_path: Path, policy: str) -> tuple[int, str]:
        toml.write_text(f'[gateway]\nstate_dir = "{tmp_path}"\n[model]\nbundle = "{bundle_path}"\n'
                        f'public_key_file = "{tmp_path / "k.pub"}"\nunsigned_bundles = "{policy}"\n'
                        '[[meters]]\nid = "m1"\nkind = "virtual"\n')
        code = main(["check-config", "--config", str(toml)])
        return code, capsys.readouterr().err

    code, err = check(bundle, "auto")
    assert code == 0 and "warning: model.bundle: the agent would refuse" in err and "not signed" in err
    code, err = check(tmp_path / "nowhere", "auto")
    assert code == 0 and "warning: model.bundle" in err and "not a bundle directory" in err
    code, err = check(bundle, "allow")
    assert code == 0 and "accepted" in err and "warning" not in err
    sign_bundle(bundle, load_private_key(tmp_path / "k.key"))
    code, err = check(bundle, "auto")
    assert code == 0 and "accepted" in err


def test_broken_config_exits_nonzero_naming_the_key(tmp_path):
    toml = tmp_path / "agent.toml"
    toml.write_text('[mqtt]\nport = "not-a-port"\n[[meters]]\nid = "m1"\nkind = "virtual"\n')
    proc = subprocess.run([sys.executable, "-m", "edge.agent", "--config", str(toml)],
                          capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.returncode == 2
    assert "mqtt.port" in proc.stderr and "not-a-port" in proc.stderr
    toml.write_text("[mqtt\nport = 1")
    proc = subprocess.run([sys.executable, "-m", "edge.agent", "check-config", "--config", str(toml)],
                          capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.returncode == 2 and "not valid TOML" in proc.stderr


@pytest.mark.parametrize(("key", "bad"), [
    ("model.watch_interval_s", 0), ("store.outbox_max_mb", 0), ("store.retention_days", 0),
    ("store.outbox_max_rows", 0), ("store.batch_max", 0), ("store.batch_interval_s", 0),
    ("store.batch_interval_s", 60), ("mqtt.keepalive_s", 1), ("mqtt.max_inflight", 0),
    ("mqtt.max_readings_per_message", 0), ("mqtt.reconnect_max_s", 0), ("mqtt.refused_retry_s", 0),
    ("mqtt.port", 0), ("model.threads", 0), ("schedule.profile_every_s", 0),
    ("schedule.forecast_every_s", 1e9), ("schedule.status_every_s", 0), ("schedule.min_coverage", 1.5),
    ("schedule.nilm_resolution_s", 0.01), ("schedule.profile_resolution_s", -1),
    ("store.retention_days", float("nan")), ("model.watch_interval_s", float("inf")),
    ("mqtt.protocol", "4"),
])
def test_every_numeric_option_is_range_checked(key, bad):
    section, name = key.split(".")
    with pytest.raises(ConfigError) as err:
        parse_config({section: {name: bad}, "meters": [METER]})
    assert err.value.key == key
    assert repr(bad) in str(err.value) or str(bad) in str(err.value)


def test_no_numeric_option_without_a_range():
    """A new numeric option must get a range in edge.agent.config._RANGES (or a choice list)."""
    import dataclasses

    from edge.agent import config

    sections = {"gateway": config.GatewayConfig, "mqtt": config.MqttConfig, "store": config.StoreConfig,
                "model": config.ModelConfig, "schedule": config.ScheduleConfig}
    missing = [f"{s}.{f.name}" for s, cls in sections.items() for f in dataclasses.fields(cls)
               if f.type in ("int", "float") and f"{s}.{f.name}" not in config._RANGES
               and f"{s}.{f.name}" not in config._CHOICES]
    assert not missing, f"numeric options without a range: {missing}"


def test_bad_values_are_refused_by_check_config_and_at_start(tmp_path):
    toml = tmp_path / "agent.toml"
    toml.write_text(f'[gateway]\nstate_dir = "{tmp_path}"\n[model]\nwatch_interval_s = 0\n'
                    '[[meters]]\nid = "m1"\nkind = "virtual"\n')
    for cmd in (["check-config", "--config", str(toml)], ["--config", str(toml)]):
        proc = subprocess.run([sys.executable, "-m", "edge.agent", *cmd], capture_output=True, text=True,
                              timeout=60, cwd=REPO)
        assert proc.returncode == 2, proc.stderr
        assert "model.watch_interval_s: expected a number in 0.1..86400, got 0" in proc.stderr
        assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("bad", [0.5, -1, float("nan"), 1e9])
def test_a_meters_offline_time_is_range_checked(bad):
    with pytest.raises(ConfigError) as err:
        parse_config({"meters": [{**METER, "offline_after_s": bad}]})
    assert err.value.key == "meters[0].offline_after_s"


def test_appliances_are_the_homes_own_by_key_or_display_name_and_unknown_ones_list_the_known():
    cfg = parse_config({"meters": [dict(METER, appliances=["kettle", "Washing machine", "TV"])]})
    assert cfg.meters[0].appliances == ["kettle", "washing_machine", "tv"]
    with pytest.raises(ConfigError) as err:
        parse_config({"meters": [dict(METER, appliances=["jacuzzi"])]})
    assert "'jacuzzi'" in str(err.value) and "kettle" in str(err.value) and "washing_machine" in str(err.value)
