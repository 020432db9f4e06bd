//! Parity of the `flow` kernels.
