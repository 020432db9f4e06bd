//! `hier-gaussian-linear-uniform`: σ ~ HalfNormal(0.1); μ_s ~ U(−10, 10); y_s ~ N(μ_s, σ).
//! Integrating μ_s out gives p(y_s | σ) = [Φ((10 − y_s)/σ) − Φ((−10 − y_s)/σ)] / 20, so σ | y is
//! one-dimensional and sampled on a grid; then μ_s | σ, y_s is N(y_s, σ) truncated to [−10, 10].

use super::grid::log_scale_sampler;
use super::special::{normal_log_interval, truncated_standard_normal};
use super::{std_normal, uniform01, Bijection, HierarchicalModel, Variable};
use rand::{Rng, RngExt};

/// Scale of the half-normal prior on σ.
const SIGMA_SCALE: f64 = 0.1;
/// Support of the uniform prior on each μ_s.
const LO: f64 = -10.0;
const HI: f64 = 10.0;

/// The linear Gaussian with uniform site means (docs/architecture.md#tasks, `hier-gaussian-linear-uniform`).
#[derive(Clone, Copy, Debug, Default)]
pub struct HierGaussianLinearUniform;

impl HierarchicalModel for HierGaussianLinearUniform {
    fn name(&self) -> &str {
        "hier-gaussian-linear-uniform"
    }

    fn global_variables(&self) -> Vec<Variable> {
        vec![Variable::scalar("sigma", Bijection::Log)]
    }

    fn local_variables(&self) -> Vec<Variable> {
        vec![Variable::scalar("mu", Bijection::LogitAffine { lo: LO, hi: HI })]
    }

    fn observation_variables(&self) -> Vec<Variable> {
        vec![Variable::scalar("y", Bijection::Identity)]
    }

    fn sample_globals(&self, rng: &mut dyn Rng) -> Vec<f64> {
        vec![SIGMA_SCALE * std_normal(rng).abs()]
    }

    fn sample_locals(&self, _globals: &[f64], rng: &mut dyn Rng) -> Vec<f64> {
        vec![rng.random_range(LO..HI)]
    }

    fn simulate_site(
        &self, globals: &[f64], locals: &[f64], _inputs: Option<&[f64]>, rng: &mut dyn Rng,
    ) -> Vec<f64> {
        vec![locals[0] + globals[0] * std_normal(rng)]
    }

    fn exact_posterior(
        &self, obs: &[f64], _inputs: Option<&[f64]>, sites: usize, n: usize, rng: &mut dyn Rng,
    ) -> Option<Vec<Vec<f64>>> {
        assert_eq!(obs.len(), sites, "hier-gaussian-linear-uniform observation length");
        // The constant 1/20 per site is dropped; the tail-accurate interval probability keeps
        // the likelihood finite for σ far below |y_s − 10| when y_s lies outside the support.
        let sigma_posterior = log_scale_sampler(|sigma| {
            -0.5 * (sigma / SIGMA_SCALE).powi(2)
                + obs
                    .iter()
                    .map(|&y| normal_log_interval((LO - y) / sigma, (HI - y) / sigma))
                    .sum::<f64>()
        })?;
        let draws = (0..n)
            .map(|_| {
                let sigma = sigma_posterior.sample(rng).exp();
                let mut draw = Vec::with_capacity(1 + sites);
                draw.push(sigma);
                draw.extend(obs.iter().map(|&y| {
                    let z = truncated_standard_normal(
                        (LO - y) / sigma,
                        (HI - y) / sigma,
                        uniform01(rng),
                    );
                    (y + sigma * z).clamp(LO, HI)
                }));
                draw
            })
            .collect();
        Some(draws)
    }
}
