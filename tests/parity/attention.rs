//! Parity of the `attention` kernels.
