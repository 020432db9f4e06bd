#!/usr/bin/env bash
# W1 (one training step, S = 50, batch 100) and W2 (1 000 Euler-100 samples, S = 50) for tfmpe
# and its PyTorch peer, alternately in one sitting, then the median of each and the ratios.
#
#   scripts/bench-peers.sh PEER_SCRIPT [ROUNDS]
#
# PEER_SCRIPT is the PyTorch re-implementation of the same network (a `torch_tfmpe.py` that
# takes `train` / `sample --solver euler` and prints one JSON line with `steps_per_s_median` /
# `samples_per_s_median`); PEER_PYTHON (default `python3`) is the interpreter that has torch.
# The peer runs with `--no-pad` (101 tokens, no padding key), as our network does. Run it on an
# otherwise idle machine: two programs that each spin a thread per core slow each other down.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

peer=${1:?usage: scripts/bench-peers.sh PEER_SCRIPT [ROUNDS]}
rounds=${2:-3}
python=${PEER_PYTHON:-python3}
[ -f "$peer" ] || { echo "bench-peers: no peer script at $peer" >&2; exit 2; }
"$python" -c 'import torch' 2>/dev/null || {
    echo "bench-peers: $python cannot import torch; set PEER_PYTHON to an interpreter that can" >&2
    exit 2
}

cargo build --release --quiet
tfmpe=${CARGO_TARGET_DIR:-target}/release/tfmpe
log=$(mktemp)
trap 'rm -f "$log"' EXIT

# One line per measurement: workload, implementation, rate. A failing run stops the script.
field() { "$python" -c "import json, sys; print(json.loads(sys.stdin.readlines()[-1])['$1'])"; }
measure() {
    local workload=$1 impl=$2 key=$3 out rate
    shift 3
    out=$("$@") || { echo "bench-peers: $workload $impl failed: $*" >&2; exit 1; }
    rate=$(printf '%s\n' "$out" | field "$key")
    echo "$workload $impl $rate" >>"$log"
}
for r in $(seq 1 "$rounds"); do
    echo "round $r of $rounds" >&2
    measure W1 tfmpe steps_per_s "$tfmpe" bench train-step --backend cpu --json
    measure W1 torch steps_per_s_median "$python" "$peer" train --no-pad
    # W2 takes about a minute a pass: one timed pass each (the peer's first pass is its warm-up).
    measure W2 tfmpe samples_per_s "$tfmpe" bench sample --backend cpu --solver euler \
        --steps 100 --n 1000 --repeats 1 --json
    measure W2 torch samples_per_s_median "$python" "$peer" sample --no-pad --solver euler \
        --n 1000 --repeats 2
done

"$python" - "$log" <<'EOF'
import math, statistics, sys
rates = {}
for line in open(sys.argv[1]):
    w, impl, rate = line.split()
    value = float(rate)
    if not (math.isfinite(value) and value > 0):
        sys.exit(f"bench-peers: {w} {impl} reported the rate {rate}, not a positive number")
    rates.setdefault((w, impl), []).append(value)
print(f"{'workload':<10}{'tfmpe':>22}{'torch eager':>22}{'ratio':>8}")
for w, unit in [("W1", "steps/s"), ("W2", "samples/s")]:
    ours, peer = (statistics.median(rates[(w, i)]) for i in ("tfmpe", "torch"))
    runs = lambda i: ", ".join(f"{x:.2f}" for x in rates[(w, i)])
    print(f"{w:<10}{ours:>12.2f} {unit:<9}{peer:>12.2f} {unit:<9}{ours / peer:>7.2f}x")
    print(f"{'':<10}runs: tfmpe [{runs('tfmpe')}], torch [{runs('torch')}]")
EOF
