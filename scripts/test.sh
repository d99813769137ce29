#!/usr/bin/env bash
# Installs everything, then runs the test suite against the real local services
# (the tests start Kafka, PostgreSQL, Redis, Mosquitto and PGlite themselves, and stop them after).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${IOTLM_VENV:-$HOME/.cache/iotlm/venv}"
bash "$ROOT/scripts/setup.sh"
cd "$ROOT"
exec "$VENV/bin/python" -m pytest -ra "$@"
