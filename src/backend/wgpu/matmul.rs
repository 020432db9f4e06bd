//! matmul: batched GEMM with epilogue, bias gradient (`shaders/matmul.wgsl`).

use super::context::{todo, Gpu, WgpuBuffer};
use crate::backend::Gemm;
use crate::error::Result;

pub(super) fn gemm(
    _g: &Gpu,
    _p: &Gemm,
    _a: &WgpuBuffer,
    _b: &WgpuBuffer,
    _bias: Option<&WgpuBuffer>,
    _c: &WgpuBuffer,
) -> Result<()> {
    Err(todo("gemm"))
}

pub(super) fn bias_grad(
    _g: &Gpu,
    _dy: &WgpuBuffer,
    _rows: usize,
    _cols: usize,
    _db: &WgpuBuffer,
    _accumulate: bool,
) -> Result<()> {
    Err(todo("bias_grad"))
}
