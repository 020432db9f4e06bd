//! ode: fused Runge–Kutta stage combinations and Dopri5 error control.
pub fn ode_stage(
    x: &[f32],
    k: &[f32],
    coeffs: &[f32],
    h: &[f32],
    per_sample: usize,
    out: &mut [f32],
) {
    todo!()
}
#[allow(clippy::too_many_arguments)]
pub fn dopri5_error(
    x: &[f32],
    x_new: &[f32],
    k: &[f32],
    err_coeffs: &[f32],
    h: &[f32],
    per_sample: usize,
    rtol: f32,
    atol: f32,
    err: &mut [f32],
) {
    todo!()
}
pub fn dopri5_accept(
    x: &mut [f32],
    x_new: &[f32],
    err: &[f32],
    t: &mut [f32],
    h: &mut [f32],
    per_sample: usize,
    t_end: f32,
) {
    todo!()
}
