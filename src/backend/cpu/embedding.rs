//! embedding: deterministic scatter-add backward of lookups, and Fourier features.
use std::cell::Cell;
use std::f32::consts::TAU;

use rayon::prelude::*;

use super::loss::{lanes_sum, PAR_BLOCK};
use crate::error::{Error, Result};

/// Output elements per parallel block of the Fourier kernels: each costs a libm sin/cos, about
/// sixteen times a simple element, so their blocks are that much shorter.
const TRIG_BLOCK: usize = PAR_BLOCK / 16;

thread_local! {
    /// `embedding_bwd`'s counting sort: row boundaries and the positions of the ids grouped
    /// by row. Taken out for a call and put back after, so a reentrant call (rayon runs other
    /// jobs while a thread waits) gets fresh vectors instead of a borrow panic.
    static BUCKETS: Cell<(Vec<usize>, Vec<u32>)> = const { Cell::new((Vec::new(), Vec::new())) };
    /// `fourier_bwd`'s per-row factors, transposed to `[half, rows]`.
    static FOURIER_G: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
}

/// Groups the positions of `ids` by row, in order of position (a stable counting sort):
/// row `r`'s positions are `order[starts[r]..starts[r + 1]]`. Errors on an id past the table.
fn bucket(ids: &[u32], rows: usize, starts: &mut Vec<usize>, order: &mut Vec<u32>) -> Result<()> {
    starts.clear();
    starts.resize(rows + 1, 0);
    for &id in ids {
        let slot = starts.get_mut(id as usize + 1).ok_or_else(|| {
            Error::Invalid(format!(
                "embedding_bwd: id {id} is past the table's {rows} rows"
            ))
        })?;
        *slot += 1;
    }
    // starts[r + 1] becomes row r's first slot and then, as the cursor of its row moves
    // during placement, row r's end, which is row r + 1's start.
    let mut first = 0;
    for slot in &mut starts[1..] {
        (*slot, first) = (first, first + *slot);
    }
    order.resize(ids.len(), 0);
    for (i, &id) in ids.iter().enumerate() {
        let cursor = &mut starts[id as usize + 1];
        order[*cursor] = i as u32;
        *cursor += 1;
    }
    Ok(())
}

/// Errors (Error::Invalid) on an id past the table, before writing anything.
pub fn embedding_bwd(
    dout: &[f32],
    ids: &[u32],
    dim: usize,
    dtable: &mut [f32],
    accumulate: bool,
) -> Result<()> {
    if dim == 0 || !dtable.len().is_multiple_of(dim) {
        return Err(Error::Shape(format!(
            "embedding_bwd: dtable's {} elements are not rows of {dim}",
            dtable.len()
        )));
    }
    let (mut starts, mut order) = BUCKETS.take();
    let bucketed = bucket(ids, dtable.len() / dim, &mut starts, &mut order);
    if bucketed.is_ok() {
        // Each row is owned by one task and sums its ids in order: deterministic, no atomics.
        let row_grad = |r: usize, row: &mut [f32]| {
            if !accumulate {
                row.fill(0.0);
            }
            for &i in &order[starts[r]..starts[r + 1]] {
                let src = &dout[i as usize * dim..][..dim];
                for (d, &s) in row.iter_mut().zip(src) {
                    *d += s;
                }
            }
        };
        if dout.len() > PAR_BLOCK {
            dtable
                .par_chunks_mut(dim)
                .enumerate()
                .for_each(|(r, row)| row_grad(r, row));
        } else {
            for (r, row) in dtable.chunks_mut(dim).enumerate() {
                row_grad(r, row);
            }
        }
    }
    BUCKETS.set((starts, order));
    bucketed
}

/// `z = 2π · Σ_i x[i] · freqs[i, j]` for one row `x` of the input.
fn phase(x: &[f32], freqs: &[f32], half: usize, j: usize) -> f32 {
    let dot: f32 = x
        .iter()
        .zip(freqs[j..].iter().step_by(half))
        .map(|(&x, &f)| x * f)
        .sum();
    TAU * dot
}

pub fn fourier_fwd(
    x: &[f32],
    freqs: &[f32],
    rows: usize,
    in_dim: usize,
    half: usize,
    out: &mut [f32],
) {
    if rows == 0 || half == 0 {
        return;
    }
    let block = |first_row: usize, out: &mut [f32]| {
        for (r, out) in out.chunks_mut(2 * half).enumerate() {
            let x = &x[(first_row + r) * in_dim..][..in_dim];
            let (sin, cos) = out.split_at_mut(half);
            for (j, (s, c)) in sin.iter_mut().zip(cos).enumerate() {
                (*s, *c) = phase(x, freqs, half, j).sin_cos();
            }
        }
    };
    if out.len() > TRIG_BLOCK {
        let block_rows = (TRIG_BLOCK / (2 * half)).max(1);
        out.par_chunks_mut(block_rows * 2 * half)
            .enumerate()
            .for_each(|(b, out)| block(b * block_rows, out));
    } else {
        block(0, out);
    }
}

/// Two passes: the per-row factors `g[j, r] = cos z · dsin − sin z · dcos` (all the
/// transcendental work, parallel over columns and row blocks), then each `dfreqs[i, j] =
/// 2π Σ_r x[r, i] g[j, r]` as one f64 reduction over rows in order, each element owned by one task.
#[allow(clippy::too_many_arguments)]
pub fn fourier_bwd(
    x: &[f32],
    freqs: &[f32],
    dout: &[f32],
    rows: usize,
    in_dim: usize,
    half: usize,
    dfreqs: &mut [f32],
    accumulate: bool,
) {
    let mut g = FOURIER_G.take();
    g.resize(rows * half, 0.0);
    let factors = |j: usize, first_row: usize, g: &mut [f32]| {
        for (r, g) in (first_row..).zip(g) {
            let (sin, cos) = phase(&x[r * in_dim..][..in_dim], freqs, half, j).sin_cos();
            let d = &dout[r * 2 * half..][..2 * half];
            *g = cos * d[j] - sin * d[half + j];
        }
    };
    let parallel = rows * half > TRIG_BLOCK;
    if parallel {
        g.par_chunks_mut(rows).enumerate().for_each(|(j, g)| {
            g.par_chunks_mut(TRIG_BLOCK)
                .enumerate()
                .for_each(|(b, g)| factors(j, b * TRIG_BLOCK, g))
        });
    } else {
        for (j, g) in g.chunks_mut(rows.max(1)).enumerate() {
            factors(j, 0, g);
        }
    }

    let grad = |idx: usize, d: &mut f32| {
        let (i, g) = (idx / half, &g[idx % half * rows..][..rows]);
        let sum =
            std::f64::consts::TAU * lanes_sum(rows, |r| x[r * in_dim + i] as f64 * g[r] as f64);
        *d = if accumulate {
            (*d as f64 + sum) as f32
        } else {
            sum as f32
        };
    };
    if parallel {
        dfreqs
            .par_iter_mut()
            .enumerate()
            .for_each(|(idx, d)| grad(idx, d));
    } else {
        dfreqs
            .iter_mut()
            .enumerate()
            .for_each(|(idx, d)| grad(idx, d));
    }
    FOURIER_G.set(g);
}
