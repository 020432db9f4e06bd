//! Metrics that compare a method's posterior samples with a reference (DESIGN §9).
//!
//! Classifiers are trained with the crate's own tape on whichever device is passed, so a metric
//! runs where the model runs.
//!
//! - [`c2st`]: the classifier two-sample test of sbibm (held-out accuracy; 0.5 means the two
//!   sample sets are indistinguishable, 1.0 means they are perfectly separable).

mod c2st;

pub use c2st::{c2st, C2stConfig};
