//! norm: layer norm forward (optionally fused with the residual add) and backward
//! (`shaders/norm.wgsl`).

use super::context::{groups, Kernel, WgpuBuffer};
use super::WgpuBackend;
use crate::backend::kernels::NormKernels;
use crate::backend::LayerNorm;
use crate::error::Result;

const fn k(entry: &'static str) -> Kernel {
    Kernel { shader: "norm", entry }
}

/// Rows per chunk of the parameter-gradient sums (`ROWS_PER_CHUNK` in norm.wgsl).
const ROWS_PER_CHUNK: usize = 128;

/// Threads per row: the column count rounded up to a power of two, at most a workgroup.
fn row_threads(cols: usize) -> usize {
    cols.next_power_of_two().clamp(1, 256)
}

impl NormKernels for WgpuBackend {
    fn layer_norm_fwd(
        &self, p: &LayerNorm, [x, gamma, beta]: [&WgpuBuffer; 3],
        residual: Option<(&WgpuBuffer, Option<&mut WgpuBuffer>)>,
        [y, mean, rstd]: [&mut WgpuBuffer; 3],
    ) -> Result<()> {
        let g = &self.gpu;
        if p.rows == 0 || p.cols == 0 {
            return Ok(());
        }
        let t = row_threads(p.cols);
        let (has_residual, keep_sum) =
            (residual.is_some(), residual.as_ref().is_some_and(|r| r.1.is_some()));
        // Absent buffers bind distinct placeholders, taken only where one is absent (a
        // training step, which has both, then takes nothing from the pool).
        let (read, written);
        let (residual, sum_out) = match residual {
            Some((r, Some(s))) => (r, &*s),
            Some((r, None)) => {
                written = g.placeholder()?;
                (r, &written)
            }
            None => {
                (read, written) = (g.placeholder()?, g.placeholder()?);
                (&read, &written)
            }
        };
        let params = [
            p.rows as u32,
            p.cols as u32,
            p.eps.to_bits(),
            t as u32,
            has_residual as u32,
            keep_sum as u32,
        ];
        g.dispatch(
            k("layer_norm_fwd"),
            &params,
            &[x, residual, gamma, beta, y, mean, rstd, sum_out],
            groups(p.rows, 256 / t)?,
        )
    }

    fn layer_norm_bwd(
        &self, p: &LayerNorm, [h, dy, gamma, mean, rstd]: [&WgpuBuffer; 5],
        [dh, dgamma, dbeta]: [&mut WgpuBuffer; 3], accumulate_params: bool,
    ) -> Result<()> {
        let g = &self.gpu;
        let (rows, cols) = (p.rows, p.cols);
        if cols == 0 {
            return Ok(());
        }
        let t = row_threads(cols);
        if rows > 0 {
            g.dispatch(
                k("layer_norm_bwd"),
                &[rows as u32, cols as u32, t as u32],
                &[h, dy, gamma, mean, rstd, dh],
                groups(rows, 256 / t)?,
            )?;
        }

        // dgamma and dbeta: chunk sums, then one fixed-order sum of the chunks per column. A
        // single chunk is summed straight into the outputs; no rows only resets them.
        let chunks = rows.div_ceil(ROWS_PER_CHUNK);
        let colblocks = cols.div_ceil(t);
        let partials = |dg: &WgpuBuffer, db: &WgpuBuffer, accumulate: bool| {
            let params = [
                rows as u32,
                cols as u32,
                t as u32,
                chunks as u32,
                colblocks as u32,
                accumulate as u32,
            ];
            g.dispatch(
                k("ln_param_partials"),
                &params,
                &[h, dy, mean, rstd, dg, db],
                groups(chunks * colblocks, 1)?,
            )
        };
        let finish = |pg: &WgpuBuffer, pb: &WgpuBuffer| {
            g.dispatch(
                k("ln_param_finish"),
                &[cols as u32, chunks as u32, accumulate_params as u32],
                &[pg, pb, dgamma, dbeta],
                groups(cols, 1)?,
            )
        };
        match chunks {
            0 if accumulate_params => Ok(()),
            0 => finish(&g.placeholder()?, &g.placeholder()?),
            1 => partials(dgamma, dbeta, accumulate_params),
            _ => {
                let (pg, pb) = (g.scratch(chunks * cols)?, g.scratch(chunks * cols)?);
                partials(&pg, &pb, false)?;
                finish(&pg, &pb)
            }
        }
    }
}
