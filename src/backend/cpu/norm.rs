//! norm: layer norm forward (optionally fused with the residual add) and backward.
use crate::backend::LayerNorm;

#[allow(clippy::too_many_arguments)]
pub fn layer_norm_fwd(
    p: &LayerNorm,
    x: &[f32],
    residual: Option<&[f32]>,
    gamma: &[f32],
    beta: &[f32],
    y: &mut [f32],
    mean: &mut [f32],
    rstd: &mut [f32],
    sum_out: Option<&mut [f32]>,
) {
    todo!()
}
#[allow(clippy::too_many_arguments)]
pub fn layer_norm_bwd(
    p: &LayerNorm,
    h: &[f32],
    dy: &[f32],
    gamma: &[f32],
    mean: &[f32],
    rstd: &[f32],
    dh: &mut [f32],
    dgamma: &mut [f32],
    dbeta: &mut [f32],
    accumulate_params: bool,
) {
    todo!()
}
