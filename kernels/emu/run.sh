#!/usr/bin/env bash
# Runs the CUDA kernels on the CPU, one std::thread per CUDA thread (cuda_emu.h: __syncthreads,
# warp shuffles and ballots as barriers, blocks one after another, tensor-core mma.sync per the
# PTX fragment layouts), against references on odd shapes (test.cpp): bit for bit where the
# contract fixes the bits or the order of a sum, within a tolerance where it does not. It checks
# index arithmetic, masking, tails, synchronisation and every launch against the hardware
# limits (cuda_emu.h, launch_error) where no GPU is at hand; it is no substitute for the parity
# tests on a GPU (no memory model, no real timing, no device math library).
#
#   kernels/emu/run.sh [CUDA_KERNELS_DIR]      (needs g++ ≥ 12; about 25 s)
#
# Registers and static shared memory per kernel come from kernels/emu/ptxas-usage.tsv. Given the
# output folder of scripts/cuda-kernels.sh (which has found or installed nvcc), the run first
# checks that record against the build's ptxas-summary.tsv, and the PTX of the kernels it
# compares bit for bit for FMA contraction, which g++ -ffp-contract=off cannot show
# (no_fma.py).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/k"
cp "$here/../common.cuh" "$work/k/"
for f in "$here"/../*.cu; do
    # Dynamic shared memory becomes the emulator's buffer; no C linkage needed in one unit.
    sed -e 's|extern __shared__ float4 smem4\[\];|float4* smem4 = g_dyn_smem.data();|' \
        -e 's|extern __shared__ float acc\[\];|float* acc = reinterpret_cast<float*>(g_dyn_smem.data());|' \
        -e 's|extern "C" ||' "$f" >"$work/k/$(basename "$f")"
done
# The TF32 helpers are inline PTX: swap in their host stand-ins.
python3 - "$work/k/matmul.cu" <<'PY'
import sys
p = sys.argv[1]
s = open(p).read()
a = s.index('__device__ __forceinline__ u32 to_tf32')
b = s.index('__global__ void __launch_bounds__(TC_THREADS)')
open(p, 'w').write(s[:a] + '#include "tf32_emu.h"\n\n' + s[b:])
PY
built="${1:-}"
if [ -n "$built" ]; then
    nvcc="$(bash "$here/../../scripts/cuda-kernels.sh" --nvcc)"
    for f in "$here"/../*.cu; do
        "$nvcc" -ptx -std=c++17 -O3 -arch=compute_90 -I"$here/.." -o "$work/$(basename "$f" .cu).ptx" "$f"
    done
    python3 "$here/no_fma.py" "$work"/*.ptx
fi
python3 "$here/limits.py" "$work/k" "$here/ptxas-usage.tsv" ${built:+"$built/ptxas-summary.tsv"} >"$work/limits.inc"
g++ -std=c++20 -O1 -ffp-contract=off -pthread -w -I"$here" -I"$work" "$here/test.cpp" -o "$work/test"
"$work/test"
