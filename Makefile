# Holo: the two commands of the README, and a few helpers.
#   make demo   install everything into .venv and run the main job on its built-in default
#   make test   install everything into .venv and run lint, types and the test suite
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint bench soak install system-deps clean

$(STAMP): pyproject.toml .ci/system-deps.sh
	sh .ci/system-deps.sh
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip wheel
	$(BIN)/python -m pip install -q -e '.[test]'
	$(BIN)/python -c "import holo, cv2, open3d, aiortc, mediapipe, moderngl, zmq, mcap, DracoPy, pyrealsense2, xr" \
		|| { echo "Holo's dependencies installed but do not import; see the message above"; exit 1; }
	touch $(STAMP)

install: $(STAMP)

system-deps:
	sh .ci/system-deps.sh

# The demo runs for a minute by default; `make demo DEMO_ARGS=` runs it until Ctrl-C.
DEMO_ARGS ?= --seconds 60
demo: $(STAMP)
	$(BIN)/holo demo $(DEMO_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check holo viewer calibration tests bench
	$(BIN)/ruff format --check holo viewer calibration tests bench
	$(BIN)/mypy

test: $(STAMP) lint
	$(BIN)/python -m pytest -q

# Every benchmark except the 10-minute soak (make soak); figures go to bench/results/.
bench: $(STAMP)
	$(BIN)/python bench/capture.py
	$(BIN)/python bench/codec.py
	$(BIN)/python bench/fuzz_packets.py
	$(BIN)/python bench/call.py
	$(BIN)/python bench/viewer.py
	$(BIN)/python bench/record.py

soak: $(STAMP)
	$(BIN)/python bench/soak.py

clean:
	rm -rf $(VENV) demo-out .pytest_cache .mypy_cache .ruff_cache
