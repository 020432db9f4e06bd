//! `hier-slcp` (simple likelihood, complex posterior): s1, s2 ~ U(0.1, 3), ρ ~ U(−3, 3);
//! m_s ~ U(−3, 3)²; four draws y_sj ~ N(m_s, Σ) with
//! Σ = [[s1⁴, tanh(ρ) s1² s2²], [tanh(ρ) s1² s2², s2⁴]] + 1e−6 I.
//! A site's observation `y` holds the four 2-vectors one after the other:
//! [y_s0[0], y_s0[1], y_s1[0], y_s1[1], …, y_s3[1]]. No exact posterior.

use super::{std_normal, Bijection, HierarchicalModel, Variable};
use rand::{Rng, RngExt};

/// Support of s1 and s2.
const SD_LO: f64 = 0.1;
const SD_HI: f64 = 3.0;
/// Support of ρ and of each component of m_s.
const LO: f64 = -3.0;
const HI: f64 = 3.0;
/// Draws per site.
const DRAWS: usize = 4;
/// Added to Σ's diagonal so that it stays positive definite as |tanh ρ| → 1.
const JITTER: f64 = 1e-6;

/// The hierarchical SLCP (docs/architecture.md#tasks, `hier-slcp`).
#[derive(Clone, Copy, Debug, Default)]
pub struct HierSlcp;

/// The lower Cholesky factor [[l11, 0], [l21, l22]] of Σ for globals (s1, s2, ρ).
fn cholesky(globals: &[f64]) -> [f64; 3] {
    let (v1, v2) = (globals[0].powi(2), globals[1].powi(2));
    let (var1, var2, cov) = (v1 * v1 + JITTER, v2 * v2 + JITTER, globals[2].tanh() * v1 * v2);
    let l11 = var1.sqrt();
    let l21 = cov / l11;
    // var2 − l21² ≥ JITTER because tanh² ρ < 1.
    [l11, l21, (var2 - l21 * l21).sqrt()]
}

impl HierarchicalModel for HierSlcp {
    fn name(&self) -> &str {
        "hier-slcp"
    }

    fn global_variables(&self) -> Vec<Variable> {
        let sd = Bijection::LogitAffine { lo: SD_LO, hi: SD_HI };
        vec![
            Variable::scalar("s1", sd),
            Variable::scalar("s2", sd),
            Variable::scalar("rho", Bijection::LogitAffine { lo: LO, hi: HI }),
        ]
    }

    fn local_variables(&self) -> Vec<Variable> {
        vec![Variable::new("m", 2, Bijection::LogitAffine { lo: LO, hi: HI })]
    }

    fn observation_variables(&self) -> Vec<Variable> {
        vec![Variable::new("y", 2 * DRAWS, Bijection::Identity)]
    }

    fn sample_globals(&self, rng: &mut dyn Rng) -> Vec<f64> {
        vec![
            rng.random_range(SD_LO..SD_HI),
            rng.random_range(SD_LO..SD_HI),
            rng.random_range(LO..HI),
        ]
    }

    fn sample_locals(&self, _globals: &[f64], rng: &mut dyn Rng) -> Vec<f64> {
        vec![rng.random_range(LO..HI), rng.random_range(LO..HI)]
    }

    fn simulate_site(
        &self, globals: &[f64], locals: &[f64], _inputs: Option<&[f64]>, rng: &mut dyn Rng,
    ) -> Vec<f64> {
        let [l11, l21, l22] = cholesky(globals);
        (0..DRAWS)
            .flat_map(|_| {
                let (z1, z2) = (std_normal(rng), std_normal(rng));
                [locals[0] + l11 * z1, locals[1] + l21 * z1 + l22 * z2]
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn draws_have_covariance_sigma_and_are_independent_within_a_site() {
        let (s1, s2, rho) = (1.3, 0.8, 0.7f64);
        let (v1, v2) = (s1 * s1, s2 * s2);
        let sigma = [v1 * v1 + JITTER, rho.tanh() * v1 * v2, v2 * v2 + JITTER];
        let m = [2.5, -1.0];
        let mut rng = StdRng::seed_from_u64(9);
        let sites = 50_000;
        // Second moments about the known mean: [var 0, cov, var 1], per draw, and between
        // the first two draws of a site (zero: draws are independent given m).
        let (mut within, mut between) = ([0.0; 3], [0.0; 2]);
        let count = (sites * DRAWS) as f64;
        for _ in 0..sites {
            let y = HierSlcp.simulate_site(&[s1, s2, rho], &m, None, &mut rng);
            let d: Vec<f64> = y.iter().enumerate().map(|(i, y)| y - m[i % 2]).collect();
            for pair in d.chunks(2) {
                within[0] += pair[0] * pair[0] / count;
                within[1] += pair[0] * pair[1] / count;
                within[2] += pair[1] * pair[1] / count;
            }
            between[0] += d[0] * d[2] / sites as f64;
            between[1] += d[1] * d[3] / sites as f64;
        }
        // Relative standard error of a variance over 2·10⁵ draws: √(2/n) ≈ 0.003; of the
        // covariance, √((1 + r²)/n)/r ≈ 0.005 at r = tanh 0.7 ≈ 0.6.
        for k in [0, 2] {
            assert!((within[k] / sigma[k] - 1.0).abs() < 0.015, "{within:?} vs {sigma:?}");
        }
        assert!((within[1] / sigma[1] - 1.0).abs() < 0.025, "{within:?} vs {sigma:?}");
        let correlation = within[1] / (within[0] * within[2]).sqrt();
        assert!((correlation - rho.tanh()).abs() < 0.01, "correlation {correlation}");
        // Cross-draw products have sd Σ00/√sites ≈ 0.013 and Σ11/√sites ≈ 0.0018.
        assert!(between[0].abs() < 0.06 && between[1].abs() < 0.01, "{between:?}");
    }

    #[test]
    fn nearly_singular_sigma_still_gives_finite_draws() {
        let mut rng = StdRng::seed_from_u64(1);
        for globals in [[0.1, 0.1, 3.0], [3.0, 0.1, -3.0], [0.1, 3.0, 3.0]] {
            let [_, _, l22] = cholesky(&globals);
            assert!(l22 >= JITTER.sqrt() * 0.999, "{globals:?}: l22 {l22}");
            let y = HierSlcp.simulate_site(&globals, &[0.0, 0.0], None, &mut rng);
            assert!(y.iter().all(|v| v.is_finite()), "{y:?}");
        }
    }
}
