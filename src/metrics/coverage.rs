//! Coverage tests: the shared form of TARP and of the HPD expected coverage.
//!
//! Each data set `i` contributes a level `f_i` in (0, 1): the smallest credibility level of a
//! family of credible regions (TARP's balls around random points, or the highest-posterior-
//! density regions) that contains the true parameter. The expected coverage probability
//! ECP(α) = P(f < α) equals α for every α exactly when the posterior is calibrated; the `f_i`
//! are tested for uniformity with Kolmogorov–Smirnov.
//!
//! The HPD region of level α holds the parameters whose posterior density exceeds the density
//! its boundary has; the truth lies inside it exactly when fewer than a share α of the draws
//! are denser than the truth. So the HPD level is that share, computed from the posterior's log
//! density at the truth and at the draws (sbi's `expected_coverage`).

use rand::rngs::StdRng;
use rand::SeedableRng;

use super::ks::ks_uniform;
use super::sbc::jittered;
use crate::error::{Error, Result};

#[derive(Clone, Debug)]
pub struct Coverage {
    /// `f_i` of each data set, spread over its discrete step as SBC ranks are (so uniform on
    /// (0, 1) under calibration).
    pub coverage: Vec<f64>,
    /// The KS statistic of the levels against U(0, 1), the largest gap |ECP(α) − α|.
    pub ks_statistic: f64,
    pub ks_p: f64,
}

impl Coverage {
    pub(super) fn from_levels(coverage: Vec<f64>) -> Coverage {
        let (ks_statistic, ks_p) = ks_uniform(&coverage);
        Coverage { coverage, ks_statistic, ks_p }
    }

    /// The expected coverage probability at credibility level `alpha`.
    pub fn ecp(&self, alpha: f64) -> f64 {
        let below = self.coverage.iter().filter(|&&f| f < alpha).count();
        below as f64 / self.coverage.len() as f64
    }

    /// ∫ from 0.5 to 1 of (ECP(α) − α) dα, sbi's "area to curve" (midpoint rule, 50 steps):
    /// near 0 when calibrated, negative when the posterior is too narrow, positive when too
    /// wide.
    pub fn atc(&self) -> f64 {
        (0..50)
            .map(|k| {
                let alpha = 0.5 + (k as f64 + 0.5) / 100.0;
                (self.ecp(alpha) - alpha) / 100.0
            })
            .sum()
    }
}

/// The HPD expected coverage from the posterior's log density at each data set's true
/// parameter (`truth[i]`, −∞ outside the support is allowed) and at its draws (`draws[i]`, the
/// same number for every data set). The tie-breaking jitter has a fixed seed: the result is
/// deterministic.
pub fn expected_coverage(truth: &[f64], draws: &[Vec<f64>]) -> Result<Coverage> {
    let l = draws.first().map_or(0, Vec::len);
    let bad = |why: String| Err(Error::Invalid(format!("expected coverage: {why}")));
    if truth.is_empty() || l == 0 {
        return bad(format!(
            "needs data sets and draws (got {} data sets, {l} draws)",
            truth.len()
        ));
    }
    if draws.len() != truth.len() {
        return bad(format!("{} truths but {} draw sets", truth.len(), draws.len()));
    }
    for (i, (t, set)) in truth.iter().zip(draws).enumerate() {
        if set.len() != l {
            return bad(format!("data set {i} has {} draws, data set 0 has {l}", set.len()));
        }
        if t.is_nan() || *t == f64::INFINITY || set.iter().any(|v| !v.is_finite()) {
            return bad(format!("data set {i} has a log density that is NaN or +∞"));
        }
    }
    let mut rng = StdRng::seed_from_u64(0xc0e);
    let levels = truth
        .iter()
        .zip(draws)
        .map(|(t, set)| jittered(set.iter().filter(|&&v| v > *t).count(), l, &mut rng))
        .collect();
    Ok(Coverage::from_levels(levels))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::RngExt;

    /// Standard normal draws by Box–Muller (the tests need no distribution crate).
    fn normal(rng: &mut StdRng) -> f64 {
        let (u, v): (f64, f64) = (rng.random(), rng.random());
        (-2.0 * (1.0 - u).ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }

    /// A 3-d Gaussian posterior N(x, s² I) around each data set's x, with truths from
    /// N(x, I): the log density of a posterior of scale `s` at the truth and at its draws.
    fn case(s: f64, seed: u64) -> Coverage {
        let mut rng = StdRng::seed_from_u64(seed);
        let log_q = |z: &[f64]| -0.5 * z.iter().map(|v| (v / s).powi(2)).sum::<f64>();
        let (mut truth, mut draws) = (Vec::new(), Vec::new());
        for _ in 0..300 {
            let t: Vec<f64> = (0..3).map(|_| normal(&mut rng)).collect();
            truth.push(log_q(&t));
            draws.push(
                (0..99)
                    .map(|_| log_q(&(0..3).map(|_| s * normal(&mut rng)).collect::<Vec<_>>()))
                    .collect(),
            );
        }
        expected_coverage(&truth, &draws).unwrap()
    }

    #[test]
    fn calibrated_posteriors_pass_and_wrong_widths_fail() {
        let right = case(1.0, 1);
        assert!(right.ks_p > 0.01 && right.atc().abs() < 0.03, "{right:?}");
        // Too narrow: the truth falls outside the regions too often, ECP(α) < α.
        let narrow = case(0.7, 2);
        assert!(narrow.ks_p < 1e-3 && narrow.atc() < -0.05, "{}", narrow.atc());
        let wide = case(1.4, 3);
        assert!(wide.ks_p < 1e-3 && wide.atc() > 0.05, "{}", wide.atc());
    }

    #[test]
    fn a_truth_outside_the_support_is_never_covered() {
        let c = expected_coverage(&[f64::NEG_INFINITY], &[vec![-1.0, -2.0]]).unwrap();
        assert!(c.coverage[0] > 2.0 / 3.0);
        assert!(expected_coverage(&[f64::NAN], &[vec![0.0]]).is_err());
        assert!(expected_coverage(&[0.0, 1.0], &[vec![0.0]]).is_err());
    }
}
