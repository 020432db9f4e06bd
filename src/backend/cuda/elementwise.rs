//! elementwise: add, scale, axpy, ReLU forward and backward (`kernels/elementwise.cu`).

use super::context::{n32, Arg, CudaBuffer, Gpu};
use crate::error::Result;

pub(super) fn add(g: &Gpu, a: &CudaBuffer, b: &CudaBuffer, out: &CudaBuffer) -> Result<()> {
    let n = n32(a.len())?;
    let args = [
        Arg::P(a.ptr()),
        Arg::P(b.ptr()),
        Arg::P(out.ptr()),
        Arg::U(n),
    ];
    g.launch_1d("add", n, &args)
}

pub(super) fn scale(g: &Gpu, x: &CudaBuffer, alpha: f32, out: &CudaBuffer) -> Result<()> {
    let n = n32(x.len())?;
    let args = [Arg::P(x.ptr()), Arg::P(out.ptr()), Arg::U(n), Arg::F(alpha)];
    g.launch_1d("scale", n, &args)
}

pub(super) fn axpy(g: &Gpu, alpha: f32, x: &CudaBuffer, y: &CudaBuffer) -> Result<()> {
    let n = n32(x.len())?;
    let args = [Arg::P(x.ptr()), Arg::P(y.ptr()), Arg::U(n), Arg::F(alpha)];
    g.launch_1d("axpy", n, &args)
}

pub(super) fn relu_fwd(g: &Gpu, x: &CudaBuffer, out: &CudaBuffer) -> Result<()> {
    let n = n32(x.len())?;
    g.launch_1d(
        "relu_fwd",
        n,
        &[Arg::P(x.ptr()), Arg::P(out.ptr()), Arg::U(n)],
    )
}

pub(super) fn relu_bwd(
    g: &Gpu,
    y: &CudaBuffer,
    dy: &CudaBuffer,
    dx: &CudaBuffer,
    accumulate: bool,
) -> Result<()> {
    let n = n32(y.len())?;
    let args = [
        Arg::P(y.ptr()),
        Arg::P(dy.ptr()),
        Arg::P(dx.ptr()),
        Arg::U(n),
        Arg::U(accumulate as u32),
    ];
    g.launch_1d("relu_bwd", n, &args)
}
