//! matmul: batched GEMM with transposes, alpha/beta and a fused bias(+ReLU) epilogue.
use crate::backend::Gemm;
use crate::error::Result;

/// Checks every buffer is long enough for `p` (and that the epilogue has its bias).
pub fn check_gemm(
    p: &Gemm,
    a_len: usize,
    b_len: usize,
    bias_len: Option<usize>,
    c_len: usize,
) -> Result<()> {
    todo!()
}
pub fn gemm(p: &Gemm, a: &[f32], b: &[f32], bias: Option<&[f32]>, c: &mut [f32]) {
    todo!()
}
pub fn bias_grad(dy: &[f32], rows: usize, cols: usize, db: &mut [f32], accumulate: bool) {
    todo!()
}
