//! `hier-gaussian-linear`: σ ~ HalfNormal(1); μ_s ~ N(0, 1); y_s ~ N(μ_s, σ). Integrating μ_s out
//! gives y_s | σ ~ N(0, √(1 + σ²)), so σ | y is one-dimensional and sampled on a grid; then
//! μ_s | σ, y_s ~ N(y_s / (1 + σ²), σ / √(1 + σ²)).

use super::grid::{log_scale_sampler, GridSampler};
use super::special::normal_log_pdf;
use super::{std_normal, Bijection, HierarchicalModel, Variable};
use rand::Rng;

/// Scale of the half-normal prior on σ.
const SIGMA_SCALE: f64 = 1.0;

/// The linear Gaussian with a shared noise scale (docs/architecture.md#tasks, `hier-gaussian-linear`).
#[derive(Clone, Copy, Debug, Default)]
pub struct HierGaussianLinear;

impl HierarchicalModel for HierGaussianLinear {
    fn name(&self) -> &str {
        "hier-gaussian-linear"
    }

    fn global_variables(&self) -> Vec<Variable> {
        vec![Variable::scalar("sigma", Bijection::Log)]
    }

    fn local_variables(&self) -> Vec<Variable> {
        vec![Variable::scalar("mu", Bijection::Identity)]
    }

    fn observation_variables(&self) -> Vec<Variable> {
        vec![Variable::scalar("y", Bijection::Identity)]
    }

    fn sample_globals(&self, rng: &mut dyn Rng) -> Vec<f64> {
        vec![SIGMA_SCALE * std_normal(rng).abs()]
    }

    /// σ ~ HalfNormal(1) and μ_s ~ N(0, 1) independently (σ is the observation noise).
    fn log_prior(&self, params: &[f64], _sites: usize) -> Option<f64> {
        let sigma = params[0];
        if sigma <= 0.0 {
            return Some(f64::NEG_INFINITY);
        }
        let half_normal = std::f64::consts::LN_2 + normal_log_pdf(sigma, 0.0, SIGMA_SCALE);
        let sites: f64 = params[1..].iter().map(|&mu| normal_log_pdf(mu, 0.0, 1.0)).sum();
        Some(half_normal + sites)
    }

    fn sample_locals(&self, _globals: &[f64], rng: &mut dyn Rng) -> Vec<f64> {
        vec![std_normal(rng)]
    }

    fn simulate_site(
        &self, globals: &[f64], locals: &[f64], _inputs: Option<&[f64]>, rng: &mut dyn Rng,
    ) -> Vec<f64> {
        vec![locals[0] + globals[0] * std_normal(rng)]
    }

    fn exact_posterior(
        &self, obs: &[f64], _inputs: Option<&[f64]>, sites: usize, n: usize, rng: &mut dyn Rng,
    ) -> Option<Vec<Vec<f64>>> {
        let sigma_posterior = sigma_posterior(obs, sites)?;
        let draws = (0..n)
            .map(|_| {
                let sigma = sigma_posterior.sample(rng).exp();
                let (var, sd) = local_posterior(sigma);
                let mut draw = Vec::with_capacity(1 + sites);
                draw.push(sigma);
                draw.extend(obs.iter().map(|&y| y / var + sd * std_normal(rng)));
                draw
            })
            .collect();
        Some(draws)
    }

    fn exact_log_posterior(
        &self, obs: &[f64], _inputs: Option<&[f64]>, sites: usize, params: &[Vec<f64>],
    ) -> Option<Vec<f64>> {
        let log_z = sigma_posterior(obs, sites)?.log_normaliser();
        let density = |p: &Vec<f64>| {
            let sigma = p[0];
            if sigma <= 0.0 {
                return f64::NEG_INFINITY;
            }
            let (var, sd) = local_posterior(sigma);
            let locals: f64 =
                obs.iter().zip(&p[1..]).map(|(&y, &mu)| normal_log_pdf(mu, y / var, sd)).sum();
            sigma_log_density(obs, sigma) - log_z + locals
        };
        Some(params.iter().map(density).collect())
    }
}

/// ln p(σ | y) up to a constant. The marginal likelihood depends on y only through S and Σ y².
fn sigma_log_density(obs: &[f64], sigma: f64) -> f64 {
    let half_sites = 0.5 * obs.len() as f64;
    let half_sum_sq = 0.5 * obs.iter().map(|y| y * y).sum::<f64>();
    let var = 1.0 + sigma * sigma;
    -0.5 * (sigma / SIGMA_SCALE).powi(2) - half_sites * var.ln() - half_sum_sq / var
}

/// The posterior of ln σ tabulated on a grid.
fn sigma_posterior(obs: &[f64], sites: usize) -> Option<GridSampler> {
    assert_eq!(obs.len(), sites, "hier-gaussian-linear observation length");
    log_scale_sampler(|sigma| sigma_log_density(obs, sigma))
}

/// μ_s | σ, y_s ~ N(y_s / var, sd²) with var = 1 + σ²: returns (var, sd).
fn local_posterior(sigma: f64) -> (f64, f64) {
    let var = 1.0 + sigma * sigma;
    (var, sigma / var.sqrt())
}
