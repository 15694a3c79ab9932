"""One error root: every exception class unimeter defines derives from ``UnimeterError``."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import edge.errors
import firmware_bridge.errors
from edge.errors import ConfigError, UnimeterError

PACKAGES = ("firmware_bridge", "edge", "trainer", "export")


def _exception_classes() -> dict[str, type]:
    found: dict[str, type] = {}
    for package_name in PACKAGES:
        package = importlib.import_module(package_name)
        for info in pkgutil.walk_packages(package.__path__, package_name + "."):
            if info.name.endswith("__main__"):
                continue
            module = importlib.import_module(info.name)
            for name, obj in vars(module).items():
                if (inspect.isclass(obj) and issubclass(obj, BaseException)
                        and obj.__module__ == module.__name__):
                    found[f"{module.__name__}.{name}"] = obj
    return found


def test_every_error_class_has_the_one_root():
    classes = _exception_classes()
    assert len(classes) > 30  # the walk found the hierarchies, not nothing
    stray = sorted(name for name, cls in classes.items() if not issubclass(cls, UnimeterError))
    assert not stray, f"exceptions outside UnimeterError: {stray}"


def test_there_is_one_config_error():
    classes = _exception_classes()
    assert [n for n in classes if n.rsplit(".", 1)[1] == "ConfigError"] == ["firmware_bridge.errors.ConfigError"]
    assert edge.errors.ConfigError is firmware_bridge.errors.ConfigError
    from edge.agent.config import ConfigError as AgentConfigError

    assert AgentConfigError is ConfigError


def test_config_error_names_its_key_and_refuses_the_old_call_shape():
    e = ConfigError("expected an integer, got 'abc'", key="mqtt.port")
    assert str(e) == "mqtt.port: expected an integer, got 'abc'" and e.key == "mqtt.port"
    assert isinstance(e, ValueError) and e.exit_code == 2
    with pytest.raises(TypeError):
        ConfigError("mqtt.port", "expected an integer")  # key first, positionally: an old call
