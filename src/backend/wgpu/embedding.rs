//! embedding: lookups (a row gather of `shaders/memory.wgsl`), their deterministic scatter-add
//! backward, Fourier features (`shaders/embedding.wgsl`).

use super::context::{groups, Gpu, Kernel, WgpuBuffer};
use crate::error::Result;

const fn k(entry: &'static str) -> Kernel {
    Kernel {
        shader: "embedding",
        entry,
    }
}

/// Columns of the table one workgroup of `embedding_bwd` owns (`EMB_TILE` in the shader).
const TILE: usize = 32;

/// One workgroup per (table row, tile of 32 columns), each walking all ids in order; ids past
/// the table match no row and are skipped (the shared checks cannot see them on the device).
/// A lookup is a row gather: no kernel of its own. An id past the table reads zeros.
pub(super) fn embedding_fwd(
    g: &Gpu,
    table: &WgpuBuffer,
    ids: &WgpuBuffer,
    dim: usize,
    out: &WgpuBuffer,
) -> Result<()> {
    super::memory::gather_rows(g, table, ids, dim, out)
}

pub(super) fn embedding_bwd(
    g: &Gpu,
    dout: &WgpuBuffer,
    ids: &WgpuBuffer,
    dim: usize,
    dtable: &WgpuBuffer,
    accumulate: bool,
) -> Result<()> {
    let rows = dtable.len() / dim;
    let tiles = dim.div_ceil(TILE);
    let params = [ids.len(), dim, rows, tiles, accumulate as usize].map(|v| v as u32);
    g.dispatch(
        k("embedding_bwd"),
        &params,
        &[dout, ids, dtable],
        groups(rows * tiles, 1)?,
    )
}

pub(super) fn fourier_fwd(
    g: &Gpu,
    x: &WgpuBuffer,
    freqs: &WgpuBuffer,
    (rows, in_dim, half): (usize, usize, usize),
    out: &WgpuBuffer,
) -> Result<()> {
    let params = [rows, in_dim, half, 0].map(|v| v as u32);
    g.dispatch(
        k("fourier_fwd"),
        &params,
        &[x, freqs, out],
        groups(rows * half, 256)?,
    )
}

/// `shape` is `(rows, in_dim, half)`. One workgroup per element of `dfreqs`, reducing over
/// rows in a fixed order.
pub(super) fn fourier_bwd(
    g: &Gpu,
    [x, freqs, dout]: [&WgpuBuffer; 3],
    (rows, in_dim, half): (usize, usize, usize),
    dfreqs: &WgpuBuffer,
    accumulate: bool,
) -> Result<()> {
    let params = [rows, in_dim, half, accumulate as usize].map(|v| v as u32);
    g.dispatch(
        k("fourier_bwd"),
        &params,
        &[x, freqs, dout, dfreqs],
        groups(in_dim * half, 1)?,
    )
}
