//! optim: sum of squares (for the global gradient norm) and the AdamW update
//! (`shaders/optim.wgsl`).

use super::context::{groups, Kernel, WgpuBuffer};
use super::loss::{reduction, ONE};
use super::WgpuBackend;
use crate::backend::kernels::OptimKernels;
use crate::backend::AdamW;
use crate::error::Result;

const fn k(entry: &'static str) -> Kernel {
    Kernel { shader: "optim", entry }
}

impl OptimKernels for WgpuBackend {
    fn sum_squares(&self, x: &WgpuBuffer, out: &mut WgpuBuffer, accumulate: bool) -> Result<()> {
        let g = &self.gpu;
        let r = reduction(x.len())?;
        let params = [r.n, r.chunk, r.groups, accumulate as u32, ONE];
        if r.single() {
            return g.dispatch(k("sum_squares_partial"), &params, &[x, out], 1);
        }
        let partials = g.scratch(2 * r.groups as usize)?;
        g.dispatch(k("sum_squares_partial"), &params, &[x, &partials], r.groups)?;
        g.dispatch(k("sum_squares_finish"), &params, &[&partials, out], 1)
    }

    fn adamw_step(
        &self, p: &AdamW, grad: &WgpuBuffer, [param, m, v]: [&mut WgpuBuffer; 3],
        clip: Option<(&WgpuBuffer, f32)>,
    ) -> Result<()> {
        let g = &self.gpu;
        let n = param.len();
        // The per-call scalars exactly as the CPU backend forms them: the bias corrections in
        // f64, since 1 − β^t loses most of its digits in f32 for β2 near 1.
        let step = p.step as i32;
        let bc1 = 1.0 - (p.beta1 as f64).powi(step);
        let bc2 = 1.0 - (p.beta2 as f64).powi(step);
        let lr_hat = (p.lr as f64 / bc1) as f32;
        let inv_sqrt_bc2 = (1.0 / bc2.sqrt()) as f32;
        let decay = 1.0 - p.lr * p.weight_decay;
        let placeholder;
        let (norm_sq, max_norm) = match clip {
            Some((b, max)) => (b, Some(max)),
            None => {
                placeholder = g.placeholder()?;
                (&placeholder, None)
            }
        };
        let params = [
            n as u32,
            lr_hat.to_bits(),
            inv_sqrt_bc2.to_bits(),
            decay.to_bits(),
            p.beta1.to_bits(),
            p.beta2.to_bits(),
            (1.0 - p.beta1).to_bits(),
            (1.0 - p.beta2).to_bits(),
            p.eps.to_bits(),
            max_norm.is_some() as u32,
            max_norm.unwrap_or(0.0).to_bits(),
        ];
        g.dispatch(k("adamw"), &params, &[param, grad, m, v, norm_sq], groups(n, 256)?)
    }
}
