#!/usr/bin/env bash
# The full test command (README): formatting, lints, and the whole test suite.
# It installs what it needs by itself, so a fresh machine needs nothing else.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

# Each step says when it starts, so that a slow run shows where its time went.
step() { printf '\n==> %s  [%s]\n' "$*" "$(date +%T)"; }

step "toolchain"
cargo --version
rustup component list --installed 2>/dev/null | grep -qE '^rustfmt' || rustup component add rustfmt
rustup component list --installed 2>/dev/null | grep -qE '^clippy' || rustup component add clippy

step "lavapipe (Mesa's software Vulkan) for the wgpu tests"
# The wgpu backend's tests run on a software adapter here; TFMPE_REQUIRE_WGPU=1 turns a missing
# adapter into a test failure instead of a skip.
if [ ! -e /usr/share/vulkan/icd.d/lvp_icd.x86_64.json ]; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq mesa-vulkan-drivers libvulkan1 >/dev/null
fi
export VK_ICD_FILENAMES=/usr/share/vulkan/icd.d/lvp_icd.x86_64.json
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"
chmod 700 "$XDG_RUNTIME_DIR"
export TFMPE_REQUIRE_WGPU=1

step "numpy for the example model file's Python simulator (tests/e2e.rs runs it with python3)"
python3 -c 'import numpy' 2>/dev/null || python3 -m pip install -q numpy

step "CUDA kernels: nvcc (from the Python package index if needed), no register spills"
bash scripts/cuda-kernels.sh target/cuda-kernels

step "CUDA kernels on the CPU emulator: bit for bit where the contract fixes the order, launch limits, the ptxas record, no FMA in the bit-exact kernels"
bash kernels/emu/run.sh target/cuda-kernels

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --workspace --all-targets -- -D warnings (the crate and its Python bindings)"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo test"
cargo test --all-targets --no-fail-fast 2>&1 | tee target/test.log
# Benches are built by --all-targets but run in test mode (one iteration each): that keeps
# them compiling and working without timing anything here.

step "cargo test --doc (the API documentation's examples)"
cargo test --doc 2>&1 | tee -a target/test.log

step "Python package: pip install ./python into a fresh virtual environment, then pytest"
# The README's first script runs as a test (python/tests): a fit checked against the exact
# posterior.
rm -rf target/pyenv
python3 -m venv target/pyenv
target/pyenv/bin/pip install -q ./python pytest
target/pyenv/bin/python -m pytest python/tests -q -p no:cacheprovider --durations=5 2>&1 | tee target/pytest.log
awk '/ passed/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "test result: pytest. %d passed; %d failed\n", p, f }' target/pytest.log >> target/test.log

# One closing line over every test binary, for whoever reads the log's end.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "%d passed, %d failed\n", p, f }' target/test.log
printf 'finished [%s]\n' "$(date +%T)"
