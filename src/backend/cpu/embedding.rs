//! embedding: deterministic scatter-add backward of lookups, and Fourier features.
use crate::error::Result;

/// Errors (Error::Invalid) on an id past the table.
pub fn embedding_bwd(
    dout: &[f32],
    ids: &[u32],
    dim: usize,
    dtable: &mut [f32],
    accumulate: bool,
) -> Result<()> {
    todo!()
}
pub fn fourier_fwd(
    x: &[f32],
    freqs: &[f32],
    rows: usize,
    in_dim: usize,
    half: usize,
    out: &mut [f32],
) {
    todo!()
}
#[allow(clippy::too_many_arguments)]
pub fn fourier_bwd(
    x: &[f32],
    freqs: &[f32],
    dout: &[f32],
    rows: usize,
    in_dim: usize,
    half: usize,
    dfreqs: &mut [f32],
    accumulate: bool,
) {
    todo!()
}
