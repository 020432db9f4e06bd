//! norm: layer norm forward (optionally fused with the residual add) and backward
//! (`shaders/norm.wgsl`).

use super::context::{todo, Gpu, WgpuBuffer};
use crate::backend::LayerNorm;
use crate::error::Result;

/// `with_residual` is `(residual, sum_out)`.
#[allow(clippy::too_many_arguments)]
pub(super) fn layer_norm_fwd(
    _g: &Gpu,
    _p: &LayerNorm,
    _x: &WgpuBuffer,
    _with_residual: Option<(&WgpuBuffer, &WgpuBuffer)>,
    _gamma: &WgpuBuffer,
    _beta: &WgpuBuffer,
    _y: &WgpuBuffer,
    _mean: &WgpuBuffer,
    _rstd: &WgpuBuffer,
) -> Result<()> {
    Err(todo("layer_norm_fwd"))
}

#[allow(clippy::too_many_arguments)]
pub(super) fn layer_norm_bwd(
    _g: &Gpu,
    _p: &LayerNorm,
    _h: &WgpuBuffer,
    _dy: &WgpuBuffer,
    _gamma: &WgpuBuffer,
    _mean: &WgpuBuffer,
    _rstd: &WgpuBuffer,
    _dh: &WgpuBuffer,
    _dgamma: &WgpuBuffer,
    _dbeta: &WgpuBuffer,
    _accumulate_params: bool,
) -> Result<()> {
    Err(todo("layer_norm_bwd"))
}
