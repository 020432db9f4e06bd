//! ode: fused Runge–Kutta stage, Dopri5 error norm and step control (`kernels/ode.cu`).

use cudarc::driver::LaunchConfig;

use super::context::{n32, Arg, CudaBuffer};
use super::CudaBackend;
use crate::backend::kernels::OdeKernels;
use crate::error::{Error, Result};

/// The kernels' `OdeCoeffs`: up to eight stage weights, passed by value.
fn coeffs(c: &[f32]) -> Result<Arg> {
    if c.len() > 8 {
        return Err(Error::Invalid(format!(
            "cuda ode: {} stage coefficients exceed the kernel's 8",
            c.len()
        )));
    }
    let mut all = [0.0f32; 8];
    all[..c.len()].copy_from_slice(c);
    Ok(Arg::C(all))
}

/// One warp per sample, eight samples per block.
fn per_sample_grid(samples: u32) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (samples.div_ceil(8), 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    }
}

impl OdeKernels for CudaBackend {
    fn ode_stage(
        &self, [x, k, h]: [&CudaBuffer; 3], c: &[f32], per_sample: usize, out: &mut CudaBuffer,
    ) -> Result<()> {
        let g = &self.gpu;
        let n = n32(x.len())?;
        n32(k.len())?;
        let args = [
            x.arg(),
            k.arg(),
            h.arg(),
            out.arg(),
            coeffs(c)?,
            Arg::U(c.len() as u32),
            Arg::U(n),
            Arg::U(n32(per_sample)?),
        ];
        g.launch_1d("ode_stage", n, &args)
    }

    fn dopri5_error(
        &self, [x, x_new, k, h]: [&CudaBuffer; 4], c: &[f32],
        (per_sample, (rtol, atol)): (usize, (f32, f32)), err: &mut CudaBuffer,
    ) -> Result<()> {
        let g = &self.gpu;
        let samples = n32(err.len())?;
        if samples == 0 {
            return Ok(());
        }
        n32(k.len())?;
        let args = [
            x.arg(),
            x_new.arg(),
            k.arg(),
            h.arg(),
            err.arg(),
            coeffs(c)?,
            Arg::U(c.len() as u32),
            Arg::U(n32(x.len())?),
            Arg::U(n32(per_sample)?),
            Arg::F(rtol),
            Arg::F(atol),
        ];
        g.launch("dopri5_error", per_sample_grid(samples), &args)
    }

    fn dopri5_accept(
        &self, [x_new, err]: [&CudaBuffer; 2], [x, t, h]: [&mut CudaBuffer; 3], per_sample: usize,
        t_end: f32,
    ) -> Result<()> {
        let g = &self.gpu;
        let samples = n32(err.len())?;
        if samples == 0 {
            return Ok(());
        }
        n32(x.len())?;
        let args = [
            x.arg(),
            x_new.arg(),
            err.arg(),
            t.arg(),
            h.arg(),
            Arg::U(samples),
            Arg::U(n32(per_sample)?),
            Arg::F(t_end),
        ];
        g.launch("dopri5_accept", per_sample_grid(samples), &args)
    }
}
