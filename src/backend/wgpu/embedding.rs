//! embedding: deterministic scatter-add backward of lookups, Fourier features
//! (`shaders/embedding.wgsl`).

use super::context::{todo, Gpu, WgpuBuffer};
use crate::error::Result;

pub(super) fn embedding_bwd(
    _g: &Gpu,
    _dout: &WgpuBuffer,
    _ids: &WgpuBuffer,
    _dim: usize,
    _dtable: &WgpuBuffer,
    _accumulate: bool,
) -> Result<()> {
    Err(todo("embedding_bwd"))
}

pub(super) fn fourier_fwd(
    _g: &Gpu,
    _x: &WgpuBuffer,
    _freqs: &WgpuBuffer,
    _rows: usize,
    _in_dim: usize,
    _half: usize,
    _out: &WgpuBuffer,
) -> Result<()> {
    Err(todo("fourier_fwd"))
}

/// `shape` is `(rows, in_dim, half)`.
pub(super) fn fourier_bwd(
    _g: &Gpu,
    _x: &WgpuBuffer,
    _freqs: &WgpuBuffer,
    _dout: &WgpuBuffer,
    _shape: (usize, usize, usize),
    _dfreqs: &WgpuBuffer,
    _accumulate: bool,
) -> Result<()> {
    Err(todo("fourier_bwd"))
}
