//! ODE samplers: integrate dx/dt = v(x, t) from t = 0 (noise) to t = 1 (posterior), batched over
//! samples, entirely on the device.
//!
//! Every update is one call of the fused `ode_stage` kernel: Euler, the RK4 stages and their
//! combination, and the Dopri5 stages. Dopri5 keeps a time and a step size per sample and
//! accepts or rejects per sample on the device (`dopri5_error`, `dopri5_accept`), so a sample's
//! trajectory depends only on its own values, never on the batch it shares. The only read-back
//! is Dopri5's check, every few iterations, of whether every sample has reached t = 1.

use crate::backend::Device;
use crate::backend::{Buffer, DType};
use crate::error::{Error, Result};

/// A velocity field over a batch of samples, each of `per_sample` elements.
pub trait VectorField {
    fn per_sample(&self) -> usize;
    /// Writes `v = f(x, t)`; `x` and `v` are `[samples · per_sample]`, `t` is `[samples]`.
    fn eval(&mut self, dev: &Device, x: &Buffer, t: &Buffer, v: &mut Buffer) -> Result<()>;
}

/// Which integrator, and its settings.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "solver", rename_all = "lowercase")]
pub enum Solver {
    /// Fixed-step forward Euler.
    Euler { steps: usize },
    /// Fixed-step classic Runge–Kutta of order 4.
    Rk4 { steps: usize },
    /// Dormand–Prince 5(4) with per-sample adaptive steps.
    Dopri5 { rtol: f32, atol: f32, max_iters: usize },
}

impl Solver {
    /// Parses `euler`, `rk4` or `dopri5`; `steps` applies to the fixed-step solvers.
    pub fn from_name(name: &str, steps: usize) -> Result<Solver> {
        if steps == 0 {
            return Err(Error::Invalid("a fixed-step solver needs `steps` of at least 1".into()));
        }
        if steps > MAX_STEPS {
            return Err(Error::Invalid(format!(
                "{steps} steps is more than any flow needs (at most {MAX_STEPS}; 25 to 100 is \
                 usual, and dopri5 picks its own)"
            )));
        }
        match name {
            "euler" => Ok(Solver::Euler { steps }),
            "rk4" => Ok(Solver::Rk4 { steps }),
            "dopri5" => Ok(Solver::Dopri5 { rtol: 1e-5, atol: 1e-5, max_iters: 4096 }),
            other => {
                Err(Error::Invalid(format!("unknown solver `{other}`: use euler, rk4 or dopri5")))
            }
        }
    }
}

/// The most steps a fixed-step solver takes: RK4's error at 1 000 steps is already below f32
/// rounding, and more would only run for hours.
pub const MAX_STEPS: usize = 100_000;

/// What a solve cost.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OdeStats {
    /// Batched evaluations of the velocity field.
    pub evals: usize,
    /// Solver iterations (steps tried, accepted or not).
    pub iterations: usize,
}

// Dormand–Prince 5(4): nodes, stage weights, 5th-order weights, and the error weights
// (5th minus embedded 4th order).
const DP_C: [f32; 7] = [0.0, 1.0 / 5.0, 3.0 / 10.0, 4.0 / 5.0, 8.0 / 9.0, 1.0, 1.0];
const DP_A: [&[f32]; 7] = [
    &[],
    &[1.0 / 5.0],
    &[3.0 / 40.0, 9.0 / 40.0],
    &[44.0 / 45.0, -56.0 / 15.0, 32.0 / 9.0],
    &[19372.0 / 6561.0, -25360.0 / 2187.0, 64448.0 / 6561.0, -212.0 / 729.0],
    &[9017.0 / 3168.0, -355.0 / 33.0, 46732.0 / 5247.0, 49.0 / 176.0, -5103.0 / 18656.0],
    &[35.0 / 384.0, 0.0, 500.0 / 1113.0, 125.0 / 192.0, -2187.0 / 6784.0, 11.0 / 84.0],
];
const DP_B: [f32; 7] =
    [35.0 / 384.0, 0.0, 500.0 / 1113.0, 125.0 / 192.0, -2187.0 / 6784.0, 11.0 / 84.0, 0.0];
const DP_E: [f32; 7] = [
    71.0 / 57600.0,
    0.0,
    -71.0 / 16695.0,
    71.0 / 1920.0,
    -17253.0 / 339200.0,
    22.0 / 525.0,
    -1.0 / 40.0,
];
/// Dopri5's first step; the controller adapts it within a few iterations.
const DP_H0: f32 = 0.02;
/// Iterations between the read-backs that check whether every sample has finished.
const DONE_CHECK_EVERY: usize = 8;

/// Buffers for one batch size, reused across solves of that size.
pub struct OdeWorkspace {
    samples: usize,
    per_sample: usize,
    k: Buffer,
    v: Buffer,
    stage_x: Buffer,
    x_next: Buffer,
    t: Buffer,
    stage_t: Buffer,
    h: Buffer,
    ones: Buffer,
    err: Buffer,
}

impl OdeWorkspace {
    pub fn new(dev: &Device, samples: usize, per_sample: usize) -> Result<Self> {
        let b = dev.backend();
        let n = samples * per_sample;
        let mut ones = b.alloc(DType::F32, samples)?;
        b.fill(&mut ones, 1.0)?;
        Ok(OdeWorkspace {
            samples,
            per_sample,
            k: b.alloc(DType::F32, 7 * n)?,
            v: b.alloc(DType::F32, n)?,
            stage_x: b.alloc(DType::F32, n)?,
            x_next: b.alloc(DType::F32, n)?,
            t: b.alloc(DType::F32, samples)?,
            stage_t: b.alloc(DType::F32, samples)?,
            h: b.alloc(DType::F32, samples)?,
            ones,
            err: b.alloc(DType::F32, samples)?,
        })
    }

    fn n(&self) -> usize {
        self.samples * self.per_sample
    }

    /// Evaluates the field at (`stage_x` or `x`, `stage_t`) into stage slot `j` of `k`.
    fn eval_into(
        &mut self, dev: &Device, field: &mut dyn VectorField, x: Option<&Buffer>, j: usize,
    ) -> Result<()> {
        let xs = x.unwrap_or(&self.stage_x);
        field.eval(dev, xs, &self.stage_t, &mut self.v)?;
        let n = self.n();
        dev.backend().copy(&self.v, 0, &mut self.k, j * n, n)
    }
}

/// Integrates `x` (initial noise, `[samples · per_sample]`) from t = 0 to 1 in place.
pub fn solve(
    dev: &Device, field: &mut dyn VectorField, solver: Solver, x: &mut Buffer,
    ws: &mut OdeWorkspace,
) -> Result<OdeStats> {
    if field.per_sample() != ws.per_sample || x.len() != ws.n() {
        return Err(Error::Shape(format!(
            "ode: state of {} elements does not match a workspace of {} samples × {} (field: {} per sample)",
            x.len(),
            ws.samples,
            ws.per_sample,
            field.per_sample()
        )));
    }
    match solver {
        Solver::Euler { steps } => fixed_step(dev, field, x, ws, steps, false),
        Solver::Rk4 { steps } => fixed_step(dev, field, x, ws, steps, true),
        Solver::Dopri5 { rtol, atol, max_iters } => {
            dopri5(dev, field, x, ws, rtol, atol, max_iters)
        }
    }
}

fn fixed_step(
    dev: &Device, field: &mut dyn VectorField, x: &mut Buffer, ws: &mut OdeWorkspace, steps: usize,
    rk4: bool,
) -> Result<OdeStats> {
    let b = dev.backend();
    let ps = ws.per_sample;
    let dt = 1.0 / steps as f32;
    b.fill(&mut ws.h, dt)?;
    let mut stats = OdeStats::default();
    for i in 0..steps {
        let t0 = i as f32 * dt;
        b.fill(&mut ws.stage_t, t0)?;
        ws.eval_into(dev, field, Some(x), 0)?;
        stats.evals += 1;
        let combine: &[f32] = if rk4 {
            // Stages 2..4 of the classic tableau: x + h/2·k1, x + h/2·k2, x + h·k3.
            for (j, (coeffs, c)) in
                [(&[0.5f32][..], 0.5f32), (&[0.0, 0.5][..], 0.5), (&[0.0, 0.0, 1.0][..], 1.0)]
                    .into_iter()
                    .enumerate()
            {
                b.ode_stage(x, &ws.k, coeffs, &ws.h, ps, &mut ws.stage_x)?;
                b.fill(&mut ws.stage_t, t0 + c * dt)?;
                ws.eval_into(dev, field, None, j + 1)?;
                stats.evals += 1;
            }
            &[1.0 / 6.0, 1.0 / 3.0, 1.0 / 3.0, 1.0 / 6.0]
        } else {
            &[1.0]
        };
        b.ode_stage(x, &ws.k, combine, &ws.h, ps, &mut ws.x_next)?;
        std::mem::swap(x, &mut ws.x_next);
        stats.iterations += 1;
    }
    Ok(stats)
}

fn dopri5(
    dev: &Device, field: &mut dyn VectorField, x: &mut Buffer, ws: &mut OdeWorkspace, rtol: f32,
    atol: f32, max_iters: usize,
) -> Result<OdeStats> {
    let b = dev.backend();
    let ps = ws.per_sample;
    b.fill(&mut ws.t, 0.0)?;
    b.fill(&mut ws.h, DP_H0)?;
    let mut stats = OdeStats::default();
    while stats.iterations < max_iters {
        // k1 at (x, t); then each later stage at t + c_s·h from x + h·Σ a_sj k_j.
        b.copy(&ws.t, 0, &mut ws.stage_t, 0, ws.samples)?;
        ws.eval_into(dev, field, Some(x), 0)?;
        for s in 1..7 {
            b.ode_stage(x, &ws.k, DP_A[s], &ws.h, ps, &mut ws.stage_x)?;
            b.ode_stage(&ws.t, &ws.h, &[DP_C[s]], &ws.ones, 1, &mut ws.stage_t)?;
            ws.eval_into(dev, field, None, s)?;
        }
        stats.evals += 7;
        b.ode_stage(x, &ws.k, &DP_B, &ws.h, ps, &mut ws.x_next)?;
        b.dopri5_error(x, &ws.x_next, &ws.k, &DP_E, &ws.h, ps, rtol, atol, &mut ws.err)?;
        b.dopri5_accept(x, &ws.x_next, &ws.err, &mut ws.t, &mut ws.h, ps, 1.0)?;
        stats.iterations += 1;
        if stats.iterations % DONE_CHECK_EVERY == 0 && all_done(dev, &ws.h)? {
            return Ok(stats);
        }
    }
    if all_done(dev, &ws.h)? {
        return Ok(stats);
    }
    Err(Error::Invalid(format!(
        "dopri5 did not reach t = 1 within {max_iters} iterations: loosen its tolerances (`rtol`, `atol`) or use a fixed-step solver"
    )))
}

/// Finished samples have step size 0 (`dopri5_accept` sets it when t reaches the end).
fn all_done(dev: &Device, h: &Buffer) -> Result<bool> {
    Ok(dev.backend().download_f32(h)?.iter().all(|&h| h == 0.0))
}
