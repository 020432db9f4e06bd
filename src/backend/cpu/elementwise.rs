//! elementwise: add, scale, axpy, ReLU.
//!
//! Every kernel is one pass of `f(out, a, b)` over zipped slices; `zip_apply` is generic over
//! `f`, so each kernel gets its own monomorphised, auto-vectorised loop.
use rayon::prelude::*;

use super::{CpuBackend, CpuBuffer};
use crate::backend::kernels::ElementwiseKernels;
use crate::error::Result;

/// Elements from which splitting over threads pays for the rayon hand-off.
const PAR_MIN: usize = 1 << 15;
/// Elements per parallel task.
const CHUNK: usize = 1 << 13;

/// `f(&mut out[i], a[i], b[i])` for every `i`; the caller has checked the lengths agree.
#[inline]
fn zip_apply(out: &mut [f32], a: &[f32], b: &[f32], f: impl Fn(&mut f32, f32, f32) + Sync) {
    let run = |out: &mut [f32], a: &[f32], b: &[f32]| {
        for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
            f(o, x, y);
        }
    };
    if out.len() < PAR_MIN {
        run(out, a, b);
    } else {
        out.par_chunks_mut(CHUNK)
            .zip(a.par_chunks(CHUNK))
            .zip(b.par_chunks(CHUNK))
            .for_each(|((o, a), b)| run(o, a, b));
    }
}

pub fn add(a: &[f32], b: &[f32], out: &mut [f32]) {
    zip_apply(out, a, b, |o, a, b| *o = a + b);
}

pub fn scale(x: &[f32], alpha: f32, out: &mut [f32]) {
    // One input only; `x` fills the unused second one here and below.
    zip_apply(out, x, x, |o, x, _| *o = alpha * x);
}

pub fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) {
    // `y` is read and written through the output slot.
    zip_apply(y, x, x, |y, x, _| *y += alpha * x);
}

/// Written as a select rather than `max`, so a NaN input stays NaN and a diverging run shows up
/// in the loss instead of being silently zeroed.
pub fn relu_fwd(x: &[f32], out: &mut [f32]) {
    zip_apply(out, x, x, |o, x, _| *o = if x < 0.0 { 0.0 } else { x });
}

pub fn relu_bwd(y: &[f32], dy: &[f32], dx: &mut [f32], accumulate: bool) {
    let gate = |y: f32, dy: f32| if y > 0.0 { dy } else { 0.0 };
    if accumulate {
        zip_apply(dx, y, dy, |dx, y, dy| *dx += gate(y, dy));
    } else {
        zip_apply(dx, y, dy, |dx, y, dy| *dx = gate(y, dy));
    }
}

impl ElementwiseKernels for CpuBackend {
    fn add(&self, a: &CpuBuffer, b: &CpuBuffer, out: &mut CpuBuffer) -> Result<()> {
        add(a.f32(), b.f32(), out.f32_mut());
        Ok(())
    }

    fn scale(&self, x: &CpuBuffer, alpha: f32, out: &mut CpuBuffer) -> Result<()> {
        scale(x.f32(), alpha, out.f32_mut());
        Ok(())
    }

    fn axpy(&self, alpha: f32, x: &CpuBuffer, y: &mut CpuBuffer) -> Result<()> {
        axpy(alpha, x.f32(), y.f32_mut());
        Ok(())
    }

    fn relu_fwd(&self, x: &CpuBuffer, out: &mut CpuBuffer) -> Result<()> {
        relu_fwd(x.f32(), out.f32_mut());
        Ok(())
    }

    fn relu_bwd(&self, y: &CpuBuffer, dy: &CpuBuffer, dx: &mut CpuBuffer, acc: bool) -> Result<()> {
        relu_bwd(y.f32(), dy.f32(), dx.f32_mut(), acc);
        Ok(())
    }
}
