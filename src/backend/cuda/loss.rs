//! loss: binary cross-entropy with logits, scaled sums (`kernels/loss.cu`).

use super::context::{n32, Arg, CudaBuffer};
use super::CudaBackend;
use crate::backend::kernels::LossKernels;
use crate::error::Result;

impl LossKernels for CudaBackend {
    fn bce_with_logits(
        &self, logits: &CudaBuffer, targets: &CudaBuffer, [loss, dlogits]: [&mut CudaBuffer; 2],
    ) -> Result<()> {
        let g = &self.gpu;
        let n = n32(logits.len())?;
        g.reduce("bce_with_logits", n, |partials, ticket| {
            vec![
                logits.arg(),
                targets.arg(),
                loss.arg(),
                dlogits.arg(),
                partials,
                ticket,
                Arg::U(n),
            ]
        })
    }

    fn reduce_sum(&self, x: &CudaBuffer, scale: f32, out: &mut CudaBuffer) -> Result<()> {
        let g = &self.gpu;
        let n = n32(x.len())?;
        g.reduce("reduce_sum", n, |partials, ticket| {
            vec![x.arg(), out.arg(), partials, ticket, Arg::U(n), Arg::F(scale)]
        })
    }
}
