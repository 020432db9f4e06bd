//! matmul: batched GEMM with transposes, alpha/beta and a fused bias(+ReLU) epilogue.
//!
//! The product comes from the `gemm` crate, which takes arbitrary row and column strides, so a
//! transpose is only a swap of strides. The work is cut into pieces whose boundaries depend on
//! the shape alone, never on the thread count, so results are bit-identical run to run:
//! - row blocks of C (the usual case: many tokens), each multiplied single-threaded and then put
//!   through the epilogue while it is still in cache (this beat the gemm crate's own threading
//!   on the 10100-row training shapes);
//! - for a small C with a long inner dimension (weight gradients, `K` = tokens), pieces of `K`
//!   whose partial products are added in a fixed order.
use std::cell::RefCell;

use gemm::Parallelism;
use rayon::prelude::*;

use super::{CpuBackend, CpuBuffer};
use crate::backend::check::gemm as check_gemm;
use crate::backend::kernels::MatmulKernels;
use crate::backend::{Epilogue, Gemm, Precision};
use crate::error::Result;

/// Rows of C per task: large enough to amortise packing op(B), small enough to keep the block
/// of C in L2 for the epilogue.
const BLOCK_ROWS: usize = 256;
/// Target length of a piece of `K` when the inner dimension is split.
const K_PIECE: usize = 2560;
/// Largest C (elements) for which splitting `K` beats splitting rows.
const SPLIT_K_MAX_C: usize = 256 * 256;

thread_local! {
    /// Partial products of the split-`K` path, reused across calls.
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Row and column strides of op(A), op(B) inside their row-major storage.
pub(super) struct Layout {
    pub a_rs: usize,
    pub a_cs: usize,
    pub b_rs: usize,
    pub b_cs: usize,
}

impl Layout {
    pub(super) fn of(p: &Gemm) -> Self {
        let (a_rs, a_cs) = if p.trans_a { (1, p.m) } else { (p.k, 1) };
        let (b_rs, b_cs) = if p.trans_b { (1, p.k) } else { (p.n, 1) };
        Layout { a_rs, a_cs, b_rs, b_cs }
    }
}

/// `c = alpha · op(A) · op(B) + beta · c` for a row-major `c` of `n` columns. `a` starts at
/// op(A)'s first row and `b` at op(B)'s first row, both at the first inner index.
///
/// # Safety
/// `a` and `b` must hold every element the layout and `rows × k`, `k × n` shapes reach.
#[allow(clippy::too_many_arguments)]
unsafe fn product(
    l: &Layout, rows: usize, n: usize, k: usize, a: *const f32, b: *const f32, alpha: f32,
    beta: f32, c: &mut [f32], parallelism: Parallelism,
) {
    debug_assert_eq!(c.len(), rows * n);
    // The gemm crate computes `dst = alpha·dst + beta·lhs·rhs`: its alpha/beta are ours swapped.
    gemm::gemm(
        rows,
        n,
        k,
        c.as_mut_ptr(),
        1,
        n as isize,
        beta != 0.0,
        a,
        l.a_cs as isize,
        l.a_rs as isize,
        b,
        l.b_cs as isize,
        l.b_rs as isize,
        beta,
        alpha,
        false,
        false,
        false,
        parallelism,
    );
}

/// Adds the bias to every row of `c` (then ReLU), for a block of whole rows.
fn epilogue(epilogue: Epilogue, bias: Option<&[f32]>, c: &mut [f32]) {
    let (Some(bias), true) = (bias, epilogue != Epilogue::None) else {
        return;
    };
    let relu = epilogue == Epilogue::BiasRelu;
    for row in c.chunks_exact_mut(bias.len()) {
        for (c, b) in row.iter_mut().zip(bias) {
            let v = *c + b;
            *c = if relu && v < 0.0 { 0.0 } else { v };
        }
    }
}

/// See [`Gemm`]. Panics on shapes [`check_gemm`] rejects, since the product reads through raw
/// pointers.
pub fn gemm(p: &Gemm, a: &[f32], b: &[f32], bias: Option<&[f32]>, c: &mut [f32]) {
    if let Err(e) = check_gemm(p, a.len(), b.len(), bias.map(<[f32]>::len), c.len()) {
        panic!("{e}");
    }
    if p.batch == 0 || p.m * p.n == 0 {
        return;
    }
    match p.precision {
        Precision::F32 => gemm_f32(p, a, b, bias, c),
        Precision::Bf16 => super::matmul_bf16::gemm(p, a, b, bias, c),
    }
}

/// [`gemm`] in f32, on shapes already checked and not empty.
pub(super) fn gemm_f32(p: &Gemm, a: &[f32], b: &[f32], bias: Option<&[f32]>, c: &mut [f32]) {
    let (m, n, k) = (p.m, p.n, p.k);
    if p.batch == 1 && m * n <= SPLIT_K_MAX_C && k >= 2 * K_PIECE {
        split_k(p, a, b, bias, &mut c[..m * n]);
    } else {
        row_blocks(p, a, b, bias, c);
    }
}

/// Cuts C into (batch, row block) tasks and runs them on the thread pool: `product(batch,
/// first row, lone, block of C)` fills a block (`lone`: it is the only task, so it may use the
/// threads itself), then the epilogue runs on it while it is still in cache.
pub(super) fn for_row_blocks(
    p: &Gemm, bias: Option<&[f32]>, c: &mut [f32],
    product: impl Fn(usize, usize, bool, &mut [f32]) + Sync,
) {
    let (m, n) = (p.m, p.n);
    let blocks = m.div_ceil(BLOCK_ROWS);
    // Blocks of equal size (rounded up to 8 rows), so no task is left with a sliver.
    let rows_per_block = m.div_ceil(blocks).next_multiple_of(8);
    let c_stride = if p.batch == 1 { m * n } else { p.stride_c };
    let lone = p.batch * blocks == 1;
    c.par_chunks_mut(c_stride)
        .take(p.batch)
        .enumerate()
        .flat_map(|(bi, cb)| {
            cb[..m * n]
                .par_chunks_mut(rows_per_block * n)
                .enumerate()
                .map(move |(blk, cblk)| (bi, blk * rows_per_block, cblk))
        })
        .for_each(|(bi, row0, cblk)| {
            product(bi, row0, lone, cblk);
            epilogue(p.epilogue, bias, cblk);
        });
}

/// One task per (batch, row block) of C. A lone task lets the gemm crate spread its tiles over
/// the threads instead; it splits only the output, never `K`, so the sums keep their order.
fn row_blocks(p: &Gemm, a: &[f32], b: &[f32], bias: Option<&[f32]>, c: &mut [f32]) {
    let (n, k) = (p.n, p.k);
    let l = Layout::of(p);
    for_row_blocks(p, bias, c, |bi, row0, lone, cblk| {
        let rows = cblk.len() / n;
        let a0 = bi * p.stride_a + row0 * l.a_rs;
        let b0 = bi * p.stride_b;
        let parallelism = if lone { Parallelism::Rayon(0) } else { Parallelism::None };
        // SAFETY: check_gemm proved every batch of A and B lies inside its slice, and this
        // block's rows are a subset of its batch's rows. With k = 0 nothing is read, and
        // `wrapping_add` keeps the unread pointer free of out-of-bounds arithmetic.
        unsafe {
            let (ap, bp) = (a.as_ptr().wrapping_add(a0), b.as_ptr().wrapping_add(b0));
            product(&l, rows, n, k, ap, bp, p.alpha, p.beta, cblk, parallelism);
        }
    });
}

/// Pieces of `K` multiplied in parallel: the first lands in C with the beta term, the others in
/// scratch, which is then added to C in piece order.
fn split_k(p: &Gemm, a: &[f32], b: &[f32], bias: Option<&[f32]>, c: &mut [f32]) {
    let (m, n, k) = (p.m, p.n, p.k);
    let l = Layout::of(p);
    let pieces = k.div_ceil(K_PIECE);
    let piece = k.div_ceil(pieces);
    let mn = m * n;
    // Taken out of the thread-local rather than borrowed: a rayon worker waiting in the join
    // below may pick up another GEMM, which then finds the slot empty and allocates its own.
    let mut scratch = SCRATCH.take();
    scratch.resize((pieces - 1) * mn, 0.0);
    let run = |i: usize, out: &mut [f32], beta: f32| {
        let k0 = i * piece;
        let kk = piece.min(k - k0);
        // SAFETY: check_gemm proved op(A) (m × k) and op(B) (k × n) lie inside `a`, `b`;
        // this piece reads inner indices k0..k0 + kk < k.
        unsafe {
            let (ap, bp) = (a.as_ptr().add(k0 * l.a_cs), b.as_ptr().add(k0 * l.b_rs));
            product(&l, m, n, kk, ap, bp, p.alpha, beta, out, Parallelism::None);
        }
    };
    rayon::join(
        || run(0, c, p.beta),
        || scratch.par_chunks_mut(mn).enumerate().for_each(|(i, out)| run(i + 1, out, 0.0)),
    );
    for part in scratch.chunks_exact(mn) {
        c.iter_mut().zip(part).for_each(|(c, s)| *c += s);
    }
    SCRATCH.set(scratch);
    epilogue(p.epilogue, bias, c);
}

/// Column sums in a fixed order: blocks of rows summed first, then the block sums in row order,
/// which keeps the rounding error near `(BLOCK + rows / BLOCK)·ε` instead of `rows·ε`. Tasks own
/// strips of columns, so no two threads touch one sum and nothing needs merging.
pub fn bias_grad(dy: &[f32], rows: usize, cols: usize, db: &mut [f32], accumulate: bool) {
    /// Columns per task: one cache line of f32.
    const STRIP: usize = 16;
    const BLOCK: usize = 64;
    let strip_sums = |j0: usize, out: &mut [f32]| {
        let w = out.len();
        let mut total = [0.0f32; STRIP];
        for block in dy[..rows * cols].chunks(BLOCK * cols) {
            let mut part = [0.0f32; STRIP];
            for row in block.chunks_exact(cols) {
                part[..w].iter_mut().zip(&row[j0..j0 + w]).for_each(|(s, &v)| *s += v);
            }
            total.iter_mut().zip(part).for_each(|(t, p)| *t += p);
        }
        for (o, t) in out.iter_mut().zip(total) {
            *o = if accumulate { *o + t } else { t };
        }
    };
    if rows * cols < 1 << 15 {
        db.chunks_mut(STRIP).enumerate().for_each(|(s, out)| strip_sums(s * STRIP, out));
    } else {
        db.par_chunks_mut(STRIP).enumerate().for_each(|(s, out)| strip_sums(s * STRIP, out));
    }
}

impl MatmulKernels for CpuBackend {
    fn supports_bf16(&self) -> bool {
        true
    }

    fn gemm(
        &self, p: &Gemm, [a, b]: [&CpuBuffer; 2], bias: Option<&CpuBuffer>, c: &mut CpuBuffer,
    ) -> Result<()> {
        gemm(p, a.f32(), b.f32(), bias.map(CpuBuffer::f32), c.f32_mut());
        Ok(())
    }

    fn bias_grad(
        &self, dy: &CpuBuffer, (rows, cols): (usize, usize), db: &mut CpuBuffer, acc: bool,
    ) -> Result<()> {
        bias_grad(dy.f32(), rows, cols, db.f32_mut(), acc);
        Ok(())
    }
}
