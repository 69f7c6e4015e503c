# Two entry points for a fresh machine (see README): `make demo` and `make test`.
# Both bootstrap .venv themselves. DDS stays on loopback for everything started here.
export ROS_AUTOMATIC_DISCOVERY_RANGE := LOCALHOST
export ROS_DOMAIN_ID ?= $(shell echo $$(( $$$$ % 80 + 10 )))
export RMW_IMPLEMENTATION ?= rmw_fastrtps_cpp
VENV ?= .venv
# -rs: every skipped test prints its reason (e.g. optional KITTI/nuScenes data, no GPU).
PYTEST_ARGS ?= -n 2 --timeout 600 -rs

.PHONY: demo test test-jazzy lint format colcon bench soak safety clean help

help:  ## list targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*##/\t/'

demo:  ## install runtime + ROS wheels, run the live-graph demo on a synthetic airside bag
	@scripts/bootstrap.sh ros
	$(VENV)/bin/vla-edge demo

test:  ## install everything, run the full test suite
	@scripts/bootstrap.sh ros,train,dev
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

# The DDS-facing tests again, against the Jazzy rclpy wheels (vehicle distro API check).
JAZZY_TESTS ?= test/test_conversions_dds.py test/test_graph_live.py test/test_graph_params.py \
	test/test_recorder_node.py test/test_frame_assembly.py
test-jazzy:  ## run the ROS-facing tests against the ROS 2 Jazzy rclpy wheels (.venv-jazzy)
	@VENV=.venv-jazzy scripts/bootstrap.sh jazzy,dev
	.venv-jazzy/bin/python -m pytest -rs -p no:cacheprovider $(JAZZY_TESTS)

lint:  ## ruff check + format check (bootstraps .venv with the dev tools if ruff is missing)
	@test -x $(VENV)/bin/ruff || scripts/bootstrap.sh dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format:  ## apply ruff formatting and safe fixes
	@test -x $(VENV)/bin/ruff || scripts/bootstrap.sh dev
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

colcon:  ## prove the package builds as an ament_python package and the share files land
	@scripts/bootstrap.sh ros,train,dev
	scripts/colcon_check.sh

bench:  ## run the CPU benchmarks (prints ratios)
	@scripts/bootstrap.sh ros,train,dev
	for b in bench/bench_*.py; do $(VENV)/bin/python $$b || exit 1; done

SOAK_S ?= 1800
soak:  ## live graph at 10 Hz for SOAK_S s (default 30 min): RSS growth, latency drift, drops
	@scripts/bootstrap.sh ros,dev
	SOAK_S=$(SOAK_S) SOAK_REPORT=soak_report.txt $(VENV)/bin/python -m pytest -p no:randomly -s -n 0 --timeout 0 test/test_soak.py
	@cat soak_report.txt

# Safety suite (docs/safety.md): 200 scenarios, mixed difficulty, every family, Frenet alone and the stack.
SAFETY_SEED ?= 77
SAFETY_WORKERS ?= 2
safety:  ## run the 200-scenario safety suite (Frenet alone + stack), JSON + HTML in runs/safety/
	@scripts/bootstrap.sh ros
	mkdir -p runs/safety
	for p in frenet stack; do $(VENV)/bin/vla-edge sim evaluate --suite safety --planner $$p --seed $(SAFETY_SEED) \
		--workers $(SAFETY_WORKERS) --no-progress --out runs/safety/$$p.json --html runs/safety/$$p.html || exit 1; done

clean:  ## remove colcon/pytest build output (build install log .pytest_cache)
	rm -rf build install log .pytest_cache
