#!/usr/bin/env bash
# Installs everything, then runs the local demo of the whole pipeline:
# the stack comes up, HAPT subjects replay as live devices, and a live summary prints.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${IOTLM_VENV:-$HOME/.cache/iotlm/venv}"
bash "$ROOT/scripts/setup.sh"
cd "$ROOT"
exec "$VENV/bin/iotlm" demo "$@"
