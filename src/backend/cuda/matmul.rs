//! matmul: batched GEMM with epilogue (and split-K for long, small products), bias gradient
//! (`kernels/matmul.cu`).

use cudarc::driver::LaunchConfig;

use super::context::{n32, opt, Arg, CudaBuffer, Matmul};
use super::CudaBackend;
use crate::backend::kernels::MatmulKernels;
use crate::backend::{Epilogue, Gemm};
use crate::error::{Error, Result};

impl MatmulKernels for CudaBackend {
    fn gemm(
        &self, p: &Gemm, [a, b]: [&CudaBuffer; 2], bias: Option<&CudaBuffer>, c: &mut CudaBuffer,
    ) -> Result<()> {
        let g = &self.gpu;
        if p.batch == 0 || p.m == 0 || p.n == 0 {
            return Ok(());
        }
        let (m, n, k, batch) = (n32(p.m)?, n32(p.n)?, n32(p.k)?, n32(p.batch)?);
        n32(p.batch * p.m * p.n)?;
        let sms = g.sms();
        let tiles = |bm: u32| m.div_ceil(bm) * n.div_ceil(bm);
        // (entry, tile edge, threads per block): see kernels/README.md.
        let (entry, tile, threads) = if g.matmul() == Matmul::Tf32 {
            ("gemm_tf32_64x64", 64, 128)
        } else if tiles(128) as u64 * batch as u64 >= 2 * sms as u64 {
            ("gemm_f32_128x128", 128, 256)
        } else {
            ("gemm_f32_64x64", 64, 256)
        };
        let work = tiles(tile) as u64 * batch as u64;
        let splits = if work < sms as u64 && k >= 512 {
            (k.div_ceil(256) as u64).min((2 * sms as u64).div_ceil(work)).min(64) as u32
        } else {
            1
        };
        let grid = (n.div_ceil(tile), m.div_ceil(tile), batch * splits);
        if grid.1 > 65535 || batch as u64 * splits as u64 > 65535 {
            return Err(Error::Invalid(format!(
                "cuda gemm: a {}×{}×{} product in {} batches exceeds the launch grid",
                p.m, p.n, p.k, p.batch
            )));
        }
        let epilogue = match p.epilogue {
            Epilogue::None => 0,
            Epilogue::Bias => 1,
            Epilogue::BiasRelu => 2,
        };
        let launch = |ws: Arg| {
            let args = [
                a.arg(),
                b.arg(),
                opt(bias),
                c.arg(),
                ws,
                Arg::U(m),
                Arg::U(n),
                Arg::U(k),
                Arg::U(p.trans_a as u32),
                Arg::U(p.trans_b as u32),
                Arg::F(p.alpha),
                Arg::F(p.beta),
                Arg::U(n32(p.stride_a)?),
                Arg::U(n32(p.stride_b)?),
                Arg::U(n32(p.stride_c)?),
                Arg::U(epilogue),
                Arg::U(splits),
            ];
            let cfg =
                LaunchConfig { grid_dim: grid, block_dim: (threads, 1, 1), shared_mem_bytes: 0 };
            g.launch(entry, cfg, &args)
        };
        if splits == 1 {
            return launch(Arg::P(0));
        }
        // Raw partial products go to the workspace, then one pass adds them in split order.
        let total = n32(p.batch * splits as usize * p.m * p.n)?;
        g.with_scratch(total as usize * 4, |ws, _| {
            launch(ws)?;
            let args = [
                ws,
                opt(bias),
                c.arg(),
                Arg::U(m),
                Arg::U(n),
                Arg::U(batch),
                Arg::U(splits),
                Arg::F(p.beta),
                Arg::U(n32(p.stride_c)?),
                Arg::U(epilogue),
            ];
            g.launch_1d("gemm_splitk_reduce", batch * m * n, &args)
        })
    }

    fn bias_grad(
        &self, dy: &CudaBuffer, (rows, cols): (usize, usize), db: &mut CudaBuffer, accumulate: bool,
    ) -> Result<()> {
        let g = &self.gpu;
        if cols == 0 {
            return Ok(());
        }
        let (r, c) = (n32(rows)?, n32(cols)?);
        n32(rows * cols)?;
        let chunks = r.div_ceil(128).clamp(1, 1024);
        g.with_scratch(chunks as usize * cols * 4, |partials, ticket| {
            let args = [
                dy.arg(),
                db.arg(),
                partials,
                ticket,
                Arg::U(r),
                Arg::U(c),
                Arg::U(accumulate as u32),
            ];
            let cfg = LaunchConfig {
                grid_dim: (c.div_ceil(32), chunks, 1),
                block_dim: (256, 1, 1),
                shared_mem_bytes: 0,
            };
            g.launch("bias_grad", cfg, &args)
        })
    }
}
