//! random: Philox4x32-10 normal and uniform fills (`shaders/random.wgsl`).
//!
//! One invocation per 4-word Philox block. The stream is the one `Backend::normal_fill` defines
//! and `src/backend/cpu/random.rs` computes: uniforms match the CPU backend bit for bit, normals
//! to a few ulps (the shader's own log and sin/cos against the host's libm).

use super::context::{groups, Gpu, Kernel, WgpuBuffer};
use super::loss::ONE;
use super::WgpuBackend;
use crate::backend::kernels::RandomKernels;
use crate::error::Result;

fn fill(
    g: &Gpu, entry: &'static str, dst: &WgpuBuffer, seed: u64, offset: u64, lo: f32, hi: f32,
) -> Result<()> {
    // A buffer holds at most 2^31 elements (`MAX_ELEMENTS`), so n and 4 · blocks fit the
    // kernel's u32.
    let n = dst.len();
    let params = [
        n as u32,
        seed as u32,
        (seed >> 32) as u32,
        offset as u32,
        (offset >> 32) as u32,
        lo.to_bits(),
        // hi - lo in f32 on the host, exactly as the CPU backend forms it.
        (hi - lo).to_bits(),
        0,
        ONE,
    ];
    let k = Kernel { shader: "random", entry };
    g.dispatch(k, &params, &[dst], groups(n.div_ceil(4), 256)?)
}

impl RandomKernels for WgpuBackend {
    fn normal_fill(&self, dst: &mut WgpuBuffer, seed: u64, offset: u64) -> Result<()> {
        let g = &self.gpu;
        fill(g, "normal_fill", dst, seed, offset, 0.0, 1.0)
    }

    fn uniform_fill(
        &self, dst: &mut WgpuBuffer, seed: u64, offset: u64, (lo, hi): (f32, f32),
    ) -> Result<()> {
        let g = &self.gpu;
        fill(g, "uniform_fill", dst, seed, offset, lo, hi)
    }
}
