//! Metrics that compare a method's posterior samples with a reference (docs/architecture.md#metrics).
//!
//! Classifiers are trained with the crate's own tape on whichever device is passed, so a metric
//! runs where the model runs.
//!
//! - [`c2st`]: the classifier two-sample test of sbibm (held-out accuracy; 0.5 means the two
//!   sample sets are indistinguishable, 1.0 means they are perfectly separable).
//! - [`sbc`]: simulation-based calibration ranks per parameter, with a KS p-value each.
//! - [`tarp`]: the TARP coverage test of the joint posterior.
//!
//! SBC and TARP take the true parameters of data sets simulated from the prior and posterior
//! draws for each (`sbi::calibration_draws` makes them from a trained network).

mod c2st;
mod ks;
mod sbc;
mod tarp;

pub use c2st::{c2st, C2stConfig};
pub use ks::{kolmogorov_q, ks_uniform};
pub use sbc::{sbc, Sbc};
pub use tarp::{tarp, Tarp};
