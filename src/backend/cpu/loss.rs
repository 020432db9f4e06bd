//! loss: binary cross-entropy with logits and sum reductions, and the fixed-order reduction
//! and blocking scheme the other CPU kernel families share.
use std::ops::Range;

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

/// `Σ_{i < len} term(i)` in f64 over 8 interleaved lanes (independent chains the compiler can
/// vectorise), combined in a fixed tree.
pub(super) fn lanes_sum(len: usize, mut term: impl FnMut(usize) -> f64) -> f64 {
    let mut lanes = [0.0f64; 8];
    let full = len - len % 8;
    for i in (0..full).step_by(8) {
        for (l, lane) in lanes.iter_mut().enumerate() {
            *lane += term(i + l);
        }
    }
    let mut tail = 0.0;
    for i in full..len {
        tail += term(i);
    }
    let [a, b, c, d, e, f, g, h] = lanes;
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
    out: &mut [f32],
    block_sum: impl Fn(usize, &mut [f32]) -> f64 + Sync,
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
    let n = logits.len();
    let inv_n = 1.0 / n.max(1) as f64;
    let grad_scale = inv_n as f32;
    let total = sum_blocks_mut(dlogits, |start, dz| {
        let (z, y) = (&logits[start..][..dz.len()], &targets[start..][..dz.len()]);
        lanes_sum(dz.len(), |i| {
            let (z, y) = (z[i], y[i]);
            // e^-|z| never overflows; the loss is max(z, 0) - z y + ln(1 + e^-|z|), and
            // σ(z) is formed from the same e^-|z| on either side of 0.
            let e = (-z.abs()).exp();
            let sigmoid = if z >= 0.0 {
                1.0 / (1.0 + e)
            } else {
                e / (1.0 + e)
            };
            dz[i] = (sigmoid - y) * grad_scale;
            let (z, y) = (z as f64, y as f64);
            z.max(0.0) - z * y + (e as f64).ln_1p()
        })
    });
    loss[0] = (total * inv_n) as f32;
}

pub fn reduce_sum(x: &[f32], scale: f32, out: &mut [f32]) {
    let total = sum_blocks(x.len(), |r| {
        let x = &x[r];
        lanes_sum(x.len(), |i| x[i] as f64)
    });
    out[0] = (total * scale as f64) as f32;
}
