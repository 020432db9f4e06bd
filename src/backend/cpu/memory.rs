//! memory: copies, fills, row gathers and scatters.
//!
//! These are bandwidth-bound; below a few hundred KiB the rayon hand-off costs more than a second
//! core gains, so only large buffers are split.
use rayon::prelude::*;

use crate::backend::CopyCols;
use crate::error::{Error, Result};

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
        dst.chunks_mut(p.dst_stride)
            .take(p.rows)
            .zip(src.chunks(p.src_stride))
            .for_each(row);
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

/// Checks that `buf` holds whole rows and that every index names one of them; returns the
/// row count. Nothing is written before this passes, so an error leaves the output untouched.
fn check_rows(what: &str, buf: &str, len: usize, idx: &[u32], row_len: usize) -> Result<usize> {
    if row_len == 0 {
        return Err(Error::Invalid(format!("{what}: row_len must be positive")));
    }
    if !len.is_multiple_of(row_len) {
        return Err(Error::Shape(format!(
            "{what}: {buf} has {len} elements, not a whole number of rows of {row_len}"
        )));
    }
    let rows = len / row_len;
    if let Some((i, &r)) = idx.iter().enumerate().find(|&(_, &r)| r as usize >= rows) {
        return Err(Error::Invalid(format!(
            "{what}: index {r} (idx[{i}]) is past the {rows} rows of {buf}"
        )));
    }
    Ok(rows)
}

/// Errors (Error::Invalid) on an index past `src`.
pub fn gather_rows(src: &[f32], idx: &[u32], row_len: usize, dst: &mut [f32]) -> Result<()> {
    check_rows("gather_rows", "src", src.len(), idx, row_len)?;
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
    Ok(())
}

/// Errors (Error::Invalid) on an index past `dst` or one named twice. Sequential: parallel
/// writes through indices would need unchecked aliasing, and a row copy is bandwidth-bound.
pub fn scatter_rows(src: &[f32], idx: &[u32], row_len: usize, dst: &mut [f32]) -> Result<()> {
    let rows = check_rows("scatter_rows", "dst", dst.len(), idx, row_len)?;
    let mut seen = vec![false; rows];
    for (i, &r) in idx.iter().enumerate() {
        if std::mem::replace(&mut seen[r as usize], true) {
            return Err(Error::Invalid(format!(
                "scatter_rows: index {r} (idx[{i}]) appears twice; indices must be distinct"
            )));
        }
    }
    for (s, &r) in src.chunks_exact(row_len).zip(idx) {
        let r = r as usize;
        dst[r * row_len..(r + 1) * row_len].copy_from_slice(s);
    }
    Ok(())
}
