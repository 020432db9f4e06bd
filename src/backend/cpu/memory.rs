//! memory: copies, fills, row gathers and scatters.
//!
//! These are bandwidth-bound; below a few hundred KiB the rayon hand-off costs more than a second
//! core gains, so only large buffers are split.
use rayon::prelude::*;

use super::{CpuBackend, CpuBuffer};
use crate::backend::kernels::MemoryKernels;
use crate::backend::CopyCols;
use crate::error::Result;

/// Elements from which a second thread pays for itself.
const PAR_MIN: usize = 1 << 16;
/// Elements per parallel task.
const CHUNK: usize = 1 << 14;

pub fn copy<T: Copy + Send + Sync>(src: &[T], dst: &mut [T]) {
    if dst.len() < PAR_MIN {
        dst.copy_from_slice(src);
    } else {
        dst.par_chunks_mut(CHUNK)
            .zip(src.par_chunks(CHUNK))
            .for_each(|(d, s)| d.copy_from_slice(s));
    }
}

/// The caller has checked that every row's block lies inside its buffer and its stride.
pub fn copy_cols(p: &CopyCols, src: &[f32], dst: &mut [f32]) {
    if p.rows == 0 || p.width == 0 {
        return;
    }
    let row = |(d, s): (&mut [f32], &[f32])| {
        let d = &mut d[p.dst_offset..p.dst_offset + p.width];
        let s = &s[p.src_offset..p.src_offset + p.width];
        if p.accumulate {
            d.iter_mut().zip(s).for_each(|(d, s)| *d += s);
        } else {
            d.copy_from_slice(s);
        }
    };
    // The last row may be shorter than its stride, so rows come from `chunks`, not `chunks_exact`.
    if p.rows * p.width < PAR_MIN {
        dst.chunks_mut(p.dst_stride).take(p.rows).zip(src.chunks(p.src_stride)).for_each(row);
    } else {
        dst.par_chunks_mut(p.dst_stride)
            .take(p.rows)
            .zip(src.par_chunks(p.src_stride))
            .with_min_len(CHUNK.div_ceil(p.width))
            .for_each(row);
    }
}

pub fn fill(dst: &mut [f32], value: f32) {
    if dst.len() < PAR_MIN {
        dst.fill(value);
    } else {
        dst.par_chunks_mut(CHUNK).for_each(|d| d.fill(value));
    }
}

/// Every index names a row of `src` (checked by the caller).
pub fn gather_rows(src: &[f32], idx: &[u32], row_len: usize, dst: &mut [f32]) {
    let row = |(d, &r): (&mut [f32], &u32)| {
        let r = r as usize;
        d.copy_from_slice(&src[r * row_len..(r + 1) * row_len]);
    };
    if dst.len() < PAR_MIN {
        dst.chunks_exact_mut(row_len).zip(idx).for_each(row);
    } else {
        dst.par_chunks_exact_mut(row_len)
            .zip(idx)
            .with_min_len(CHUNK.div_ceil(row_len))
            .for_each(row);
    }
}

/// Every index names a row of `dst`, none twice (checked by the caller). Sequential: parallel
/// writes through indices would need unchecked aliasing, and a row copy is bandwidth-bound.
pub fn scatter_rows(src: &[f32], idx: &[u32], row_len: usize, dst: &mut [f32]) {
    for (s, &r) in src.chunks_exact(row_len).zip(idx) {
        let r = r as usize;
        dst[r * row_len..(r + 1) * row_len].copy_from_slice(s);
    }
}

impl MemoryKernels for CpuBackend {
    fn copy_cols(&self, p: &CopyCols, src: &CpuBuffer, dst: &mut CpuBuffer) -> Result<()> {
        copy_cols(p, src.f32(), dst.f32_mut());
        Ok(())
    }

    fn fill(&self, dst: &mut CpuBuffer, value: f32) -> Result<()> {
        fill(dst.f32_mut(), value);
        Ok(())
    }

    fn gather_rows(
        &self, src: &CpuBuffer, idx: &CpuBuffer, row_len: usize, dst: &mut CpuBuffer,
    ) -> Result<()> {
        gather_rows(src.f32(), idx.u32(), row_len, dst.f32_mut());
        Ok(())
    }

    fn scatter_rows(
        &self, src: &CpuBuffer, idx: &CpuBuffer, row_len: usize, dst: &mut CpuBuffer,
    ) -> Result<()> {
        scatter_rows(src.f32(), idx.u32(), row_len, dst.f32_mut());
        Ok(())
    }
}
