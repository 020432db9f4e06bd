//! Parity of the `embedding` kernels.
