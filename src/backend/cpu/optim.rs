//! optim: squared gradient norm and AdamW.
use rayon::prelude::*;

use super::loss::{lanes_sum, sum_blocks, PAR_BLOCK};
use super::{CpuBackend, CpuBuffer};
use crate::backend::kernels::OptimKernels;
use crate::backend::AdamW;
use crate::error::Result;

pub fn sum_squares(x: &[f32], out: &mut [f32], accumulate: bool) {
    // Each square is rounded to f32 (half an ulp, relative) before the f64 sum.
    let total = sum_blocks(x.len(), |r| lanes_sum([&x[r]], |[v]| (v * v) as f64));
    // Accumulating adds this buffer's sum to the running one (one rounding per call), so the
    // global norm does not depend on how the gradients are split, only on their order.
    let base = if accumulate { out[0] as f64 } else { 0.0 };
    out[0] = (base + total) as f32;
}

/// PyTorch's AdamW order: the decay `p ← p·(1 − lr·wd)` is decoupled from the gradient, and
/// then `p ← p − lr · m̂ / (√v̂ + eps)` with the bias-corrected moments.
pub fn adamw_step(
    p: &AdamW, param: &mut [f32], grad: &[f32], m: &mut [f32], v: &mut [f32],
    clip: Option<(f32, f32)>,
) {
    // Per-call scalars in f64: 1 − β^t loses most of its digits in f32 for β2 near 1.
    let step = p.step as i32;
    let bc1 = 1.0 - (p.beta1 as f64).powi(step);
    let bc2 = 1.0 - (p.beta2 as f64).powi(step);
    let lr_hat = (p.lr as f64 / bc1) as f32;
    let inv_sqrt_bc2 = (1.0 / bc2.sqrt()) as f32;
    let decay = 1.0 - p.lr * p.weight_decay;
    let g_scale = clip.map_or(1.0, |(norm_sq, max_norm)| clip_scale(norm_sq, max_norm));
    let (b1, b2) = (p.beta1, p.beta2);
    let (c1, c2, eps) = (1.0 - b1, 1.0 - b2, p.eps);

    let block = |start: usize, param: &mut [f32], m: &mut [f32], v: &mut [f32]| {
        let g = &grad[start..][..param.len()];
        let state = param.iter_mut().zip(m.iter_mut().zip(v.iter_mut()));
        for ((p, (m, v)), &g) in state.zip(g) {
            let g = g * g_scale;
            *m = b1 * *m + c1 * g;
            *v = b2 * *v + c2 * (g * g);
            *p = *p * decay - lr_hat * *m / ((*v).sqrt() * inv_sqrt_bc2 + eps);
        }
    };
    if param.len() > PAR_BLOCK {
        param
            .par_chunks_mut(PAR_BLOCK)
            .zip(m.par_chunks_mut(PAR_BLOCK))
            .zip(v.par_chunks_mut(PAR_BLOCK))
            .enumerate()
            .for_each(|(b, ((p, m), v))| block(b * PAR_BLOCK, p, m, v));
    } else {
        block(0, param, m, v);
    }
}

/// `min(1, max_norm / ‖g‖)`; a zero norm (or a NaN one, whose step is lost anyway) leaves the
/// gradient as it is.
fn clip_scale(norm_sq: f32, max_norm: f32) -> f32 {
    let norm = norm_sq.sqrt();
    if norm > max_norm {
        max_norm / norm
    } else {
        1.0
    }
}

impl OptimKernels for CpuBackend {
    fn sum_squares(&self, x: &CpuBuffer, out: &mut CpuBuffer, acc: bool) -> Result<()> {
        sum_squares(x.f32(), out.f32_mut(), acc);
        Ok(())
    }

    fn adamw_step(
        &self, p: &AdamW, grad: &CpuBuffer, [param, m, v]: [&mut CpuBuffer; 3],
        clip: Option<(&CpuBuffer, f32)>,
    ) -> Result<()> {
        let clip = clip.map(|(norm_sq, max_norm)| (norm_sq.f32()[0], max_norm));
        adamw_step(p, param.f32_mut(), grad.f32(), m.f32_mut(), v.f32_mut(), clip);
        Ok(())
    }
}
