//! The input of SBC, TARP and L-C2ST (`metrics::sbc`, `metrics::tarp`, `metrics::lc2st`): data
//! sets simulated from the prior, and posterior draws for each from a trained network.

use rand::rngs::StdRng;
use rand::SeedableRng;

use super::posterior::Posterior;
use super::sampler::Sampler;
use super::seeds::Stream;
use super::Progress;
use crate::error::{Error, Result};
use crate::tasks::{simulate_dataset, HierarchicalModel, Observed};

/// Natural-space truths and draws.
pub struct CalibrationDraws {
    /// The true parameters of each data set.
    pub truths: Vec<Vec<f64>>,
    /// The posterior draws for each data set.
    pub draws: Vec<Vec<Vec<f64>>>,
    /// The simulated data sets themselves.
    pub observations: Vec<Observed>,
}

/// `data_sets` data sets simulated from the prior and `draws` posterior samples for each, all
/// in one batched solve. Both come from the calibration streams of `seed`, which no training
/// uses, so a run's own seed gives data sets it has not trained on.
pub fn calibration_draws(
    sampler: &Sampler, posterior: &mut Posterior, task: &dyn HierarchicalModel, data_sets: usize,
    draws: usize, seed: u64, progress: &dyn Progress,
) -> Result<CalibrationDraws> {
    let sites = posterior.config().sites;
    let mut rng = StdRng::seed_from_u64(Stream::CalibrationSets.seed(seed, 0));
    let (mut truths, mut observations) = (Vec::new(), Vec::new());
    // Redraw the rare simulation that is not finite, as training drops them.
    for _ in 0..10 * data_sets {
        if truths.len() == data_sets {
            break;
        }
        let d = simulate_dataset(task, sites, &mut rng)?;
        if d.obs.iter().chain(&d.params).all(|v| v.is_finite()) {
            observations.push(d.observed());
            truths.push(d.params);
        }
    }
    if truths.len() < data_sets {
        return Err(Error::Invalid(format!(
            "calibration: only {} of {} simulated data sets were finite",
            truths.len(),
            data_sets
        )));
    }
    // Each data set's draws have their own noise, so that their ranks are independent.
    let noise: Vec<u64> =
        (0..data_sets).map(|k| Stream::CalibrationDraws.seed(seed, k as u64)).collect();
    let sets =
        sampler.posteriors_seeded(posterior, task, &observations, draws, &noise, progress)?;
    Ok(CalibrationDraws { truths, draws: sets, observations })
}
