#!/usr/bin/env bash
# Builds here (no GPU needed) everything scripts/gpu-check.sh runs on a lent GPU machine, which
# has no cargo and no network, into the git-ignored folder gpu-stage/:
#
#   gpu-stage/tfmpe.gz           the command line (bench, run, info), with CUDA kernels
#   gpu-stage/tests/<name>.gz    test binaries that run their bodies on every device present
#   gpu-stage/torch_tfmpe.py     the PyTorch peer for the W1/W2 comparison
#
# nvcc comes from scripts/cuda-kernels.sh (which installs the pinned pip packages if needed);
# a build without CUDA kernels is refused. The binaries are stripped of debug info and
# gzipped (gpu-check.sh unpacks them): the device tool carries 64 MiB in all, repository
# included, and the stripped binaries are about 10 MiB each. Then, on the device: `bash scripts/gpu-check.sh` with gpu-stage
# carried.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

STAGE=gpu-stage
# Test binaries whose bodies loop over common::devices() (so run on CUDA there), and the CUDA
# ones. Tests that run the command line (tests/common/bin.rs) take it from TFMPE_BIN, which
# gpu-check.sh sets; cli, e2e and wgpu_e2e check the CPU and wgpu and are not staged.
TESTS=(parity alloc ode c2st golden_step cuda_backend cuda_graphs)
# What the device tool carries is 64 MiB, the repository's own files included.
LIMIT_MIB=48

NVCC="$(bash scripts/cuda-kernels.sh --nvcc)"
export NVCC
echo "nvcc: $NVCC"

args=()
for t in "${TESTS[@]}"; do args+=(--test "$t"); done
json="$(mktemp)"
trap 'rm -f "$json"' EXIT
cargo build --release --bin tfmpe
cargo test --release --no-run --message-format=json "${args[@]}" >"$json"

rm -rf "$STAGE"
mkdir -p "$STAGE/tests"
# Each test target's executable, from cargo's JSON messages.
python3 - "$json" "$STAGE/tests" "${TESTS[@]}" <<'EOF'
import json, shutil, sys
src, dest, wanted = sys.argv[1], sys.argv[2], set(sys.argv[3:])
found = {}
for line in open(src):
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        name = m["target"]["name"]
        if name in wanted:
            found[name] = m["executable"]
missing = wanted - set(found)
if missing:
    sys.exit(f"no test executable found for: {', '.join(sorted(missing))}")
for name, exe in sorted(found.items()):
    shutil.copy2(exe, f"{dest}/{name}")
    print(f"staged tests/{name} <- {exe}")
EOF
cp target/release/tfmpe "$STAGE/tfmpe"
# The PyTorch peer of the benchmarks lives beside the project, not in it; stage it when present.
PEER="${TFMPE_TORCH_PEER:-../shared/bench/torch_tfmpe.py}"
if [ -f "$PEER" ]; then cp "$PEER" "$STAGE/torch_tfmpe.py"; else echo "no PyTorch peer at $PEER"; fi
strip --strip-debug "$STAGE/tfmpe" "$STAGE"/tests/*

# The binary must embed the kernels, or the whole device run would only report "unavailable".
if ! "$STAGE/tfmpe" info --json --backend cpu | grep -q '"cuda_kernels":true'; then
    echo "FAIL: $STAGE/tfmpe was built without CUDA kernels" >&2
    exit 1
fi

gzip -9 "$STAGE/tfmpe" "$STAGE"/tests/*
du -ah "$STAGE" | sort -h
mib=$(du -sm "$STAGE" | cut -f1)
if [ "$mib" -ge "$LIMIT_MIB" ]; then
    echo "FAIL: $STAGE is $mib MiB, over the ${LIMIT_MIB} MiB the device tool carries" >&2
    exit 1
fi
echo "OK: $STAGE ($mib MiB). On the device, carry it and run: bash scripts/gpu-check.sh"
