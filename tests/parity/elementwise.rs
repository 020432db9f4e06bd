//! Parity of the `elementwise` kernels.
//!
//! Inputs lie in [-1, 1] and each output is one or two f32 roundings of the exact f64 value, so
//! the tolerances are a few units of 2^-24 relative to the operands' size.

use tfmpe::Error;

use crate::common::{self, backend, down, rng, uniform, up};
use tfmpe::Device;

per_device!(
    add_scale_axpy,
    relu_forward_and_backward,
    relu_propagates_nan,
    length_mismatches_are_errors
);

/// Odd sizes, plus two past the CPU backend's parallel threshold (2^15), one not a multiple of
/// its chunk.
const SIZES: [usize; 6] = [1, 7, 33, 101, 40_000, 100_003];

/// Inputs with exact zeros and negative zeros mixed in, so the ReLU boundary is exercised.
fn inputs(seed: u64, n: usize) -> Vec<f32> {
    let mut v = uniform(&mut rng(seed), n, -1.0, 1.0);
    for (i, x) in v.iter_mut().enumerate() {
        match i % 11 {
            3 => *x = 0.0,
            7 => *x = -0.0,
            _ => {}
        }
    }
    v
}

fn f64s(v: &[f32]) -> impl Iterator<Item = f64> + '_ {
    v.iter().map(|&x| x as f64)
}

fn add_scale_axpy(dev: &Device) {
    let be = backend(dev);
    for (case, n) in SIZES.into_iter().enumerate() {
        let (a, b) = (inputs(10 + case as u64, n), inputs(20 + case as u64, n));
        let (ga, gb) = (up(dev, &a), up(dev, &b));
        let mut out = up(dev, &vec![f32::NAN; n]);
        let alpha = -1.7f32;

        be.add(&ga, &gb, &mut out).unwrap();
        let want: Vec<f64> = f64s(&a).zip(f64s(&b)).map(|(x, y)| x + y).collect();
        // One rounding of a sum of magnitude <= 2: half an ulp of 2 is 1.2e-7.
        common::assert_close(&format!("add n={n}"), &down(dev, &out), &want, 1.2e-7, 0.0);

        be.scale(&ga, alpha, &mut out).unwrap();
        let want: Vec<f64> = f64s(&a).map(|x| alpha as f64 * x).collect();
        // One rounding: half an ulp of the result.
        common::assert_close(&format!("scale n={n}"), &down(dev, &out), &want, 0.0, 6e-8);

        let mut y = up(dev, &b);
        be.axpy(alpha, &ga, &mut y).unwrap();
        let want: Vec<f64> = f64s(&a).zip(f64s(&b)).map(|(x, y)| y + alpha as f64 * x).collect();
        // Two roundings on operands up to 1.7 and a result up to 2.7: under 3e-7.
        common::assert_close(&format!("axpy n={n}"), &down(dev, &y), &want, 3e-7, 0.0);
    }
}

fn relu_forward_and_backward(dev: &Device) {
    let be = backend(dev);
    for (case, n) in SIZES.into_iter().enumerate() {
        let x = inputs(30 + case as u64, n);
        let dy = inputs(40 + case as u64, n);
        let dx0 = inputs(50 + case as u64, n);
        let mut y = up(dev, &vec![f32::NAN; n]);
        be.relu_fwd(&up(dev, &x), &mut y).unwrap();
        let want_y: Vec<f64> = f64s(&x).map(|v| v.max(0.0)).collect();
        // Selection, no arithmetic: exact.
        common::assert_close(&format!("relu_fwd n={n}"), &down(dev, &y), &want_y, 0.0, 0.0);

        for accumulate in [false, true] {
            let mut dx = up(dev, &dx0);
            be.relu_bwd(&y, &up(dev, &dy), &mut dx, accumulate).unwrap();
            let want: Vec<f64> = want_y
                .iter()
                .zip(f64s(&dy))
                .zip(f64s(&dx0))
                .map(|((&y, g), d0)| {
                    let g = if y > 0.0 { g } else { 0.0 };
                    if accumulate {
                        d0 + g
                    } else {
                        g
                    }
                })
                .collect();
            // Exact without accumulation; one rounding of a sum <= 2 with it.
            let what = format!("relu_bwd n={n} accumulate={accumulate}");
            common::assert_close(&what, &down(dev, &dx), &want, 1.2e-7, 0.0);
        }
    }
}

fn relu_propagates_nan(dev: &Device) {
    let mut y = up(dev, &[0.0; 3]);
    backend(dev).relu_fwd(&up(dev, &[f32::NAN, -1.0, 2.0]), &mut y).unwrap();
    let y = down(dev, &y);
    assert!(y[0].is_nan(), "a NaN input must not be hidden as 0");
    assert_eq!(y[1..], [0.0, 2.0]);
}

fn length_mismatches_are_errors(dev: &Device) {
    let be = backend(dev);
    let (a5, a6) = (up(dev, &[1.0; 5]), up(dev, &[1.0; 6]));
    let mut o5 = up(dev, &[0.0; 5]);
    let mut o6 = up(dev, &[0.0; 6]);
    let shape = |r: tfmpe::Result<()>| matches!(r, Err(Error::Shape(_)));
    assert!(shape(be.add(&a5, &a6, &mut o5)));
    assert!(shape(be.add(&a5, &a5, &mut o6)));
    assert!(shape(be.scale(&a5, 2.0, &mut o6)));
    assert!(shape(be.axpy(2.0, &a5, &mut o6)));
    assert!(shape(be.relu_fwd(&a5, &mut o6)));
    assert!(shape(be.relu_bwd(&a5, &a6, &mut o5, false)));
    assert!(shape(be.relu_bwd(&a5, &a5, &mut o6, true)));
    assert_eq!(down(dev, &o5), vec![0.0; 5], "outputs untouched after errors");
}
