//! flow: flow-matching interpolation and the fused masked-MSE loss with its gradient
//! (`kernels/flow.cu`).

use cudarc::driver::LaunchConfig;

use super::context::{n32, opt, Arg, CudaBuffer};
use super::CudaBackend;
use crate::backend::kernels::FlowKernels;
use crate::error::Result;

impl FlowKernels for CudaBackend {
    fn fm_prepare(
        &self, [x0, x1, t]: [&CudaBuffer; 3], per_sample: usize, sigma_min: f32,
        [xt, u]: [&mut CudaBuffer; 2],
    ) -> Result<()> {
        let g = &self.gpu;
        let n = n32(x0.len())?;
        let args = [
            x0.arg(),
            x1.arg(),
            t.arg(),
            xt.arg(),
            u.arg(),
            Arg::U(n),
            Arg::U(n32(per_sample)?),
            Arg::F(sigma_min),
        ];
        g.launch_1d("fm_prepare", n, &args)
    }

    /// Every block sums the whole mask itself (no grid barrier), hence few blocks; launched even
    /// for n = 0 so the loss is written.
    fn fm_loss(
        &self, pred: &CudaBuffer, target: &CudaBuffer, mask: Option<&CudaBuffer>,
        [loss, dpred]: [&mut CudaBuffer; 2],
    ) -> Result<()> {
        let g = &self.gpu;
        let n = n32(pred.len())?;
        let blocks = n.div_ceil(16384).clamp(1, 16);
        g.with_scratch(blocks as usize * 8, |partials, ticket| {
            let args = [
                pred.arg(),
                target.arg(),
                opt(mask),
                loss.arg(),
                dpred.arg(),
                partials,
                ticket,
                Arg::U(n),
            ];
            let cfg = LaunchConfig {
                grid_dim: (blocks, 1, 1),
                block_dim: (256, 1, 1),
                shared_mem_bytes: 0,
            };
            g.launch("fm_loss", cfg, &args)
        })
    }
}
