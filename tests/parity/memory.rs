//! Parity of the `memory` kernels.
