//! Sequential LF's proposal (`run --rounds`): after a round, the posterior at the observation
//! is drawn and scored, truncated at a low quantile of its own log density, and resampled with
//! importance weights prior / posterior (sampling importance resampling). The result
//! approximates the prior restricted to where the posterior has its mass, so a posterior
//! trained on it stays a posterior of the prior inside that region; the next round simulates
//! its single sites there.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

use super::network::Network;
use super::posterior::Posterior;
use super::seeds::Stream;
use super::{Progress, Sampler};
use crate::error::{Error, Result};
use crate::model::density::Divergence;
use crate::model::ode::Solver;
use crate::tasks::{HierarchicalModel, Observed};
use crate::Device;

/// Posterior draws that estimate the proposal each round.
pub const ESTIMATE_DRAWS: usize = 1000;
/// The share of the draws with the lowest log density that is cut off.
pub const TRUNCATION: f64 = 1e-3;
/// Hutchinson probes where a log density's dimension makes `auto` take the estimator.
const PROBES: usize = 8;
const SOLVER: Solver = Solver::Rk4 { steps: 25 };

/// One round of a sequential run, for `report.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoundReport {
    pub round: usize,
    /// Single-site simulations of this round.
    pub simulations: usize,
    /// Where its parameters came from: `prior`, or the proposal of the round before.
    pub source: String,
    /// The effective sample size of the importance weights that drew them (of
    /// [`ESTIMATE_DRAWS`] draws; none for the prior).
    pub ess: Option<f64>,
}

/// A round's proposal: single-site parameter vectors `[globals, locals of site 0]` (natural
/// space) and the effective sample size of the importance weights that drew them.
pub(super) struct Proposal {
    pub sites: Vec<Vec<f64>>,
    pub ess: f64,
}

/// `n` single-site parameter vectors from the truncated, reweighted posterior at `obs`. The
/// posterior network is lent for the call and handed back.
#[allow(clippy::too_many_arguments)]
pub(super) fn truncated_sir(
    dev: &Device, task: &dyn HierarchicalModel, posterior: Network, obs: &Observed, n: usize,
    seed: u64, round: usize, progress: &dyn Progress,
) -> (Network, Result<Proposal>) {
    let mut lent = Posterior::from(posterior);
    let out = draw(dev, task, &mut lent, obs, n, seed, round, progress);
    (lent.net, out)
}

#[allow(clippy::too_many_arguments)]
fn draw(
    dev: &Device, task: &dyn HierarchicalModel, posterior: &mut Posterior, obs: &Observed,
    n: usize, seed: u64, round: usize, progress: &dyn Progress,
) -> Result<Proposal> {
    let sampler = Sampler::new(dev, SOLVER);
    let index = round as u64;
    let noise = Stream::ProposalDraws.seed(seed, index);
    let draws = sampler.posterior(posterior, task, obs, ESTIMATE_DRAWS, noise, progress)?;
    let dim = posterior.flow_dim(task, obs.sites);
    let probes = Stream::ProposalProbes.seed(seed, index);
    let divergence = Divergence::from_name("auto", dim, PROBES, probes)?;
    let log_q = sampler.log_prob(posterior, task, obs, &draws, divergence, progress)?;
    let log_p: Vec<f64> = draws
        .iter()
        .map(|d| task.log_prior(d, obs.sites))
        .collect::<Option<_>>()
        .ok_or_else(|| no_prior_density(task))?;
    let (weights, ess) = importance_weights(&log_p, &log_q)?;
    let mut rng = StdRng::seed_from_u64(Stream::ProposalResample.seed(seed, index));
    let site = task.global_dim() + task.local_dim();
    let sites = resample(&weights, n, &mut rng).map(|i| draws[i][..site].to_vec()).collect();
    Ok(Proposal { sites, ess })
}

/// Normalised importance weights p/q of the draws whose log density lies above the
/// [`TRUNCATION`] quantile (the others weigh nothing), and their effective sample size
/// (Σw)² / Σw².
pub fn importance_weights(log_p: &[f64], log_q: &[f64]) -> Result<(Vec<f64>, f64)> {
    let mut sorted: Vec<f64> = log_q.iter().copied().filter(|v| v.is_finite()).collect();
    sorted.sort_by(f64::total_cmp);
    let cut = sorted.get((TRUNCATION * sorted.len() as f64) as usize).copied();
    let logits: Vec<f64> = log_p
        .iter()
        .zip(log_q)
        .map(|(&p, &q)| match cut {
            Some(cut) if q.is_finite() && q >= cut && p.is_finite() => p - q,
            _ => f64::NEG_INFINITY,
        })
        .collect();
    let top = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !top.is_finite() {
        return Err(Error::Invalid(
            "--rounds: no posterior draw has a finite prior and posterior density, so no \
             proposal can be drawn; train longer or with more simulations per round"
                .into(),
        ));
    }
    let w: Vec<f64> = logits.iter().map(|l| (l - top).exp()).collect();
    let total: f64 = w.iter().sum();
    let w: Vec<f64> = w.iter().map(|v| v / total).collect();
    let ess = 1.0 / w.iter().map(|v| v * v).sum::<f64>();
    Ok((w, ess))
}

/// `n` indices drawn with replacement with probabilities `weights` (summing to 1).
pub fn resample<'a>(
    weights: &'a [f64], n: usize, rng: &'a mut StdRng,
) -> impl Iterator<Item = usize> + 'a {
    let cumulative: Vec<f64> = weights
        .iter()
        .scan(0.0, |acc, w| {
            *acc += w;
            Some(*acc)
        })
        .collect();
    let last = weights.iter().rposition(|&w| w > 0.0).unwrap_or(0);
    (0..n).map(move |_| {
        let u: f64 = rng.random::<f64>() * cumulative[last];
        cumulative.partition_point(|&c| c <= u).min(last)
    })
}

/// The error of a sequential run whose model has no prior density.
pub(super) fn no_prior_density(task: &dyn HierarchicalModel) -> Error {
    Error::Invalid(format!(
        "--rounds weighs its proposals by the prior's density, which task `{}` does not give; \
         run it with one round (user models, hier-gaussian-linear, hier-gaussian and \
         hier-brownian give it)",
        task.name()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_follow_prior_over_posterior_and_drop_the_truncated_tail() {
        // Four draws: the lowest log q of 1000 would be cut; here the quantile is the minimum,
        // which stays in.
        let log_q = [-1.0, -2.0, -3.0, f64::NAN];
        let log_p = [-1.0, -1.0, -1.0, -1.0];
        let (w, ess) = importance_weights(&log_p, &log_q).unwrap();
        let e = (1.0f64).exp();
        let z = 1.0 + e + e * e;
        for (got, want) in w.iter().zip([1.0 / z, e / z, e * e / z, 0.0]) {
            assert!((got - want).abs() < 1e-12, "{w:?}");
        }
        let want_ess = 1.0 / w.iter().map(|v| v * v).sum::<f64>();
        assert!((ess - want_ess).abs() < 1e-12 && ess > 1.0 && ess < 3.0);
        // Equal ratios: every kept draw weighs the same, ESS = their number.
        let (_, ess) = importance_weights(&[0.0; 5], &[0.0; 5]).unwrap();
        assert!((ess - 5.0).abs() < 1e-9);
        // Of 2000 draws the lowest two (the 1e-3 quantile) weigh nothing.
        let log_q: Vec<f64> = (0..2000).map(|i| i as f64 / 100.0).collect();
        let (w, _) = importance_weights(&vec![0.0; 2000], &log_q).unwrap();
        assert_eq!(w.iter().filter(|&&v| v == 0.0).count(), 2);
        assert!(importance_weights(&[f64::NEG_INFINITY], &[0.0]).is_err());
    }

    #[test]
    fn resampling_draws_each_index_in_proportion_to_its_weight() {
        let weights = [0.5, 0.0, 0.3, 0.2];
        let mut rng = StdRng::seed_from_u64(9);
        let mut counts = [0usize; 4];
        for i in resample(&weights, 100_000, &mut rng) {
            counts[i] += 1;
        }
        assert_eq!(counts[1], 0);
        for (c, w) in counts.iter().zip(weights) {
            // Binomial sd at most 160 of 100 000.
            assert!((*c as f64 - w * 1e5).abs() < 800.0, "{counts:?}");
        }
    }
}
