//! Parity of the `ode` kernels.
