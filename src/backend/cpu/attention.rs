//! attention: multi-head self-attention over packed QKV with a key-padding mask.
//!
//! One rayon task per batch element (its rows of `out`, `lse` and `dqkv` are contiguous), heads
//! in turn inside it, so dK and dV are summed over queries within one task: no cross-thread
//! reduction, and the summation order never depends on the thread count.
use rayon::prelude::*;

use crate::backend::Attention;

/// Where head `h` of token `t` keeps its Q (`part` 0), K (1) or V (2) inside one batch element.
fn col(p: &Attention, t: usize, part: usize, h: usize) -> usize {
    let d = p.model_dim();
    t * 3 * d + part * d + h * p.head_dim
}

fn keeps(mask: Option<&[f32]>, t: usize) -> bool {
    mask.is_none_or(|m| m[t] != 0.0)
}

pub fn attention_fwd(
    p: &Attention,
    qkv: &[f32],
    mask: Option<&[f32]>,
    out: &mut [f32],
    lse: &mut [f32],
) {
    let (n, hd, d) = (p.tokens, p.head_dim, p.model_dim());
    if n == 0 {
        return;
    }
    out.par_chunks_mut(n * d)
        .zip(lse.par_chunks_mut(p.heads * n))
        .enumerate()
        .for_each(|(b, (out, lse))| {
            let qkv = &qkv[b * n * 3 * d..(b + 1) * n * 3 * d];
            let mask = mask.map(|m| &m[b * n..(b + 1) * n]);
            let mut s = vec![0.0f32; n];
            for h in 0..p.heads {
                for i in 0..n {
                    let q = &qkv[col(p, i, 0, h)..][..hd];
                    let mut m = f32::NEG_INFINITY;
                    for (j, s) in s.iter_mut().enumerate() {
                        *s = f32::NEG_INFINITY;
                        if keeps(mask, j) {
                            let k = &qkv[col(p, j, 1, h)..][..hd];
                            *s = p.scale * q.iter().zip(k).map(|(a, b)| a * b).sum::<f32>();
                            m = m.max(*s);
                        }
                    }
                    let o = &mut out[i * d + h * hd..][..hd];
                    o.fill(0.0);
                    if m == f32::NEG_INFINITY {
                        lse[h * n + i] = m;
                        continue;
                    }
                    let mut sum = 0.0;
                    for (j, s) in s.iter().enumerate() {
                        let e = (s - m).exp();
                        sum += e;
                        let v = &qkv[col(p, j, 2, h)..][..hd];
                        o.iter_mut().zip(v).for_each(|(o, v)| *o += e * v);
                    }
                    o.iter_mut().for_each(|o| *o /= sum);
                    lse[h * n + i] = m + sum.ln();
                }
            }
        });
}

#[allow(clippy::too_many_arguments)]
pub fn attention_bwd(
    p: &Attention,
    qkv: &[f32],
    mask: Option<&[f32]>,
    out: &[f32],
    lse: &[f32],
    dout: &[f32],
    dqkv: &mut [f32],
) {
    let (n, hd, d) = (p.tokens, p.head_dim, p.model_dim());
    if n == 0 {
        return;
    }
    dqkv.par_chunks_mut(n * 3 * d)
        .enumerate()
        .for_each(|(b, dqkv)| {
            dqkv.fill(0.0);
            let qkv = &qkv[b * n * 3 * d..(b + 1) * n * 3 * d];
            let (out, dout) = (&out[b * n * d..], &dout[b * n * d..]);
            let mask = mask.map(|m| &m[b * n..(b + 1) * n]);
            for h in 0..p.heads {
                for i in 0..n {
                    let l = lse[(b * p.heads + h) * n + i];
                    if l == f32::NEG_INFINITY {
                        continue;
                    }
                    let q = &qkv[col(p, i, 0, h)..][..hd];
                    let o = &out[i * d + h * hd..][..hd];
                    let g = &dout[i * d + h * hd..][..hd];
                    let di: f32 = g.iter().zip(o).map(|(a, b)| a * b).sum();
                    for j in (0..n).filter(|&j| keeps(mask, j)) {
                        let k = &qkv[col(p, j, 1, h)..][..hd];
                        let v = &qkv[col(p, j, 2, h)..][..hd];
                        let s = p.scale * q.iter().zip(k).map(|(a, b)| a * b).sum::<f32>();
                        let pr = (s - l).exp();
                        let dp: f32 = g.iter().zip(v).map(|(a, b)| a * b).sum();
                        let ds = pr * (dp - di) * p.scale;
                        for c in 0..hd {
                            dqkv[col(p, i, 0, h) + c] += ds * k[c];
                            dqkv[col(p, j, 1, h) + c] += ds * q[c];
                            dqkv[col(p, j, 2, h) + c] += pr * g[c];
                        }
                    }
                }
            }
        });
}
