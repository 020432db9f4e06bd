//! ode: fused Runge–Kutta stage, Dopri5 error norm and step control (`shaders/ode.wgsl`).

use super::context::{todo, Gpu, WgpuBuffer};
use crate::error::Result;

pub(super) fn ode_stage(
    _g: &Gpu,
    _x: &WgpuBuffer,
    _k: &WgpuBuffer,
    _coeffs: &[f32],
    _h: &WgpuBuffer,
    _per_sample: usize,
    _out: &WgpuBuffer,
) -> Result<()> {
    Err(todo("ode_stage"))
}

/// `inputs` is `[x, x_new, k, h]`, `tol` is `(rtol, atol)`.
pub(super) fn dopri5_error(
    _g: &Gpu,
    _inputs: [&WgpuBuffer; 4],
    _err_coeffs: &[f32],
    _per_sample: usize,
    _tol: (f32, f32),
    _err: &WgpuBuffer,
) -> Result<()> {
    Err(todo("dopri5_error"))
}

/// `state` is `[x, x_new, err]`, `clock` is `[t, h]`.
pub(super) fn dopri5_accept(
    _g: &Gpu,
    _state: [&WgpuBuffer; 3],
    _clock: [&WgpuBuffer; 2],
    _per_sample: usize,
    _t_end: f32,
) -> Result<()> {
    Err(todo("dopri5_accept"))
}
