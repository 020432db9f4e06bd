"""Fails if a kernel the emulator compares bit for bit could be fused into FMAs on the GPU.

    no_fma.py PTX...

The emulator builds the kernels with g++ -ffp-contract=off, so it sees a multiply and an add
rounded apart; nvcc contracts `a * b + c` into one FMA (fma.rn in the PTX), and ptxas may fuse
a plain mul.fN whose result feeds a plain add.fN or sub.fN. Either way the GPU's bits would
differ from the emulator's and the CPU's. The kernels below must therefore have no fma and no
such pair; __fmul_rn / __fadd_rn (mul.rn, add.rn) are never fused.
"""

import re
import sys

# The kernels whose bits the contract or their documented order fixes: every kernel that
# test.cpp and families.h compare with check_bits.
EXACT = """fill copy_words copy_cols gather_rows scatter_rows uniform_fill bias_grad add scale axpy
relu_fwd relu_bwd embedding_fwd embedding_bwd fm_prepare fm_loss ode_stage dopri5_error
adamw_step sum_squares reduce_sum""".split()


def hazards(body):
    """fma instructions, and plain multiplies whose result a plain add or sub of the same type reads."""
    found = re.findall(r"\bfma\.\S+", body)
    products = {m.group(2): m.group(1) for m in re.finditer(r"\bmul\.(f32|f64)\s+(%\w+),", body)}
    for m in re.finditer(r"\b(?:add|sub)\.(f32|f64)\s+%\w+,\s*([^,;\s]+),\s*([^,;\s]+);", body):
        for reg in m.group(2, 3):
            if products.get(reg) == m.group(1):
                found.append(f"mul.{m.group(1)} into {m.group(0)}")
    return found


def main():
    seen, bad = set(), []
    for path in sys.argv[1:]:
        for m in re.finditer(r"\.entry (\w+)\((.*?)\n\}\n", open(path).read(), re.S):
            if m.group(1) in EXACT:
                seen.add(m.group(1))
                bad += [f"{m.group(1)}: {h}" for h in hazards(m.group(0))]
    missing = sorted(set(EXACT) - seen)
    if missing:
        sys.exit(f"no_fma.py: no PTX entry for {', '.join(missing)}")
    if bad:
        sys.exit("FMA contraction in a bit-exact kernel (use __fmul_rn / __fadd_rn):\n  " + "\n  ".join(bad))
    print(f"ok   no FMA contraction in the {len(EXACT)} bit-exact kernels (PTX)")


main()
