//! Parity of the `norm` kernels.
