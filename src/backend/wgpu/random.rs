//! random: Philox4x32-10 normal and uniform fills (`shaders/random.wgsl`).

use super::context::{todo, Gpu, WgpuBuffer};
use crate::error::Result;

pub(super) fn normal_fill(_g: &Gpu, _dst: &WgpuBuffer, _seed: u64, _offset: u64) -> Result<()> {
    Err(todo("normal_fill"))
}

pub(super) fn uniform_fill(
    _g: &Gpu,
    _dst: &WgpuBuffer,
    _seed: u64,
    _offset: u64,
    _lo: f32,
    _hi: f32,
) -> Result<()> {
    Err(todo("uniform_fill"))
}
