//! `hier-brownian`: μ ~ N(0, 1); θ_s ~ N(μ, 0.1); each site is observed five times, at times
//! t_sj ~ Exp(1) (the functional input), with y_sj ~ N(θ_s, t_sj): the noise standard deviation
//! is the time itself, so early observations are precise and late ones vague.
//!
//! Given the times everything is Gaussian and conjugate: a site's data enter through its
//! precision-weighted mean ȳ_s ~ N(θ_s, 1/w_s), w_s = Σ_j 1/t_sj², so the joint posterior is
//! sampled exactly: μ | y with every θ_s integrated out, then each θ_s | μ, y_s.

use super::special::normal_log_pdf;
use super::{std_normal, uniform01, Bijection, HierarchicalModel, Observed, Variable};
use rand::Rng;

/// Prior standard deviation of θ_s around μ.
const SITE_SD: f64 = 0.1;
/// Observations (and observation times) per site.
const DRAWS: usize = 5;

/// The hierarchical Brownian model with observation times as functional inputs
/// (docs/architecture.md#tasks, `hier-brownian`).
#[derive(Clone, Copy, Debug, Default)]
pub struct HierBrownian;

impl HierarchicalModel for HierBrownian {
    fn name(&self) -> &str {
        "hier-brownian"
    }

    fn global_variables(&self) -> Vec<Variable> {
        vec![Variable::scalar("mu", Bijection::Identity)]
    }

    fn local_variables(&self) -> Vec<Variable> {
        vec![Variable::scalar("theta", Bijection::Identity)]
    }

    fn observation_variables(&self) -> Vec<Variable> {
        vec![Variable::new("y", DRAWS, Bijection::Identity)]
    }

    fn ragged_observations(&self) -> bool {
        true
    }

    fn functional_input_dim(&self) -> usize {
        1
    }

    fn functional_input_names(&self) -> Vec<String> {
        vec!["t".into()]
    }

    fn functional_input_bijections(&self) -> Vec<Bijection> {
        vec![Bijection::Log]
    }

    fn sample_functional_inputs(&self, rng: &mut dyn Rng) -> Option<Vec<f64>> {
        // Exp(1) by inversion; 1 − U lies in (0, 1], so every time is finite.
        Some((0..DRAWS).map(|_| -(1.0 - uniform01(rng)).ln()).collect())
    }

    fn sample_globals(&self, rng: &mut dyn Rng) -> Vec<f64> {
        vec![std_normal(rng)]
    }

    /// μ ~ N(0, 1), then θ_s ~ N(μ, 0.1).
    fn log_prior(&self, params: &[f64], _sites: usize) -> Option<f64> {
        let mu = params[0];
        let sites: f64 = params[1..].iter().map(|&theta| normal_log_pdf(theta, mu, SITE_SD)).sum();
        Some(normal_log_pdf(mu, 0.0, 1.0) + sites)
    }

    fn sample_locals(&self, globals: &[f64], rng: &mut dyn Rng) -> Vec<f64> {
        vec![globals[0] + SITE_SD * std_normal(rng)]
    }

    fn simulate_site(
        &self, _globals: &[f64], locals: &[f64], inputs: Option<&[f64]>, rng: &mut dyn Rng,
    ) -> Vec<f64> {
        let times = inputs.expect("hier-brownian observes at times: its functional inputs");
        times.iter().map(|&t| locals[0] + t * std_normal(rng)).collect()
    }

    fn exact_posterior(
        &self, obs: &[f64], inputs: Option<&[f64]>, sites: usize, n: usize, rng: &mut dyn Rng,
    ) -> Option<Vec<Vec<f64>>> {
        let times = inputs?;
        if obs.len() != sites * DRAWS || times.len() != obs.len() {
            return None;
        }
        exact_draws(obs.chunks(DRAWS).zip(times.chunks(DRAWS)), n, rng)
    }

    /// Ragged sites enter the same way: a site's data are its precision-weighted mean.
    fn exact_posterior_observed(
        &self, obs: &Observed, n: usize, rng: &mut dyn Rng,
    ) -> Option<Vec<Vec<f64>>> {
        let times = obs.inputs.as_deref()?;
        let counts = obs.site_counts(DRAWS);
        if times.len() != obs.values.len() || counts.iter().sum::<usize>() != obs.values.len() {
            return None;
        }
        let mut at = 0;
        let sites = counts.iter().map(|&c| {
            at += c;
            (&obs.values[at - c..at], &times[at - c..at])
        });
        exact_draws(sites, n, rng)
    }
}

/// `n` exact posterior draws `[μ, θ_0, …]` given each site's `(values, times)`.
fn exact_draws<'a>(
    sites: impl Iterator<Item = (&'a [f64], &'a [f64])>, n: usize, rng: &mut dyn Rng,
) -> Option<Vec<Vec<f64>>> {
    // Per site: w_s = Σ 1/t², ȳ_s = Σ (y/t²) / w_s.
    let stats: Vec<(f64, f64)> = sites
        .map(|(y, t)| {
            let w: f64 = t.iter().map(|t| 1.0 / (t * t)).sum();
            let weighted: f64 = y.iter().zip(t).map(|(y, t)| y / (t * t)).sum();
            (w, weighted / w)
        })
        .collect();
    if stats.iter().any(|(w, ybar)| !w.is_finite() || !ybar.is_finite()) {
        return None;
    }
    let site_var = SITE_SD * SITE_SD;
    // μ | y: prior N(0, 1) times Π_s N(ȳ_s; μ, SITE_SD² + 1/w_s).
    let mu_precision = 1.0 + stats.iter().map(|(w, _)| 1.0 / (site_var + 1.0 / w)).sum::<f64>();
    let mu_mean =
        stats.iter().map(|(w, ybar)| ybar / (site_var + 1.0 / w)).sum::<f64>() / mu_precision;
    let mu_sd = mu_precision.recip().sqrt();
    let draws = (0..n)
        .map(|_| {
            let mu = mu_mean + mu_sd * std_normal(rng);
            let mut draw = Vec::with_capacity(1 + stats.len());
            draw.push(mu);
            // θ_s | μ, ȳ_s: prior N(μ, SITE_SD²) times N(ȳ_s; θ_s, 1/w_s).
            draw.extend(stats.iter().map(|&(w, ybar)| {
                let precision = 1.0 / site_var + w;
                let mean = (mu / site_var + ybar * w) / precision;
                mean + precision.recip().sqrt() * std_normal(rng)
            }));
            draw
        })
        .collect();
    Some(draws)
}
