#!/usr/bin/env bash
# Build the package with colcon (ament_python) into a scratch dir and check that the
# launch/config/engine files and executables land where `ros2 launch` expects them.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
WS="$(mktemp -d)"
trap 'rm -rf "$WS"' EXIT
mkdir -p "$WS/src"
mkdir -p "$WS/src/vla_edge"
git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t "$WS/src/vla_edge/"
(
  cd "$WS"
  PATH="$OLDPWD/$VENV/bin:$PATH" colcon --log-base log build --base-paths src --build-base build --install-base install \
    --event-handlers console_cohesion- > colcon.log 2>&1 || { cat colcon.log; exit 1; }
)
SHARE="$WS/install/vla_edge/share/vla_edge"
fail=0
for f in package.xml launch/drive.launch.py config/drive.yaml config/model.yaml engines/student.onnx engines/student.json engines/student.ts; do
  if [ -f "$SHARE/$f" ]; then echo "ok   share/vla_edge/$f"; else echo "MISSING share/vla_edge/$f"; fail=1; fi
done
[ -f "$WS/install/vla_edge/share/ament_index/resource_index/packages/vla_edge" ] && echo "ok   ament resource marker" || { echo "MISSING ament resource marker"; fail=1; }
for exe in vla-edge inference_node arbiter_node recorder_node; do
  if [ -x "$WS/install/vla_edge/lib/vla_edge/$exe" ]; then echo "ok   lib/vla_edge/$exe"; else echo "MISSING lib/vla_edge/$exe"; fail=1; fi
done
exit $fail
