//! memory: fill, column-block copies, row gathers and scatters (`kernels/memory.cu`).

use super::context::{n32, Arg, CudaBuffer, Gpu};
use super::CudaBackend;
use crate::backend::kernels::MemoryKernels;
use crate::backend::CopyCols;
use crate::error::Result;

/// `table_rows` is the row count of the table side (the source of a gather, the destination
/// of a scatter): kernels skip an index past it.
fn rows(
    g: &Gpu, entry: &str, (src, idx, dst): (&CudaBuffer, &CudaBuffer, &CudaBuffer), row_len: usize,
    table_rows: usize,
) -> Result<()> {
    let n = n32(idx.len() * row_len)?;
    let args = [
        src.arg(),
        idx.arg(),
        dst.arg(),
        Arg::U(n),
        Arg::U(n32(row_len)?),
        Arg::U(n32(table_rows)?),
    ];
    g.launch_1d(entry, n, &args)
}

impl MemoryKernels for CudaBackend {
    fn copy_cols(&self, p: &CopyCols, src: &CudaBuffer, dst: &mut CudaBuffer) -> Result<()> {
        let g = &self.gpu;
        let n = n32(p.rows * p.width)?;
        let mut args = vec![src.arg(), dst.arg()];
        for v in [
            p.rows,
            p.width,
            p.src_stride,
            p.src_offset,
            p.dst_stride,
            p.dst_offset,
            p.accumulate as usize,
        ] {
            args.push(Arg::U(n32(v)?));
        }
        g.launch_1d("copy_cols", n, &args)
    }

    fn fill(&self, dst: &mut CudaBuffer, value: f32) -> Result<()> {
        let g = &self.gpu;
        let n = n32(dst.len())?;
        g.launch_1d("fill", n, &[dst.arg(), Arg::U(n), Arg::F(value)])
    }

    fn gather_rows(
        &self, src: &CudaBuffer, idx: &CudaBuffer, row_len: usize, dst: &mut CudaBuffer,
    ) -> Result<()> {
        let g = &self.gpu;
        let table = src.len() / row_len;
        rows(g, "gather_rows", (src, idx, dst), row_len, table)
    }

    fn scatter_rows(
        &self, src: &CudaBuffer, idx: &CudaBuffer, row_len: usize, dst: &mut CudaBuffer,
    ) -> Result<()> {
        let g = &self.gpu;
        let table = dst.len() / row_len;
        rows(g, "scatter_rows", (src, idx, dst), row_len, table)
    }
}
