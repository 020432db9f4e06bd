//! Parity of the `random` kernels.
