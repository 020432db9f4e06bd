//! memory: fill, column-block copies, row gathers and scatters (`shaders/memory.wgsl`).

use super::context::{groups, Gpu, Kernel, WgpuBuffer};
use super::WgpuBackend;
use crate::backend::kernels::MemoryKernels;
use crate::backend::CopyCols;
use crate::error::Result;

const fn k(entry: &'static str) -> Kernel {
    Kernel { shader: "memory", entry }
}

fn rows(
    g: &Gpu, entry: &'static str, (src, idx, dst): (&WgpuBuffer, &WgpuBuffer, &WgpuBuffer),
    row_len: usize, table_rows: usize,
) -> Result<()> {
    let n = idx.len() * row_len;
    let params = [n as u32, row_len as u32, table_rows as u32];
    g.dispatch(k(entry), &params, &[src, idx, dst], groups(n, 256)?)
}

impl MemoryKernels for WgpuBackend {
    fn copy_cols(&self, p: &CopyCols, src: &WgpuBuffer, dst: &mut WgpuBuffer) -> Result<()> {
        let g = &self.gpu;
        let params = [
            p.rows,
            p.width,
            p.src_stride,
            p.src_offset,
            p.dst_stride,
            p.dst_offset,
            p.accumulate as usize,
        ]
        .map(|v| v as u32);
        g.dispatch(k("copy_cols"), &params, &[src, dst], groups(p.rows * p.width, 256)?)
    }

    fn fill(&self, dst: &mut WgpuBuffer, value: f32) -> Result<()> {
        let g = &self.gpu;
        let n = dst.len();
        g.dispatch(k("fill"), &[n as u32, value.to_bits()], &[dst], groups(n, 256)?)
    }

    fn gather_rows(
        &self, src: &WgpuBuffer, idx: &WgpuBuffer, row_len: usize, dst: &mut WgpuBuffer,
    ) -> Result<()> {
        let g = &self.gpu;
        rows(g, "gather_rows", (src, idx, dst), row_len, src.len() / row_len)
    }

    fn scatter_rows(
        &self, src: &WgpuBuffer, idx: &WgpuBuffer, row_len: usize, dst: &mut WgpuBuffer,
    ) -> Result<()> {
        let g = &self.gpu;
        rows(g, "scatter_rows", (src, idx, dst), row_len, dst.len() / row_len)
    }
}
