//! flow: flow-matching interpolation and the fused masked-MSE loss (`shaders/flow.wgsl`).

use super::context::{todo, Gpu, WgpuBuffer};
use crate::error::Result;

/// `inputs` is `[x0, x1, t]`.
pub(super) fn fm_prepare(
    _g: &Gpu,
    _inputs: [&WgpuBuffer; 3],
    _per_sample: usize,
    _sigma_min: f32,
    _xt: &WgpuBuffer,
    _u: &WgpuBuffer,
) -> Result<()> {
    Err(todo("fm_prepare"))
}

pub(super) fn fm_loss(
    _g: &Gpu,
    _pred: &WgpuBuffer,
    _target: &WgpuBuffer,
    _mask: Option<&WgpuBuffer>,
    _loss: &WgpuBuffer,
    _dpred: &WgpuBuffer,
) -> Result<()> {
    Err(todo("fm_loss"))
}
