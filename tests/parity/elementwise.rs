//! Parity of the `elementwise` kernels.
