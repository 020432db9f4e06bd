#!/usr/bin/env bash
# Compiles every kernels/*.cu to a fatbin (SASS for each target architecture plus PTX for the
# newest, so newer GPUs can JIT it) and fails if ptxas reports a register spill in any kernel.
#
#   scripts/cuda-kernels.sh [OUT_DIR]          (default: target/cuda-kernels)
#   scripts/cuda-kernels.sh --nvcc             (only print the nvcc it would use)
#
# nvcc is looked for in $NVCC, on PATH, under $CUDA_HOME / $CUDA_PATH, then in Python's
# `nvidia-cuda-nvcc` package, which is installed with pip when it is missing (no GPU and no
# CUDA toolkit needed; README.md, "Backends", gives the command). The pip packages are pinned together:
# nvidia-cuda-nvcc alone pulls the newest nvvm, whose PTX a CUDA 13.0 driver may reject.
#
# TFMPE_CUDA_ARCHES overrides the targets, e.g. "80 90" (default "80 86 89 90"): SASS for each,
# PTX for the last.
# Output: OUT_DIR/<stem>.fatbin, OUT_DIR/<stem>.ptxas.log, and a register/spill table on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT="${1:-target/cuda-kernels}"
ARCHES="${TFMPE_CUDA_ARCHES:-80 86 89 90}"
NVCC_PIP_VERSION=13.0.88
PIP_PINS=(
    "nvidia-cuda-nvcc==$NVCC_PIP_VERSION"
    "nvidia-nvvm==$NVCC_PIP_VERSION"
    "nvidia-cuda-crt==$NVCC_PIP_VERSION"
    "nvidia-cuda-runtime==13.0.96"
)

pip_nvcc() {
    python3 - <<'EOF' 2>/dev/null
import os
import nvidia
for root in nvidia.__path__:
    for sub in ("cu13", "cuda_nvcc"):
        path = os.path.join(root, sub, "bin", "nvcc")
        if os.access(path, os.X_OK):
            print(path)
            raise SystemExit
EOF
}

find_nvcc() {
    if [ -n "${NVCC:-}" ]; then
        command -v "$NVCC" && return
        echo "NVCC=$NVCC is not an executable" >&2
        return 1
    fi
    command -v nvcc && return
    local home
    for home in "${CUDA_HOME:-}" "${CUDA_PATH:-}"; do
        if [ -n "$home" ] && [ -x "$home/bin/nvcc" ]; then
            echo "$home/bin/nvcc"
            return
        fi
    done
    local found nvvm
    found="$(pip_nvcc || true)"
    # The nvvm (cicc) beside a pip nvcc must be the same release, or its PTX may be too new.
    nvvm="$(python3 -c 'import importlib.metadata as m; print(m.version("nvidia-nvvm"))' 2>/dev/null || true)"
    if [ -z "$found" ] || [ "${nvvm%.*}" != "${NVCC_PIP_VERSION%.*}" ]; then
        echo "nvcc ${found:+with nvvm $nvvm }not usable: installing ${PIP_PINS[*]} with pip" >&2
        python3 -m pip install --quiet --disable-pip-version-check "${PIP_PINS[@]}" >&2
        found="$(pip_nvcc || true)"
    fi
    [ -n "$found" ] || { echo "nvcc: not found and could not be installed" >&2; return 1; }
    echo "$found"
}

# `--nvcc` only prints the nvcc to use (installing the pinned packages if needed), for
# scripts/gpu-stage.sh to hand to build.rs.
if [ "${1:-}" = "--nvcc" ]; then
    find_nvcc
    exit
fi

NVCC_BIN="$(find_nvcc)"
echo "nvcc: $NVCC_BIN"
"$NVCC_BIN" --version | tail -n 2

# -gencode per architecture; the last one also embeds PTX.
read -r -a arch_list <<<"${ARCHES//,/ }"
[ "${#arch_list[@]}" -gt 0 ] || { echo "TFMPE_CUDA_ARCHES is empty" >&2; exit 1; }
GENCODE=()
last="${arch_list[${#arch_list[@]}-1]}"
for a in "${arch_list[@]}"; do
    [[ "$a" =~ ^[0-9]+[a-z]?$ ]] || { echo "bad architecture '$a' in TFMPE_CUDA_ARCHES" >&2; exit 1; }
    if [ "$a" = "$last" ]; then
        GENCODE+=(-gencode "arch=compute_$a,code=[sm_$a,compute_$a]")
    else
        GENCODE+=(-gencode "arch=compute_$a,code=sm_$a")
    fi
done

mkdir -p "$OUT"
shopt -s nullglob
SOURCES=(kernels/*.cu)
[ "${#SOURCES[@]}" -gt 0 ] || { echo "no kernels/*.cu" >&2; exit 1; }

# One nvcc per file, as many at once as there are cores; each writes its own log.
compile() {
    local src="$1" stem
    stem="$(basename "$src" .cu)"
    if "$NVCC_BIN" -fatbin -std=c++17 -O3 -Xptxas -v "${GENCODE[@]}" -Ikernels \
        -o "$OUT/$stem.fatbin" "$src" >"$OUT/$stem.ptxas.log" 2>&1; then
        return 0
    fi
    echo "== $src failed to compile:" >&2
    cat "$OUT/$stem.ptxas.log" >&2
    return 1
}

start=$(date +%s)
jobs_max="$(nproc 2>/dev/null || echo 2)"
failed=0
running=0
for src in "${SOURCES[@]}"; do
    compile "$src" &
    running=$((running + 1))
    if [ "$running" -ge "$jobs_max" ]; then
        wait -n || failed=1
        running=$((running - 1))
    fi
done
while [ "$running" -gt 0 ]; do
    wait -n || failed=1
    running=$((running - 1))
done
[ "$failed" -eq 0 ] || { echo "CUDA kernels: compile errors" >&2; exit 1; }
echo "compiled ${#SOURCES[@]} files for sm_${arch_list[*]} in $(( $(date +%s) - start )) s -> $OUT"

# Warnings from cicc/ptxas/the host compiler are shown (they are not fatal).
grep -H -iE "warning" "$OUT"/*.ptxas.log | grep -v "bytes spill" || true

# ptxas -v, per kernel and architecture:
#   ptxas info    : Compiling entry function 'NAME' for 'sm_XX'
#   ptxas info    : Function properties for NAME
#       0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
#   ptxas info    : Used 40 registers, used 1 barriers, 1060 bytes smem, ...
# Collect one row per (file, kernel, arch) and fail on any non-zero spill.
table="$OUT/ptxas-summary.tsv"
for log in "$OUT"/*.ptxas.log; do
    awk -v file="$(basename "$log" .ptxas.log)" '
        /Compiling entry function/ {
            match($0, /function \x27[^\x27]+\x27/); name = substr($0, RSTART + 10, RLENGTH - 11)
            match($0, /for \x27[^\x27]+\x27/); arch = substr($0, RSTART + 5, RLENGTH - 6)
            next
        }
        /Function properties for/ { sub(/.*Function properties for /, ""); fn = $0; next }
        /bytes spill stores/ {
            for (i = 1; i <= NF; i++) {
                if ($(i+1) == "bytes" && $(i+2) == "spill" && $(i+3) ~ /^stores/) st = $i
                if ($(i+1) == "bytes" && $(i+2) == "spill" && $(i+3) ~ /^loads/) ld = $i
                if ($(i+1) == "bytes" && $(i+2) == "stack") stack = $i
            }
            # A non-inlined device function reports its own properties; name it.
            who = (fn != "" && fn != name) ? name "/" fn : name
            spill[who "\t" arch] = st "\t" ld "\t" stack
            fn = ""
            next
        }
        /Used [0-9]+ registers/ {
            regs = $0; sub(/.*Used /, "", regs); sub(/ registers.*/, "", regs)
            smem = 0
            if (match($0, /[0-9]+ bytes smem/)) { smem = substr($0, RSTART, RLENGTH); sub(/ bytes smem/, "", smem) }
            key = name "\t" arch
            s = (key in spill) ? spill[key] : "0\t0\t0"
            print file "\t" name "\t" arch "\t" regs "\t" smem "\t" s
        }
        END {
            # Spill lines of non-inlined functions that have no register line of their own.
            for (k in spill) { split(k, p, "\t"); if (p[1] ~ /\//) print file "\t" p[1] "\t" p[2] "\t-\t-\t" spill[k] }
        }
    ' "$log"
done >"$table"

[ -s "$table" ] || { echo "no ptxas report found in $OUT/*.ptxas.log" >&2; exit 1; }

# Registers per kernel, one column per architecture (static shared memory in bytes after the
# slash when there is any; dynamic shared memory is set at launch and is not shown).
echo
awk -F'\t' -v arches="${arch_list[*]}" '
    BEGIN { n = split(arches, A, " "); printf "%-12s %-26s", "file", "kernel"; for (i = 1; i <= n; i++) printf " %10s", "sm_" A[i]; print "" }
    { key = $1 "\t" $2; if (!(key in seen)) { seen[key] = 1; order[++k] = key }
      cell[key "\t" $3] = $4 ($5 > 0 ? "/" $5 : "") }
    END { for (j = 1; j <= k; j++) { split(order[j], p, "\t"); printf "%-12s %-26s", p[1], p[2]
            for (i = 1; i <= n; i++) { c = cell[order[j] "\t" "sm_" A[i]]; printf " %10s", (c == "" ? "-" : c) }
            print "" } }
' "$table"

spills="$(awk -F'\t' '$6 != 0 || $7 != 0 { printf "  %s: %s (%s): %s bytes spill stores, %s bytes spill loads\n", $1, $2, $3, $6, $7 }' "$table")"
kernels="$(cut -f1,2 "$table" | sort -u | wc -l)"
if [ -n "$spills" ]; then
    echo
    echo "FAIL: ptxas spilled registers in:" >&2
    echo "$spills" >&2
    exit 1
fi
echo
echo "OK: $kernels kernels, no register spills (ptxas -v for sm_${arch_list[*]})"
