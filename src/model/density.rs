//! The log density of a trained flow at given points, by the instantaneous change of variables.
//!
//! Along a trajectory of dx/dt = v(x, t), d log p_t(x_t) / dt = −∇·v(x_t, t), so
//! log p_1(x_1) = log N(x_0; 0, I) − ∫_0^1 ∇·v(x_t, t) dt. To evaluate it at a given x_1 the
//! flow runs backwards: in reversed time s = 1 − t the state `[x, ℓ]` follows
//! dx/ds = −v(x, 1 − s) and dℓ/ds = ∇·v(x, 1 − s) from `[x_1, 0]`, and at s = 1 the state is
//! `[x_0, ∫ ∇·v dt]`. The same solvers as sampling integrate it ([`crate::model::ode`]).
//!
//! The divergence is a sum of vector–Jacobian products taken on the tape
//! ([`crate::tape::Tape::vjp`]): with cotangent p, the product gᵀ = pᵀ ∂v/∂x gives pᵀ J p per
//! sample. Exactly, p runs over the m unit vectors (m backward passes per evaluation);
//! Hutchinson's estimator averages pᵀ J p over Gaussian probes, unbiased for ∇·v = tr J. As in
//! FFJORD the probes are drawn once per solve, so ℓ stays a smooth function of s and an adaptive
//! solver's error control is not fed noise. The caller fills them ([`ProbeFill`]), so that a row
//! that is solved in chunks of rows takes the same probes in every chunking.

use super::flow::Conditions;
use super::ode::{solve, OdeStats, OdeWorkspace, Solver, VectorField};
use super::tfmpe::Tfmpe;
use crate::backend::{Buffer, CopyCols, DType, Device, Gemm};
use crate::error::{Error, Result};
use crate::tape::Tape;

/// How the divergence of the velocity is taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Divergence {
    /// The trace of the Jacobian, one backward pass per target dimension.
    Exact,
    /// Hutchinson's estimator with `probes` Gaussian probes drawn from `seed` (by the
    /// caller's [`ProbeFill`]).
    Hutchinson { probes: usize, seed: u64 },
}

/// Fills Hutchinson's probe `k` (`[samples · m]`, standard normals) for the batch being solved.
/// A caller that solves rows in chunks gives each row its own place in the random stream, so
/// that its probes do not depend on the rows solved beside it.
pub type ProbeFill<'a> = &'a mut dyn FnMut(usize, &mut Buffer) -> Result<()>;

impl Divergence {
    /// Target dimensions up to which `auto` takes the exact trace: its cost
    /// grows with the dimension, and past this many backward passes a handful of probes costs
    /// far less for an error well below the spread of the log density over draws.
    pub const EXACT_MAX_DIM: usize = 32;

    /// The divergence named `auto` (exact up to [`Divergence::EXACT_MAX_DIM`] target
    /// dimensions, else Hutchinson), `exact` or `hutchinson`, for `dim` target dimensions;
    /// Hutchinson's probes are drawn from `seed`.
    pub fn from_name(name: &str, dim: usize, probes: usize, seed: u64) -> Result<Divergence> {
        let hutchinson = match name {
            "exact" => false,
            "hutchinson" => true,
            "auto" => dim > Self::EXACT_MAX_DIM,
            other => {
                return Err(Error::Invalid(format!(
                    "unknown divergence `{other}`: use auto, exact or hutchinson"
                )))
            }
        };
        if !hutchinson {
            return Ok(Divergence::Exact);
        }
        if probes == 0 {
            return Err(Error::Invalid(
                "the Hutchinson estimator needs at least 1 probe (4 to 16 is usual)".into(),
            ));
        }
        Ok(Divergence::Hutchinson { probes, seed })
    }
}

/// The reversed-time field of `[x, ℓ]` rows: `[−v(x, 1 − s), ∇·v(x, 1 − s)]`.
struct ReverseField<'a> {
    model: &'a Tfmpe,
    tape: &'a mut Tape,
    on: Conditions<'a>,
    /// Cotangents, `[samples · m]` each, and the weight of each probe's product.
    probes: Vec<Buffer>,
    weight: f32,
    ones: Buffer,
    t: Buffer,
    x: Buffer,
    minus_v: Buffer,
    div: Buffer,
}

impl ReverseField<'_> {
    fn m(&self) -> usize {
        self.on.tokens.n_target
    }
}

impl VectorField for ReverseField<'_> {
    fn per_sample(&self) -> usize {
        self.m() + 1
    }

    fn eval(&mut self, dev: &Device, state: &Buffer, s: &Buffer, out: &mut Buffer) -> Result<()> {
        let be = dev.backend();
        let (b, m) = (self.on.tokens.batch, self.m());
        // t = 1 − s, as the stage update 1 + 1·(−1·s).
        be.ode_stage(&self.ones, s, &[-1.0], &self.ones, 1, &mut self.t)?;
        let x_cols = CopyCols {
            rows: b,
            width: m,
            src_stride: m + 1,
            src_offset: 0,
            dst_stride: m,
            dst_offset: 0,
            accumulate: false,
        };
        be.copy_cols(&x_cols, state, &mut self.x)?;
        let tape = &mut *self.tape;
        tape.reset();
        let (cond, inputs, mask) = self.on.record(tape)?;
        let x = tape.variable_copy(&self.x, &[b, m])?;
        let t = tape.input_copy(&self.t, &[b])?;
        let v = self.model.velocity(tape, self.on.tokens, cond, x, t, inputs, mask)?;
        for (k, probe) in self.probes.iter().enumerate() {
            tape.vjp(v, probe)?;
            let g = tape.grad(x)?.ok_or_else(|| {
                Error::Invalid("the velocity does not depend on its state".into())
            })?;
            // Per sample, the dot product of its gradient row and its probe row: a batch of
            // b (1 × m)·(m × 1) products, accumulated over the probes.
            let dot = Gemm {
                batch: b,
                alpha: self.weight,
                beta: if k == 0 { 0.0 } else { 1.0 },
                stride_a: m,
                stride_b: m,
                stride_c: 1,
                ..Gemm::new(1, 1, m)
            };
            be.gemm(&dot, g, probe, None, &mut self.div)?;
        }
        be.scale(tape.value(v)?, -1.0, &mut self.minus_v)?;
        let to_state = |width, src_offset, dst_offset| CopyCols {
            rows: b,
            width,
            src_stride: width,
            src_offset,
            dst_stride: m + 1,
            dst_offset,
            accumulate: false,
        };
        be.copy_cols(&to_state(m, 0, 0), &self.minus_v, out)?;
        be.copy_cols(&to_state(1, 0, m), &self.div, out)
    }
}

/// One-hot cotangents `e_i` for every sample, or Gaussian probes from `fill`.
fn probes(
    dev: &Device, b: usize, m: usize, divergence: Divergence, fill: ProbeFill,
) -> Result<(Vec<Buffer>, f32)> {
    let be = dev.backend();
    match divergence {
        Divergence::Exact => {
            let mut out = Vec::with_capacity(m);
            let mut host = vec![0.0f32; b * m];
            for i in 0..m {
                host.iter_mut().enumerate().for_each(|(j, v)| *v = f32::from(j % m == i));
                out.push(be.upload_f32(&host)?);
            }
            Ok((out, 1.0))
        }
        Divergence::Hutchinson { probes, .. } => {
            let mut out = Vec::with_capacity(probes);
            for k in 0..probes {
                let mut p = be.alloc(DType::F32, b * m)?;
                fill(k, &mut p)?;
                out.push(p);
            }
            Ok((out, 1.0 / probes as f32))
        }
    }
}

/// log p_1 of each row of `z` (`[samples · m]`, the network's standardised target space) under
/// the flow conditioned on `on`, with `z` integrated back to noise by `solver`; Hutchinson's
/// probes come from `fill`.
#[allow(clippy::too_many_arguments)]
pub fn log_density(
    dev: &Device, model: &Tfmpe, tape: &mut Tape, on: Conditions, z: &Buffer, solver: Solver,
    divergence: Divergence, fill: ProbeFill, ws: &mut OdeWorkspace,
) -> Result<(Vec<f64>, OdeStats)> {
    let be = dev.backend();
    let (b, m) = (on.tokens.batch, on.tokens.n_target);
    if z.len() != b * m {
        return Err(Error::Shape(format!("log density: {} values for {b} samples × {m}", z.len())));
    }
    if tape.is_inference() {
        return Err(Error::Invalid(
            "log density: the tape is in inference mode and cannot take gradients".into(),
        ));
    }
    let mut state = be.alloc(DType::F32, b * (m + 1))?;
    let into_state = CopyCols {
        rows: b,
        width: m,
        src_stride: m,
        src_offset: 0,
        dst_stride: m + 1,
        dst_offset: 0,
        accumulate: false,
    };
    be.copy_cols(&into_state, z, &mut state)?;
    let (probes, weight) = probes(dev, b, m, divergence, fill)?;
    let mut ones = be.alloc(DType::F32, b)?;
    be.fill(&mut ones, 1.0)?;
    let mut field = ReverseField {
        model,
        tape,
        on,
        probes,
        weight,
        ones,
        t: be.alloc(DType::F32, b)?,
        x: be.alloc(DType::F32, b * m)?,
        minus_v: be.alloc(DType::F32, b * m)?,
        div: be.alloc(DType::F32, b)?,
    };
    let stats = solve(dev, &mut field, solver, &mut state, ws)?;
    let end = be.download_f32(&state)?;
    let log_norm = -0.5 * m as f64 * (2.0 * std::f64::consts::PI).ln();
    let out = end
        .chunks(m + 1)
        .map(|row| {
            let sq: f64 = row[..m].iter().map(|&v| f64::from(v) * f64::from(v)).sum();
            log_norm - 0.5 * sq - f64::from(row[m])
        })
        .collect();
    Ok((out, stats))
}
