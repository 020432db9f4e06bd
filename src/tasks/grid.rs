//! Inverse-CDF sampling of a one-dimensional density known up to a constant, on a uniform grid
//! that zooms in on where the mass is. The linear Gaussian tasks use it for the posterior of their
//! global scale (in log space), whose normalising constant has no closed form.

use super::uniform01;
use rand::Rng;

/// Grid nodes per pass.
const POINTS: usize = 4097;
/// Nodes whose log-density is further than this below the maximum carry no mass worth
/// resolving: e^−40 ≈ 4e−18 of the peak density.
const DROP: f64 = 40.0;
/// Stop zooming once the region holding the mass spans this share of the current grid.
const SETTLED: f64 = 0.9;
/// Each pass shrinks the grid at least tenfold, so a handful reach any peak width above 1e−12.
const MAX_PASSES: usize = 12;

/// A piecewise-linear density on a uniform grid (exactly the trapezoid rule's interpolant), ready
/// for inverse-CDF draws.
pub(crate) struct GridSampler {
    start: f64,
    step: f64,
    /// Unnormalised density at each node, peak 1.
    density: Vec<f64>,
    /// Trapezoid mass of the cells before each node.
    cumulative: Vec<f64>,
    /// Index of the last node whose cell (ending there) has mass; draws never land past it.
    last_massive: usize,
    /// The log-density's maximum on the grid, which `density` is scaled by.
    log_peak: f64,
}

impl GridSampler {
    /// Tabulates `log_density` on `[lo, hi]`, then repeatedly narrows the grid to the nodes within
    /// [`DROP`] of the maximum (plus one cell each side) until they fill most of it. The bracket
    /// must contain all the mass; NaN counts as zero density. `None` when the log-density is
    /// nowhere finite, or +∞ somewhere.
    pub(crate) fn new(log_density: impl Fn(f64) -> f64, lo: f64, hi: f64) -> Option<Self> {
        let (mut start, mut end) = (lo, hi);
        let mut logs = vec![0.0; POINTS];
        for pass in 1..=MAX_PASSES {
            let step = (end - start) / (POINTS - 1) as f64;
            for (i, l) in logs.iter_mut().enumerate() {
                let value = log_density(start + step * i as f64);
                *l = if value.is_nan() { f64::NEG_INFINITY } else { value };
            }
            let max = logs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            if !max.is_finite() {
                return None;
            }
            let first = logs.iter().position(|&l| l >= max - DROP)?;
            let last = logs.iter().rposition(|&l| l >= max - DROP)?;
            let new_start = start + step * first.saturating_sub(1) as f64;
            let new_end = start + step * (last + 1).min(POINTS - 1) as f64;
            if new_end - new_start >= SETTLED * (end - start) || pass == MAX_PASSES {
                return Some(Self::from_logs(start, step, &logs, max));
            }
            (start, end) = (new_start, new_end);
        }
        unreachable!("the last pass always returns")
    }

    fn from_logs(start: f64, step: f64, logs: &[f64], max: f64) -> Self {
        let density: Vec<f64> = logs.iter().map(|&l| (l - max).exp()).collect();
        let mut cumulative = Vec::with_capacity(density.len());
        let mut total = 0.0;
        cumulative.push(total);
        for pair in density.windows(2) {
            total += 0.5 * step * (pair[0] + pair[1]);
            cumulative.push(total);
        }
        let last_massive = (1..density.len())
            .rev()
            .find(|&i| cumulative[i] > cumulative[i - 1])
            .expect("the peak node has density 1, so a neighbouring cell has mass");
        GridSampler { start, step, density, cumulative, last_massive, log_peak: max }
    }

    /// ln ∫ exp(log_density): subtracted from the log-density, it gives the normalised one
    /// (the trapezoid rule on the final grid, whose error the zooming keeps far below 1e−6).
    pub(crate) fn log_normaliser(&self) -> f64 {
        self.log_peak + self.cumulative[self.cumulative.len() - 1].ln()
    }

    /// One draw from the tabulated density.
    pub(crate) fn sample(&self, rng: &mut dyn Rng) -> f64 {
        let target = uniform01(rng) * self.cumulative[self.last_massive];
        // The cell [node i, node i + 1] with cumulative[i] ≤ target < cumulative[i + 1]; the
        // clamp only matters when rounding puts target on the total.
        let end = self.cumulative.partition_point(|&c| c <= target).min(self.last_massive);
        let i = end - 1;
        let (p0, p1) = (self.density[i], self.density[i + 1]);
        let fraction =
            ((target - self.cumulative[i]) / (self.cumulative[end] - self.cumulative[i])).min(1.0);
        // Solve the quadratic CDF of the linear density on the cell for the offset t ∈ [0, 1],
        // in the form that has no cancellation when p1 ≈ p0.
        let denominator = p0 + (p0 * p0 + fraction * (p1 * p1 - p0 * p0)).sqrt();
        let t = if denominator > 0.0 { fraction * (p0 + p1) / denominator } else { 0.0 };
        self.start + self.step * (i as f64 + t)
    }
}

/// The bracket for ln σ of a positive scale: σ from 9e−27 to 7e10. It holds all the mass of every
/// scale posterior here: near σ = 0 their density in ln σ decays like σ, so e^−60 is 58 nats below
/// any mode above σ = 0.1, and their half-normal priors rule out the top end.
const LOG_SCALE_BRACKET: (f64, f64) = (-60.0, 25.0);

/// A sampler of ln σ for a positive scale σ with unnormalised log-density `log_density(σ)`.
/// Tabulating in ln σ keeps both the pile-up near 0 and the long upper tail resolved on one grid;
/// draws are ln σ, so `sample(rng).exp()` is a draw of σ.
pub(crate) fn log_scale_sampler(log_density: impl Fn(f64) -> f64) -> Option<GridSampler> {
    let (lo, hi) = LOG_SCALE_BRACKET;
    // The Jacobian dσ/d ln σ = σ adds ln σ.
    GridSampler::new(|v| log_density(v.exp()) + v, lo, hi)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    /// Largest gap between the empirical CDF of `draws` and `cdf`.
    fn ks_distance(mut draws: Vec<f64>, cdf: impl Fn(f64) -> f64) -> f64 {
        draws.sort_by(f64::total_cmp);
        let n = draws.len() as f64;
        draws
            .iter()
            .enumerate()
            .map(|(i, &x)| {
                let f = cdf(x);
                (f - i as f64 / n).abs().max((f - (i + 1) as f64 / n).abs())
            })
            .fold(0.0, f64::max)
    }

    // KS critical value at α = 1e−3 for n draws is 1.95/√n; the seed is fixed, so this is a
    // deterministic check that the grid error is far below the sampling noise.
    const DRAWS: usize = 20_000;
    fn ks_bound() -> f64 {
        1.95 / (DRAWS as f64).sqrt()
    }

    #[test]
    fn log_of_exponential_matches_its_cdf() {
        // v = ln σ with σ ~ Exp(1): density e^{v − e^v}, CDF 1 − exp(−e^v). Its lower tail decays
        // only like e^v, the shape of the scale posteriors.
        let grid = GridSampler::new(|v| v - v.exp(), -60.0, 25.0).unwrap();
        let mut rng = StdRng::seed_from_u64(7);
        let draws = (0..DRAWS).map(|_| grid.sample(&mut rng)).collect();
        let d = ks_distance(draws, |v| -(-v.exp()).exp_m1());
        assert!(d < ks_bound(), "KS distance {d}");
    }

    #[test]
    fn zooms_onto_a_narrow_peak() {
        // A peak of width 1e−6 inside a bracket 85 wide: the first pass sees at most one node
        // on it, later passes must find and resolve it.
        let (centre, width) = (3.0, 1e-6);
        let grid =
            GridSampler::new(|v| -0.5 * ((v - centre) / width).powi(2), -60.0, 25.0).unwrap();
        let mut rng = StdRng::seed_from_u64(8);
        let draws: Vec<f64> = (0..DRAWS).map(|_| grid.sample(&mut rng)).collect();
        let mean = draws.iter().sum::<f64>() / DRAWS as f64;
        let sd = (draws.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / DRAWS as f64).sqrt();
        // 5 standard errors of the mean; the sd within 5 % (its standard error is 0.5 %).
        assert!((mean - centre).abs() < 5.0 * width / (DRAWS as f64).sqrt(), "mean {mean}");
        assert!((sd / width - 1.0).abs() < 0.05, "sd {sd}");
    }

    #[test]
    fn normaliser_of_a_gamma_in_log_space() {
        // v = ln σ with σ ~ Gamma(3, 1) unnormalised: σ² e^−σ has integral Γ(3) = 2, and in ln σ
        // the Jacobian adds v.
        let grid = log_scale_sampler(|s| 2.0 * s.ln() - s).unwrap();
        assert!((grid.log_normaliser() - 2f64.ln()).abs() < 1e-6, "{}", grid.log_normaliser());
    }

    #[test]
    fn nowhere_finite_density_is_none() {
        assert!(GridSampler::new(|_| f64::NEG_INFINITY, 0.0, 1.0).is_none());
        assert!(GridSampler::new(|_| f64::NAN, 0.0, 1.0).is_none());
        assert!(GridSampler::new(|v| if v > 0.5 { f64::INFINITY } else { 0.0 }, 0.0, 1.0).is_none());
    }
}
