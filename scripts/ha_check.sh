#!/usr/bin/env bash
# Starts a real Home Assistant (from .venv-homeassistant) against the demo's broker, onboards it
# over REST, adds the MQTT integration, runs `unimeter demo` into that broker and prints a report:
# the entity table, every MQTT warning from Home Assistant's log, the Energy dashboard's validation
# and how fast a meter whose readings stop goes unavailable. Takes about 10-15 minutes.
#
#   bash scripts/ha_check.sh [--bundle DIR] [--agent-seconds 150] [--keep DIR]
#   bash scripts/ha_check.sh --bundle demo-out/train/bundle | tee bench/results/home_assistant.md
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_homeassistant.sh
export UNIMETER_PYTHON="${UNIMETER_PYTHON:-$(command -v python3)}"
exec .venv-homeassistant/bin/python scripts/ha_check.py --python "$UNIMETER_PYTHON" "$@"
