//! attention: flash-style multi-head attention forward and backward (`shaders/attention.wgsl`).

use super::context::{todo, Gpu, WgpuBuffer};
use crate::backend::Attention;
use crate::error::Result;

pub(super) fn attention_fwd(
    _g: &Gpu,
    _p: &Attention,
    _qkv: &WgpuBuffer,
    _mask: Option<&WgpuBuffer>,
    _out: &WgpuBuffer,
    _lse: &WgpuBuffer,
) -> Result<()> {
    Err(todo("attention_fwd"))
}

#[allow(clippy::too_many_arguments)]
pub(super) fn attention_bwd(
    _g: &Gpu,
    _p: &Attention,
    _qkv: &WgpuBuffer,
    _mask: Option<&WgpuBuffer>,
    _out: &WgpuBuffer,
    _lse: &WgpuBuffer,
    _dout: &WgpuBuffer,
    _dqkv: &WgpuBuffer,
) -> Result<()> {
    Err(todo("attention_bwd"))
}
