//! Metrics that compare a method's posterior samples with a reference (docs/architecture.md#metrics).
//!
//! Classifiers are trained with the crate's own tape on whichever device is passed, so a metric
//! runs where the model runs.
//!
//! - [`c2st`]: the classifier two-sample test of sbibm (held-out accuracy; 0.5 means the two
//!   sample sets are indistinguishable, 1.0 means they are perfectly separable).
//! - [`sbc`]: simulation-based calibration ranks per parameter, with a KS p-value each.
//! - [`tarp`]: the TARP coverage test of the joint posterior.
//! - [`expected_coverage`]: the coverage of highest-posterior-density regions, from the
//!   posterior's log density.
//! - [`lc2st`]: local C2ST, whether the estimate is right at one observation, judged from an
//!   amortised calibration set, with a permutation-null p-value.
//!
//! SBC and TARP take the true parameters of data sets simulated from the prior and posterior
//! draws for each (`sbi::calibration_draws` makes them from a trained network).

mod c2st;
mod classifier;
mod coverage;
mod ks;
mod lc2st;
mod sbc;
mod tarp;

pub use c2st::{c2st, C2stConfig};
pub use classifier::MlpTraining;
pub use coverage::{expected_coverage, Coverage};
pub use ks::{kolmogorov_q, ks_uniform};
pub use lc2st::{lc2st, Calibration, Lc2st, Lc2stClassifiers, Lc2stConfig, Null};
pub use sbc::{sbc, Sbc};
pub use tarp::{tarp, Tarp};
