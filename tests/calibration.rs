//! SBC and TARP (`metrics::sbc`, `metrics::tarp`) on a task whose posterior is known: exact
//! posterior draws must pass, and draws made too narrow, too wide or shifted must fail.

use rand::rngs::StdRng;
use rand::SeedableRng;
use tfmpe::metrics::{sbc, tarp};
use tfmpe::tasks::{simulate_dataset, task_by_name};
use tfmpe::Error;

const SITES: usize = 3;
const DATA_SETS: usize = 300;
const DRAWS: usize = 99;

/// True parameters of data sets from the prior and exact posterior draws for each.
fn exact(seed: u64) -> (Vec<Vec<f64>>, Vec<Vec<Vec<f64>>>) {
    let task = task_by_name("hier-gaussian-linear").unwrap();
    let mut rng = StdRng::seed_from_u64(seed);
    (0..DATA_SETS)
        .map(|_| {
            let d = simulate_dataset(task.as_ref(), SITES, &mut rng).unwrap();
            let draws = task.exact_posterior(&d.obs, None, SITES, DRAWS, &mut rng).unwrap();
            (d.params, draws)
        })
        .unzip()
}

/// Each draw moved away from its set's mean by `factor` (a posterior `factor` times as wide),
/// then shifted by `shift` posterior standard deviations in coordinate 0.
fn distort(draws: &[Vec<Vec<f64>>], factor: f64, shift: f64) -> Vec<Vec<Vec<f64>>> {
    draws
        .iter()
        .map(|set| {
            let d = set[0].len();
            let n = set.len() as f64;
            let mean: Vec<f64> =
                (0..d).map(|p| set.iter().map(|x| x[p]).sum::<f64>() / n).collect();
            let sd0 = (set.iter().map(|x| (x[0] - mean[0]).powi(2)).sum::<f64>() / n).sqrt();
            set.iter()
                .map(|x| {
                    let mut y: Vec<f64> =
                        (0..d).map(|p| mean[p] + factor * (x[p] - mean[p])).collect();
                    y[0] += shift * sd0;
                    y
                })
                .collect()
        })
        .collect()
}

fn min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

#[test]
fn exact_posterior_draws_are_calibrated() {
    let (truths, draws) = exact(11);
    let s = sbc(&truths, &draws).unwrap();
    assert_eq!((s.draws, s.ranks.len(), s.ranks[0].len()), (DRAWS, 1 + SITES, DATA_SETS));
    assert_eq!(s.histogram(0, 10).iter().sum::<usize>(), DATA_SETS);
    // Four parameters at 1e-3 each: a false alarm has probability below 0.4% (the seed is fixed,
    // so this either always passes or always fails).
    assert!(min(&s.ks_p) > 1e-3, "SBC p-values {:?}", s.ks_p);
    let t = tarp(&truths, &draws).unwrap();
    assert!(t.ks_p > 1e-3, "TARP p {} (D {})", t.ks_p, t.ks_statistic);
    // ATC's null spread with 300 data sets is about ±0.01.
    assert!(t.atc().abs() < 0.04, "ATC {}", t.atc());
    assert!((t.ecp(1.0) - 1.0).abs() < 1e-12 && t.ecp(0.0) == 0.0);
}

#[test]
fn too_narrow_too_wide_or_biased_posteriors_fail() {
    let (truths, draws) = exact(12);
    let narrow = distort(&draws, 0.5, 0.0);
    let s = sbc(&truths, &narrow).unwrap();
    assert!(s.ks_p.iter().all(|&p| p < 1e-3), "narrow: SBC {:?}", s.ks_p);
    // Too narrow: the truth lies outside most draws' ranks at both ends.
    let h = s.histogram(0, 10);
    assert!(h[0] + h[9] > 3 * (h[4] + h[5]), "narrow: histogram {h:?}");
    let t = tarp(&truths, &narrow).unwrap();
    assert!(t.ks_p < 1e-4 && t.atc() < -0.02, "narrow: TARP p {} ATC {}", t.ks_p, t.atc());

    let wide = distort(&draws, 2.0, 0.0);
    let s = sbc(&truths, &wide).unwrap();
    assert!(s.ks_p.iter().all(|&p| p < 1e-3), "wide: SBC {:?}", s.ks_p);
    let t = tarp(&truths, &wide).unwrap();
    assert!(t.ks_p < 1e-4 && t.atc() > 0.02, "wide: TARP p {} ATC {}", t.ks_p, t.atc());

    // Shifted by one posterior sd in σ alone: SBC names σ and leaves the site means be.
    let biased = distort(&draws, 1.0, 1.0);
    let s = sbc(&truths, &biased).unwrap();
    assert!(s.ks_p[0] < 1e-6, "biased: σ p {}", s.ks_p[0]);
    assert!(min(&s.ks_p[1..]) > 1e-3, "biased: site p {:?}", s.ks_p);
}

#[test]
fn mismatched_inputs_are_errors_naming_the_metric() {
    let (truths, draws) = exact(13);
    let err = sbc(&truths[1..], &draws).unwrap_err();
    assert!(matches!(err, Error::Invalid(_)) && err.to_string().contains("SBC"), "{err}");
    let mut short = draws.clone();
    short[5].pop();
    let err = tarp(&truths, &short).unwrap_err();
    assert!(err.to_string().contains("TARP") && err.to_string().contains("data set 5"), "{err}");
    let mut nan = draws;
    nan[2][0][1] = f64::NAN;
    assert!(sbc(&truths, &nan).unwrap_err().to_string().contains("non-finite"));
    assert!(sbc(&[], &[]).is_err());
}
