"""Writes the emulator's table of kernel limits (limits.inc, see KernelLimits in cuda_emu.h).

    limits.py KDIR RECORD [SUMMARY]

KDIR holds the kernels as run.sh rewrote them; RECORD is kernels/emu/ptxas-usage.tsv (kernel,
registers, static shared bytes: the most over the target architectures). Given SUMMARY, the
ptxas-summary.tsv that scripts/cuda-kernels.sh writes, the record must equal what it reports,
so that the numbers the emulator checks launches against are those of the current kernels.
"""

import glob
import os
import re
import subprocess
import sys


def launch_bounds(kdir):
    """{entry: maxntid or 0} from the preprocessed sources, so macro-built entries count too."""
    bounds = {}
    for src in sorted(glob.glob(os.path.join(kdir, "*.cu"))):
        text = subprocess.run(
            ["g++", "-E", "-P", "-x", "c++", "-I" + kdir, "-I" + os.path.dirname(__file__),
             "-D__launch_bounds__(...)=LB_MARK(__VA_ARGS__)", src],
            check=True, capture_output=True, text=True).stdout
        for m in re.finditer(r"__global__\s+void\s+", text):
            at, bound = m.end(), 0
            if text.startswith("LB_MARK(", at):
                depth, i = 1, at + len("LB_MARK(")
                while depth:
                    depth += {"(": 1, ")": -1}.get(text[i], 0)
                    i += 1
                expr = text[at + len("LB_MARK("):i - 1]
                if not re.fullmatch(r"[0-9+*/() ]+", expr):
                    sys.exit(f"limits.py: cannot evaluate __launch_bounds__({expr})")
                bound = eval(expr.replace("/", "//"))
                at = i
            name = re.match(r"\s*(\w+)\s*\(", text[at:])
            bounds[name.group(1)] = bound
    return bounds


def read_record(path):
    rows = {}
    for line in open(path):
        if line.strip() and not line.startswith("#"):
            name, regs, smem = line.split()
            rows[name] = (int(regs), int(smem))
    return rows


def from_summary(path):
    """The most registers and static shared bytes over the architectures, per kernel."""
    rows = {}
    for line in open(path):
        cols = line.rstrip("\n").split("\t")
        if cols[3] == "-":  # a non-inlined device function's spill line, no registers
            continue
        regs, smem = rows.get(cols[1], (0, 0))
        rows[cols[1]] = (max(regs, int(cols[3])), max(smem, int(cols[4])))
    return rows


def main():
    kdir, record = sys.argv[1], sys.argv[2]
    usage = read_record(record)
    if len(sys.argv) > 3:
        fresh = from_summary(sys.argv[3])
        if fresh != usage:
            print(f"{record} differs from {sys.argv[3]}; record this:", file=sys.stderr)
            for name in sorted(fresh):
                print(f"{name}\t{fresh[name][0]}\t{fresh[name][1]}", file=sys.stderr)
            sys.exit(1)
    bounds = launch_bounds(kdir)
    missing = sorted(set(bounds) ^ set(usage))
    if missing:
        sys.exit(f"limits.py: kernels and {record} disagree on: {', '.join(missing)}")
    for name in sorted(bounds):
        print(f'{{"{name}", {bounds[name]}, {usage[name][0]}, {usage[name][1]}}},')


main()
