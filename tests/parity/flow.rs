//! Parity of the `flow` kernels: the flow-matching interpolation and the masked MSE.

use crate::common::{self, assert_close, backend, down, rng, up, zeros};
use tfmpe::Device;

per_device!(
    fm_prepare_matches_f64,
    fm_loss_matches_f64_with_and_without_mask,
    fm_loss_with_an_all_zero_mask_is_zero,
    fm_loss_is_deterministic,
    flow_kernels_reject_wrong_lengths
);

/// (samples, per_sample): odd sample counts and lengths, and one case past a parallel block.
const SHAPES: [(usize, usize); 6] = [(1, 1), (1, 7), (3, 33), (101, 1), (7, 101), (1001, 101)];

fn fm_prepare_matches_f64(dev: &Device) {
    for (case, &(samples, per_sample)) in SHAPES.iter().enumerate() {
        let n = samples * per_sample;
        let mut r = rng(400 + case as u64);
        let (x0, x1) = (common::normal(&mut r, n), common::normal(&mut r, n));
        let t = common::uniform(&mut r, samples, 0.0, 1.0);
        for sigma_min in [0.0f32, 1e-3] {
            let (mut xt, mut u) = (zeros(dev, n), zeros(dev, n));
            backend(dev)
                .fm_prepare(
                    &up(dev, &x0),
                    &up(dev, &x1),
                    &up(dev, &t),
                    per_sample,
                    sigma_min,
                    &mut xt,
                    &mut u,
                )
                .unwrap();
            let keep = 1.0 - sigma_min as f64;
            let (mut want_xt, mut want_u) = (vec![0.0; n], vec![0.0; n]);
            for i in 0..n {
                let (a, b, t) = (x0[i] as f64, x1[i] as f64, t[i / per_sample] as f64);
                want_xt[i] = (1.0 - keep * t) * a + t * b;
                want_u[i] = b - keep * a;
            }
            // A few f32 roundings of terms of normal draws (|x| < ~6): a few ulps of 6.
            assert_close("fm_prepare xt", &down(dev, &xt), &want_xt, 2e-6, 1e-6);
            assert_close("fm_prepare u", &down(dev, &u), &want_u, 2e-6, 1e-6);
        }
    }
}

fn run_fm_loss(dev: &Device, p: &[f32], y: &[f32], mask: Option<&[f32]>) -> (f32, Vec<f32>) {
    let (mut loss, mut dpred) = (zeros(dev, 1), zeros(dev, p.len()));
    let mask = mask.map(|m| up(dev, m));
    backend(dev).fm_loss(&up(dev, p), &up(dev, y), mask.as_ref(), &mut loss, &mut dpred).unwrap();
    (down(dev, &loss)[0], down(dev, &dpred))
}

/// Loss and gradient from the definition, in f64.
fn fm_loss_ref(p: &[f32], y: &[f32], mask: Option<&[f32]>) -> (f64, Vec<f64>) {
    let m = |i: usize| mask.map_or(1.0, |m| m[i] as f64);
    let weight = (0..p.len()).map(m).sum::<f64>().max(1.0);
    let d = |i: usize| p[i] as f64 - y[i] as f64;
    let loss = (0..p.len()).map(|i| m(i) * d(i) * d(i)).sum::<f64>() / weight;
    (loss, (0..p.len()).map(|i| 2.0 * m(i) * d(i) / weight).collect())
}

fn fm_loss_matches_f64_with_and_without_mask(dev: &Device) {
    for (case, &(samples, per_sample)) in SHAPES.iter().enumerate() {
        let n = samples * per_sample;
        let mut r = rng(500 + case as u64);
        let (p, y) = (common::normal(&mut r, n), common::normal(&mut r, n));
        let padding = common::padding_mask(&mut r, samples, per_sample);
        // Fractional weights as well: the kernel must not assume a 0/1 mask.
        let weights = common::uniform(&mut r, n, 0.0, 1.0);
        for mask in [None, Some(&padding[..]), Some(&weights[..])] {
            let (loss, dpred) = run_fm_loss(dev, &p, &y, mask);
            let (want_loss, want_dpred) = fm_loss_ref(&p, &y, mask);
            // Each term m (p - y)² takes three f32 roundings and the sum of these
            // non-negative terms is in f64, so the loss is good to a few ulps.
            assert_close("fm_loss loss", &[loss], &[want_loss], 0.0, 4e-7);
            // 2 m (p - y) / Σm: about four f32 roundings.
            assert_close("fm_loss dpred", &dpred, &want_dpred, 1e-30, 5e-7);
        }
    }
}

fn fm_loss_with_an_all_zero_mask_is_zero(dev: &Device) {
    for n in [1, 33] {
        let mut r = rng(600 + n as u64);
        let (p, y) = (common::normal(&mut r, n), common::normal(&mut r, n));
        let (loss, dpred) = run_fm_loss(dev, &p, &y, Some(&vec![0.0; n]));
        assert_eq!(loss, 0.0);
        assert!(dpred.iter().all(|&d| d == 0.0), "{dpred:?}");
    }
}

fn fm_loss_is_deterministic(dev: &Device) {
    let n = 1_000_003;
    let mut r = rng(700);
    let (p, y) = (common::normal(&mut r, n), common::normal(&mut r, n));
    let mask = common::uniform(&mut r, n, 0.0, 1.0);
    let first = run_fm_loss(dev, &p, &y, Some(&mask));
    assert_eq!(first, run_fm_loss(dev, &p, &y, Some(&mask)));
}

fn flow_kernels_reject_wrong_lengths(dev: &Device) {
    let b = backend(dev);
    let (x6, x5, t2, t3) =
        (up(dev, &[0.0; 6]), up(dev, &[0.0; 5]), up(dev, &[0.0; 2]), up(dev, &[0.0; 3]));
    let (mut o6, mut o5) = (zeros(dev, 6), zeros(dev, 5));
    let mut u6 = zeros(dev, 6);
    // per_sample 3 splits 6 elements into 2 samples.
    assert!(b.fm_prepare(&x6, &x5, &t2, 3, 0.0, &mut o6, &mut u6).is_err());
    assert!(b.fm_prepare(&x6, &x6, &t3, 3, 0.0, &mut o6, &mut u6).is_err());
    assert!(b.fm_prepare(&x6, &x6, &t2, 4, 0.0, &mut o6, &mut u6).is_err());
    assert!(b.fm_prepare(&x6, &x6, &t2, 0, 0.0, &mut o6, &mut u6).is_err());
    assert!(b.fm_prepare(&x6, &x6, &t2, 3, 0.0, &mut o5, &mut u6).is_err());
    assert!(b.fm_prepare(&x6, &x6, &t2, 3, 0.0, &mut u6, &mut o5).is_err());

    let (mut loss, mut loss2) = (zeros(dev, 1), zeros(dev, 2));
    assert!(b.fm_loss(&x6, &x5, None, &mut loss, &mut o6).is_err());
    assert!(b.fm_loss(&x6, &x6, Some(&x5), &mut loss, &mut o6).is_err());
    assert!(b.fm_loss(&x6, &x6, None, &mut loss2, &mut o6).is_err());
    assert!(b.fm_loss(&x6, &x6, None, &mut loss, &mut o5).is_err());
}
