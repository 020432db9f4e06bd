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
use tfmpe::metrics::{c2st, C2stConfig, MlpTraining};
use tfmpe::{Device, Error};

const N: usize = 300;

type Samples = [Vec<f64>];

/// `n` rows of `d` independent unit normals, the leading coordinates shifted by `shift`.
fn gaussian(rng: &mut StdRng, n: usize, d: usize, shift: &[f64]) -> Vec<Vec<f64>> {
    let z = common::normal(rng, n * d);
    z.chunks(d)
        .map(|row| {
            let mut row: Vec<f64> = row.iter().map(|&v| f64::from(v)).collect();
            row.iter_mut().zip(shift).for_each(|(v, s)| *v += s);
            row
        })
        .collect()
}

fn score(dev: &Device, seed: u64, d: usize, shift: &[f64]) -> f64 {
    let mut rng = common::rng(seed);
    let p = gaussian(&mut rng, N, d, shift);
    let q = gaussian(&mut rng, N, d, &[]);
    c2st(dev, &p, &q, &C2stConfig::default()).unwrap()
}

#[test]
fn same_distribution_is_near_chance() {
    for dev in common::devices() {
        for (seed, d) in [(1, 2), (2, 5)] {
            let acc = score(&dev, seed, d, &[]);
            assert!(
                (0.4..0.6).contains(&acc),
                "d = {d}: accuracy {acc} on identical distributions"
            );
        }
    }
}

/// 50 draws against 1 000 from the same distribution: the larger class is cut to 50, so the
/// score stays near chance instead of the 0.95 of always guessing the larger class.
#[test]
fn unequal_class_sizes_are_balanced() {
    let dev = Device::cpu();
    let mut rng = common::rng(9);
    let p = gaussian(&mut rng, 50, 2, &[]);
    let q = gaussian(&mut rng, 1000, 2, &[]);
    let acc = c2st(&dev, &p, &q, &C2stConfig::default()).unwrap();
    assert!((0.3..0.7).contains(&acc), "accuracy {acc} on identical distributions");
}

#[test]
fn large_shift_is_separable() {
    // A 3σ shift in each of 3 coordinates is a Mahalanobis distance of 3√3 = 5.2, optimum
    // Φ(2.6) = 0.995. Early stopping keeps the first epoch with the best validation score, so
    // the classifier falls short of that: over 16 seeds ours scored 0.974 ± 0.010 (least 0.957)
    // and sklearn's 0.969 ± 0.012, hence the bound 0.95. (A 3σ shift in one coordinate only has
    // optimum Φ(1.5) = 0.933; both classifiers average about 0.91 there, too close to 0.9.)
    for dev in common::devices() {
        let acc = score(&dev, 3, 3, &[3.0; 3]);
        assert!(acc > 0.95, "a 3σ mean shift gave accuracy {acc}");
    }
}

#[test]
fn accuracy_grows_with_the_shift() {
    // The optimal accuracies Φ(δ/2) for δ = 0, 0.5, 1 are 0.5, 0.6 and 0.69. Over 20 seeds
    // (d = 2) ours averaged 0.50, 0.56 and 0.666 ± 0.019 (sklearn's 0.51, 0.58, 0.674): steps
    // of three to five standard deviations, so scores on the same draws must be ordered, and
    // the δ = 1 score lies within 0.6..0.75. On the CPU only: the other backends run the same
    // classifier (tests/parity checks its kernels), and the tests above check their scores at
    // the null and under a large shift; three more scores on lavapipe took a minute of CI.
    let dev = Device::cpu();
    let scores: Vec<f64> =
        [0.0, 0.5, 1.0].iter().map(|&shift| score(&dev, 4, 2, &[shift])).collect();
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

#[test]
fn same_seed_same_score_for_any_row_type() {
    // Rows may be owned vectors or slices of one flat buffer; the score is bit-identical.
    let dev = Device::cpu();
    let mut rng = common::rng(5);
    let p = gaussian(&mut rng, N, 2, &[1.0]);
    let q = gaussian(&mut rng, N, 2, &[]);
    let flat_p: Vec<f64> = p.concat();
    let p_rows: Vec<&[f64]> = flat_p.chunks(2).collect();
    let cfg = C2stConfig::default();
    let owned = c2st(&dev, &p, &q, &cfg).unwrap();
    assert_eq!(owned, c2st(&dev, &p_rows, &q, &cfg).unwrap());
    assert_eq!(owned, c2st(&dev, &p, &q, &cfg).unwrap());
}

#[test]
fn constant_reference_column_is_only_centred() {
    // A reference column with zero spread cannot be scaled; it is centred, so a method that puts
    // another constant there stays finite and separable by that column alone (rather than NaN).
    // Not 1.0: early stopping keeps the first epoch with a perfect validation score, whose margin
    // can still be thin (0.977 here).
    let dev = Device::cpu();
    let mut rng = common::rng(6);
    let mut p = gaussian(&mut rng, N, 2, &[]);
    let mut q = gaussian(&mut rng, N, 2, &[]);
    p.iter_mut().for_each(|row| row[1] = 1.0);
    q.iter_mut().for_each(|row| row[1] = 0.25);
    let acc = c2st(&dev, &p, &q, &C2stConfig::default()).unwrap();
    assert!(acc > 0.95, "accuracy {acc}");
}

#[test]
fn bad_inputs_are_rejected_by_name() {
    let dev = Device::cpu();
    let cfg = C2stConfig::default();
    let mut rng = common::rng(7);
    let good = gaussian(&mut rng, 20, 2, &[]);
    let empty: Vec<Vec<f64>> = Vec::new();
    let mut ragged = good.clone();
    ragged[3].push(1.0);
    let mut nan = good.clone();
    nan[5][1] = f64::NAN;
    let mut inf = good.clone();
    inf[0][0] = f64::INFINITY;
    let wide = gaussian(&mut rng, 20, 3, &[]);
    let few = gaussian(&mut rng, 9, 2, &[]);
    let cases: [(&str, &Samples, &Samples, &str); 7] = [
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
    let bad_cfg = C2stConfig { folds: 1, ..C2stConfig::default() };
    assert!(matches!(c2st(&dev, &good, &good, &bad_cfg), Err(Error::Invalid(_))));
}

/// A classifier whose training diverges (here by a learning rate of 1e30) gives an error, not
/// the accuracy of NaN logits read as one class.
#[test]
fn a_diverged_classifier_is_an_error_not_a_score() {
    let mut r = common::rng(9);
    let (p, q) = (gaussian(&mut r, N, 2, &[3.0]), gaussian(&mut r, N, 2, &[]));
    let mlp = MlpTraining { lr: 1e30, max_epochs: 5, ..MlpTraining::default() };
    let cfg = C2stConfig { mlp, ..C2stConfig::default() };
    let err = c2st(&Device::cpu(), &p, &q, &cfg).unwrap_err();
    assert!(err.to_string().contains("not finite"), "{err}");
}
