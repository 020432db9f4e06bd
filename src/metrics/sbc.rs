//! Simulation-based calibration (Talts et al. 2018; docs/architecture.md#metrics).
//!
//! For data sets simulated from the prior, the rank of each true parameter among `L` posterior
//! draws for its data set is uniform on 0..=L when the posterior is calibrated in that coordinate.
//! A posterior too narrow piles the ranks at both ends, one too wide in the middle, a biased one
//! at one end. Each parameter's ranks are tested for uniformity with Kolmogorov–Smirnov.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::ks::ks_uniform;
use crate::error::{Error, Result};

/// The ranks of every parameter and their uniformity test.
#[derive(Clone, Debug)]
pub struct Sbc {
    /// Posterior draws per data set (`L`); ranks take the values 0..=L.
    pub draws: usize,
    /// `ranks[p][i]`: how many of data set `i`'s draws of parameter `p` lie below the true value.
    pub ranks: Vec<Vec<usize>>,
    /// The KS p-value of each parameter's ranks against the uniform law on 0..=L.
    pub ks_p: Vec<f64>,
}

impl Sbc {
    /// Counts of parameter `p`'s ranks in `bins` equal bins of 0..=L (for rank histograms).
    pub fn histogram(&self, p: usize, bins: usize) -> Vec<usize> {
        let mut counts = vec![0; bins];
        for &r in &self.ranks[p] {
            counts[r * bins / (self.draws + 1)] += 1;
        }
        counts
    }
}

/// Checks that `truths[i]` (one parameter vector per data set) and `draws[i]` (that data set's
/// posterior draws) agree in count and length; returns (data sets, draws per set, dimension).
pub(super) fn check_shapes(
    what: &str, truths: &[Vec<f64>], draws: &[Vec<Vec<f64>>],
) -> Result<(usize, usize, usize)> {
    let (n, d) = (truths.len(), truths.first().map_or(0, Vec::len));
    let l = draws.first().map_or(0, Vec::len);
    let bad = |why: String| Err(Error::Invalid(format!("{what}: {why}")));
    if n == 0 || d == 0 || l == 0 {
        return bad(format!(
            "needs at least one data set, parameter and draw (got {n} data sets of dimension \
             {d} with {l} draws)"
        ));
    }
    if draws.len() != n {
        return bad(format!("{n} true parameter vectors but {} draw sets", draws.len()));
    }
    for (i, (t, set)) in truths.iter().zip(draws).enumerate() {
        if t.len() != d || set.len() != l || set.iter().any(|x| x.len() != d) {
            return bad(format!(
                "data set {i} does not have {l} draws of dimension {d} like data set 0"
            ));
        }
        if t.iter().chain(set.iter().flatten()).any(|v| !v.is_finite()) {
            return bad(format!("data set {i} has a non-finite parameter or draw"));
        }
    }
    Ok((n, l, d))
}

/// Ranks a count `below` among `l` draws as a continuous U(0, 1) value under calibration:
/// (below + v) / (l + 1) with v ~ U(0, 1), which spreads each of the l + 1 discrete values over
/// its own interval so that the KS test is exact rather than conservative.
pub(super) fn jittered(below: usize, l: usize, rng: &mut StdRng) -> f64 {
    (below as f64 + rng.random::<f64>()) / (l + 1) as f64
}

/// SBC ranks of `truths` among `draws` (see [`check_shapes`]) and their KS p-values. The jitter
/// that breaks ties in the test has a fixed seed, so the result is deterministic.
pub fn sbc(truths: &[Vec<f64>], draws: &[Vec<Vec<f64>>]) -> Result<Sbc> {
    let (n, l, d) = check_shapes("SBC", truths, draws)?;
    let mut rng = StdRng::seed_from_u64(0x5bc);
    let mut ranks = vec![Vec::with_capacity(n); d];
    for (t, set) in truths.iter().zip(draws) {
        for (p, r) in ranks.iter_mut().enumerate() {
            r.push(set.iter().filter(|x| x[p] < t[p]).count());
        }
    }
    let ks_p = ranks
        .iter()
        .map(|r| {
            let u: Vec<f64> = r.iter().map(|&b| jittered(b, l, &mut rng)).collect();
            ks_uniform(&u).1
        })
        .collect();
    Ok(Sbc { draws: l, ranks, ks_p })
}
