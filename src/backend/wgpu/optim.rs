//! optim: sum of squares (for the global gradient norm) and the AdamW update
//! (`shaders/optim.wgsl`).

use super::context::{todo, Gpu, WgpuBuffer};
use crate::backend::AdamW;
use crate::error::Result;

pub(super) fn sum_squares(
    _g: &Gpu,
    _x: &WgpuBuffer,
    _out: &WgpuBuffer,
    _accumulate: bool,
) -> Result<()> {
    Err(todo("sum_squares"))
}

/// `bufs` is `[param, grad, m, v]`; `clip` is `(norm_sq, max_norm)`.
pub(super) fn adamw_step(
    _g: &Gpu,
    _p: &AdamW,
    _bufs: [&WgpuBuffer; 4],
    _clip: Option<(&WgpuBuffer, f32)>,
) -> Result<()> {
    Err(todo("adamw_step"))
}
