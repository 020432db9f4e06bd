//! elementwise: add, scale, axpy, ReLU (`shaders/elementwise.wgsl`).

use super::context::{groups, Gpu, Kernel, WgpuBuffer};
use crate::error::Result;

/// One thread per element of `bufs`' last buffer, the output.
fn launch(
    g: &Gpu,
    entry: &'static str,
    alpha: f32,
    accumulate: bool,
    bufs: &[&WgpuBuffer],
) -> Result<()> {
    let n = bufs[bufs.len() - 1].len();
    let k = Kernel {
        shader: "elementwise",
        entry,
    };
    g.dispatch(
        k,
        &[n as u32, alpha.to_bits(), accumulate as u32],
        bufs,
        groups(n, 256)?,
    )
}

pub(super) fn add(g: &Gpu, a: &WgpuBuffer, b: &WgpuBuffer, out: &WgpuBuffer) -> Result<()> {
    launch(g, "add", 0.0, false, &[a, b, out])
}

pub(super) fn scale(g: &Gpu, x: &WgpuBuffer, alpha: f32, out: &WgpuBuffer) -> Result<()> {
    launch(g, "scale", alpha, false, &[x, out])
}

pub(super) fn axpy(g: &Gpu, alpha: f32, x: &WgpuBuffer, y: &WgpuBuffer) -> Result<()> {
    launch(g, "axpy", alpha, false, &[x, y])
}

pub(super) fn relu_fwd(g: &Gpu, x: &WgpuBuffer, out: &WgpuBuffer) -> Result<()> {
    launch(g, "relu_fwd", 0.0, false, &[x, out])
}

pub(super) fn relu_bwd(
    g: &Gpu,
    y: &WgpuBuffer,
    dy: &WgpuBuffer,
    dx: &WgpuBuffer,
    accumulate: bool,
) -> Result<()> {
    launch(g, "relu_bwd", 0.0, accumulate, &[y, dy, dx])
}
