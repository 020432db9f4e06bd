//! Parity of the `optim` kernels.
