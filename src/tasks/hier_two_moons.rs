//! `hier-two-moons`: loc ~ U(−1, 1)², scale ~ HalfNormal(0.5)²; θ_s ~ N(loc, scale) truncated to
//! [−1, 1]²; y_s is a point of a noisy half circle of radius 0.1 around (0.25, 0), shifted by
//! (−|θ1 + θ2|/√2, (−θ1 + θ2)/√2). The absolute value makes θ_s and its mirror image
//! (−θ2, −θ1) give the same observation: the site posteriors are bimodal, two moons. No exact
//! posterior.

use super::truncated_normal::truncated_normal_box;
use super::{std_normal, Bijection, HierarchicalModel, Variable};
use rand::{Rng, RngExt};
use std::f64::consts::{FRAC_1_SQRT_2, FRAC_PI_2};

/// Support of loc and of each θ_s.
const LO: f64 = -1.0;
const HI: f64 = 1.0;
/// Scale of the half-normal prior on each scale.
const SCALE_SCALE: f64 = 0.5;
/// Radius of the half circle: N(mean, sd).
const RADIUS_MEAN: f64 = 0.1;
const RADIUS_SD: f64 = 0.01;
/// Horizontal offset of the half circle's centre.
const OFFSET: f64 = 0.25;

/// The hierarchical two moons (docs/architecture.md#tasks, `hier-two-moons`).
#[derive(Clone, Copy, Debug, Default)]
pub struct HierTwoMoons;

impl HierarchicalModel for HierTwoMoons {
    fn name(&self) -> &str {
        "hier-two-moons"
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
        let scale = [SCALE_SCALE * std_normal(rng).abs(), SCALE_SCALE * std_normal(rng).abs()];
        vec![loc[0], loc[1], scale[0], scale[1]]
    }

    fn sample_locals(&self, globals: &[f64], rng: &mut dyn Rng) -> Vec<f64> {
        truncated_normal_box(&globals[0..2], &globals[2..4], LO, HI, rng)
    }

    fn simulate_site(
        &self, _globals: &[f64], locals: &[f64], _inputs: Option<&[f64]>, rng: &mut dyn Rng,
    ) -> Vec<f64> {
        let angle = rng.random_range(-FRAC_PI_2..FRAC_PI_2);
        let radius = RADIUS_MEAN + RADIUS_SD * std_normal(rng);
        let (t1, t2) = (locals[0], locals[1]);
        vec![
            radius * angle.cos() + OFFSET - (t1 + t2).abs() * FRAC_1_SQRT_2,
            radius * angle.sin() + (t2 - t1) * FRAC_1_SQRT_2,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn at_theta_zero_points_lie_on_a_noisy_right_half_circle() {
        let mut rng = StdRng::seed_from_u64(4);
        let n = 100_000;
        let (mut radii, mut angles) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for _ in 0..n {
            let y = HierTwoMoons.simulate_site(&[], &[0.0, 0.0], None, &mut rng);
            let (dx, dy) = (y[0] - OFFSET, y[1]);
            radii.push(dx.hypot(dy));
            // The radius is positive (10 sd from 0), so the angle is that of the draw.
            angles.push(dy.atan2(dx));
        }
        let mean = |xs: &[f64]| xs.iter().sum::<f64>() / n as f64;
        let var = |xs: &[f64], m: f64| xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / n as f64;
        let (r, a) = (mean(&radii), mean(&angles));
        // Standard errors: 3e−5 for the radius's mean, 0.003 for the angle's (sd π/√12).
        assert!((r - 0.1).abs() < 2e-4, "mean radius {r}");
        assert!((var(&radii, r).sqrt() - 0.01).abs() < 2e-4, "radius sd");
        assert!(a.abs() < 0.015, "mean angle {a}");
        let spread = var(&angles, a);
        assert!((spread - FRAC_PI_2.powi(2) / 3.0).abs() < 0.02, "angle variance {spread}");
        assert!(angles.iter().all(|a| a.abs() <= FRAC_PI_2), "angles beyond ±π/2");
    }

    #[test]
    fn theta_shifts_the_moon_and_its_mirror_image_gives_the_same_point() {
        let theta = [0.3, -0.5];
        let shift = [-(0.3f64 - 0.5).abs() / 2f64.sqrt(), (-0.5 - 0.3) / 2f64.sqrt()];
        for seed in 0..20 {
            let site = |t: &[f64]| {
                HierTwoMoons.simulate_site(&[], t, None, &mut StdRng::seed_from_u64(seed))
            };
            let (origin, y, mirror) = (site(&[0.0, 0.0]), site(&theta), site(&[0.5, -0.3]));
            for j in 0..2 {
                assert!((y[j] - origin[j] - shift[j]).abs() < 1e-15, "seed {seed}");
                assert!((mirror[j] - y[j]).abs() < 1e-15, "seed {seed}");
            }
        }
    }

    #[test]
    fn locals_stay_inside_the_box_and_have_the_truncated_moments() {
        let mut rng = StdRng::seed_from_u64(8);
        for globals in [[0.999, -0.999, 5.0, 5.0], [1.0, -1.0, 1e-12, 1e-12]] {
            for _ in 0..20_000 {
                let theta = HierTwoMoons.sample_locals(&globals, &mut rng);
                assert!(theta.iter().all(|&t| LO < t && t < HI), "{globals:?}: {theta:?}");
            }
        }
        // N(0, 1) truncated to [−1, 1]: variance 1 − 2 φ(1) / (2 Φ(1) − 1) = 0.29112509.
        let n = 200_000;
        let draws: Vec<f64> = (0..n)
            .flat_map(|_| HierTwoMoons.sample_locals(&[0.0, 0.0, 1.0, 1.0], &mut rng))
            .collect();
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        let var = draws.iter().map(|t| t * t).sum::<f64>() / draws.len() as f64;
        // Standard errors: 0.0009 for the mean, 0.0005 for the variance.
        assert!(mean.abs() < 0.004, "mean {mean}");
        assert!((var - 0.29112509).abs() < 0.003, "variance {var}");
    }
}
