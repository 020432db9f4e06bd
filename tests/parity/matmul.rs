//! Parity of the `matmul` kernels.
