//! optim: sum of squares (for the global gradient norm) and the AdamW update
//! (`kernels/optim.cu`).

use super::context::{n32, opt, Arg, CudaBuffer};
use super::CudaBackend;
use crate::backend::kernels::OptimKernels;
use crate::backend::AdamW;
use crate::error::Result;

impl OptimKernels for CudaBackend {
    fn sum_squares(&self, x: &CudaBuffer, out: &mut CudaBuffer, accumulate: bool) -> Result<()> {
        let g = &self.gpu;
        let n = n32(x.len())?;
        g.reduce("sum_squares", n, |partials, ticket| {
            vec![x.arg(), out.arg(), partials, ticket, Arg::U(n), Arg::U(accumulate as u32)]
        })
    }

    /// The bias corrections are formed on the host exactly as the CPU backend forms them, so the
    /// update is bit-identical.
    fn adamw_step(
        &self, p: &AdamW, grad: &CudaBuffer, [param, m, v]: [&mut CudaBuffer; 3],
        clip: Option<(&CudaBuffer, f32)>,
    ) -> Result<()> {
        let g = &self.gpu;
        let n = n32(param.len())?;
        let step = p.step as i32;
        let bc1 = 1.0 - (p.beta1 as f64).powi(step);
        let bc2 = 1.0 - (p.beta2 as f64).powi(step);
        let args = [
            param.arg(),
            grad.arg(),
            m.arg(),
            v.arg(),
            opt(clip.map(|c| c.0)),
            Arg::U(n),
            Arg::F((p.lr as f64 / bc1) as f32),
            Arg::F((1.0 / bc2.sqrt()) as f32),
            Arg::F(1.0 - p.lr * p.weight_decay),
            Arg::F(p.beta1),
            Arg::F(p.beta2),
            Arg::F(p.eps),
            Arg::F(clip.map_or(0.0, |c| c.1)),
        ];
        g.launch_1d("adamw_step", n, &args)
    }
}
