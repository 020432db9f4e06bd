//! `hier-gaussian-mixture`: loc ~ U(−10, 10)², scale ~ HalfNormal(1)²; θ_s ~ N(loc, scale)
//! truncated to [−10, 10] per dimension; y_s ~ ½ N(θ_s, I) + ½ N(θ_s, 0.1² I), one mixture
//! component per site for both dimensions. No exact posterior.

use super::truncated_normal::truncated_normal_box;
use super::{std_normal, uniform01, Bijection, HierarchicalModel, Variable};
use rand::{Rng, RngExt};

/// Support of loc and of each θ_s.
const LO: f64 = -10.0;
const HI: f64 = 10.0;
/// Standard deviations of the two mixture components.
const WIDE: f64 = 1.0;
const NARROW: f64 = 0.1;

/// The hierarchical Gaussian mixture (docs/architecture.md#tasks, `hier-gaussian-mixture`).
#[derive(Clone, Copy, Debug, Default)]
pub struct HierGaussianMixture;

impl HierarchicalModel for HierGaussianMixture {
    fn name(&self) -> &str {
        "hier-gaussian-mixture"
    }

    fn global_variables(&self) -> Vec<Variable> {
        vec![
            Variable::new("loc", 2, Bijection::LogitAffine { lo: LO, hi: HI }),
            Variable::new("scale", 2, Bijection::Log),
        ]
    }

    fn local_variables(&self) -> Vec<Variable> {
        vec![Variable::new("theta", 2, Bijection::LogitAffine { lo: LO, hi: HI })]
    }

    fn observation_variables(&self) -> Vec<Variable> {
        vec![Variable::new("y", 2, Bijection::Identity)]
    }

    fn sample_globals(&self, rng: &mut dyn Rng) -> Vec<f64> {
        let loc = [rng.random_range(LO..HI), rng.random_range(LO..HI)];
        vec![loc[0], loc[1], std_normal(rng).abs(), std_normal(rng).abs()]
    }

    fn sample_locals(&self, globals: &[f64], rng: &mut dyn Rng) -> Vec<f64> {
        truncated_normal_box(&globals[0..2], &globals[2..4], LO, HI, rng)
    }

    fn simulate_site(
        &self, _globals: &[f64], locals: &[f64], _inputs: Option<&[f64]>, rng: &mut dyn Rng,
    ) -> Vec<f64> {
        let sd = if uniform01(rng) < 0.5 { WIDE } else { NARROW };
        locals.iter().map(|&theta| theta + sd * std_normal(rng)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn noise_is_a_scale_mixture_shared_by_both_dimensions() {
        let mut rng = StdRng::seed_from_u64(11);
        let theta = [3.0, -9.5];
        let n = 200_000;
        let (mut m2, mut m4, mut cross) = ([0.0; 2], [0.0; 2], 0.0);
        for _ in 0..n {
            let y = HierGaussianMixture.simulate_site(&[], &theta, None, &mut rng);
            let d = [y[0] - theta[0], y[1] - theta[1]];
            for j in 0..2 {
                m2[j] += d[j].powi(2) / n as f64;
                m4[j] += d[j].powi(4) / n as f64;
            }
            cross += (d[0] * d[1]).powi(2) / n as f64;
        }
        // Per dimension: E d² = ½(1 + 0.01), E d⁴ = ½·3(1 + 0.01²); a shared component makes
        // E d₀²d₁² = ½(1 + 0.01²), against (E d²)² = 0.255 for independent components.
        let var = 0.5 * (1.0 + 0.01);
        let fourth = 1.5 * (1.0 + 1e-4);
        for j in 0..2 {
            // Standard errors: sd(d²)/√n ≈ 0.0025, sd(d⁴)/√n ≈ 0.016 (E d⁸ = 52.5).
            assert!((m2[j] - var).abs() < 0.01, "E d² {m2:?}");
            assert!((m4[j] - fourth).abs() < 0.08, "E d⁴ {m4:?}");
            // Kurtosis ≈ 5.88, far from the Gaussian 3.
            assert!((m4[j] / m2[j].powi(2) - fourth / var.powi(2)).abs() < 0.25);
        }
        assert!((cross - 0.5 * (1.0 + 1e-4)).abs() < 0.02, "E d₀²d₁² {cross}");
    }

    #[test]
    fn locals_stay_inside_the_box_when_the_prior_sits_at_a_bound() {
        let mut rng = StdRng::seed_from_u64(5);
        let cases =
            [[9.999, -9.999, 30.0, 30.0], [10.0, -10.0, 1e-12, 1e-12], [0.0, 9.9, 2.0, 0.1]];
        for globals in cases {
            for _ in 0..20_000 {
                let theta = HierGaussianMixture.sample_locals(&globals, &mut rng);
                assert!(theta.iter().all(|&t| LO < t && t < HI), "{globals:?}: {theta:?}");
            }
        }
    }

    #[test]
    fn truncated_locals_have_the_truncated_normal_moments() {
        // N(9, 2) truncated to [−10, 10]: with α = −9.5, β = 0.5, mean = 9 − 2 φ(β)/Φ(β) and
        // var = 4 (1 − β φ(β)/Φ(β) − (φ(β)/Φ(β))²) (the lower tail is negligible).
        let (phi, cdf) = (0.3520653267642995, 0.6914624612740131);
        let ratio = phi / cdf;
        let (mean, var) = (9.0 - 2.0 * ratio, 4.0 * (1.0 - 0.5 * ratio - ratio * ratio));
        let mut rng = StdRng::seed_from_u64(2);
        // Standard errors: 0.0022 for the mean, 0.0044 for the variance.
        let n = 400_000;
        let draws: Vec<f64> = (0..n)
            .map(|_| HierGaussianMixture.sample_locals(&[9.0, 9.0, 2.0, 2.0], &mut rng)[1])
            .collect();
        let m = draws.iter().sum::<f64>() / n as f64;
        let v = draws.iter().map(|t| (t - m).powi(2)).sum::<f64>() / (n - 1) as f64;
        assert!((m - mean).abs() < 0.01, "mean {m} vs {mean}");
        assert!((v - var).abs() < 0.02, "var {v} vs {var}");
    }
}
