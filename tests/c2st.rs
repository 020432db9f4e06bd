//! The C2ST metric: calibration at the null, power against shifts, and input checks.
//!
//! Bounds: with n = 300 rows per class (600 classified rows over the 5 folds), the held-out
//! accuracy of a classifier that cannot beat chance has standard error sqrt(0.25 / 600) ≈ 0.02,
//! so under the null the score should lie within 0.5 ± 0.06 (three standard errors); the
//! classifier can only be worse than chance by noise, not better, so 0.6 is a safe upper bound
//! (five standard errors). Against a mean shift of δ standard deviations in one coordinate the
//! Bayes-optimal accuracy is Φ(δ / 2): 0.93 for δ = 3, 0.69 for δ = 1, 0.60 for δ = 0.5.

mod common;

use rand::rngs::StdRng;
use tfmpe::metrics::{c2st, C2stConfig};
use tfmpe::{Device, Error};

const N: usize = 300;

/// `n` rows of `d` independent normals with mean `shift` in the first coordinate and unit
/// variance elsewhere.
fn gaussian(rng: &mut StdRng, n: usize, d: usize, shift: f64) -> Vec<Vec<f64>> {
    let z = common::normal(rng, n * d);
    z.chunks(d)
        .map(|row| {
            let mut row: Vec<f64> = row.iter().map(|&v| f64::from(v)).collect();
            row[0] += shift;
            row
        })
        .collect()
}

fn score(dev: &Device, seed: u64, d: usize, shift: f64) -> f64 {
    let mut rng = common::rng(seed);
    let p = gaussian(&mut rng, N, d, shift);
    let q = gaussian(&mut rng, N, d, 0.0);
    c2st(dev, &p, &q, &C2stConfig::default()).unwrap()
}

#[test]
fn same_distribution_is_near_chance() {
    for dev in common::devices() {
        for (seed, d) in [(1, 2), (2, 5)] {
            let acc = score(&dev, seed, d, 0.0);
            assert!(
                (0.4..0.6).contains(&acc),
                "d = {d}: accuracy {acc} on identical distributions"
            );
        }
    }
}

#[test]
fn large_shift_is_separable() {
    // Φ(1.5) = 0.933; allow three standard errors (about 0.01 each at this accuracy) below it.
    for dev in common::devices() {
        let acc = score(&dev, 3, 3, 3.0);
        assert!(acc > 0.9, "a 3σ mean shift gave accuracy {acc}");
    }
}

#[test]
fn accuracy_grows_with_the_shift() {
    // The optimal accuracies Φ(δ/2) for δ = 0, 0.5, 1 are 0.5, 0.6 and 0.69: about five standard
    // errors apart, so the scores on the same draws (common seed) must be ordered.
    for dev in common::devices() {
        let scores: Vec<f64> = [0.0, 0.5, 1.0]
            .iter()
            .map(|&shift| score(&dev, 4, 2, shift))
            .collect();
        assert!(
            scores.windows(2).all(|w| w[0] < w[1]),
            "scores {scores:?} for shifts 0, 0.5, 1 are not increasing"
        );
        assert!(
            (0.6..0.75).contains(&scores[2]),
            "a 1σ shift gave {}, expected near Φ(0.5) = 0.69",
            scores[2]
        );
    }
}

#[test]
fn same_seed_same_score() {
    let dev = Device::cpu();
    assert_eq!(score(&dev, 5, 2, 1.0), score(&dev, 5, 2, 1.0));
}

#[test]
fn constant_reference_column_is_only_centred() {
    // A reference column with zero spread cannot be scaled; it is centred, so a method that puts
    // another constant there stays finite and perfectly separable (rather than NaN).
    let dev = Device::cpu();
    let mut rng = common::rng(6);
    let mut p = gaussian(&mut rng, N, 2, 0.0);
    let mut q = gaussian(&mut rng, N, 2, 0.0);
    p.iter_mut().for_each(|row| row[1] = 1.0);
    q.iter_mut().for_each(|row| row[1] = 0.25);
    let acc = c2st(&dev, &p, &q, &C2stConfig::default()).unwrap();
    assert!(acc > 0.99, "accuracy {acc}");
}

#[test]
fn bad_inputs_are_rejected_by_name() {
    let dev = Device::cpu();
    let cfg = C2stConfig::default();
    let mut rng = common::rng(7);
    let good = gaussian(&mut rng, 20, 2, 0.0);
    let empty: Vec<Vec<f64>> = Vec::new();
    let mut ragged = good.clone();
    ragged[3].push(1.0);
    let mut nan = good.clone();
    nan[5][1] = f64::NAN;
    let mut inf = good.clone();
    inf[0][0] = f64::INFINITY;
    let wide = gaussian(&mut rng, 20, 3, 0.0);
    let few = gaussian(&mut rng, 9, 2, 0.0);
    let cases: [(&str, &[Vec<f64>], &[Vec<f64>], &str); 7] = [
        ("empty p", &empty, &good, "p is empty"),
        ("empty q", &good, &empty, "q is empty"),
        ("ragged p", &ragged, &good, "p row 3 has 3 values"),
        ("wider q", &good, &wide, "q row 0 has 3 values"),
        ("NaN in q", &good, &nan, "q row 5 holds a non-finite value"),
        ("inf in p", &inf, &good, "p row 0 holds a non-finite value"),
        ("too few rows", &few, &good, "p has 9 rows"),
    ];
    for (what, p, q, needle) in cases {
        match c2st(&dev, p, q, &cfg) {
            Err(Error::Invalid(msg)) => assert!(msg.contains(needle), "{what}: message `{msg}`"),
            other => panic!("{what}: expected Error::Invalid, got {other:?}"),
        }
    }
    let bad_cfg = C2stConfig {
        folds: 1,
        ..C2stConfig::default()
    };
    assert!(matches!(
        c2st(&dev, &good, &good, &bad_cfg),
        Err(Error::Invalid(_))
    ));
}
