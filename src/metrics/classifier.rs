//! What the classifier-based metrics (C2ST, L-C2ST) share: the checks of their training
//! settings and sklearn's start of an MLP's weights.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How the classifier metrics (C2ST, L-C2ST) train their MLPs; the defaults are sklearn's
/// `MLPClassifier` with early stopping, as sbibm and sbi use it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MlpTraining {
    /// Each of the two hidden layers has `hidden_multiplier · d` units (d: the dimension of
    /// the compared parameters).
    pub hidden_multiplier: usize,
    /// Upper bound on training epochs.
    pub max_epochs: usize,
    /// Rows per minibatch; capped at the number of training rows.
    pub batch_size: usize,
    pub lr: f32,
    /// Share of the training rows held out (per class) to decide when to stop.
    pub validation_fraction: f64,
    /// Training stops after this many epochs without a better validation accuracy.
    pub patience: usize,
}

impl Default for MlpTraining {
    fn default() -> Self {
        MlpTraining {
            hidden_multiplier: 10,
            max_epochs: 1000,
            batch_size: 200,
            lr: 1e-3,
            validation_fraction: 0.1,
            patience: 50,
        }
    }
}

impl MlpTraining {
    /// Refuses settings that cannot train, naming `metric`.
    pub(super) fn check(&self, metric: &str) -> Result<()> {
        let bad = |what: &str| Err(Error::Invalid(format!("{metric}: {what}")));
        if self.hidden_multiplier == 0 || self.max_epochs == 0 || self.batch_size == 0 {
            return bad("hidden_multiplier, max_epochs and batch_size must be positive");
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad("lr must be positive and finite");
        }
        if !(self.validation_fraction > 0.0 && self.validation_fraction < 1.0) {
            return bad("validation_fraction must lie in (0, 1)");
        }
        if self.patience == 0 {
            return bad("patience must be positive");
        }
        Ok(())
    }
}

/// `n` values uniform in ±sqrt(6 / (fan_in + fan_out)) (Glorot), as sklearn starts both the
/// weights and the biases of a layer.
pub(super) fn glorot(rng: &mut StdRng, n: usize, fan_in: usize, fan_out: usize) -> Vec<f32> {
    let bound = (6.0 / (fan_in + fan_out) as f64).sqrt() as f32;
    (0..n).map(|_| rng.random_range(-bound..bound)).collect()
}

/// A seeded generator for one purpose `id` of a metric seeded with `seed`.
pub(super) fn stream(seed: u64, id: u64) -> StdRng {
    StdRng::seed_from_u64(seed ^ id.wrapping_mul(0x9e37_79b9_7f4a_7c15))
}
