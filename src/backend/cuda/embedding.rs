//! embedding: table lookup and its deterministic scatter-add gradient, Fourier features
//! (`kernels/embedding.cu`).

use cudarc::driver::LaunchConfig;

use super::context::{n32, Arg, CudaBuffer};
use super::CudaBackend;
use crate::backend::kernels::EmbeddingKernels;
use crate::error::Result;

impl EmbeddingKernels for CudaBackend {
    fn embedding_fwd(
        &self, table: &CudaBuffer, ids: &CudaBuffer, dim: usize, out: &mut CudaBuffer,
    ) -> Result<()> {
        let g = &self.gpu;
        let n = n32(ids.len() * dim)?;
        let args = [
            table.arg(),
            ids.arg(),
            out.arg(),
            Arg::U(n),
            Arg::U(n32(dim)?),
            Arg::U(n32(table.len() / dim)?),
        ];
        g.launch_1d("embedding_fwd", n, &args)
    }

    /// One block per table row, each summing its ids in order (no atomics).
    fn embedding_bwd(
        &self, dout: &CudaBuffer, ids: &CudaBuffer, dim: usize, dtable: &mut CudaBuffer,
        accumulate: bool,
    ) -> Result<()> {
        let g = &self.gpu;
        let table_rows = n32(dtable.len() / dim)?;
        if table_rows == 0 {
            return Ok(());
        }
        n32(dout.len())?;
        let args = [
            dout.arg(),
            ids.arg(),
            dtable.arg(),
            Arg::U(n32(ids.len())?),
            Arg::U(n32(dim)?),
            Arg::U(table_rows),
            Arg::U(accumulate as u32),
        ];
        let cfg = LaunchConfig {
            grid_dim: (table_rows, 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        g.launch("embedding_bwd", cfg, &args)
    }

    fn fourier_fwd(
        &self, [x, freqs]: [&CudaBuffer; 2], (rows, in_dim, half): (usize, usize, usize),
        out: &mut CudaBuffer,
    ) -> Result<()> {
        let g = &self.gpu;
        n32(out.len())?;
        let args = [
            x.arg(),
            freqs.arg(),
            out.arg(),
            Arg::U(n32(rows)?),
            Arg::U(n32(in_dim)?),
            Arg::U(n32(half)?),
        ];
        g.launch_1d("fourier_fwd", n32(rows * half)?, &args)
    }

    fn fourier_bwd(
        &self, [x, freqs, dout]: [&CudaBuffer; 3], (rows, in_dim, half): (usize, usize, usize),
        dfreqs: &mut CudaBuffer, accumulate: bool,
    ) -> Result<()> {
        let g = &self.gpu;
        // No frequencies, no gradient (dfreqs is empty).
        if half == 0 || in_dim == 0 {
            return Ok(());
        }
        n32(dout.len())?;
        n32(x.len())?;
        let r = n32(rows)?;
        let chunks = r.div_ceil(256).clamp(1, 256);
        g.with_scratch(chunks as usize * in_dim * half * 8, |partials, ticket| {
            let args = [
                x.arg(),
                freqs.arg(),
                dout.arg(),
                dfreqs.arg(),
                partials,
                ticket,
                Arg::U(r),
                Arg::U(n32(in_dim)?),
                Arg::U(n32(half)?),
                Arg::U(accumulate as u32),
            ];
            let cfg = LaunchConfig {
                grid_dim: (chunks, fourier_bwd_tiles(n32(half)?), 1),
                block_dim: (256, 1, 1),
                shared_mem_bytes: 0,
            };
            g.launch("fourier_bwd", cfg, &args)
        })
    }
}

/// The grid height of `fourier_bwd`: one block row per 32 columns, at most the 65 535 a launch
/// allows; the kernel loops over the column tiles past that, so any width works.
fn fourier_bwd_tiles(half: u32) -> u32 {
    half.div_ceil(32).min(65535)
}

#[cfg(test)]
mod tests {
    use super::fourier_bwd_tiles;

    #[test]
    fn fourier_bwd_grid_height_stays_within_the_launch_limit() {
        assert_eq!(fourier_bwd_tiles(1), 1);
        assert_eq!(fourier_bwd_tiles(65535 * 32), 65535);
        assert_eq!(fourier_bwd_tiles(65535 * 32 + 1), 65535);
        assert_eq!(fourier_bwd_tiles((1 << 31) - 1), 65535);
    }
}
