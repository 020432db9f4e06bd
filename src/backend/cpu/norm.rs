//! norm: layer norm forward (optionally fused with the residual add) and backward.
//!
//! Rows are independent, so both passes run over fixed chunks of rows in parallel. The
//! parameter gradients are summed per chunk and the chunk sums added in chunk order, so the
//! result does not depend on the thread count.
use rayon::prelude::*;

use crate::backend::LayerNorm;

/// Rows per parallel task: fixed (not derived from the thread count) so that the parameter
/// gradient sums keep one order everywhere.
const ROWS_PER_TASK: usize = 64;

#[allow(clippy::too_many_arguments)]
pub fn layer_norm_fwd(
    p: &LayerNorm,
    x: &[f32],
    residual: Option<&[f32]>,
    gamma: &[f32],
    beta: &[f32],
    y: &mut [f32],
    mean: &mut [f32],
    rstd: &mut [f32],
    sum_out: Option<&mut [f32]>,
) {
    let c = p.cols;
    if p.rows == 0 || c == 0 {
        return;
    }
    let normalise = |h: &[f32], y: &mut [f32], mean: &mut f32, rstd: &mut f32| {
        let mu = h.iter().sum::<f32>() / c as f32;
        let var = h.iter().map(|v| (v - mu) * (v - mu)).sum::<f32>() / c as f32;
        let r = 1.0 / (var + p.eps).sqrt();
        for (((y, h), g), b) in y.iter_mut().zip(h).zip(gamma).zip(beta) {
            *y = (h - mu) * r * g + b;
        }
        (*mean, *rstd) = (mu, r);
    };
    let rows = y
        .par_chunks_mut(c)
        .zip(mean.par_iter_mut())
        .zip(rstd.par_iter_mut())
        .enumerate();
    match (residual, sum_out) {
        (Some(res), Some(sum)) => {
            rows.zip(sum.par_chunks_mut(c))
                .for_each(|((i, ((y, mean), rstd)), h)| {
                    for ((h, x), r) in h.iter_mut().zip(&x[i * c..]).zip(&res[i * c..]) {
                        *h = x + r;
                    }
                    normalise(h, y, mean, rstd);
                })
        }
        _ => {
            rows.for_each(|(i, ((y, mean), rstd))| normalise(&x[i * c..(i + 1) * c], y, mean, rstd))
        }
    }
}

#[allow(clippy::too_many_arguments)]
pub fn layer_norm_bwd(
    p: &LayerNorm,
    h: &[f32],
    dy: &[f32],
    gamma: &[f32],
    mean: &[f32],
    rstd: &[f32],
    dh: &mut [f32],
    dgamma: &mut [f32],
    dbeta: &mut [f32],
    accumulate_params: bool,
) {
    let c = p.cols;
    if !accumulate_params {
        dgamma.fill(0.0);
        dbeta.fill(0.0);
    }
    if p.rows == 0 || c == 0 {
        return;
    }
    let tasks = p.rows.div_ceil(ROWS_PER_TASK);
    // Per task: dgamma partial sums, then dbeta partial sums.
    let mut partial = vec![0.0f32; tasks * 2 * c];
    partial
        .par_chunks_mut(2 * c)
        .zip(dh.par_chunks_mut(ROWS_PER_TASK * c))
        .enumerate()
        .for_each(|(t, (partial, dh))| {
            let (pg, pb) = partial.split_at_mut(c);
            for (r, dh) in dh.chunks_mut(c).enumerate() {
                let i = t * ROWS_PER_TASK + r;
                let (h, dy) = (&h[i * c..(i + 1) * c], &dy[i * c..(i + 1) * c]);
                let (mu, rs) = (mean[i], rstd[i]);
                let (mut a, mut b) = (0.0f32, 0.0f32);
                for (j, (&h, &dy)) in h.iter().zip(dy).enumerate() {
                    let xhat = (h - mu) * rs;
                    let g = dy * gamma[j];
                    a += g;
                    b += g * xhat;
                    pg[j] += dy * xhat;
                    pb[j] += dy;
                }
                let (a, b) = (a / c as f32, b / c as f32);
                for (j, (dh, &h)) in dh.iter_mut().zip(h).enumerate() {
                    let xhat = (h - mu) * rs;
                    *dh = rs * (dy[j] * gamma[j] - a - xhat * b);
                }
            }
        });
    for part in partial.chunks(2 * c) {
        let (pg, pb) = part.split_at(c);
        dgamma.iter_mut().zip(pg).for_each(|(d, v)| *d += v);
        dbeta.iter_mut().zip(pb).for_each(|(d, v)| *d += v);
    }
}
