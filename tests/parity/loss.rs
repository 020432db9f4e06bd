//! Parity of the `loss` kernels: binary cross-entropy with logits and `reduce_sum`.

use crate::common::{self, assert_close, backend, down, rng, up, zeros};
use tfmpe::Device;

per_device!(
    bce_with_logits_matches_f64,
    bce_with_logits_is_stable_at_extreme_logits,
    reduce_sum_matches_f64,
    reductions_are_deterministic,
    loss_kernels_reject_wrong_lengths
);

/// Sizes that hit the vector tails (1, 7, 33, 101) and one that spans several parallel blocks.
const SIZES: [usize; 5] = [1, 7, 33, 101, 100_003];

/// Mean BCE with logits and its gradient, in f64 from the definition `-y ln σ(z) - (1-y) ln(1-σ(z))`
/// rewritten stably.
fn bce_ref(z: &[f32], y: &[f32]) -> (f64, Vec<f64>) {
    let n = z.len() as f64;
    let mut loss = 0.0;
    let mut dz = Vec::with_capacity(z.len());
    for (&z, &y) in z.iter().zip(y) {
        let (z, y) = (z as f64, y as f64);
        loss += z.max(0.0) - z * y + (-z.abs()).exp().ln_1p();
        dz.push((1.0 / (1.0 + (-z).exp()) - y) / n);
    }
    (loss / n, dz)
}

fn run_bce(dev: &tfmpe::Device, z: &[f32], y: &[f32]) -> (f32, Vec<f32>) {
    let (mut loss, mut dz) = (zeros(dev, 1), zeros(dev, z.len()));
    backend(dev).bce_with_logits(&up(dev, z), &up(dev, y), &mut loss, &mut dz).unwrap();
    (down(dev, &loss)[0], down(dev, &dz))
}

#[track_caller]
fn check_bce(z: &[f32], y: &[f32], dev: &tfmpe::Device) {
    let (loss, dz) = run_bce(dev, z, y);
    let (want_loss, want_dz) = bce_ref(z, y);
    let n = z.len() as f64;
    // The loss terms are summed in f64 from an f32 e^-|z| (relative error ~1e-7), so only the
    // final rounding to f32 is visible.
    assert_close("bce loss", &[loss], &[want_loss], 1e-7, 4e-7);
    // σ(z) - y is formed in f32: its absolute error is a few ulps of 1, then divided by n.
    assert_close("bce dz", &dz, &want_dz, 4.0 * f32::EPSILON as f64 / n, 1e-6);
}

fn bce_with_logits_matches_f64(dev: &Device) {
    for (case, &n) in SIZES.iter().enumerate() {
        let mut r = rng(100 + case as u64);
        let z: Vec<f32> = common::normal(&mut r, n).iter().map(|v| 4.0 * v).collect();
        // Soft labels as well as hard ones: the kernel must not assume y ∈ {0, 1}.
        let y: Vec<f32> = common::uniform(&mut r, n, 0.0, 1.0)
            .iter()
            .enumerate()
            .map(|(i, &u)| if i % 3 == 0 { u } else { u.round() })
            .collect();
        check_bce(&z, &y, dev);
    }
}

fn bce_with_logits_is_stable_at_extreme_logits(dev: &Device) {
    let z = [100.0, -100.0, 100.0, -100.0, 88.0, -88.0, 30.0, -30.0, 0.0, 100.0];
    let y = [1.0, 0.0, 0.0, 1.0, 0.5, 0.5, 1.0, 0.0, 0.5, 0.25];
    let (loss, dz) = run_bce(dev, &z, &y);
    assert!(loss.is_finite() && dz.iter().all(|d| d.is_finite()));
    check_bce(&z, &y, dev);
}

fn reduce_sum_matches_f64(dev: &Device) {
    for (case, &n) in SIZES.iter().enumerate() {
        let x = common::normal(&mut rng(200 + case as u64), n);
        for scale in [1.0f32, 1.0 / n as f32] {
            let mut out = zeros(dev, 1);
            backend(dev).reduce_sum(&up(dev, &x), scale, &mut out).unwrap();
            let sum: f64 = x.iter().map(|&v| v as f64).sum();
            let abs: f64 = x.iter().map(|&v| (v as f64).abs()).sum();
            // Summed in f64 then rounded once; the absolute term covers cancellation.
            let atol = 1e-12 * abs * scale as f64;
            assert_close("reduce_sum", &down(dev, &out), &[sum * scale as f64], atol, 2e-7);
        }
    }
}

fn reductions_are_deterministic(dev: &Device) {
    let n = 1_000_003;
    let mut r = rng(300);
    let (z, y) = (common::normal(&mut r, n), common::uniform(&mut r, n, 0.0, 1.0));
    let first = run_bce(dev, &z, &y);
    assert_eq!(first, run_bce(dev, &z, &y));
    let sum = |dev: &tfmpe::Device| {
        let mut out = zeros(dev, 1);
        backend(dev).reduce_sum(&up(dev, &z), 1.0, &mut out).unwrap();
        down(dev, &out)[0].to_bits()
    };
    assert_eq!(sum(dev), sum(dev));
}

fn loss_kernels_reject_wrong_lengths(dev: &Device) {
    let b = backend(dev);
    let (z, y5) = (up(dev, &[0.0; 4]), up(dev, &[0.0; 5]));
    let (mut one, mut two, mut dz4, mut dz5) =
        (zeros(dev, 1), zeros(dev, 2), zeros(dev, 4), zeros(dev, 5));
    assert!(b.bce_with_logits(&z, &y5, &mut one, &mut dz4).is_err());
    assert!(b.bce_with_logits(&z, &z, &mut two, &mut dz4).is_err());
    assert!(b.bce_with_logits(&z, &z, &mut one, &mut dz5).is_err());
    assert!(b.reduce_sum(&z, 1.0, &mut two).is_err());
}
