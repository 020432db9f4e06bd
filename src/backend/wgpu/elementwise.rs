//! elementwise: add, scale, axpy, ReLU (`shaders/elementwise.wgsl`).

use super::context::{groups, Gpu, Kernel, WgpuBuffer};
use super::WgpuBackend;
use crate::backend::kernels::ElementwiseKernels;
use crate::error::Result;

/// One thread per element of `bufs`' last buffer, the output.
fn launch(
    g: &Gpu, entry: &'static str, alpha: f32, accumulate: bool, bufs: &[&WgpuBuffer],
) -> Result<()> {
    let n = bufs[bufs.len() - 1].len();
    let k = Kernel { shader: "elementwise", entry };
    g.dispatch(k, &[n as u32, alpha.to_bits(), accumulate as u32], bufs, groups(n, 256)?)
}

impl ElementwiseKernels for WgpuBackend {
    fn add(&self, a: &WgpuBuffer, b: &WgpuBuffer, out: &mut WgpuBuffer) -> Result<()> {
        let g = &self.gpu;
        launch(g, "add", 0.0, false, &[a, b, out])
    }

    fn scale(&self, x: &WgpuBuffer, alpha: f32, out: &mut WgpuBuffer) -> Result<()> {
        let g = &self.gpu;
        launch(g, "scale", alpha, false, &[x, out])
    }

    fn axpy(&self, alpha: f32, x: &WgpuBuffer, y: &mut WgpuBuffer) -> Result<()> {
        let g = &self.gpu;
        launch(g, "axpy", alpha, false, &[x, y])
    }

    fn relu_fwd(&self, x: &WgpuBuffer, out: &mut WgpuBuffer) -> Result<()> {
        let g = &self.gpu;
        launch(g, "relu_fwd", 0.0, false, &[x, out])
    }

    fn relu_bwd(
        &self, y: &WgpuBuffer, dy: &WgpuBuffer, dx: &mut WgpuBuffer, accumulate: bool,
    ) -> Result<()> {
        let g = &self.gpu;
        launch(g, "relu_bwd", 0.0, accumulate, &[y, dy, dx])
    }
}
