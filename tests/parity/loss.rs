//! Parity of the `loss` kernels.
