//! loss: binary cross-entropy with logits and sum reductions, and the fixed-order reduction
//! and blocking scheme the other CPU kernel families share.
use std::ops::Range;

use super::{CpuBackend, CpuBuffer};
use crate::backend::kernels::LossKernels;
use crate::error::Result;
use rayon::prelude::*;

/// Elements in one unit of parallel work. rayon's fork-join costs a few microseconds, about
/// what one thread spends on this many simple elements, so a kernel runs in parallel only when
/// its input spans more than one block.
pub(super) const PAR_BLOCK: usize = 1 << 15;

/// Most blocks a reduction splits into, so that their partial sums live on the stack.
const MAX_BLOCKS: usize = 64;

/// Block length of a reduction over `n` elements. It depends on `n` only, never on the thread
/// count, so the summation order (and every bit of the result) is the same run to run.
fn reduction_block(n: usize) -> usize {
    n.div_ceil(MAX_BLOCKS).max(PAR_BLOCK)
}

/// Elements per parallel block for per-sample kernels: whole samples, about `PAR_BLOCK` elements.
pub(super) fn sample_block(per_sample: usize) -> usize {
    per_sample * (PAR_BLOCK / per_sample).max(1)
}

/// `Σ_i term([inputs[0][i], inputs[1][i], ..])` over equal-length inputs, in f64 over 8
/// interleaved lanes combined in a fixed tree. Slicing each input once per 8 elements lets the
/// compiler drop the bounds checks and vectorise the lanes (an index closure defeats both).
#[inline(always)]
pub(super) fn lanes_sum<const K: usize>(
    inputs: [&[f32]; K], mut term: impl FnMut([f32; K]) -> f64,
) -> f64 {
    let len = inputs.first().map_or(0, |s| s.len());
    let mut lanes = [0.0f64; 8];
    let full = len - len % 8;
    for base in (0..full).step_by(8) {
        let chunk = inputs.map(|s| &s[base..base + 8]);
        for (l, lane) in lanes.iter_mut().enumerate() {
            *lane += term(chunk.map(|s| s[l]));
        }
    }
    let tail = (full..len).map(|i| term(inputs.map(|s| s[i]))).sum();
    fold_lanes(lanes, tail)
}

/// As [`lanes_sum`] for a term that also yields one output per element: `term` returns
/// `(out[i], summand)`.
pub(super) fn lanes_sum_mut<const K: usize>(
    inputs: [&[f32]; K], out: &mut [f32], mut term: impl FnMut([f32; K]) -> (f32, f64),
) -> f64 {
    let mut lanes = [0.0f64; 8];
    let full = out.len() - out.len() % 8;
    let (body, rest) = out.split_at_mut(full);
    for (c, out) in body.chunks_exact_mut(8).enumerate() {
        let chunk = inputs.map(|s| &s[c * 8..c * 8 + 8]);
        for (l, (lane, o)) in lanes.iter_mut().zip(out).enumerate() {
            let summand;
            (*o, summand) = term(chunk.map(|s| s[l]));
            *lane += summand;
        }
    }
    let mut tail = 0.0;
    for (i, o) in (full..).zip(rest) {
        let summand;
        (*o, summand) = term(inputs.map(|s| s[i]));
        tail += summand;
    }
    fold_lanes(lanes, tail)
}

#[inline(always)]
fn fold_lanes([a, b, c, d, e, f, g, h]: [f64; 8], tail: f64) -> f64 {
    ((a + e) + (b + f)) + ((c + g) + (d + h)) + tail
}

/// `Σ` over `0..n` split into blocks (see [`reduction_block`]): `block_sum` reduces one range,
/// blocks run in parallel when there are several (a single block stays on the calling thread,
/// as rayon only forks to split work), and their partial sums are added in order.
pub(super) fn sum_blocks(n: usize, block_sum: impl Fn(Range<usize>) -> f64 + Sync) -> f64 {
    let len = reduction_block(n);
    let mut partials = [0.0f64; MAX_BLOCKS];
    let partials = &mut partials[..n.div_ceil(len)];
    partials
        .par_iter_mut()
        .enumerate()
        .for_each(|(b, p)| *p = block_sum(b * len..((b + 1) * len).min(n)));
    partials.iter().sum()
}

/// As [`sum_blocks`] for a reduction that also writes one output per element:
/// `block_sum(start, out_block)` fills `out[start..start + out_block.len()]` and returns its sum.
pub(super) fn sum_blocks_mut(
    out: &mut [f32], block_sum: impl Fn(usize, &mut [f32]) -> f64 + Sync,
) -> f64 {
    let len = reduction_block(out.len());
    let mut partials = [0.0f64; MAX_BLOCKS];
    let partials = &mut partials[..out.len().div_ceil(len)];
    partials
        .par_iter_mut()
        .zip(out.par_chunks_mut(len))
        .enumerate()
        .for_each(|(b, (p, block))| *p = block_sum(b * len, block));
    partials.iter().sum()
}

pub fn bce_with_logits(logits: &[f32], targets: &[f32], loss: &mut [f32], dlogits: &mut [f32]) {
    let inv_n = 1.0 / logits.len().max(1) as f64;
    let grad_scale = inv_n as f32;
    let total = sum_blocks_mut(dlogits, |start, dz| {
        let r = start..start + dz.len();
        lanes_sum_mut([&logits[r.clone()], &targets[r]], dz, |[z, y]| {
            // e^-|z| never overflows; the loss is max(z, 0) - z y + ln(1 + e^-|z|), and
            // σ(z) is formed from the same e^-|z| on either side of 0.
            let e = (-z.abs()).exp();
            let sigmoid = if z >= 0.0 { 1.0 / (1.0 + e) } else { e / (1.0 + e) };
            let (z64, y64) = (z as f64, y as f64);
            let summand = z64.max(0.0) - z64 * y64 + e.ln_1p() as f64;
            ((sigmoid - y) * grad_scale, summand)
        })
    });
    loss[0] = (total * inv_n) as f32;
}

pub fn reduce_sum(x: &[f32], scale: f32, out: &mut [f32]) {
    let total = sum_blocks(x.len(), |r| lanes_sum([&x[r]], |[v]| v as f64));
    out[0] = (total * scale as f64) as f32;
}

impl LossKernels for CpuBackend {
    fn bce_with_logits(
        &self, logits: &CpuBuffer, targets: &CpuBuffer, [loss, dlogits]: [&mut CpuBuffer; 2],
    ) -> Result<()> {
        bce_with_logits(logits.f32(), targets.f32(), loss.f32_mut(), dlogits.f32_mut());
        Ok(())
    }

    fn reduce_sum(&self, x: &CpuBuffer, scale: f32, out: &mut CpuBuffer) -> Result<()> {
        reduce_sum(x.f32(), scale, out.f32_mut());
        Ok(())
    }
}
