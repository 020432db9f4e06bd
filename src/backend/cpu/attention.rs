//! attention: multi-head self-attention over packed QKV with a key-padding mask.
//!
//! One rayon task per batch element (its rows of `out`, `lse` and `dqkv` are contiguous), heads
//! in turn inside it, so dK and dV are summed over queries within one task: no cross-thread
//! reduction, and the summation order never depends on the thread count.
//!
//! Per batch element the kept keys of every head are gathered into thread-local scratch, and
//! masked keys are left out of the gather rather than masked in the loops.
//!
//! - The forward (what sampling runs) puts blocks of queries in the lanes: a block's scores
//!   against one key are one vector, so the softmax runs per lane with no horizontal reduction.
//!   It is compiled for AVX-512 (16 lanes), AVX2 with FMA (8) and any CPU, the first the CPU
//!   has chosen at run time; the two fused builds agree bit for bit, as every lane runs the same
//!   operations in the same order.
//! - The backward puts blocks of [`LANES`] keys in the lanes, each block holding one vector
//!   register per head dimension; the padding lanes of the last block get a score bias of
//!   -inf, which the exponential turns into an exact 0. It is compiled for AVX2 with FMA and for
//!   any CPU.
//!
//! Scores are kept in base 2 (q is scaled by `scale · log2 e`), so the softmax needs `2^x`,
//! whose range reduction is one subtraction. Each build is deterministic; the portable one
//! differs from the fused ones in the last bits.
//!
//! The file is longer than the house limit of 600 lines on purpose: it is one kernel (forward,
//! backward and the run-time dispatch between their builds), read top to bottom, and splitting
//! it would put one loop nest in several files.
use std::cell::RefCell;
use std::f32::consts::{LN_2, LOG2_E};

use rayon::prelude::*;

use super::lanes::{self, Horizontal, Lanes};
use super::{CpuBackend, CpuBuffer};
use crate::backend::kernels::AttentionKernels;
use crate::backend::Attention;
use crate::error::Result;

/// Keys per block of the backward's gathered layout: the backward runs on 8-lane builds.
const LANES: usize = 8;

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

/// The forward's kept keys: `k[(h · kept + j) · hd + c]` is dimension `c` of K of kept key `j`
/// in head `h`, and `v` likewise.
struct KeyRows<'s> {
    kept: usize,
    hd: usize,
    k: &'s [f32],
    v: &'s [f32],
}

impl KeyRows<'_> {
    /// The K and V rows of head `h`.
    #[inline(always)]
    fn head(&self, h: usize) -> (&[f32], &[f32]) {
        let len = self.kept * self.hd;
        (&self.k[h * len..][..len], &self.v[h * len..][..len])
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

    /// The tokens whose keys the mask keeps, in order, into `keys`.
    fn kept_keys(&self, keys: &mut Vec<usize>) {
        keys.clear();
        keys.extend((0..self.p.tokens).filter(|&t| self.mask.is_none_or(|m| m[t] != 0.0)));
    }

    /// The forward's gather: the K and V rows of the kept keys, head after head, and `extra`
    /// more floats of scratch. Inlined, so that a row's copy is one move where the caller's
    /// head dim is a literal (a call to `memcpy` per row cost more than the copy).
    #[inline(always)]
    fn key_rows<'s>(
        &self, scratch: &'s mut Scratch, hd: usize, extra: usize,
    ) -> (KeyRows<'s>, &'s mut [f32]) {
        let d = self.p.model_dim();
        self.kept_keys(&mut scratch.keys);
        let kept = scratch.keys.len();
        let need = 2 * d * kept + extra;
        if scratch.f.len() < need {
            scratch.f.resize(need, 0.0);
        }
        let (k, rest) = scratch.f[..need].split_at_mut(d * kept);
        let (v, extra) = rest.split_at_mut(d * kept);
        // A row of every kept key per head (none when every key is masked).
        let len = (kept * hd).max(1);
        for (h, (k, v)) in k.chunks_exact_mut(len).zip(v.chunks_exact_mut(len)).enumerate() {
            let rows = k.chunks_exact_mut(hd).zip(v.chunks_exact_mut(hd));
            for ((k, v), &t) in rows.zip(&scratch.keys) {
                let at = t * 3 * d + h * hd;
                k.copy_from_slice(&self.qkv[at + d..][..hd]);
                v.copy_from_slice(&self.qkv[at + 2 * d..][..hd]);
            }
        }
        (KeyRows { kept, hd, k, v }, extra)
    }

    /// Gathers the kept keys of every head (reading each token's K and V once, in order) and
    /// returns them with `extra` more floats of scratch. Inlined, so that the head dim in
    /// [`Keys`] stays a literal where the caller's is.
    #[inline(always)]
    fn keys<'s>(
        &self, scratch: &'s mut Scratch, hd: usize, extra: usize,
    ) -> (KeySet<'s>, &'s mut [f32]) {
        let d = self.p.model_dim();
        self.kept_keys(&mut scratch.keys);
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

/// Runs `$body` compiled for the best of the listed builds the CPU has (AVX-512F, then AVX2
/// with FMA), else for any CPU. The body is `#[inline(always)]` and generic over [`Lanes`], so
/// each wrapper holds its own copy.
macro_rules! multiversion {
    ($name:ident, [$($build:ident: $lanes:ident, $features:literal;)*], $body:ident $params:tt) => {
        $(multiversion!(@build $build, $lanes, $features, $body, $params);)*
        multiversion!(@pick $name, [$($build, $features;)*], $body, $params);
    };
    (@build $build:ident, $lanes:ident, $features:literal, $body:ident,
     ($($arg:ident: $ty:ty),*)) => {
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $features)]
        fn $build($($arg: $ty),*) {
            $body::<lanes::$lanes>($($arg),*)
        }
    };
    (@pick $name:ident, [$($build:ident, $features:literal;)*], $body:ident,
     ($($arg:ident: $ty:ty),*)) => {
        fn $name($($arg: $ty),*) {
            let run: unsafe fn($($ty),*) = 'pick: {
                $(
                    #[cfg(target_arch = "x86_64")]
                    if $features.split(',').all(lanes::cpu_has) {
                        break 'pick $build;
                    }
                )*
                $body::<lanes::Portable>
            };
            // SAFETY: a build is picked only where the CPU has the features it was compiled
            // for.
            unsafe { run($($arg),*) }
        }
    };
}

multiversion!(dispatch_fwd, [
    fwd_avx512: Avx512, "avx512f";
    fwd_avx2: Avx2, "avx2,fma";
], fwd_batch(batch: Batch, s: &mut Scratch, out: &mut [f32], lse: &mut [f32]));
multiversion!(dispatch_bwd, [
    bwd_avx2: Avx2, "avx2,fma";
], bwd_batch(batch: Batch, saved: Saved, s: &mut Scratch, dqkv: &mut [f32]));

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

/// The forward works on blocks of `L::N` queries in lanes: a block's scores against one key are
/// one vector (its dimensions broadcast from the key's row), so the softmax's maximum and sum
/// and the `P · V` accumulators stay per lane, and no horizontal reduction is left in the loops.
#[inline(always)]
fn fwd_heads<L: Lanes, const HD: usize>(
    batch: Batch, scratch: &mut Scratch, out: &mut [f32], lse: &mut [f32],
) {
    let hd = head_dim::<HD>(batch.p);
    let (p, n, d, w) = (batch.p, batch.p.tokens, batch.p.model_dim(), L::N);
    let (rows, extra) = batch.key_rows(scratch, hd, n * w + (2 * hd + 1) * w);
    let (scores, extra) = extra.split_at_mut(rows.kept * w);
    let (qt, extra) = extra.split_at_mut(hd * w);
    let (ot, extra) = extra.split_at_mut(hd * w);
    let lse_t = &mut extra[..w];
    let q_scale = p.scale * LOG2_E;
    for h in 0..p.heads {
        let (k, v) = rows.head(h);
        for first in (0..n).step_by(w) {
            let block = w.min(n - first);
            // The block's q, transposed and scaled for base-2 scores; lanes past the last
            // query hold 0 (finite scores, never written out).
            qt.fill(0.0);
            for l in 0..block {
                for (c, &q) in batch.at(first + l, 0, h).iter().enumerate() {
                    qt[c * w + l] = q_scale * q;
                }
            }
            fwd_block::<L>(qt, k, v, hd, scores, ot).store(lse_t);
            for l in 0..block {
                for c in 0..hd {
                    out[(first + l) * d + h * hd + c] = ot[c * w + l];
                }
            }
            lse[h * n + first..][..block].copy_from_slice(&lse_t[..block]);
        }
    }
}

/// One block of queries in lanes (`qt[c · N + l]`: dimension `c` of query `l`, scaled for
/// base-2 scores) against the kept keys of one head (rows of `k` and `v`): writes the block's
/// outputs into `ot` (`[hd, N]`, lanes as in `qt`) and returns its natural log-sum-exps.
///
/// Two passes over the keys: scores and their maximum; then exponentials, their sum and
/// `P · V`, [`GROUP`] dimensions at a time (a head dim above it reads the exponentials back).
#[inline(always)]
fn fwd_block<L: Lanes>(
    qt: &[f32], k: &[f32], v: &[f32], hd: usize, scores: &mut [f32], ot: &mut [f32],
) -> L {
    let w = L::N;
    if scores.is_empty() {
        // Every key is masked: the output is 0, as for an empty sum.
        ot.fill(0.0);
        return L::splat(f32::NEG_INFINITY);
    }
    let q = Columns::<L>::new(qt, hd);
    let mut max = L::splat(f32::NEG_INFINITY);
    for (s, key) in scores.chunks_exact_mut(w).zip(k.chunks_exact(hd)) {
        // Even and odd dimensions summed apart, halving the dependency chain.
        let mut acc = [L::splat(0.0); 2];
        for (c, &kc) in key.iter().enumerate() {
            acc[c % 2] = q.get(c).mul_add(L::splat(kc), acc[c % 2]);
        }
        let block = acc[0].add(acc[1]);
        block.store(s);
        max = max.max(block);
    }
    let mut sum = L::splat(0.0);
    for first in (0..hd).step_by(GROUP) {
        let width = GROUP.min(hd - first);
        let mut acc = [L::splat(0.0); GROUP];
        for (s, value) in scores.chunks_exact_mut(w).zip(v.chunks_exact(hd)) {
            let e = if first == 0 {
                let e = lanes::exp2_nonpositive(L::load(s).sub(max));
                if hd > GROUP {
                    e.store(s);
                }
                sum = sum.add(e);
                e
            } else {
                L::load(s)
            };
            for (acc, &vc) in acc[..width].iter_mut().zip(&value[first..]) {
                *acc = e.mul_add(L::splat(vc), *acc);
            }
        }
        let inv = L::splat(1.0).div(sum);
        for (c, acc) in acc[..width].iter().enumerate() {
            acc.mul(inv).store(&mut ot[(first + c) * w..]);
        }
    }
    max.mul(L::splat(LN_2)).add(lanes::ln(sum))
}

/// The columns of a block of queries in lanes; the first [`GROUP`] are loaded once into values
/// the compiler keeps in registers.
struct Columns<'a, L> {
    first: [L; GROUP],
    all: &'a [f32],
}

impl<'a, L: Lanes> Columns<'a, L> {
    #[inline(always)]
    fn new(all: &'a [f32], hd: usize) -> Self {
        let mut first = [L::splat(0.0); GROUP];
        for (c, v) in first.iter_mut().enumerate().take(hd) {
            *v = L::load(&all[c * L::N..]);
        }
        Columns { first, all }
    }

    #[inline(always)]
    fn get(&self, c: usize) -> L {
        if c < GROUP {
            self.first[c]
        } else {
            L::load(&self.all[c * L::N..])
        }
    }
}

#[inline(always)]
fn bwd_batch<L: Horizontal>(batch: Batch, saved: Saved, scratch: &mut Scratch, dqkv: &mut [f32]) {
    const { assert!(L::N == LANES) };
    match batch.p.head_dim {
        4 => bwd_heads::<L, 4>(batch, saved, scratch, dqkv),
        8 => bwd_heads::<L, 8>(batch, saved, scratch, dqkv),
        _ => bwd_heads::<L, 0>(batch, saved, scratch, dqkv),
    }
}

#[inline(always)]
fn bwd_heads<L: Horizontal, const HD: usize>(
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
fn bwd_row<L: Horizontal>(
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

impl<'a, L: Horizontal> Broadcast<'a, L> {
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
fn score_block<L: Horizontal>(q: &Broadcast<L>, kb: &[f32], bias: &[f32]) -> L {
    let mut s = [L::load(bias), L::splat(0.0)];
    for c in 0..q.all.len() {
        s[c % 2] = q.get(c).mul_add(L::load(&kb[c * LANES..]), s[c % 2]);
    }
    s[0].add(s[1])
}

/// `out[c] = Σ_j w[j] · x[j][c]` for keys `j` in blocks (`xb` is `kb` or `vb`), in lanes.
/// Even and odd blocks go to separate accumulators, halving the chain through each.
#[inline(always)]
fn weighted_sum<L: Horizontal>(w: &[f32], xb: &[f32], hd: usize, out: &mut [f32]) {
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
fn add_weighted<L: Horizontal>(acc: &mut [L], w: L, x: &[f32]) {
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

    /// Every build of the kernels this CPU runs (portable, AVX2, AVX-512 for the forward)
    /// agrees with the one dispatched here, on masked cases with general and specialised head
    /// dims, a partial last block of queries and a batch element whose keys are all masked;
    /// the two fused builds of the forward agree bit for bit.
    #[test]
    fn every_build_matches_the_dispatched_one() {
        type Fwd = fn(Batch, &mut Scratch, &mut [f32], &mut [f32]);
        type Bwd = fn(Batch, Saved, &mut Scratch, &mut [f32]);
        let mut fwds: Vec<(&str, Fwd)> = vec![("portable", fwd_batch::<lanes::Portable>)];
        let mut bwds: Vec<(&str, Bwd)> = vec![("portable", bwd_batch::<lanes::Portable>)];
        #[cfg(target_arch = "x86_64")]
        {
            // SAFETY (each): run only where the CPU has the build's features.
            if lanes::cpu_has("avx2") && lanes::cpu_has("fma") {
                fwds.push(("avx2", |b, s, o, l| unsafe { fwd_avx2(b, s, o, l) }));
                bwds.push(("avx2", |b, sv, s, d| unsafe { bwd_avx2(b, sv, s, d) }));
            }
            if lanes::cpu_has("avx512f") {
                fwds.push(("avx512", |b, s, o, l| unsafe { fwd_avx512(b, s, o, l) }));
            }
        }
        for (head_dim, tokens) in [(3, 21), (4, 37), (12, 18)] {
            let p = Attention { batch: 3, tokens, heads: 2, head_dim, scale: 0.6 };
            let (n, d) = (p.tokens, p.model_dim());
            let wave = |len: usize, k: f32| -> Vec<f32> {
                (0..len).map(|i| (i as f32 * k).sin() * 2.0).collect()
            };
            let (qkv, dout) = (wave(p.batch * n * 3 * d, 0.37), wave(p.batch * n * d, 0.11));
            let mut mask = vec![1.0; p.batch * n];
            mask[n + 5..2 * n].fill(0.0);
            mask[2 * n..].fill(0.0);
            let mask = Some(&mask[..]);
            let fwd = |run: Fwd| {
                let (mut out, mut lse) =
                    (vec![0.0; p.batch * n * d], vec![0.0; p.batch * p.heads * n]);
                fwd_with(&p, &qkv, mask, &mut out, &mut lse, run);
                (out, lse)
            };
            let (out, lse) = fwd(dispatch_fwd);
            let close = |what: &str, got: &[f32], want: &[f32]| {
                for (&a, &b) in got.iter().zip(want) {
                    // Fused and unfused multiply-adds differ in the last bits.
                    let ok = a == b || (a - b).abs() <= 1e-5 * (1.0 + b.abs());
                    assert!(ok, "{what}, head dim {head_dim}: {a} vs {b}");
                }
            };
            let mut fused = vec![];
            for (name, run) in &fwds {
                let (o, l) = fwd(*run);
                close(name, &o, &out);
                close(name, &l, &lse);
                if *name != "portable" {
                    fused.push((o, l));
                }
            }
            for other in fused.iter().skip(1) {
                assert!(other == &fused[0], "the fused forward builds differ in bits");
            }
            let saved = Saved { out: &out, lse: &lse, dout: &dout };
            let bwd = |run: Bwd| {
                let mut dqkv = vec![0.0; 3 * out.len()];
                bwd_with(&p, &qkv, mask, saved, &mut dqkv, run);
                dqkv
            };
            let want = bwd(dispatch_bwd);
            for (name, run) in &bwds {
                close(name, &bwd(*run), &want);
            }
        }
    }
}
