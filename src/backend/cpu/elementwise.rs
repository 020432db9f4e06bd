//! elementwise: add, scale, axpy, ReLU.
pub fn add(a: &[f32], b: &[f32], out: &mut [f32]) {
    todo!()
}
pub fn scale(x: &[f32], alpha: f32, out: &mut [f32]) {
    todo!()
}
pub fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) {
    todo!()
}
pub fn relu_fwd(x: &[f32], out: &mut [f32]) {
    todo!()
}
pub fn relu_bwd(y: &[f32], dy: &[f32], dx: &mut [f32], accumulate: bool) {
    todo!()
}
