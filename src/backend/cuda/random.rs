//! random: Philox4x32-10 normal and uniform fills (`kernels/random.cu`).

use super::context::{n32, Arg, CudaBuffer, Gpu};
use crate::error::Result;

/// One thread per Philox block of four numbers.
pub(super) fn normal_fill(g: &Gpu, dst: &CudaBuffer, seed: u64, offset: u64) -> Result<()> {
    let n = n32(dst.len())?;
    let args = [Arg::P(dst.ptr()), Arg::U(n), Arg::L(seed), Arg::L(offset)];
    g.launch_1d("normal_fill", n.div_ceil(4), &args)
}

pub(super) fn uniform_fill(
    g: &Gpu,
    dst: &CudaBuffer,
    seed: u64,
    offset: u64,
    lo: f32,
    hi: f32,
) -> Result<()> {
    let n = n32(dst.len())?;
    let args = [
        Arg::P(dst.ptr()),
        Arg::U(n),
        Arg::L(seed),
        Arg::L(offset),
        Arg::F(lo),
        Arg::F(hi),
    ];
    g.launch_1d("uniform_fill", n.div_ceil(4), &args)
}
