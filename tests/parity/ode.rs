//! Parity of the `ode` kernels: stage combinations (with an RK4 solve built from them), the
//! Dopri5 error norm and its step control.

use crate::common::{self, assert_close, backend, down, rng, up, zeros};
use tfmpe::Device;

per_device!(
    ode_stage_matches_f64,
    rk4_from_ode_stage_reaches_fourth_order_accuracy,
    dopri5_error_matches_f64,
    dopri5_accept_cases,
    dopri5_accept_matches_f64_at_scale,
    ode_kernels_reject_wrong_lengths
);

/// (samples, per_sample): odd counts and lengths, tiles straddling samples, and one case
/// past a parallel block.
const SHAPES: [(usize, usize); 6] = [(1, 1), (1, 7), (3, 33), (101, 1), (7, 101), (1001, 101)];

/// Dopri5's error row b5 - b4 (Dormand & Prince 1980): seven stages that cancel.
const DOPRI5_ERR: [f32; 7] = [
    71.0 / 57600.0,
    0.0,
    -71.0 / 16695.0,
    71.0 / 1920.0,
    -17253.0 / 339200.0,
    22.0 / 525.0,
    -1.0 / 40.0,
];

/// Stage derivatives `[stages, n]` and a coefficient row with some zeros, as in a tableau.
fn stages(r: &mut rand::rngs::StdRng, n: usize, stages: usize) -> (Vec<f32>, Vec<f32>) {
    let k = common::normal(r, n * stages);
    let coeffs = common::uniform(r, stages, -1.0, 1.0)
        .iter()
        .enumerate()
        .map(|(j, &c)| if j % 3 == 1 { 0.0 } else { c })
        .collect();
    (k, coeffs)
}

fn ode_stage(dev: &Device, x: &[f32], k: &[f32], coeffs: &[f32], h: &[f32]) -> Vec<f32> {
    let per_sample = x.len() / h.len();
    let mut out = zeros(dev, x.len());
    let (x, k, h) = (up(dev, x), up(dev, k), up(dev, h));
    backend(dev).ode_stage(&x, &k, coeffs, &h, per_sample, &mut out).unwrap();
    down(dev, &out)
}

fn ode_stage_matches_f64(dev: &Device) {
    for (case, &(samples, per_sample)) in SHAPES.iter().enumerate() {
        let n = samples * per_sample;
        for count in [1, 4, 7] {
            let mut r = rng(1000 + 10 * case as u64 + count as u64);
            let x = common::normal(&mut r, n);
            // One stage more than the coefficients use: the kernel must ignore it.
            let (k, coeffs) = stages(&mut r, n, count + 1);
            let coeffs = &coeffs[..count];
            let h = common::uniform(&mut r, samples, 0.0, 0.5);
            let got = ode_stage(dev, &x, &k, coeffs, &h);
            let mut want = vec![0.0; n];
            let mut size = 0.0f64;
            for (i, w) in want.iter_mut().enumerate() {
                let hs = h[i / per_sample] as f64;
                let terms = (0..count).map(|j| coeffs[j] as f64 * k[j * n + i] as f64);
                *w = x[i] as f64 + hs * terms.clone().sum::<f64>();
                size = size.max(x[i].abs() as f64 + hs * terms.map(f64::abs).sum::<f64>());
            }
            // The stage sum is formed in f32: one rounding per stage (and for x + h·Σ),
            // each at most half an ulp of the largest partial magnitude.
            let atol = (count + 2) as f64 * f32::EPSILON as f64 * size;
            assert_close("ode_stage", &got, &want, atol, 0.0);
        }
    }
}

/// RK4 for dx/dt = -x over [0, 1] in 10 steps, every stage an `ode_stage` call and the
/// velocity evaluated on the host.
fn rk4_from_ode_stage_reaches_fourth_order_accuracy(dev: &Device) {
    let x0 = [1.0f32, 2.0, -0.5, 3.0, 0.25, 1.5];
    // Two samples of three elements.
    let (n, h) = (x0.len(), 0.1f32);
    let hs = [h; 2];
    let tableau: [&[f32]; 4] =
        [&[0.5], &[0.0, 0.5], &[0.0, 0.0, 1.0], &[1.0 / 6.0, 1.0 / 3.0, 1.0 / 3.0, 1.0 / 6.0]];
    let mut x = x0.to_vec();
    let mut k = vec![0.0f32; 4 * n];
    for _ in 0..10 {
        let mut stage_x = x.clone();
        for (j, coeffs) in tableau.iter().enumerate() {
            for i in 0..n {
                k[j * n + i] = -stage_x[i];
            }
            stage_x = ode_stage(dev, &x, &k, coeffs, &hs);
        }
        x = stage_x;
    }
    // RK4 on this equation multiplies by R(-h) = 1 - h + h²/2 - h³/6 + h⁴/24 per step.
    let hd = h as f64;
    let r = 1.0 - hd + hd * hd / 2.0 - hd.powi(3) / 6.0 + hd.powi(4) / 24.0;
    let discrete: Vec<f64> = x0.iter().map(|&v| v as f64 * r.powi(10)).collect();
    let exact: Vec<f64> = x0.iter().map(|&v| v as f64 * (-1.0f64).exp()).collect();
    // Against the f64 recurrence only f32 rounding remains: ~40 roundings of values ≤ 3.
    assert_close("rk4 vs its f64 recurrence", &x, &discrete, 2e-6, 2e-6);
    // Against e^-1 the global error is ≈ t·h⁴/120·|x(1)| ≈ 3e-7 per unit of x0; h⁴/24
    // bounds it with room for rounding while RK3 (≈ h³/24 ≈ 4e-5) would fail.
    assert_close("rk4 vs exp(-1)", &x, &exact, 0.0, hd.powi(4) / 24.0);
}

/// The error norm per sample, and a bound on the f32 kernel's deviation from it: the
/// cancelling error row is summed in f32, so each e_i is off by up to ~(stages + 1) ulps of
/// h·Σ_j |c_j k_ji|, and by the triangle inequality the RMS norm moves by at most the RMS of
/// those deviations over the same scales.
fn dopri5_error_ref(
    x: &[f32], x_new: &[f32], k: &[f32], h: &[f32], (rtol, atol): (f32, f32),
) -> Vec<(f64, f64)> {
    let (n, samples) = (x.len(), h.len());
    let per_sample = n / samples;
    let ulps = (DOPRI5_ERR.len() + 1) as f64 * f32::EPSILON as f64;
    (0..samples)
        .map(|s| {
            let (mut sum, mut slack) = (0.0, 0.0);
            for i in s * per_sample..(s + 1) * per_sample {
                let terms = (0..7).map(|j| DOPRI5_ERR[j] as f64 * k[j * n + i] as f64);
                let e = h[s] as f64 * terms.clone().sum::<f64>();
                let size = h[s] as f64 * terms.map(f64::abs).sum::<f64>();
                let scale = atol as f64 + rtol as f64 * x[i].abs().max(x_new[i].abs()) as f64;
                sum += (e / scale).powi(2);
                slack += (ulps * size / scale).powi(2);
            }
            let rms = |v: f64| (v / per_sample as f64).sqrt();
            (rms(sum), rms(slack))
        })
        .collect()
}

fn dopri5_error_matches_f64(dev: &Device) {
    for (case, &(samples, per_sample)) in SHAPES.iter().enumerate() {
        let n = samples * per_sample;
        let mut r = rng(1100 + case as u64);
        let (x, x_new) = (common::normal(&mut r, n), common::normal(&mut r, n));
        let k = common::normal(&mut r, 7 * n);
        let h = common::uniform(&mut r, samples, 0.01, 0.2);
        let tols = (1e-3f32, 1e-5f32);
        let mut err = zeros(dev, samples);
        backend(dev)
            .dopri5_error(
                &up(dev, &x),
                &up(dev, &x_new),
                &up(dev, &k),
                &DOPRI5_ERR,
                &up(dev, &h),
                per_sample,
                tols.0,
                tols.1,
                &mut err,
            )
            .unwrap();
        let got = down(dev, &err);
        for (s, (want, slack)) in dopri5_error_ref(&x, &x_new, &k, &h, tols).into_iter().enumerate()
        {
            // Beyond the summation slack: the tolerance and the ratio take three f32
            // roundings (relative), the RMS in f64 one more at the end.
            assert_close(&format!("dopri5_error sample {s}"), &got[s..=s], &[want], slack, 3e-7);
        }
    }
}

/// Step control in f64 from its definition, with the same snap to `t_end`.
fn dopri5_accept_ref(err: f32, t: f32, h: f32, t_end: f32) -> (bool, f64, f64) {
    let (err, mut t, h, t_end) = (err as f64, t as f64, h as f64, t_end as f64);
    if h == 0.0 {
        return (false, t, 0.0);
    }
    let accept = err <= 1.0;
    if accept {
        t += h;
        // Within 1e-6 of t_end, or past it (an initial h longer than the interval).
        if t_end - t <= 1e-6 {
            t = t_end;
        }
    }
    let factor = if err == 0.0 {
        10.0
    } else if err.is_nan() {
        0.2
    } else {
        (0.9 * err.powf(-0.2)).clamp(0.2, 10.0)
    };
    (accept, t, (h * factor).min(t_end - t).max(0.0))
}

fn check_dopri5_accept(dev: &Device, per_sample: usize, err: &[f32], t0: &[f32], h0: &[f32]) {
    let n = per_sample * err.len();
    let mut r = rng(1200 + n as u64);
    let (x0, x_new) = (common::normal(&mut r, n), common::normal(&mut r, n));
    let (mut x, mut t, mut h) = (up(dev, &x0), up(dev, t0), up(dev, h0));
    backend(dev)
        .dopri5_accept(&mut x, &up(dev, &x_new), &up(dev, err), &mut t, &mut h, per_sample, 1.0)
        .unwrap();
    let (x, t, h) = (down(dev, &x), down(dev, &t), down(dev, &h));
    for s in 0..err.len() {
        let (accept, want_t, want_h) = dopri5_accept_ref(err[s], t0[s], h0[s], 1.0);
        let want_x = if accept { &x_new } else { &x0 };
        let range = s * per_sample..(s + 1) * per_sample;
        assert_eq!(x[range.clone()], want_x[range], "x of sample {s}");
        if want_t == 1.0 {
            assert_eq!(t[s], 1.0, "sample {s} must land exactly on t_end");
        }
        // t + h and the step factor in f32: a couple of ulps.
        let what = format!("dopri5_accept sample {s}");
        assert_close(&what, &[t[s], h[s]], &[want_t, want_h], 1e-7, 1e-6);
    }
}

fn dopri5_accept_cases(dev: &Device) {
    let cases = [
        (0.5, 0.2, 0.1),       // accepted, grows a little
        (4.0, 0.2, 0.1),       // rejected, shrinks
        (0.1, 1.0, 0.0),       // finished: untouched
        (0.01, 0.8, 0.15),     // accepted, growth clipped to t_end - t
        (0.5, 0.9, 0.1),       // accepted onto t_end: h becomes 0
        (0.3, 0.9, 0.0999995), // ends within 1e-6 of t_end: snapped
        (0.0, 0.0, 0.01),      // zero error: the largest growth, 10
        (1e4, 0.5, 0.1),       // huge error: the smallest factor, 0.2
        (f32::NAN, 0.5, 0.1),  // NaN error: rejected with factor 0.2
    ];
    let err: Vec<f32> = cases.iter().map(|c| c.0).collect();
    let t: Vec<f32> = cases.iter().map(|c| c.1).collect();
    let h: Vec<f32> = cases.iter().map(|c| c.2).collect();
    check_dopri5_accept(dev, 3, &err, &t, &h);
}

fn dopri5_accept_matches_f64_at_scale(dev: &Device) {
    for (samples, per_sample) in [(1, 1), (33, 7), (20011, 3)] {
        let mut r = rng(1300 + samples as u64);
        let err = common::uniform(&mut r, samples, 0.0, 2.0);
        let t = common::uniform(&mut r, samples, 0.0, 0.9);
        let h = common::uniform(&mut r, samples, 0.0, 0.2);
        check_dopri5_accept(dev, per_sample, &err, &t, &h);
    }
}

fn ode_kernels_reject_wrong_lengths(dev: &Device) {
    let b = backend(dev);
    let (x6, x5, h2, h3) =
        (up(dev, &[0.0; 6]), up(dev, &[0.0; 5]), up(dev, &[0.1; 2]), up(dev, &[0.1; 3]));
    let k12 = up(dev, &[0.0; 12]);
    let (mut o6, mut o5, mut e2, mut e3) =
        (zeros(dev, 6), zeros(dev, 5), zeros(dev, 2), zeros(dev, 3));
    // Two samples of 3 elements; k holds two stages.
    assert!(b.ode_stage(&x6, &k12, &[1.0; 3], &h2, 3, &mut o6).is_err());
    assert!(b.ode_stage(&x6, &k12, &[1.0], &h3, 3, &mut o6).is_err());
    assert!(b.ode_stage(&x6, &k12, &[1.0], &h2, 4, &mut o6).is_err());
    assert!(b.ode_stage(&x6, &k12, &[1.0], &h2, 3, &mut o5).is_err());

    let c = [1.0; 2];
    assert!(b.dopri5_error(&x6, &x5, &k12, &c, &h2, 3, 0.0, 1.0, &mut e2).is_err());
    assert!(b.dopri5_error(&x6, &x6, &k12, &[1.0; 3], &h2, 3, 0.0, 1.0, &mut e2).is_err());
    assert!(b.dopri5_error(&x6, &x6, &k12, &c, &h3, 3, 0.0, 1.0, &mut e2).is_err());
    assert!(b.dopri5_error(&x6, &x6, &k12, &c, &h2, 3, 0.0, 1.0, &mut e3).is_err());

    let (mut t2, mut t3, mut hh2) = (zeros(dev, 2), zeros(dev, 3), zeros(dev, 2));
    assert!(b.dopri5_accept(&mut o6, &x5, &h2, &mut t2, &mut hh2, 3, 1.0).is_err());
    assert!(b.dopri5_accept(&mut o6, &x6, &h3, &mut t2, &mut hh2, 3, 1.0).is_err());
    assert!(b.dopri5_accept(&mut o6, &x6, &h2, &mut t3, &mut hh2, 3, 1.0).is_err());
    assert!(b.dopri5_accept(&mut o6, &x6, &h2, &mut t2, &mut e3, 3, 1.0).is_err());
}
