"""The simulator of gaussian-linear.toml, in tfmpe's model-file exchange format 1.

Standard input: a header line (sigma,mu), then one CSV line per site. Standard output: the
header `y`, then one line per site in the same order. TFMPE_SEED seeds the random numbers.
"""
import os
import sys

import numpy as np

header = sys.stdin.readline().strip().split(",")
rows = np.loadtxt(sys.stdin, delimiter=",", ndmin=2)
columns = dict(zip(header, rows.T))
rng = np.random.default_rng(int(os.environ["TFMPE_SEED"]))
y = columns["mu"] + columns["sigma"] * rng.standard_normal(len(rows))
print("y")
np.savetxt(sys.stdout, y, fmt="%.17g")
