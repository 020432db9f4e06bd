//! The flow's log density (`model::density`) and the tape's vector–Jacobian products under it.

mod common;

use common::{normal, rng, Sizes};
use tfmpe::backend::Buffer;
use tfmpe::model::density::{log_density, Divergence};
use tfmpe::model::flow::Conditions;
use tfmpe::model::ode::{OdeWorkspace, Solver};
use tfmpe::model::tfmpe::{DeviceTokens, Tfmpe, TfmpeConfig};
use tfmpe::model::tokens::{Layout, TokenBatch};
use tfmpe::tape::{ParamStore, Tape};
use tfmpe::Device;

const SIZES: Sizes = Sizes { inputs: 0 };

/// A small random posterior network for one site (targets: the global and the site's local, so
/// two dimensions; conditions: the site's two observations), with a head scaled up so that its
/// flow moves mass by about one standard deviation and bends it: far from the identity map.
fn network(dev: &Device, seed: u64) -> (Tfmpe, Tape) {
    let config = TfmpeConfig {
        width: 16,
        layers: 1,
        heads: 2,
        n_ff: 2,
        label_dim: 3,
        pos_dim: 2,
        group_dim: 2,
        n_labels: 3,
        max_positions: 2,
        max_groups: 2,
        input_dim: 0,
        fourier_dim: 4,
    };
    let mut store = ParamStore::new(dev);
    let model = Tfmpe::new(&mut store, config, seed).unwrap();
    let mut r = rng(seed + 1);
    let w: Vec<f32> = normal(&mut r, 16).iter().map(|v| 0.6 * v).collect();
    store.load("head.weight", &w).unwrap();
    (model, Tape::new(store))
}

/// Tokens and conditions for `batch` rows of one fixed observation.
fn batch(dev: &Device, batch: usize) -> (DeviceTokens, Buffer) {
    let layout = Layout::posterior(&SIZES, 1);
    let tb = TokenBatch::repeat(&layout, batch).unwrap();
    let tokens = DeviceTokens::upload(dev, &tb).unwrap();
    let cond: Vec<f32> = (0..batch).flat_map(|_| [0.7f32, -0.4]).collect();
    (tokens, dev.backend().upload_f32(&cond).unwrap())
}

fn densities(points: &[f32], solver: Solver, divergence: Divergence) -> Vec<f64> {
    densities_on(&Device::cpu(), points, solver, divergence)
}

fn densities_on(dev: &Device, points: &[f32], solver: Solver, divergence: Divergence) -> Vec<f64> {
    let (model, mut tape) = network(dev, 5);
    let b = points.len() / 2;
    let (tokens, cond) = batch(dev, b);
    let on = Conditions { tokens: &tokens, cond: &cond, inputs: None, key_mask: None };
    let z = dev.backend().upload_f32(points).unwrap();
    let mut ws = OdeWorkspace::new(dev, b, 3).unwrap();
    // Probe k: the normal numbers of seed `seed + k`, the batch's rows in order.
    let seed = match divergence {
        Divergence::Hutchinson { seed, .. } => seed,
        Divergence::Exact => 0,
    };
    let mut fill =
        |k: usize, probe: &mut Buffer| dev.backend().normal_fill(probe, seed + k as u64, 0);
    log_density(dev, &model, &mut tape, on, &z, solver, divergence, &mut fill, &mut ws).unwrap().0
}

#[test]
fn the_density_integrates_to_one() {
    // The trapezoid rule on a 0.1 grid over [−8, 8]² integrates a smooth density with tails
    // far below 1e−9 to well within 1e−4; RK4 with 24 steps solves this gentle field to about
    // 1e−5. A sign error in the divergence, a missing term or a wrong base density would put
    // the integral off by far more than the 2e−3 allowed.
    let (n, h, lo) = (161, 0.1f32, -8.0f32);
    let points: Vec<f32> =
        (0..n * n).flat_map(|k| [lo + h * (k / n) as f32, lo + h * (k % n) as f32]).collect();
    let lp = densities(&points, Solver::Rk4 { steps: 24 }, Divergence::Exact);
    let mass: f64 = lp.iter().map(|l| l.exp()).sum::<f64>() * f64::from(h * h);
    // The flow must be far from the identity, or the test would only check the base density.
    let base: Vec<f64> = points
        .chunks(2)
        .map(|p| {
            let sq = f64::from(p[0] * p[0] + p[1] * p[1]);
            -0.5 * sq - (2.0 * std::f64::consts::PI).ln()
        })
        .collect();
    let moved = lp.iter().zip(&base).map(|(a, b)| (a.exp() - b.exp()).abs()).sum::<f64>()
        * f64::from(h * h);
    eprintln!("mass {mass:.6}, total variation from N(0, I) {:.3}", 0.5 * moved);
    assert!((mass - 1.0).abs() < 2e-3, "the density integrates to {mass}");
    assert!(0.5 * moved > 0.1, "the flow barely moves mass ({moved})");
}

#[test]
fn hutchinson_agrees_with_the_exact_trace() {
    let mut r = rng(11);
    let points = normal(&mut r, 2 * 64);
    let solver = Solver::Rk4 { steps: 12 };
    let exact = densities(&points, solver, Divergence::Exact);
    let estimate = densities(&points, solver, Divergence::Hutchinson { probes: 256, seed: 3 });
    // Hutchinson's estimate is unbiased, and the probes are independent of the points: over
    // 64 points its mean error must be near 0 (each point's error has a standard deviation of
    // about 0.05 here, so the mean's is under 0.01), while each point's error stays small
    // beside the spread of the log density over the points (about 4).
    let diffs: Vec<f64> = exact.iter().zip(&estimate).map(|(a, b)| a - b).collect();
    let n = diffs.len() as f64;
    let mean = diffs.iter().sum::<f64>() / n;
    let rms = (diffs.iter().map(|d| d * d).sum::<f64>() / n).sqrt();
    let centre = exact.iter().sum::<f64>() / n;
    let spread = (exact.iter().map(|l| (l - centre).powi(2)).sum::<f64>() / n).sqrt();
    eprintln!("mean error {mean:.4}, rms error {rms:.4}, spread {spread:.3}");
    assert!(mean.abs() < 0.03, "the estimate is biased by {mean}");
    assert!(rms < 0.1 * spread, "rms error {rms} against a spread of {spread}");
    let one = densities(&points, solver, Divergence::Hutchinson { probes: 1, seed: 3 });
    assert!(one.iter().zip(&exact).any(|(a, b)| a != b), "one probe is not the exact trace");
}

#[test]
fn a_vector_jacobian_product_is_the_gradient_of_the_weighted_sum() {
    // ⟨c, f(x)⟩'s gradient equals that of mse(f, f − c·N/2), whose derivative is 2(f − target)/N
    // = c: the VJP path and the loss path must give the same numbers, and the VJP leaves the
    // parameter gradients alone.
    let dev = Device::cpu();
    let (model, mut tape) = network(&dev, 8);
    let b = 5;
    let (tokens, cond) = batch(&dev, b);
    let on = Conditions { tokens: &tokens, cond: &cond, inputs: None, key_mask: None };
    let mut r = rng(12);
    let (x, c) = (normal(&mut r, 2 * b), normal(&mut r, 2 * b));
    let t = vec![0.3f32; b];
    let record = |tape: &mut Tape| {
        tape.reset();
        let cond = tape.input_copy(on.cond, &[b, 2]).unwrap();
        let xv = tape.variable(&x, &[b, 2]).unwrap();
        let tv = tape.input(&t, &[b]).unwrap();
        let v = model.velocity(tape, on.tokens, cond, xv, tv, None, None).unwrap();
        (xv, v)
    };
    let grads = |tape: &Tape| -> Vec<f32> {
        let p = tape.params();
        let be = tape.device().backend();
        p.iter().flat_map(|v| be.download_f32(p.grad(v.id).unwrap()).unwrap()).collect()
    };
    let (xv, v) = record(&mut tape);
    let values = tape.to_vec(v).unwrap();
    let n = values.len() as f32;
    let target: Vec<f32> = values.iter().zip(&c).map(|(f, c)| f - c * n / 2.0).collect();
    let target = tape.input(&target, &[2 * b, 1]).unwrap();
    let loss = tape.mse(v, target, None).unwrap();
    tape.backward(loss).unwrap();
    let by_loss = dev.backend().download_f32(tape.grad(xv).unwrap().unwrap()).unwrap();
    let before = grads(&tape);
    assert!(before.iter().any(|g| *g != 0.0), "the loss left parameter gradients");

    let (xv, v) = record(&mut tape);
    tape.vjp(v, &dev.backend().upload_f32(&c).unwrap()).unwrap();
    let by_vjp = dev.backend().download_f32(tape.grad(xv).unwrap().unwrap()).unwrap();
    assert_eq!(before, grads(&tape), "a vjp must not touch the parameter gradients");
    for (a, b) in by_vjp.iter().zip(&by_loss) {
        assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "vjp {a} against loss gradient {b}");
    }
    assert!(by_vjp.iter().any(|g| g.abs() > 1e-3), "the gradient is trivially zero");
}

#[test]
fn every_backend_gives_the_cpu_log_density() {
    // Exact and Hutchinson divergences at an odd-sized batch, through RK4 (fixed steps: the
    // same arithmetic on every backend, so f32 rounding alone separates them) and Dopri5
    // (per-sample steps on the augmented state). The divergence of a ReLU network jumps where
    // a unit switches, which Dopri5's error estimate does not see: at its default tolerance
    // two backends' step sequences, split by rounding, give log densities 0.02 apart (each
    // about that far from the converged value), so it is compared at a tight tolerance.
    let mut r = rng(21);
    let points = normal(&mut r, 2 * 7);
    let tight = Solver::Dopri5 { rtol: 1e-7, atol: 1e-7, max_iters: 4096 };
    let hutchinson = Divergence::Hutchinson { probes: 3, seed: 9 };
    let rk4 = Solver::Rk4 { steps: 6 };
    for (divergence, solver, tol) in
        [(Divergence::Exact, rk4, 1e-5), (hutchinson, rk4, 1e-5), (Divergence::Exact, tight, 1e-3)]
    {
        let want = densities(&points, solver, divergence);
        for dev in common::devices().iter().skip(1) {
            let got = densities_on(dev, &points, solver, divergence);
            for (g, w) in got.iter().zip(&want) {
                let name = dev.backend().name();
                assert!((g - w).abs() < tol * (1.0 + w.abs()), "{name} {solver:?}: {g}, cpu {w}");
            }
        }
    }
}
