//! optim: squared gradient norm and AdamW.
use crate::backend::AdamW;

pub fn sum_squares(x: &[f32], out: &mut [f32], accumulate: bool) {
    todo!()
}
pub fn adamw_step(
    p: &AdamW,
    param: &mut [f32],
    grad: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    clip: Option<(f32, f32)>,
) {
    todo!()
}
