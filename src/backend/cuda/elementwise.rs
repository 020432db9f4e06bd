//! elementwise: add, scale, axpy, ReLU forward and backward (`kernels/elementwise.cu`).

use super::context::{n32, Arg, CudaBuffer};
use super::CudaBackend;
use crate::backend::kernels::ElementwiseKernels;
use crate::error::Result;

impl ElementwiseKernels for CudaBackend {
    fn add(&self, a: &CudaBuffer, b: &CudaBuffer, out: &mut CudaBuffer) -> Result<()> {
        let g = &self.gpu;
        let n = n32(a.len())?;
        let args = [a.arg(), b.arg(), out.arg(), Arg::U(n)];
        g.launch_1d("add", n, &args)
    }

    fn scale(&self, x: &CudaBuffer, alpha: f32, out: &mut CudaBuffer) -> Result<()> {
        let g = &self.gpu;
        let n = n32(x.len())?;
        let args = [x.arg(), out.arg(), Arg::U(n), Arg::F(alpha)];
        g.launch_1d("scale", n, &args)
    }

    fn axpy(&self, alpha: f32, x: &CudaBuffer, y: &mut CudaBuffer) -> Result<()> {
        let g = &self.gpu;
        let n = n32(x.len())?;
        let args = [x.arg(), y.arg(), Arg::U(n), Arg::F(alpha)];
        g.launch_1d("axpy", n, &args)
    }

    fn relu_fwd(&self, x: &CudaBuffer, out: &mut CudaBuffer) -> Result<()> {
        let g = &self.gpu;
        let n = n32(x.len())?;
        g.launch_1d("relu_fwd", n, &[x.arg(), out.arg(), Arg::U(n)])
    }

    fn relu_bwd(
        &self, y: &CudaBuffer, dy: &CudaBuffer, dx: &mut CudaBuffer, accumulate: bool,
    ) -> Result<()> {
        let g = &self.gpu;
        let n = n32(y.len())?;
        let args = [y.arg(), dy.arg(), dx.arg(), Arg::U(n), Arg::U(accumulate as u32)];
        g.launch_1d("relu_bwd", n, &args)
    }
}
