//! Parity of the `optim` kernels: the squared norm and AdamW with clipping and weight decay.

use crate::common::{self, assert_close, backend, down, rng, up, zeros};
use tfmpe::backend::AdamW;
use tfmpe::Device;

per_device!(
    sum_squares_matches_f64,
    adamw_matches_f64_over_three_steps,
    adamw_leaves_a_zero_gradient_unclipped,
    optim_kernels_reject_bad_input
);

const SIZES: [usize; 5] = [1, 7, 33, 101, 100_003];

fn sum_squares(dev: &Device, x: &[f32], start: f32, accumulate: bool) -> f32 {
    let mut out = up(dev, &[start]);
    backend(dev).sum_squares(&up(dev, x), &mut out, accumulate).unwrap();
    down(dev, &out)[0]
}

fn sum_squares_matches_f64(dev: &Device) {
    for (case, &n) in SIZES.iter().enumerate() {
        let x = common::normal(&mut rng(800 + case as u64), n);
        let want: f64 = x.iter().map(|&v| v as f64 * v as f64).sum();
        // Summed in f64, rounded once (and once more for the running total).
        let fresh = sum_squares(dev, &x, 7.0, false);
        assert_close("sum_squares", &[fresh], &[want], 0.0, 2e-7);
        let running = sum_squares(dev, &x, 7.0, true);
        assert_close("sum_squares accumulate", &[running], &[want + 7.0], 0.0, 2e-7);
    }
    let big = common::normal(&mut rng(899), 1_000_003);
    let bits = sum_squares(dev, &big, 0.0, false).to_bits();
    assert_eq!(bits, sum_squares(dev, &big, 0.0, false).to_bits());
}

/// f64 AdamW state for one parameter buffer.
struct Reference {
    p: Vec<f64>,
    m: Vec<f64>,
    v: Vec<f64>,
}

impl Reference {
    /// One step from the textbook formulas (Loshchilov & Hutter, PyTorch's order).
    fn step(&mut self, h: &AdamW, grad: &[f32], max_norm: Option<f64>) {
        let norm = grad.iter().map(|&g| g as f64 * g as f64).sum::<f64>().sqrt();
        let scale = match max_norm {
            Some(max) if norm > max => max / norm,
            _ => 1.0,
        };
        let (lr, b1, b2) = (h.lr as f64, h.beta1 as f64, h.beta2 as f64);
        let t = h.step as i32;
        let (bc1, bc2) = (1.0 - b1.powi(t), 1.0 - b2.powi(t));
        let state = self.p.iter_mut().zip(self.m.iter_mut().zip(self.v.iter_mut()));
        for ((p, (m, v)), &g) in state.zip(grad) {
            let g = g as f64 * scale;
            *m = b1 * *m + (1.0 - b1) * g;
            *v = b2 * *v + (1.0 - b2) * g * g;
            *p *= 1.0 - lr * h.weight_decay as f64;
            *p -= lr * (*m / bc1) / ((*v / bc2).sqrt() + h.eps as f64);
        }
    }
}

fn adamw_matches_f64_over_three_steps(dev: &Device) {
    for (case, &n) in SIZES.iter().enumerate() {
        // (weight decay, max_norm): plain, decayed, clipped (the norm of n normals is
        // about √n, so 0.5 always clips), and a bound too large to clip.
        for (variant, (wd, max_norm)) in
            [(0.0, None), (0.1, None), (0.1, Some(0.5)), (0.0, Some(1e6))].into_iter().enumerate()
        {
            let mut r = rng(900 + 10 * case as u64 + variant as u64);
            let p0 = common::normal(&mut r, n);
            let mut reference =
                Reference { p: common::to_f64(&p0), m: vec![0.0; n], v: vec![0.0; n] };
            let (mut p, mut m, mut v) = (up(dev, &p0), zeros(dev, n), zeros(dev, n));
            for step in 1..=3 {
                let h =
                    AdamW { lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: wd, step };
                let g = common::normal(&mut r, n);
                let norm_sq = g.iter().map(|&g| g as f64 * g as f64).sum::<f64>() as f32;
                let norm_buf = up(dev, &[norm_sq]);
                let clip = max_norm.map(|max| (&norm_buf, max as f32));
                backend(dev).adamw_step(&h, &mut p, &up(dev, &g), &mut m, &mut v, clip).unwrap();
                reference.step(&h, &g, max_norm);
            }
            // Each step adds a few f32 roundings to m, v (relative) and to p; the absolute
            // terms cover m's cancellation between steps and p's rounding at |p| ~ 1.
            assert_close("adamw m", &down(dev, &m), &reference.m, 1e-7, 1e-6);
            assert_close("adamw v", &down(dev, &v), &reference.v, 1e-12, 1e-6);
            assert_close("adamw p", &down(dev, &p), &reference.p, 5e-7, 1e-6);
        }
    }
}

fn adamw_leaves_a_zero_gradient_unclipped(dev: &Device) {
    let h = AdamW { lr: 0.1, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0, step: 1 };
    let (mut p, mut m, mut v) = (up(dev, &[1.0, -2.0]), zeros(dev, 2), zeros(dev, 2));
    let norm_sq = up(dev, &[0.0]);
    backend(dev)
        .adamw_step(&h, &mut p, &zeros(dev, 2), &mut m, &mut v, Some((&norm_sq, 1.0)))
        .unwrap();
    assert_eq!(down(dev, &p), [1.0, -2.0]);
    assert_eq!(down(dev, &m), [0.0, 0.0]);
}

fn optim_kernels_reject_bad_input(dev: &Device) {
    let b = backend(dev);
    let h = AdamW { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0, step: 1 };
    let (g4, g5, norm2) = (up(dev, &[0.0; 4]), up(dev, &[0.0; 5]), up(dev, &[1.0; 2]));
    let (mut p, mut m, mut v, mut x5) =
        (zeros(dev, 4), zeros(dev, 4), zeros(dev, 4), zeros(dev, 5));
    assert!(b.adamw_step(&h, &mut p, &g5, &mut m, &mut v, None).is_err());
    assert!(b.adamw_step(&h, &mut p, &g4, &mut x5, &mut v, None).is_err());
    assert!(b.adamw_step(&h, &mut p, &g4, &mut m, &mut x5, None).is_err());
    assert!(b.adamw_step(&h, &mut p, &g4, &mut m, &mut v, Some((&norm2, 1.0))).is_err());
    let step0 = AdamW { step: 0, ..h };
    assert!(b.adamw_step(&step0, &mut p, &g4, &mut m, &mut v, None).is_err());
    let mut out2 = zeros(dev, 2);
    assert!(b.sum_squares(&g4, &mut out2, false).is_err());
}
