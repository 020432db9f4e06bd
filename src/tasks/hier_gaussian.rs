//! `hier-gaussian`: μ ~ N(0, 1); θ_s ~ N(μ, 0.1); five draws y_sj ~ N(θ_s, 0.1). Fully conjugate,
//! so the joint posterior is Gaussian and sampled exactly: μ | y with every θ_s integrated out,
//! then each θ_s | μ, y_s.

use super::special::normal_log_pdf;
use super::{std_normal, Bijection, HierarchicalModel, Variable};
use rand::Rng;

/// Prior standard deviation of θ_s around μ.
const SITE_SD: f64 = 0.1;
/// Observation noise standard deviation.
const NOISE_SD: f64 = 0.1;
/// Observations per site.
const DRAWS: usize = 5;

/// The fully conjugate hierarchical Gaussian (docs/architecture.md#tasks, `hier-gaussian`).
#[derive(Clone, Copy, Debug, Default)]
pub struct HierGaussian;

impl HierarchicalModel for HierGaussian {
    fn name(&self) -> &str {
        "hier-gaussian"
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
        &self, _globals: &[f64], locals: &[f64], _inputs: Option<&[f64]>, rng: &mut dyn Rng,
    ) -> Vec<f64> {
        (0..DRAWS).map(|_| locals[0] + NOISE_SD * std_normal(rng)).collect()
    }

    fn exact_posterior(
        &self, obs: &[f64], _inputs: Option<&[f64]>, sites: usize, n: usize, rng: &mut dyn Rng,
    ) -> Option<Vec<Vec<f64>>> {
        let p = Conjugate::new(obs, sites);
        let draws = (0..n)
            .map(|_| {
                let mu = p.mu_mean + p.mu_sd * std_normal(rng);
                let mut draw = Vec::with_capacity(1 + sites);
                draw.push(mu);
                draw.extend((0..sites).map(|s| p.theta_mean(mu, s) + p.theta_sd * std_normal(rng)));
                draw
            })
            .collect();
        Some(draws)
    }

    fn exact_log_posterior(
        &self, obs: &[f64], _inputs: Option<&[f64]>, sites: usize, params: &[Vec<f64>],
    ) -> Option<Vec<f64>> {
        let p = Conjugate::new(obs, sites);
        let density = |x: &Vec<f64>| {
            let thetas = x[1..].iter().enumerate();
            normal_log_pdf(x[0], p.mu_mean, p.mu_sd)
                + thetas
                    .map(|(s, &t)| normal_log_pdf(t, p.theta_mean(x[0], s), p.theta_sd))
                    .sum::<f64>()
        };
        Some(params.iter().map(density).collect())
    }
}

/// The exact posterior as μ | y, then each θ_s | μ, y_s.
struct Conjugate {
    site_means: Vec<f64>,
    mean_var: f64,
    mu_mean: f64,
    mu_sd: f64,
    theta_precision: f64,
    theta_sd: f64,
}

impl Conjugate {
    fn new(obs: &[f64], sites: usize) -> Conjugate {
        assert_eq!(obs.len(), sites * DRAWS, "hier-gaussian observation length");
        // A site's data enter only through its mean ȳ_s ~ N(θ_s, NOISE_SD²/DRAWS).
        let site_means: Vec<f64> =
            obs.chunks(DRAWS).map(|y| y.iter().sum::<f64>() / DRAWS as f64).collect();
        let mean_var = NOISE_SD * NOISE_SD / DRAWS as f64;
        // μ | y: prior N(0, 1) times Π_s N(ȳ_s; μ, SITE_SD² + NOISE_SD²/DRAWS).
        let marginal_var = SITE_SD * SITE_SD + mean_var;
        let mu_precision = 1.0 + sites as f64 / marginal_var;
        let mu_mean = site_means.iter().sum::<f64>() / marginal_var / mu_precision;
        let mu_sd = mu_precision.recip().sqrt();
        // θ_s | μ, ȳ_s: prior N(μ, SITE_SD²) times N(ȳ_s; θ_s, NOISE_SD²/DRAWS).
        let theta_precision = 1.0 / (SITE_SD * SITE_SD) + 1.0 / mean_var;
        let theta_sd = theta_precision.recip().sqrt();
        Conjugate { site_means, mean_var, mu_mean, mu_sd, theta_precision, theta_sd }
    }

    fn theta_mean(&self, mu: f64, site: usize) -> f64 {
        (mu / (SITE_SD * SITE_SD) + self.site_means[site] / self.mean_var) / self.theta_precision
    }
}
