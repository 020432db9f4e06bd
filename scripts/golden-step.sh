#!/usr/bin/env bash
# Regenerates tests/fixtures/golden_step.safetensors, the golden training step that
# tests/golden_step.rs checks every backend against:
#
#   PYTHON=/path/to/venv/bin/python bash scripts/golden-step.sh
#
# It exports our initial weights and a fixed batch (the ignored test export_golden_step_inputs),
# then runs scripts/golden_step.py, an independent PyTorch implementation of the network, on
# them in float64. PYTHON (default python3) must have torch and safetensors, for instance:
#   python3 -m venv /tmp/peer && /tmp/peer/bin/pip install torch safetensors
# Only the generator needs them; the test itself reads the fixture alone.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
PYTHON="${PYTHON:-python3}"

if ! "$PYTHON" -c 'import torch, safetensors' 2>/dev/null; then
    echo "$PYTHON has no torch or safetensors; set PYTHON to a Python that has both" >&2
    exit 1
fi
fixture=tests/fixtures/golden_step.safetensors
# The test binary embeds the fixture, so a first generation builds it with an empty one.
mkdir -p tests/fixtures
[ -e "$fixture" ] || : >"$fixture"
inputs="$(mktemp --suffix=.safetensors)"
trap 'rm -f "$inputs"' EXIT
GOLDEN_STEP_INPUTS="$inputs" cargo test --test golden_step -- \
    --ignored --exact export_golden_step_inputs
"$PYTHON" scripts/golden_step.py "$inputs" "$fixture"
