//! norm: layer norm forward (optionally fused with the residual add) and backward
//! (`kernels/norm.cu`).

use cudarc::driver::LaunchConfig;

use super::context::{n32, opt, Arg, CudaBuffer};
use super::CudaBackend;
use crate::backend::kernels::NormKernels;
use crate::backend::LayerNorm;
use crate::error::{Error, Result};

impl NormKernels for CudaBackend {
    fn layer_norm_fwd(
        &self, p: &LayerNorm, [x, gamma, beta]: [&CudaBuffer; 3],
        residual: Option<(&CudaBuffer, Option<&mut CudaBuffer>)>,
        [y, mean, rstd]: [&mut CudaBuffer; 3],
    ) -> Result<()> {
        let g = &self.gpu;
        let with_residual = residual.map(|(r, s)| (r, s.map(|s| &*s)));
        if p.rows == 0 {
            return Ok(());
        }
        n32(p.rows * p.cols)?;
        let rows = n32(p.rows)?;
        let args = [
            x.arg(),
            opt(with_residual.map(|r| r.0)),
            gamma.arg(),
            beta.arg(),
            y.arg(),
            mean.arg(),
            rstd.arg(),
            opt(with_residual.and_then(|r| r.1)),
            Arg::U(rows),
            Arg::U(n32(p.cols)?),
            Arg::F(p.eps),
        ];
        // One warp per row, eight rows per block.
        let cfg = LaunchConfig {
            grid_dim: (rows.div_ceil(8), 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        g.launch("layer_norm_fwd", cfg, &args)
    }

    fn layer_norm_bwd(
        &self, p: &LayerNorm, [h, dy, gamma, mean, rstd]: [&CudaBuffer; 5],
        [dh, dgamma, dbeta]: [&mut CudaBuffer; 3], accumulate: bool,
    ) -> Result<()> {
        let g = &self.gpu;
        if p.cols == 0 {
            return Ok(());
        }
        n32(p.rows * p.cols)?;
        let (rows, cols) = (n32(p.rows)?, n32(p.cols)?);
        // W warps per block, each holding 2·cols floats of dynamic shared memory, within the
        // 48 KiB the kernel opts in to when loaded (`limits::OPT_IN`: its static bytes come on
        // top, so at 768, 1536, 3072 and 6144 columns the default limit would refuse it).
        let warps = [8u32, 4, 2, 1]
            .into_iter()
            .find(|&w| w as u64 * 2 * cols as u64 * 4 <= 49152)
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "cuda layer_norm_bwd: {cols} columns exceed the kernel's 6144"
                ))
            })?;
        let chunks = rows.div_ceil(64).clamp(1, 1024);
        g.with_scratch(chunks as usize * 2 * p.cols * 4, |partials, ticket| {
            let args = [
                h.arg(),
                dy.arg(),
                gamma.arg(),
                mean.arg(),
                rstd.arg(),
                dh.arg(),
                dgamma.arg(),
                dbeta.arg(),
                partials,
                ticket,
                Arg::U(rows),
                Arg::U(cols),
                Arg::U(accumulate as u32),
            ];
            let cfg = LaunchConfig {
                grid_dim: (chunks, 1, 1),
                block_dim: (32 * warps, 1, 1),
                shared_mem_bytes: warps * 2 * cols * 4,
            };
            g.launch("layer_norm_bwd", cfg, &args)
        })
    }
}
