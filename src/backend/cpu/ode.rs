//! ode: fused Runge–Kutta stage combinations and Dopri5 error control.
//!
//! Time runs forwards: a sample with `h > 0` is still integrating, `h = 0` has reached `t_end`.
use rayon::prelude::*;

use super::loss::{lanes_sum, sample_block, PAR_BLOCK};
use super::{CpuBackend, CpuBuffer};
use crate::backend::kernels::OdeKernels;
use crate::error::Result;

/// Elements whose stage sum is formed at once: the partial sums of a tile stay in L1 while each
/// stage's slice streams past, and the loops over it vectorise.
const TILE: usize = 256;

/// An accepted step that ends this close to `t_end` (relative to `max(|t_end|, 1)`) lands on it
/// exactly, so that f32 rounding of `t + h` cannot leave a sliver of a step.
const T_SNAP: f32 = 1e-6;

/// `acc[i] = Σ_j coeffs[j] · k[j·n + start + i]`. Zero coefficients (most of a Dopri5 tableau
/// row) skip their stage entirely.
fn combine(k: &[f32], n: usize, coeffs: &[f32], start: usize, acc: &mut [f32]) {
    let len = acc.len();
    acc.fill(0.0);
    for (j, &c) in coeffs.iter().enumerate().filter(|&(_, &c)| c != 0.0) {
        for (a, &kv) in acc.iter_mut().zip(&k[j * n + start..][..len]) {
            *a += c * kv;
        }
    }
}

pub fn ode_stage(
    x: &[f32], k: &[f32], coeffs: &[f32], h: &[f32], per_sample: usize, out: &mut [f32],
) {
    let n = x.len();
    let block = |start: usize, out: &mut [f32]| {
        let mut acc = [0.0f32; TILE];
        for (tile, out) in out.chunks_mut(TILE).enumerate() {
            let start = start + tile * TILE;
            let acc = &mut acc[..out.len()];
            combine(k, n, coeffs, start, acc);
            // A tile may straddle samples: apply each sample's step to its own segment.
            let mut lo = 0;
            while lo < out.len() {
                let s = (start + lo) / per_sample;
                let (hs, hi) = (h[s], ((s + 1) * per_sample - start).min(out.len()));
                let seg = out[lo..hi].iter_mut().zip(&x[start + lo..start + hi]);
                for ((o, &x), &a) in seg.zip(&acc[lo..hi]) {
                    *o = x + hs * a;
                }
                lo = hi;
            }
        }
    };
    if n > PAR_BLOCK {
        // PAR_BLOCK is a multiple of TILE, so tiles never cross blocks.
        out.par_chunks_mut(PAR_BLOCK).enumerate().for_each(|(b, out)| block(b * PAR_BLOCK, out));
    } else {
        block(0, out);
    }
}

#[allow(clippy::too_many_arguments)]
pub fn dopri5_error(
    x: &[f32], x_new: &[f32], k: &[f32], err_coeffs: &[f32], h: &[f32], per_sample: usize,
    rtol: f32, atol: f32, err: &mut [f32],
) {
    let n = x.len();
    // err = |h| · sqrt(mean((Σ_j c_j k_j / tol)²)): h is the sample's constant, so it
    // multiplies once at the end.
    let sample_error = |s: usize| -> f32 {
        let end = (s + 1) * per_sample;
        let mut acc = [0.0f32; TILE];
        let mut sum = 0.0;
        for lo in (s * per_sample..end).step_by(TILE) {
            let r = lo..lo + TILE.min(end - lo);
            let acc = &mut acc[..r.len()];
            combine(k, n, err_coeffs, lo, acc);
            sum += lanes_sum([acc, &x[r.clone()], &x_new[r]], |[a, x, x_new]| {
                let e = (a / (atol + rtol * x.abs().max(x_new.abs()))) as f64;
                e * e
            });
        }
        (h[s].abs() as f64 * (sum / per_sample as f64).sqrt()) as f32
    };
    if n > PAR_BLOCK {
        err.par_iter_mut()
            .with_min_len(sample_block(per_sample) / per_sample)
            .enumerate()
            .for_each(|(s, e)| *e = sample_error(s));
    } else {
        for (s, e) in err.iter_mut().enumerate() {
            *e = sample_error(s);
        }
    }
}

pub fn dopri5_accept(
    x: &mut [f32], x_new: &[f32], err: &[f32], t: &mut [f32], h: &mut [f32], per_sample: usize,
    t_end: f32,
) {
    let snap = T_SNAP * t_end.abs().max(1.0);
    // `first` is the index of the block's first sample.
    let block = |first: usize, x: &mut [f32], t: &mut [f32], h: &mut [f32]| {
        let samples = x.chunks_mut(per_sample).zip(t.iter_mut().zip(h.iter_mut()));
        for (s, (x, (t, h))) in samples.enumerate() {
            let s = first + s;
            if *h <= 0.0 {
                continue;
            }
            let e = err[s];
            if e <= 1.0 {
                x.copy_from_slice(&x_new[s * per_sample..][..per_sample]);
                *t += *h;
                if t_end - *t <= snap {
                    *t = t_end;
                }
            }
            // Not `clamp`: max/min skip a NaN operand, so a NaN error (rejected above) gets
            // the smallest factor 0.2 instead of a NaN step; err = 0 gives inf, hence 10.
            #[allow(clippy::manual_clamp)]
            let factor = (0.9 * e.powf(-0.2)).max(0.2).min(10.0);
            *h = (*h * factor).min(t_end - *t).max(0.0);
        }
    };
    if x.len() > PAR_BLOCK {
        let len = sample_block(per_sample);
        let per_block = len / per_sample;
        x.par_chunks_mut(len)
            .zip(t.par_chunks_mut(per_block))
            .zip(h.par_chunks_mut(per_block))
            .enumerate()
            .for_each(|(b, ((x, t), h))| block(b * per_block, x, t, h));
    } else {
        block(0, x, t, h);
    }
}

impl OdeKernels for CpuBackend {
    fn ode_stage(
        &self, ins: [&CpuBuffer; 3], coeffs: &[f32], per_sample: usize, out: &mut CpuBuffer,
    ) -> Result<()> {
        let [x, k, h] = ins.map(CpuBuffer::f32);
        ode_stage(x, k, coeffs, h, per_sample, out.f32_mut());
        Ok(())
    }

    fn dopri5_error(
        &self, ins: [&CpuBuffer; 4], err_coeffs: &[f32],
        (per_sample, (rtol, atol)): (usize, (f32, f32)), err: &mut CpuBuffer,
    ) -> Result<()> {
        let [x, x_new, k, h] = ins.map(CpuBuffer::f32);
        let err = err.f32_mut();
        dopri5_error(x, x_new, k, err_coeffs, h, per_sample, rtol, atol, err);
        Ok(())
    }

    fn dopri5_accept(
        &self, ins: [&CpuBuffer; 2], [x, t, h]: [&mut CpuBuffer; 3], per_sample: usize, t_end: f32,
    ) -> Result<()> {
        let [x_new, err] = ins.map(CpuBuffer::f32);
        let (x, t, h) = (x.f32_mut(), t.f32_mut(), h.f32_mut());
        dopri5_accept(x, x_new, err, t, h, per_sample, t_end);
        Ok(())
    }
}
