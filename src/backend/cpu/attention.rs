//! attention: multi-head self-attention over packed QKV with a key-padding mask.
//!
//! One rayon task per batch element (its rows of `out`, `lse` and `dqkv` are contiguous), heads
//! in turn inside it, so dK and dV are summed over queries within one task: no cross-thread
//! reduction, and the summation order never depends on the thread count.
//!
//! Per batch element the kept keys of every head are gathered into thread-local scratch in
//! blocks of [`LANES`] keys, each block holding one vector register per head dimension, so
//! every loop over keys works a register at a time (see [`lanes`]). Masked keys are left out of
//! the gather rather than masked in the loops; the padding lanes of the last block get a score
//! bias of -inf, which the exponential turns into an exact 0.
//!
//! Scores are kept in base 2 (q is scaled by `scale · log2 e`), so the softmax needs `2^x`,
//! whose range reduction is one subtraction.
//!
//! The kernels are written once over [`Lanes`] and compiled twice: for AVX2 with FMA (chosen
//! at run time) and for any CPU. The two differ in the last bits (fused multiply-adds), and
//! each is deterministic.
//!
//! The file is longer than the house limit of 600 lines on purpose: it is one kernel (forward,
//! backward, the lane type they are written over and the run-time dispatch between its two
//! builds), read top to bottom, and splitting it would put one loop nest in several files.
use std::cell::RefCell;
use std::f32::consts::{LN_2, LOG2_E};

use rayon::prelude::*;

use super::{CpuBackend, CpuBuffer};
use crate::backend::kernels::AttentionKernels;
use crate::backend::Attention;
use crate::error::Result;
use lanes::{Lanes, LANES};

/// Head dimensions whose accumulators are kept at once (in registers, for a literal head dim).
const GROUP: usize = 8;

/// Scratch reused by every batch element a thread handles; it grows to the largest size seen
/// and is never freed, so steady-state calls do not allocate.
#[derive(Default)]
struct Scratch {
    keys: Vec<usize>,
    f: Vec<f32>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::default();
}

/// One batch element's inputs and the kernel's shape.
#[derive(Clone, Copy)]
struct Batch<'a> {
    p: &'a Attention,
    /// `[tokens, 3D]`
    qkv: &'a [f32],
    /// `[tokens]`
    mask: Option<&'a [f32]>,
}

/// One head of the kept keys of a batch element, in blocks of [`LANES`] keys: element
/// `(k · hd + c) · LANES + l` of `kb` (`vb`) is dimension `c` of K (V) of kept key `k · LANES + l`.
struct Keys<'s> {
    /// Token index of each kept key.
    idx: &'s [usize],
    /// Head dim; a literal at the call sites that specialise on it.
    hd: usize,
    kb: &'s [f32],
    vb: &'s [f32],
    /// Per key: 0 for a kept key, -inf for a padding lane.
    bias: &'s [f32],
}

impl Keys<'_> {
    /// Kept keys rounded up to whole blocks.
    fn padded(&self) -> usize {
        self.bias.len()
    }

    /// Where dimension `c` of kept key `j` sits in `kb` and `vb`.
    fn at(&self, j: usize, c: usize) -> usize {
        (j / LANES * self.hd + c) * LANES + j % LANES
    }
}

/// [`Keys`] for every head of a batch element, one after the other.
struct KeySet<'s> {
    all: Keys<'s>,
}

impl KeySet<'_> {
    #[inline(always)]
    fn head(&self, h: usize) -> Keys<'_> {
        let len = self.all.hd * self.all.padded();
        Keys { kb: &self.all.kb[h * len..][..len], vb: &self.all.vb[h * len..][..len], ..self.all }
    }
}

impl<'a> Batch<'a> {
    fn new(p: &'a Attention, qkv: &'a [f32], mask: Option<&'a [f32]>, b: usize) -> Self {
        let n = p.tokens;
        Batch {
            p,
            qkv: &qkv[b * n * 3 * p.model_dim()..][..n * 3 * p.model_dim()],
            mask: mask.map(|m| &m[b * n..][..n]),
        }
    }

    fn at(&self, token: usize, part: usize, head: usize) -> &'a [f32] {
        let (d, hd) = (self.p.model_dim(), self.p.head_dim);
        &self.qkv[token * 3 * d + part * d + head * hd..][..hd]
    }

    /// Gathers the kept keys of every head (reading each token's K and V once, in order) and
    /// returns them with `extra` more floats of scratch. Inlined, so that the head dim in
    /// [`Keys`] stays a literal where the caller's is.
    #[inline(always)]
    fn keys<'s>(
        &self, scratch: &'s mut Scratch, hd: usize, extra: usize,
    ) -> (KeySet<'s>, &'s mut [f32]) {
        let (mask, d) = (self.mask, self.p.model_dim());
        scratch.keys.clear();
        scratch.keys.extend((0..self.p.tokens).filter(|&t| mask.is_none_or(|m| m[t] != 0.0)));
        let padded = scratch.keys.len().next_multiple_of(LANES);
        let need = 2 * d * padded + padded + extra;
        if scratch.f.len() < need {
            scratch.f.resize(need, 0.0);
        }
        let (kb, rest) = scratch.f[..need].split_at_mut(d * padded);
        let (vb, rest) = rest.split_at_mut(d * padded);
        let (bias, extra) = rest.split_at_mut(padded);
        let kept = scratch.keys.len();
        bias[..kept].fill(0.0);
        bias[kept..].fill(f32::NEG_INFINITY);
        // Padding lanes hold 0 (their score is -inf by the bias).
        if kept < padded {
            for block in kb.chunks_exact_mut(hd * padded).chain(vb.chunks_exact_mut(hd * padded)) {
                block[(padded - LANES) * hd..].fill(0.0);
            }
        }
        let head_len = hd * padded;
        for (j, &t) in scratch.keys.iter().enumerate() {
            let row = &self.qkv[t * 3 * d..][..3 * d];
            let lane = (j / LANES * hd) * LANES + j % LANES;
            for (h, (k, v)) in
                row[d..2 * d].chunks_exact(hd).zip(row[2 * d..].chunks_exact(hd)).enumerate()
            {
                for (c, (&k, &v)) in k.iter().zip(v).enumerate() {
                    let at = h * head_len + lane + c * LANES;
                    (kb[at], vb[at]) = (k, v);
                }
            }
        }
        let all = Keys { idx: &scratch.keys, hd, kb, vb, bias };
        (KeySet { all }, extra)
    }
}

pub fn attention_fwd(
    p: &Attention, qkv: &[f32], mask: Option<&[f32]>, out: &mut [f32], lse: &mut [f32],
) {
    fwd_with(p, qkv, mask, out, lse, dispatch_fwd);
}

#[allow(clippy::too_many_arguments)]
pub fn attention_bwd(
    p: &Attention, qkv: &[f32], mask: Option<&[f32]>, out: &[f32], lse: &[f32], dout: &[f32],
    dqkv: &mut [f32],
) {
    bwd_with(p, qkv, mask, Saved { out, lse, dout }, dqkv, dispatch_bwd);
}

/// The forward with `run` doing each batch element (tests pass each implementation here).
fn fwd_with(
    p: &Attention, qkv: &[f32], mask: Option<&[f32]>, out: &mut [f32], lse: &mut [f32],
    run: impl Fn(Batch, &mut Scratch, &mut [f32], &mut [f32]) + Sync,
) {
    let (n, d) = (p.tokens, p.model_dim());
    if n == 0 {
        return;
    }
    out.par_chunks_mut(n * d).zip(lse.par_chunks_mut(p.heads * n)).enumerate().for_each(
        |(b, (out, lse))| {
            let batch = Batch::new(p, qkv, mask, b);
            SCRATCH.with_borrow_mut(|s| run(batch, s, out, lse));
        },
    );
}

/// The backward with `run` doing each batch element; `saved` covers the whole batch.
fn bwd_with(
    p: &Attention, qkv: &[f32], mask: Option<&[f32]>, saved: Saved, dqkv: &mut [f32],
    run: impl Fn(Batch, Saved, &mut Scratch, &mut [f32]) + Sync,
) {
    let (n, d) = (p.tokens, p.model_dim());
    if n == 0 {
        return;
    }
    dqkv.par_chunks_mut(n * 3 * d).enumerate().for_each(|(b, dqkv)| {
        let batch = Batch::new(p, qkv, mask, b);
        let saved = Saved {
            out: &saved.out[b * n * d..][..n * d],
            lse: &saved.lse[b * p.heads * n..][..p.heads * n],
            dout: &saved.dout[b * n * d..][..n * d],
        };
        SCRATCH.with_borrow_mut(|s| run(batch, saved, s, dqkv));
    });
}

/// The forward's results and the incoming gradient (of one batch element, in the kernels).
#[derive(Clone, Copy)]
struct Saved<'a> {
    out: &'a [f32],
    lse: &'a [f32],
    dout: &'a [f32],
}

/// Runs `$body` compiled for AVX2 and FMA when the CPU has them, else for any CPU. The body is
/// `#[inline(always)]` and generic over [`Lanes`], so each wrapper holds its own copy.
macro_rules! multiversion {
    ($name:ident, $avx2:ident, $body:ident($($arg:ident: $ty:ty),*)) => {
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,fma")]
        fn $avx2($($arg: $ty),*) {
            $body::<lanes::Avx2>($($arg),*)
        }

        fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                // SAFETY: the CPU has the features the function was compiled for.
                return unsafe { $avx2($($arg),*) };
            }
            $body::<lanes::Portable>($($arg),*)
        }
    };
}

multiversion!(dispatch_fwd, fwd_avx2, fwd_batch(
    batch: Batch, s: &mut Scratch, out: &mut [f32], lse: &mut [f32]
));
multiversion!(dispatch_bwd, bwd_avx2, bwd_batch(
    batch: Batch, saved: Saved, s: &mut Scratch, dqkv: &mut [f32]
));

/// The head dim: `HD`, or `p.head_dim` when `HD` is 0. The common small head dims get their
/// own copy of the kernels (a distinct const parameter, so the compiler cannot merge it back),
/// in which the loops over the head dim unroll and the accumulators stay in registers.
#[inline(always)]
fn head_dim<const HD: usize>(p: &Attention) -> usize {
    if HD == 0 {
        p.head_dim
    } else {
        HD
    }
}

#[inline(always)]
fn fwd_batch<L: Lanes>(batch: Batch, scratch: &mut Scratch, out: &mut [f32], lse: &mut [f32]) {
    match batch.p.head_dim {
        4 => fwd_heads::<L, 4>(batch, scratch, out, lse),
        8 => fwd_heads::<L, 8>(batch, scratch, out, lse),
        _ => fwd_heads::<L, 0>(batch, scratch, out, lse),
    }
}

#[inline(always)]
fn fwd_heads<L: Lanes, const HD: usize>(
    batch: Batch, scratch: &mut Scratch, out: &mut [f32], lse: &mut [f32],
) {
    let hd = head_dim::<HD>(batch.p);
    let (p, n, d) = (batch.p, batch.p.tokens, batch.p.model_dim());
    let (key_set, extra) = batch.keys(scratch, hd, n.next_multiple_of(LANES) + hd);
    let (scores, qs) = extra.split_at_mut(key_set.all.padded());
    let qs = &mut qs[..hd];
    let q_scale = p.scale * LOG2_E;
    for h in 0..p.heads {
        let keys = key_set.head(h);
        for i in 0..n {
            for (qs, &q) in qs.iter_mut().zip(batch.at(i, 0, h)) {
                *qs = q_scale * q;
            }
            let o = &mut out[i * d + h * hd..][..hd];
            lse[h * n + i] = fwd_row::<L>(qs, &keys, scores, o);
        }
    }
}

/// One query row (`qs` is its q scaled for base-2 scores): writes its output and returns its
/// (natural) log-sum-exp.
///
/// Three short passes over the keys (scores and their maximum; exponentials and their sum;
/// `P · V`): on the machine measured (Zen 3) they ran faster than one fused pass shifted by a
/// bound of the scores, whose single long dependency chain per block the core overlaps less.
#[inline(always)]
fn fwd_row<L: Lanes>(qs: &[f32], keys: &Keys, scores: &mut [f32], o: &mut [f32]) -> f32 {
    let q = Broadcast::<L>::new(qs);
    let scores = &mut scores[..keys.padded()];
    let mut max = L::splat(f32::NEG_INFINITY);
    let blocks = keys.kb.chunks_exact(keys.hd * LANES).zip(keys.bias.chunks_exact(LANES));
    for (s, (kb, bias)) in scores.chunks_exact_mut(LANES).zip(blocks) {
        let block = score_block::<L>(&q, kb, bias);
        block.store(s);
        max = max.max(block);
    }
    let m = max.max_lane();
    if m == f32::NEG_INFINITY {
        o.fill(0.0);
        return m;
    }
    let mut sum = L::splat(0.0);
    for s in scores.chunks_exact_mut(LANES) {
        let e = lanes::exp2(L::load(s).sub(L::splat(m)));
        e.store(s);
        sum = sum.add(e);
    }
    let sum = sum.total();
    weighted_sum::<L>(scores, keys.vb, keys.hd, o);
    let inv = 1.0 / sum;
    o.iter_mut().for_each(|o| *o *= inv);
    m * LN_2 + sum.ln()
}

#[inline(always)]
fn bwd_batch<L: Lanes>(batch: Batch, saved: Saved, scratch: &mut Scratch, dqkv: &mut [f32]) {
    match batch.p.head_dim {
        4 => bwd_heads::<L, 4>(batch, saved, scratch, dqkv),
        8 => bwd_heads::<L, 8>(batch, saved, scratch, dqkv),
        _ => bwd_heads::<L, 0>(batch, saved, scratch, dqkv),
    }
}

#[inline(always)]
fn bwd_heads<L: Lanes, const HD: usize>(
    batch: Batch, saved: Saved, scratch: &mut Scratch, dqkv: &mut [f32],
) {
    let hd = head_dim::<HD>(batch.p);
    let (p, n, d) = (batch.p, batch.p.tokens, batch.p.model_dim());
    let padded = n.next_multiple_of(LANES);
    // Extra scratch: dK and dV in blocks like kb and vb, one row of dS, scaled q, dout row.
    let (key_set, extra) = batch.keys(scratch, hd, 2 * hd * padded + padded + 2 * hd);
    let np = key_set.all.padded();
    let (dkb, extra) = extra.split_at_mut(hd * np);
    let (dvb, extra) = extra.split_at_mut(hd * np);
    let (ds, extra) = extra.split_at_mut(np);
    let (qs, extra) = extra.split_at_mut(hd);
    let g = &mut extra[..hd];
    let mut grads = KeyGrads { dkb, dvb, ds };
    let row = |t: usize| t * 3 * d;
    let q_scale = p.scale * LOG2_E;
    for h in 0..p.heads {
        let keys = key_set.head(h);
        grads.dkb.fill(0.0);
        grads.dvb.fill(0.0);
        for i in 0..n {
            let o = &saved.out[i * d + h * hd..][..hd];
            g.copy_from_slice(&saved.dout[i * d + h * hd..][..hd]);
            for (qs, &q) in qs.iter_mut().zip(batch.at(i, 0, h)) {
                *qs = q_scale * q;
            }
            let di: f32 = g.iter().zip(o).map(|(g, o)| g * o).sum();
            let dq = &mut dqkv[row(i) + h * hd..][..hd];
            bwd_row::<L>(qs, g, saved.lse[h * n + i], di, &keys, &mut grads, dq);
            dq.iter_mut().for_each(|dq| *dq *= p.scale);
        }
        for (j, &t) in keys.idx.iter().enumerate() {
            for c in 0..hd {
                let at = keys.at(j, c);
                // dK was summed with q scaled by scale · log2 e.
                dqkv[row(t) + d + h * hd + c] = grads.dkb[at] * LN_2;
                dqkv[row(t) + 2 * d + h * hd + c] = grads.dvb[at];
            }
        }
    }
    // Masked keys get no gradient.
    let mask = batch.mask;
    for t in (0..n).filter(|&t| mask.is_some_and(|m| m[t] == 0.0)) {
        dqkv[row(t) + d..row(t) + 3 * d].fill(0.0);
    }
}

/// Per-head accumulators of the backward: dK and dV (in blocks like `kb`, summed over
/// queries), and one row of dS.
struct KeyGrads<'s> {
    dkb: &'s mut [f32],
    dvb: &'s mut [f32],
    ds: &'s mut [f32],
}

/// One query row of the backward (`qs` its q scaled for base-2 scores, `g` its dout,
/// `di = g · out`): adds its terms to dK (times log2 e) and dV, and writes `dq / scale`.
#[inline(always)]
fn bwd_row<L: Lanes>(
    qs: &[f32], g: &[f32], lse: f32, di: f32, keys: &Keys, acc: &mut KeyGrads, dq: &mut [f32],
) {
    if lse == f32::NEG_INFINITY {
        dq.fill(0.0);
        return;
    }
    let block = keys.hd * LANES;
    let (lse, di) = (L::splat(lse * LOG2_E), L::splat(di));
    let (q, g) = (Broadcast::<L>::new(qs), Broadcast::<L>::new(g));
    let inputs = keys
        .kb
        .chunks_exact(block)
        .zip(keys.vb.chunks_exact(block))
        .zip(keys.bias.chunks_exact(LANES));
    let grads = acc.dkb.chunks_exact_mut(block).zip(acc.dvb.chunks_exact_mut(block));
    for ((ds, ((kb, vb), bias)), (dkb, dvb)) in
        acc.ds.chunks_exact_mut(LANES).zip(inputs).zip(grads)
    {
        let s = score_block::<L>(&q, kb, bias);
        let mut dp = L::splat(0.0);
        for c in 0..keys.hd {
            dp = g.get(c).mul_add(L::load(&vb[c * LANES..]), dp);
        }
        let pr = lanes::exp2(s.sub(lse));
        let dsk = pr.mul(dp.sub(di));
        dsk.store(ds);
        for c in 0..keys.hd {
            let (dk, dv) = (&mut dkb[c * LANES..], &mut dvb[c * LANES..]);
            q.get(c).mul_add(dsk, L::load(dk)).store(dk);
            g.get(c).mul_add(pr, L::load(dv)).store(dv);
        }
    }
    weighted_sum::<L>(acc.ds, keys.kb, keys.hd, dq);
}

/// A row's per-dimension scalars (its scaled q, or its dout) in every lane. The first [`GROUP`]
/// are broadcast once per row into values the compiler keeps in registers: broadcasting inside
/// the loops over keys would cost a load per block each.
struct Broadcast<'a, L> {
    first: [L; GROUP],
    all: &'a [f32],
}

impl<'a, L: Lanes> Broadcast<'a, L> {
    #[inline(always)]
    fn new(all: &'a [f32]) -> Self {
        let mut first = [L::splat(0.0); GROUP];
        for (v, &x) in first.iter_mut().zip(all) {
            *v = L::splat(x);
        }
        Broadcast { first, all }
    }

    #[inline(always)]
    fn get(&self, c: usize) -> L {
        if c < GROUP {
            self.first[c]
        } else {
            L::splat(self.all[c])
        }
    }
}

/// Base-2 scores of one block of keys (`kb` its K block), with the padding bias. Even and odd
/// dimensions are summed apart, halving the dependency chain.
#[inline(always)]
fn score_block<L: Lanes>(q: &Broadcast<L>, kb: &[f32], bias: &[f32]) -> L {
    let mut s = [L::load(bias), L::splat(0.0)];
    for c in 0..q.all.len() {
        s[c % 2] = q.get(c).mul_add(L::load(&kb[c * LANES..]), s[c % 2]);
    }
    s[0].add(s[1])
}

/// `out[c] = Σ_j w[j] · x[j][c]` for keys `j` in blocks (`xb` is `kb` or `vb`), in lanes.
/// Even and odd blocks go to separate accumulators, halving the chain through each.
#[inline(always)]
fn weighted_sum<L: Lanes>(w: &[f32], xb: &[f32], hd: usize, out: &mut [f32]) {
    let block = hd * LANES;
    for group in 0..hd.div_ceil(GROUP) {
        let (first, width) = (group * GROUP, GROUP.min(hd - group * GROUP));
        let mut acc = [[L::splat(0.0); GROUP]; 2];
        let pairs = w.chunks_exact(2 * LANES).zip(xb.chunks_exact(2 * block));
        for (w, x) in pairs {
            let x = &x[first * LANES..];
            add_weighted(&mut acc[0][..width], L::load(w), x);
            add_weighted(&mut acc[1][..width], L::load(&w[LANES..]), &x[block..]);
        }
        if !w.len().is_multiple_of(2 * LANES) {
            let last = w.len() - LANES;
            let x = &xb[last / LANES * block + first * LANES..];
            add_weighted(&mut acc[0][..width], L::load(&w[last..]), x);
        }
        let [even, odd] = acc;
        let mut sums = [L::splat(0.0); GROUP];
        for ((s, even), odd) in sums.iter_mut().zip(even).zip(odd) {
            *s = even.add(odd);
        }
        for (o, s) in out[first..first + width].chunks_mut(4).zip(sums.chunks_exact(4)) {
            let totals = L::totals4([s[0], s[1], s[2], s[3]]);
            o.copy_from_slice(&totals[..o.len()]);
        }
    }
}

/// `acc[c] += w · x[c]` for the dimensions of one block.
#[inline(always)]
fn add_weighted<L: Lanes>(acc: &mut [L], w: L, x: &[f32]) {
    for (c, acc) in acc.iter_mut().enumerate() {
        *acc = w.mul_add(L::load(&x[c * LANES..]), *acc);
    }
}

impl AttentionKernels for CpuBackend {
    fn attention_fwd(
        &self, p: &Attention, qkv: &CpuBuffer, mask: Option<&CpuBuffer>,
        [out, lse]: [&mut CpuBuffer; 2],
    ) -> Result<()> {
        let mask = mask.map(CpuBuffer::f32);
        attention_fwd(p, qkv.f32(), mask, out.f32_mut(), lse.f32_mut());
        Ok(())
    }

    fn attention_bwd(
        &self, p: &Attention, qkv: &CpuBuffer, mask: Option<&CpuBuffer>, saved: [&CpuBuffer; 3],
        dqkv: &mut CpuBuffer,
    ) -> Result<()> {
        let [out, lse, dout] = saved.map(CpuBuffer::f32);
        let mask = mask.map(CpuBuffer::f32);
        attention_bwd(p, qkv.f32(), mask, out, lse, dout, dqkv.f32_mut());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The portable build of the kernels (what a CPU without AVX2 runs) agrees with the one
    /// dispatched here, on a masked case with a general and a specialised head dim.
    #[test]
    fn portable_kernels_match_dispatched() {
        for head_dim in [3, 4] {
            let p = Attention { batch: 3, tokens: 21, heads: 2, head_dim, scale: 0.6 };
            let (n, d) = (p.tokens, p.model_dim());
            let wave = |len: usize, k: f32| -> Vec<f32> {
                (0..len).map(|i| (i as f32 * k).sin() * 2.0).collect()
            };
            let (qkv, dout) = (wave(p.batch * n * 3 * d, 0.37), wave(p.batch * n * d, 0.11));
            let mut mask = vec![1.0; p.batch * n];
            mask[n + 5..2 * n].fill(0.0);
            let mask = Some(&mask[..]);
            let run = |portable: bool| {
                let (mut out, mut lse) =
                    (vec![0.0; p.batch * n * d], vec![0.0; p.batch * p.heads * n]);
                let mut dqkv = vec![0.0; 3 * out.len()];
                if portable {
                    fwd_with(&p, &qkv, mask, &mut out, &mut lse, fwd_batch::<lanes::Portable>);
                } else {
                    attention_fwd(&p, &qkv, mask, &mut out, &mut lse);
                }
                let saved = Saved { out: &out, lse: &lse, dout: &dout };
                if portable {
                    bwd_with(&p, &qkv, mask, saved, &mut dqkv, bwd_batch::<lanes::Portable>);
                } else {
                    bwd_with(&p, &qkv, mask, saved, &mut dqkv, dispatch_bwd);
                }
                [out, lse, dqkv]
            };
            let (portable, dispatched) = (run(true), run(false));
            for (a, b) in portable.iter().zip(&dispatched) {
                for (&a, &b) in a.iter().zip(b) {
                    // Fused and unfused multiply-adds differ in the last bits.
                    assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{a} vs {b}");
                }
            }
        }
    }
}

/// Eight f32 lanes, the operations the kernels need on them, and the exponential built from
/// those operations.
mod lanes {
    pub const LANES: usize = 8;

    /// A vector of [`LANES`] f32.
    pub trait Lanes: Copy {
        fn splat(x: f32) -> Self;
        /// The first [`LANES`] elements of `s`.
        fn load(s: &[f32]) -> Self;
        /// Into the first [`LANES`] elements of `s`.
        fn store(self, s: &mut [f32]);
        fn add(self, o: Self) -> Self;
        fn sub(self, o: Self) -> Self;
        fn mul(self, o: Self) -> Self;
        /// `self · a + b`: fused (one rounding) where the CPU has FMA.
        fn mul_add(self, a: Self, b: Self) -> Self;
        /// `self > o ? self : o` per lane (x86's rule: NaN in `self` gives `o`).
        fn max(self, o: Self) -> Self;
        /// `self < o ? self : o` per lane.
        fn min(self, o: Self) -> Self;
        /// Rounds to the nearest integer, ties to even (for |x| < 2^22).
        fn round(self) -> Self;
        /// `2^n` for lanes holding integers `-127 <= n <= 128` (`n = -127` gives +0, 128 gives
        /// +inf).
        fn pow2i(self) -> Self;

        /// The largest lane.
        fn max_lane(self) -> f32;
        /// The lanes of each of four vectors added in the tree
        /// `((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7))`.
        fn totals4(v: [Self; 4]) -> [f32; 4];

        /// The lanes added in the tree of [`Lanes::totals4`].
        #[inline(always)]
        fn total(self) -> f32 {
            let zero = Self::splat(0.0);
            Self::totals4([self, zero, zero, zero])[0]
        }
    }

    /// `2^x` per lane within 2 ulp, as a handful of vector operations (libm's `exp2f` is a call
    /// per element). Results below the normal range (x < -126) are approximate and become
    /// exactly 0 from x = -126.5 on, -inf included; above 128 the result is +inf, and NaN stays
    /// NaN.
    #[inline(always)]
    pub fn exp2<L: Lanes>(x: L) -> L {
        // Cephes' exp2f polynomial, 2^r ≈ 1 + Σ C[i] r^(i+1) on |r| ≤ 1/2.
        const C: [f32; 6] = [
            6.931_472e-1,
            2.402_264_8e-1,
            5.550_332_5e-2,
            9.618_437e-3,
            1.339_887_4e-3,
            1.535_336_2e-4,
        ];
        // The constant goes first: a NaN in `x` then passes through.
        let x = L::splat(128.0).min(L::splat(-127.0).max(x));
        let n = x.round();
        let r = x.sub(n);
        // Estrin's scheme: short chains side by side, since the latency of this chain is what
        // limits the softmax loops.
        let r2 = r.mul(r);
        let lo = r.mul_add(L::splat(C[0]), L::splat(1.0));
        let mid = r.mul_add(L::splat(C[2]), L::splat(C[1]));
        let hi = r2.mul_add(L::splat(C[5]), r.mul_add(L::splat(C[4]), L::splat(C[3])));
        let poly = r2.mul(r2).mul_add(hi, r2.mul_add(mid, lo));
        poly.mul(n.pow2i())
    }

    /// Plain arrays: the compiler vectorises what it can for the baseline target.
    #[derive(Clone, Copy)]
    pub struct Portable([f32; LANES]);

    impl Portable {
        #[inline(always)]
        fn zip(self, o: Self, f: impl Fn(f32, f32) -> f32) -> Self {
            Portable(std::array::from_fn(|l| f(self.0[l], o.0[l])))
        }
    }

    impl Lanes for Portable {
        #[inline(always)]
        fn splat(x: f32) -> Self {
            Portable([x; LANES])
        }
        #[inline(always)]
        fn load(s: &[f32]) -> Self {
            Portable(s[..LANES].try_into().unwrap())
        }
        #[inline(always)]
        fn store(self, s: &mut [f32]) {
            s[..LANES].copy_from_slice(&self.0);
        }
        #[inline(always)]
        fn add(self, o: Self) -> Self {
            self.zip(o, |a, b| a + b)
        }
        #[inline(always)]
        fn sub(self, o: Self) -> Self {
            self.zip(o, |a, b| a - b)
        }
        #[inline(always)]
        fn mul(self, o: Self) -> Self {
            self.zip(o, |a, b| a * b)
        }
        #[inline(always)]
        fn mul_add(self, a: Self, b: Self) -> Self {
            self.mul(a).add(b)
        }
        #[inline(always)]
        fn max(self, o: Self) -> Self {
            self.zip(o, |a, b| if a > b { a } else { b })
        }
        #[inline(always)]
        fn min(self, o: Self) -> Self {
            self.zip(o, |a, b| if a < b { a } else { b })
        }
        #[inline(always)]
        fn max_lane(self) -> f32 {
            self.0.into_iter().fold(f32::NEG_INFINITY, |a, b| if a > b { a } else { b })
        }
        #[inline(always)]
        fn totals4(v: [Self; 4]) -> [f32; 4] {
            v.map(|v| {
                let [a, b, c, d, e, f, g, h] = v.0;
                ((a + b) + (c + d)) + ((e + f) + (g + h))
            })
        }
        #[inline(always)]
        fn round(self) -> Self {
            // Adding 1.5 · 2^23 leaves no fraction bits, so the sum is rounded (to even).
            const SHIFT: f32 = 12_582_912.0;
            Portable(self.0.map(|x| (x + SHIFT) - SHIFT))
        }
        #[inline(always)]
        fn pow2i(self) -> Self {
            Portable(self.0.map(|n| f32::from_bits(((n as i32 + 127) << 23) as u32)))
        }
    }

    #[cfg(target_arch = "x86_64")]
    pub use avx2::Avx2;

    #[cfg(target_arch = "x86_64")]
    mod avx2 {
        use super::{Lanes, LANES};
        use std::arch::x86_64::*;

        /// One AVX register. Only functions compiled with `avx2` and `fma` enabled, and entered
        /// after checking the CPU for them, use this type: that is the safety argument of every
        /// `unsafe` below.
        #[derive(Clone, Copy)]
        pub struct Avx2(__m256);

        impl Lanes for Avx2 {
            #[inline(always)]
            fn splat(x: f32) -> Self {
                Avx2(unsafe { _mm256_set1_ps(x) })
            }
            #[inline(always)]
            fn load(s: &[f32]) -> Self {
                let s = &s[..LANES];
                // SAFETY: `s` holds LANES floats; the load needs no alignment.
                Avx2(unsafe { _mm256_loadu_ps(s.as_ptr()) })
            }
            #[inline(always)]
            fn store(self, s: &mut [f32]) {
                let s = &mut s[..LANES];
                // SAFETY: `s` holds LANES floats; the store needs no alignment.
                unsafe { _mm256_storeu_ps(s.as_mut_ptr(), self.0) }
            }
            #[inline(always)]
            fn add(self, o: Self) -> Self {
                Avx2(unsafe { _mm256_add_ps(self.0, o.0) })
            }
            #[inline(always)]
            fn sub(self, o: Self) -> Self {
                Avx2(unsafe { _mm256_sub_ps(self.0, o.0) })
            }
            #[inline(always)]
            fn mul(self, o: Self) -> Self {
                Avx2(unsafe { _mm256_mul_ps(self.0, o.0) })
            }
            #[inline(always)]
            fn mul_add(self, a: Self, b: Self) -> Self {
                Avx2(unsafe { _mm256_fmadd_ps(self.0, a.0, b.0) })
            }
            #[inline(always)]
            fn max(self, o: Self) -> Self {
                Avx2(unsafe { _mm256_max_ps(self.0, o.0) })
            }
            #[inline(always)]
            fn min(self, o: Self) -> Self {
                Avx2(unsafe { _mm256_min_ps(self.0, o.0) })
            }
            #[inline(always)]
            fn max_lane(self) -> f32 {
                unsafe {
                    let m = _mm_max_ps(
                        _mm256_castps256_ps128(self.0),
                        _mm256_extractf128_ps::<1>(self.0),
                    );
                    let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
                    _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)))
                }
            }
            #[inline(always)]
            fn totals4([a, b, c, d]: [Self; 4]) -> [f32; 4] {
                // Pairwise sums of the four vectors, in their halves; then the two halves.
                unsafe {
                    let pairs = _mm256_hadd_ps(_mm256_hadd_ps(a.0, b.0), _mm256_hadd_ps(c.0, d.0));
                    let t = _mm_add_ps(
                        _mm256_castps256_ps128(pairs),
                        _mm256_extractf128_ps::<1>(pairs),
                    );
                    let mut out = [0.0; 4];
                    _mm_storeu_ps(out.as_mut_ptr(), t);
                    out
                }
            }
            #[inline(always)]
            fn round(self) -> Self {
                const NEAREST: i32 = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
                Avx2(unsafe { _mm256_round_ps::<NEAREST>(self.0) })
            }
            #[inline(always)]
            fn pow2i(self) -> Self {
                Avx2(unsafe {
                    let n = _mm256_add_epi32(_mm256_cvtps_epi32(self.0), _mm256_set1_epi32(127));
                    _mm256_castsi256_ps(_mm256_slli_epi32::<23>(n))
                })
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::{exp2, Lanes, Portable, LANES};

        #[inline(always)]
        fn stored<L: Lanes>(v: L) -> [f32; LANES] {
            let mut a = [0.0; LANES];
            v.store(&mut a);
            a
        }

        /// `2^x` on every lane implementation this CPU runs.
        fn exp2_all(x: &[f32]) -> Vec<[f32; LANES]> {
            let mut out = vec![stored(exp2(Portable::load(x)))];
            #[cfg(target_arch = "x86_64")]
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                #[target_feature(enable = "avx2,fma")]
                fn exp2_avx2(x: &[f32]) -> [f32; LANES] {
                    stored(exp2(super::Avx2::load(x)))
                }
                // SAFETY: the CPU has the features, checked above.
                out.push(unsafe { exp2_avx2(x) });
            }
            out
        }

        /// Units in the last place between `got` and the exact `want`, at `want`'s binade.
        fn ulps(got: f32, want: f64) -> f64 {
            let bits = (want.abs() as f32).to_bits();
            let ulp = f32::from_bits(bits + 1) as f64 - f32::from_bits(bits) as f64;
            (got as f64 - want).abs() / ulp
        }

        #[test]
        fn exp2_is_within_two_ulp() {
            let mut worst = 0.0f64;
            let x: Vec<f32> = (0..2_000_000).map(|i| -126.0 + 253.0 * i as f32 / 2e6).collect();
            for x in x.chunks_exact(LANES) {
                for got in exp2_all(x) {
                    for (&g, &x) in got.iter().zip(x) {
                        worst = worst.max(ulps(g, (x as f64).exp2()));
                    }
                }
            }
            assert!(worst <= 2.0, "worst error {worst} ulp");
        }

        #[test]
        fn exp2_edges() {
            let x = [0.0, f32::NEG_INFINITY, -127.0, -1e9, 127.0, 1e9, f32::NAN, 1.0];
            for got in exp2_all(&x) {
                assert_eq!(got[..4], [1.0, 0.0, 0.0, 0.0]);
                assert_eq!((got[4], got[5], got[7]), (2f32.powi(127), f32::INFINITY, 2.0));
                assert!(got[6].is_nan());
            }
        }
    }
}
