//! random: Philox4x32-10 normal and uniform fills (`kernels/random.cu`).

use super::context::{n32, Arg, CudaBuffer};
use super::CudaBackend;
use crate::backend::kernels::RandomKernels;
use crate::error::Result;

impl RandomKernels for CudaBackend {
    /// One thread per Philox block of four numbers.
    fn normal_fill(&self, dst: &mut CudaBuffer, seed: u64, offset: u64) -> Result<()> {
        let g = &self.gpu;
        let n = n32(dst.len())?;
        let args = [dst.arg(), Arg::U(n), Arg::L(seed), Arg::L(offset)];
        g.launch_1d("normal_fill", n.div_ceil(4), &args)
    }

    fn uniform_fill(
        &self, dst: &mut CudaBuffer, seed: u64, offset: u64, (lo, hi): (f32, f32),
    ) -> Result<()> {
        let g = &self.gpu;
        let n = n32(dst.len())?;
        let args = [dst.arg(), Arg::U(n), Arg::L(seed), Arg::L(offset), Arg::F(lo), Arg::F(hi)];
        g.launch_1d("uniform_fill", n.div_ceil(4), &args)
    }
}
