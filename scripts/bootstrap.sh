#!/usr/bin/env bash
# Create/refresh .venv with the requested extras. Idempotent: reinstalls only when
# setup.py or the extras change. Usage: scripts/bootstrap.sh ros,train,dev
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS="${1:-ros}"
VENV="${VENV:-.venv}"

pick_python() {
  # The ROS 2 Kilted wheels and the local torch CPU wheel are built for CPython 3.11.
  for py in python3.11 python3.12 python3.10 python3; do
    if command -v "$py" >/dev/null 2>&1 && "$py" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
      echo "$py"; return 0
    fi
  done
  echo "error: need Python >= 3.10 (apt-get install python3 python3-venv)" >&2
  return 1
}

if [ ! -x "$VENV/bin/python" ]; then
  PY="$(pick_python)"
  if ! "$PY" -m venv "$VENV" 2>/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
      "$PY" -m venv "$VENV"
    else
      echo "error: '$PY -m venv' failed; install it with: sudo apt-get install python3-venv" >&2
      exit 1
    fi
  fi
fi

STAMP="$VENV/.installed-$(echo "$EXTRAS" | tr ',' '-')"
HASH="$(cat setup.py setup.cfg | sha256sum | cut -c1-16)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$HASH" ]; then
  exit 0
fi
"$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
"$VENV/bin/python" -m pip install -q -e ".[${EXTRAS}]" 2>&1 | grep -v "^WARNING: Location" || true
"$VENV/bin/python" -c "import vla_edge" # fail loudly if the install did not work
echo "$HASH" > "$STAMP"
