//! Tests of Accuracy with Random Points (TARP; Lemos et al. 2023; docs/architecture.md#metrics): a calibration
//! check of the joint posterior, not one coordinate at a time.
//!
//! Parameters and draws are normalised with the mean and standard deviation of the true
//! parameters (draws from the prior). For data set `i` a reference point `r_i` is drawn
//! uniformly in the box the normalised true parameters span, and `f_i` is the share of its
//! posterior draws closer to `r_i` than the true parameter is. The expected coverage probability
//! ECP(α) = P(f < α) equals α for every α exactly when the posterior is calibrated; the `f_i`
//! are tested for uniformity with Kolmogorov–Smirnov.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::coverage::Coverage;
use super::sbc::{check_shapes, jittered};
use crate::error::Result;

/// TARP's levels and their test.
pub type Tarp = Coverage;

/// TARP coverages of `truths` by `draws` (one parameter vector and one draw set per data set).
/// The reference points and the tie-breaking jitter have fixed seeds: the result is
/// deterministic.
pub fn tarp(truths: &[Vec<f64>], draws: &[Vec<Vec<f64>>]) -> Result<Tarp> {
    let (n, l, d) = check_shapes("TARP", truths, draws)?;
    let (mut mean, mut sd) = (vec![0.0; d], vec![0.0; d]);
    for t in truths {
        for p in 0..d {
            mean[p] += t[p] / n as f64;
        }
    }
    for t in truths {
        for p in 0..d {
            sd[p] += (t[p] - mean[p]).powi(2) / n as f64;
        }
    }
    let scale: Vec<f64> = sd.iter().map(|v| if *v > 0.0 { 1.0 / v.sqrt() } else { 1.0 }).collect();
    let norm = |x: &[f64], p: usize| (x[p] - mean[p]) * scale[p];
    let (mut lo, mut hi) = (vec![f64::INFINITY; d], vec![f64::NEG_INFINITY; d]);
    for t in truths {
        for p in 0..d {
            lo[p] = lo[p].min(norm(t, p));
            hi[p] = hi[p].max(norm(t, p));
        }
    }
    let mut rng = StdRng::seed_from_u64(0x7a49);
    let coverage: Vec<f64> = truths
        .iter()
        .zip(draws)
        .map(|(t, set)| {
            let r: Vec<f64> =
                (0..d).map(|p| lo[p] + (hi[p] - lo[p]) * rng.random::<f64>()).collect();
            let dist = |x: &[f64]| (0..d).map(|p| (norm(x, p) - r[p]).powi(2)).sum::<f64>();
            let own = dist(t);
            let closer = set.iter().filter(|x| dist(x) < own).count();
            jittered(closer, l, &mut rng)
        })
        .collect();
    Ok(Coverage::from_levels(coverage))
}
