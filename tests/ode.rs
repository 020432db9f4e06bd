//! ODE samplers on fields with known solutions: order of accuracy, Dopri5 tolerance, and
//! batch invariance (a sample's result does not depend on its batch).

#[path = "common/mod.rs"]
mod common;

use tfmpe::backend::Buffer;
use tfmpe::model::ode::{solve, OdeWorkspace, Solver, VectorField};
use tfmpe::{Device, Result};

/// dx/dt = -2·t·(1 + e)·x, with e = (index of the element within its sample) / 10, so
/// x(1) = x(0)·exp(-(1 + e)): time-dependent, and different per element.
struct Decay {
    per_sample: usize,
}

impl Decay {
    fn rate(&self, i: usize) -> f64 {
        1.0 + (i % self.per_sample) as f64 / 10.0
    }
}

impl VectorField for Decay {
    fn per_sample(&self) -> usize {
        self.per_sample
    }

    // The test field runs on the host; the samplers' own work stays on the device.
    fn eval(&mut self, dev: &Device, x: &Buffer, t: &Buffer, v: &mut Buffer) -> Result<()> {
        let b = dev.backend();
        let (xs, ts) = (b.download_f32(x)?, b.download_f32(t)?);
        let out: Vec<f32> = xs
            .iter()
            .enumerate()
            .map(|(i, &x)| (-2.0 * ts[i / self.per_sample] as f64 * self.rate(i) * x as f64) as f32)
            .collect();
        b.write_f32(v, &out)
    }
}

fn run(dev: &Device, solver: Solver, x0: &[f32], per_sample: usize) -> Vec<f32> {
    let mut field = Decay { per_sample };
    let mut ws = OdeWorkspace::new(dev, x0.len() / per_sample, per_sample).unwrap();
    let mut x = dev.backend().upload_f32(x0).unwrap();
    solve(dev, &mut field, solver, &mut x, &mut ws).unwrap();
    dev.backend().download_f32(&x).unwrap()
}

fn max_error(got: &[f32], x0: &[f32], field: &Decay) -> f64 {
    got.iter()
        .zip(x0)
        .enumerate()
        .map(|(i, (&g, &x))| (g as f64 - x as f64 * (-field.rate(i)).exp()).abs())
        .fold(0.0, f64::max)
}

#[test]
fn euler_is_first_order_and_rk4_fourth_order() {
    let per_sample = 3;
    let mut rng = common::rng(1);
    let x0 = common::uniform(&mut rng, 5 * per_sample, 0.5, 2.0);
    let field = Decay { per_sample };
    for dev in common::devices() {
        let e = |s| max_error(&run(&dev, s, &x0, per_sample), &x0, &field);
        // Halving the step halves Euler's error (ratio → 2) and divides RK4's by 16.
        let euler = e(Solver::Euler { steps: 40 }) / e(Solver::Euler { steps: 80 });
        assert!((1.8..2.2).contains(&euler), "Euler error ratio {euler}");
        let rk4 = e(Solver::Rk4 { steps: 4 }) / e(Solver::Rk4 { steps: 8 });
        assert!((12.0..20.0).contains(&rk4), "RK4 error ratio {rk4}");
        assert!(e(Solver::Rk4 { steps: 8 }) < 1e-4);
    }
}

#[test]
fn dopri5_meets_its_tolerance() {
    let per_sample = 4;
    let mut rng = common::rng(2);
    let x0 = common::uniform(&mut rng, 7 * per_sample, -2.0, 2.0);
    let field = Decay { per_sample };
    for dev in common::devices() {
        let solver = Solver::Dopri5 { rtol: 1e-5, atol: 1e-5, max_iters: 1000 };
        let err = max_error(&run(&dev, solver, &x0, per_sample), &x0, &field);
        // Local error control at 1e-5 over a handful of steps; f32 state adds ~1e-7.
        assert!(err < 1e-4, "dopri5 error {err}");
    }
}

#[test]
fn a_sample_does_not_depend_on_its_batch() {
    let per_sample = 2;
    let mut rng = common::rng(3);
    let x0 = common::normal(&mut rng, 9 * per_sample);
    for dev in common::devices() {
        for solver in [
            Solver::Euler { steps: 10 },
            Solver::Rk4 { steps: 5 },
            Solver::Dopri5 { rtol: 1e-5, atol: 1e-5, max_iters: 1000 },
        ] {
            let whole = run(&dev, solver, &x0, per_sample);
            for s in [0, 4, 8] {
                let alone =
                    run(&dev, solver, &x0[s * per_sample..(s + 1) * per_sample], per_sample);
                assert_eq!(
                    alone,
                    whole[s * per_sample..(s + 1) * per_sample],
                    "{solver:?}, sample {s}"
                );
            }
        }
    }
}

#[test]
fn mismatched_state_is_an_error() {
    let dev = Device::cpu();
    let mut ws = OdeWorkspace::new(&dev, 2, 3).unwrap();
    let mut x = dev.backend().upload_f32(&[0.0; 5]).unwrap();
    let r = solve(&dev, &mut Decay { per_sample: 3 }, Solver::Euler { steps: 1 }, &mut x, &mut ws);
    assert!(r.is_err());
    assert!(Solver::from_name("midpoint", 10).is_err());
    assert!(Solver::from_name("euler", 0).is_err());
}
