//! ode: fused Runge–Kutta stage, Dopri5 error norm and step control (`shaders/ode.wgsl`).

use super::context::{groups, Kernel, WgpuBuffer};
use super::WgpuBackend;
use crate::backend::kernels::OdeKernels;
use crate::error::{Error, Result};

const fn k(entry: &'static str) -> Kernel {
    Kernel { shader: "ode", entry }
}

/// Stage coefficients the parameter block holds (two vec4s).
const MAX_STAGES: usize = 8;

/// An accepted step that ends this close to `t_end` (relative to `max(|t_end|, 1)`) lands on
/// it exactly, as in the CPU backend.
const T_SNAP: f32 = 1e-6;

/// The shader's `OdeParams`: `[n, per_sample, count, samples, c0..c7, rtol, atol]`.
fn ode_params(
    entry: &str, n: usize, per_sample: usize, coeffs: &[f32], (rtol, atol): (f32, f32),
) -> Result<[u32; 14]> {
    if coeffs.len() > MAX_STAGES {
        return Err(Error::Invalid(format!(
            "{entry}: {} coefficients, the wgpu kernel takes at most {MAX_STAGES}",
            coeffs.len()
        )));
    }
    let mut p = [0u32; 14];
    p[..4].copy_from_slice(&[n, per_sample, coeffs.len(), n / per_sample].map(|v| v as u32));
    for (w, c) in p[4..].iter_mut().zip(coeffs) {
        *w = c.to_bits();
    }
    p[12] = rtol.to_bits();
    p[13] = atol.to_bits();
    Ok(p)
}

impl OdeKernels for WgpuBackend {
    fn ode_stage(
        &self, [x, kb, h]: [&WgpuBuffer; 3], coeffs: &[f32], per_sample: usize,
        out: &mut WgpuBuffer,
    ) -> Result<()> {
        let g = &self.gpu;
        let n = x.len();
        let params = ode_params("ode_stage", n, per_sample, coeffs, (0.0, 0.0))?;
        g.dispatch(k("ode_stage"), &params, &[x, kb, h, out], groups(n, 256)?)
    }

    /// One workgroup of 64 per sample (the shader says why).
    fn dopri5_error(
        &self, [x, x_new, kb, h]: [&WgpuBuffer; 4], err_coeffs: &[f32],
        (per_sample, tol): (usize, (f32, f32)), err: &mut WgpuBuffer,
    ) -> Result<()> {
        let g = &self.gpu;
        let n = x.len();
        let params = ode_params("dopri5_error", n, per_sample, err_coeffs, tol)?;
        g.dispatch(k("dopri5_error"), &params, &[x, x_new, kb, h, err], groups(n / per_sample, 1)?)
    }

    /// Two kernels: the accepted samples' copy of `x_new` (per element, reading the old `h`),
    /// then the new `t` and `h` (per sample).
    fn dopri5_accept(
        &self, [x_new, err]: [&WgpuBuffer; 2], [x, t, h]: [&mut WgpuBuffer; 3], per_sample: usize,
        t_end: f32,
    ) -> Result<()> {
        let g = &self.gpu;
        let n = x.len();
        let samples = n / per_sample;
        let snap = T_SNAP * t_end.abs().max(1.0);
        let params = [n as u32, per_sample as u32, samples as u32, t_end.to_bits(), snap.to_bits()];
        g.dispatch(k("accept_x"), &params, &[x, x_new, err, h], groups(n, 256)?)?;
        g.dispatch(k("accept_clock"), &params, &[err, t, h], groups(samples, 256)?)
    }
}
