//! memory: fill, column-block copies, row gathers and scatters (`shaders/memory.wgsl`).

use super::context::{groups, Gpu, Kernel, WgpuBuffer};
use crate::backend::CopyCols;
use crate::error::Result;

const fn k(entry: &'static str) -> Kernel {
    Kernel {
        shader: "memory",
        entry,
    }
}

pub(super) fn fill(g: &Gpu, dst: &WgpuBuffer, value: f32) -> Result<()> {
    let n = dst.len();
    g.dispatch(
        k("fill"),
        &[n as u32, value.to_bits()],
        &[dst],
        groups(n, 256)?,
    )
}

pub(super) fn copy_cols(g: &Gpu, p: &CopyCols, src: &WgpuBuffer, dst: &WgpuBuffer) -> Result<()> {
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
    g.dispatch(
        k("copy_cols"),
        &params,
        &[src, dst],
        groups(p.rows * p.width, 256)?,
    )
}

fn rows(
    g: &Gpu,
    entry: &'static str,
    (src, idx, dst): (&WgpuBuffer, &WgpuBuffer, &WgpuBuffer),
    row_len: usize,
    table_rows: usize,
) -> Result<()> {
    let n = idx.len() * row_len;
    let params = [n as u32, row_len as u32, table_rows as u32];
    g.dispatch(k(entry), &params, &[src, idx, dst], groups(n, 256)?)
}

pub(super) fn gather_rows(
    g: &Gpu,
    src: &WgpuBuffer,
    idx: &WgpuBuffer,
    row_len: usize,
    dst: &WgpuBuffer,
) -> Result<()> {
    rows(
        g,
        "gather_rows",
        (src, idx, dst),
        row_len,
        src.len() / row_len,
    )
}

pub(super) fn scatter_rows(
    g: &Gpu,
    src: &WgpuBuffer,
    idx: &WgpuBuffer,
    row_len: usize,
    dst: &WgpuBuffer,
) -> Result<()> {
    rows(
        g,
        "scatter_rows",
        (src, idx, dst),
        row_len,
        dst.len() / row_len,
    )
}
