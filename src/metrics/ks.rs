//! The one-sample Kolmogorov–Smirnov test against U(0, 1), shared by SBC and TARP.

/// The KS statistic `D = sup |F_n(u) − u|` of `values` in [0, 1] and its asymptotic p-value.
///
/// Both SBC ranks and TARP coverages take finitely many values, so the p-value is a little
/// conservative (a discrete null has smaller `D` than the continuous one).
pub fn ks_uniform(values: &[f64]) -> (f64, f64) {
    let n = values.len();
    if n == 0 {
        return (0.0, 1.0);
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let nf = n as f64;
    let mut d = 0.0f64;
    for (i, &u) in v.iter().enumerate() {
        let u = u.clamp(0.0, 1.0);
        // F_n jumps from i/n to (i+1)/n at u; equal values only ever widen the upper step.
        d = d.max((i + 1) as f64 / nf - u).max(u - i as f64 / nf);
    }
    (d, kolmogorov_q((nf.sqrt() + 0.12 + 0.11 / nf.sqrt()) * d))
}

/// `Q(λ) = 2 Σ_{j≥1} (−1)^{j−1} exp(−2 j² λ²)`, the tail of the Kolmogorov distribution, with
/// Stephens' finite-n correction applied by the caller (Numerical Recipes §14.3).
pub fn kolmogorov_q(lambda: f64) -> f64 {
    if lambda < 0.2 {
        return 1.0; // the series converges slowly here and Q is 1 to 1e-13
    }
    let mut sum = 0.0;
    for j in 1..=100 {
        let term = (-2.0 * (j * j) as f64 * lambda * lambda).exp();
        sum += if j % 2 == 1 { term } else { -term };
        if term < 1e-16 * sum.abs().max(1e-300) {
            break;
        }
    }
    (2.0 * sum).clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kolmogorov_tail_matches_tabulated_values() {
        // Critical values of the Kolmogorov distribution: P(K > 1.2238) = 0.10,
        // P(K > 1.3581) = 0.05, P(K > 1.6276) = 0.01.
        for (lambda, p) in [(1.2238, 0.10), (1.3581, 0.05), (1.6276, 0.01)] {
            assert!((kolmogorov_q(lambda) - p).abs() < 2e-4, "Q({lambda})");
        }
        assert_eq!(kolmogorov_q(0.0), 1.0);
        assert!(kolmogorov_q(5.0) < 1e-20);
    }

    #[test]
    fn statistic_of_small_samples_by_hand() {
        // {0.1, 0.5, 0.9}: the largest gaps are 1/3 − 0.1 (just after 0.1) and 0.9 − 2/3 (just
        // before 0.9).
        let (d, _) = ks_uniform(&[0.5, 0.9, 0.1]);
        assert!((d - (1.0 / 3.0 - 0.1)).abs() < 1e-12, "{d}");
        // All mass at 0: D = 1, p tiny.
        let (d, p) = ks_uniform(&[0.0; 50]);
        assert_eq!(d, 1.0);
        assert!(p < 1e-20);
        // An evenly spread sample fits well.
        let even: Vec<f64> = (0..100).map(|i| (i as f64 + 0.5) / 100.0).collect();
        let (d, p) = ks_uniform(&even);
        assert!((d - 0.005).abs() < 1e-12 && p > 0.99, "{d} {p}");
    }
}
