//! embedding: lookups (a row gather of `shaders/memory.wgsl`), their deterministic scatter-add
//! backward, Fourier features (`shaders/embedding.wgsl`).

use super::context::{groups, Kernel, WgpuBuffer};
use super::loss::ONE;
use super::WgpuBackend;
use crate::backend::kernels::{EmbeddingKernels, MemoryKernels};
use crate::error::Result;

const fn k(entry: &'static str) -> Kernel {
    Kernel { shader: "embedding", entry }
}

/// Columns of the table one workgroup of `embedding_bwd` owns (`EMB_TILE` in the shader).
const TILE: usize = 32;

impl EmbeddingKernels for WgpuBackend {
    /// A lookup is a row gather: no kernel of its own.
    fn embedding_fwd(
        &self, table: &WgpuBuffer, ids: &WgpuBuffer, dim: usize, out: &mut WgpuBuffer,
    ) -> Result<()> {
        MemoryKernels::gather_rows(self, table, ids, dim, out)
    }

    /// One workgroup per (table row, tile of 32 columns), each walking all ids in order; an id
    /// past the table matches no row and is skipped (a kernel cannot report it, and the checked
    /// layer sees index values only where the host holds them).
    fn embedding_bwd(
        &self, dout: &WgpuBuffer, ids: &WgpuBuffer, dim: usize, dtable: &mut WgpuBuffer,
        accumulate: bool,
    ) -> Result<()> {
        let g = &self.gpu;
        let rows = dtable.len() / dim;
        let tiles = dim.div_ceil(TILE);
        let params =
            [ids.len(), dim, rows, tiles, accumulate as usize, ONE as usize].map(|v| v as u32);
        g.dispatch(k("embedding_bwd"), &params, &[dout, ids, dtable], groups(rows * tiles, 1)?)
    }

    fn fourier_fwd(
        &self, [x, freqs]: [&WgpuBuffer; 2], (rows, in_dim, half): (usize, usize, usize),
        out: &mut WgpuBuffer,
    ) -> Result<()> {
        let g = &self.gpu;
        let params = [rows, in_dim, half, 0, ONE as usize].map(|v| v as u32);
        g.dispatch(k("fourier_fwd"), &params, &[x, freqs, out], groups(rows * half, 256)?)
    }

    /// One workgroup per element of `dfreqs`, reducing over rows in a fixed order.
    fn fourier_bwd(
        &self, [x, freqs, dout]: [&WgpuBuffer; 3], (rows, in_dim, half): (usize, usize, usize),
        dfreqs: &mut WgpuBuffer, accumulate: bool,
    ) -> Result<()> {
        let g = &self.gpu;
        let params = [rows, in_dim, half, accumulate as usize, ONE as usize].map(|v| v as u32);
        g.dispatch(k("fourier_bwd"), &params, &[x, freqs, dout, dfreqs], groups(in_dim * half, 1)?)
    }
}
