//! norm: layer norm forward (optionally fused with the residual add) and backward.
//!
//! Rows are independent, so both passes run over fixed chunks of rows in parallel. Row
//! statistics are two-pass sums in f64 lanes (vectorised, fixed order); the parameter gradients
//! are summed per chunk and the chunk sums added in chunk order, so no result depends on the
//! thread count.
use rayon::prelude::*;

use super::lanes::widest;
use super::loss::lanes_sum;
use super::{CpuBackend, CpuBuffer};
use crate::backend::kernels::NormKernels;
use crate::backend::LayerNorm;
use crate::error::Result;

/// Rows per parallel task: fixed (not derived from the thread count) so that the parameter
/// gradient sums keep one order everywhere.
const ROWS_PER_TASK: usize = 64;

#[allow(clippy::too_many_arguments)]
pub fn layer_norm_fwd(
    p: &LayerNorm, x: &[f32], residual: Option<&[f32]>, gamma: &[f32], beta: &[f32], y: &mut [f32],
    mean: &mut [f32], rstd: &mut [f32], sum_out: Option<&mut [f32]>,
) {
    let c = p.cols;
    if p.rows == 0 || c == 0 {
        return;
    }
    let chunk = ROWS_PER_TASK * c;
    let tasks = y
        .par_chunks_mut(chunk)
        .zip(mean.par_chunks_mut(ROWS_PER_TASK))
        .zip(rstd.par_chunks_mut(ROWS_PER_TASK))
        .enumerate();
    let normalise = |h: &[f32], y: &mut [f32], mean: &mut [f32], rstd: &mut [f32]| {
        widest(
            #[inline(always)]
            || normalise_rows(h, gamma, beta, p.eps, y, mean, rstd),
        )
    };
    // h = x + residual over one task's rows.
    let add = |h: &mut [f32], t: usize, res: &[f32]| {
        let (x, res) = (&x[t * chunk..][..h.len()], &res[t * chunk..][..h.len()]);
        widest(
            #[inline(always)]
            || {
                for ((h, x), r) in h.iter_mut().zip(x).zip(res) {
                    *h = x + r;
                }
            },
        );
    };
    match (residual, sum_out) {
        (Some(res), Some(sum)) => {
            tasks.zip(sum.par_chunks_mut(chunk)).for_each(|((t, ((y, mean), rstd)), h)| {
                add(h, t, res);
                normalise(h, y, mean, rstd);
            })
        }
        // No one keeps the sum: it is formed in y, in cache, and normalised in place there.
        (Some(res), None) => tasks.for_each(|(t, ((y, mean), rstd))| {
            add(y, t, res);
            widest(
                #[inline(always)]
                || normalise_rows_in_place(y, gamma, beta, p.eps, mean, rstd),
            )
        }),
        (None, _) => tasks.for_each(|(t, ((y, mean), rstd))| {
            normalise(&x[t * chunk..][..y.len()], y, mean, rstd)
        }),
    }
}

/// Writes normalised rows (`h` and `y` hold `mean.len()` rows) and their statistics.
#[inline(always)]
fn normalise_rows(
    h: &[f32], gamma: &[f32], beta: &[f32], eps: f32, y: &mut [f32], mean: &mut [f32],
    rstd: &mut [f32],
) {
    let c = gamma.len();
    for (((h, y), mean), rstd) in h.chunks_exact(c).zip(y.chunks_exact_mut(c)).zip(mean).zip(rstd) {
        (*mean, *rstd) = normalise_row(h, gamma, beta, eps, y);
    }
}

/// [`normalise_rows`] with `h` in `y`, overwritten.
#[inline(always)]
fn normalise_rows_in_place(
    y: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32, mean: &mut [f32], rstd: &mut [f32],
) {
    let c = gamma.len();
    for ((y, mean), rstd) in y.chunks_exact_mut(c).zip(mean).zip(rstd) {
        let (m, r) = row_stats(y, eps);
        for ((y, &g), &b) in y.iter_mut().zip(gamma).zip(beta) {
            *y = (*y - m) * r * g + b;
        }
        (*mean, *rstd) = (m, r);
    }
}

/// Writes one normalised row and returns its mean and reciprocal standard deviation.
#[inline(always)]
fn normalise_row(h: &[f32], gamma: &[f32], beta: &[f32], eps: f32, y: &mut [f32]) -> (f32, f32) {
    let (mean, rstd) = row_stats(h, eps);
    for (((y, &h), &g), &b) in y.iter_mut().zip(h).zip(gamma).zip(beta) {
        *y = (h - mean) * rstd * g + b;
    }
    (mean, rstd)
}

/// A row's mean and reciprocal standard deviation: two passes, in f64 lanes.
#[inline(always)]
fn row_stats(h: &[f32], eps: f32) -> (f32, f32) {
    let n = h.len() as f64;
    let mean = lanes_sum([h], |[h]| h as f64) / n;
    let var = lanes_sum([h], |[h]| (h as f64 - mean).powi(2)) / n;
    (mean as f32, (1.0 / (var + eps as f64).sqrt()) as f32)
}

#[allow(clippy::too_many_arguments)]
pub fn layer_norm_bwd(
    p: &LayerNorm, h: &[f32], dy: &[f32], gamma: &[f32], mean: &[f32], rstd: &[f32],
    dh: &mut [f32], dgamma: &mut [f32], dbeta: &mut [f32], accumulate_params: bool,
) {
    let c = p.cols;
    if !accumulate_params {
        dgamma.fill(0.0);
        dbeta.fill(0.0);
    }
    if p.rows == 0 || c == 0 {
        return;
    }
    let chunk = ROWS_PER_TASK * c;
    // Per task: its dgamma partial sums, then its dbeta partial sums.
    let mut partial = vec![0.0f32; p.rows.div_ceil(ROWS_PER_TASK) * 2 * c];
    partial.par_chunks_mut(2 * c).zip(dh.par_chunks_mut(chunk)).enumerate().for_each(
        |(t, (partial, dh))| {
            let (pg, pb) = partial.split_at_mut(c);
            let rows = t * ROWS_PER_TASK..;
            let (h, dy) = (&h[t * chunk..][..dh.len()], &dy[t * chunk..][..dh.len()]);
            let stats = mean[rows.clone()].iter().zip(&rstd[rows]);
            let rows = h.chunks_exact(c).zip(dy.chunks_exact(c)).zip(dh.chunks_exact_mut(c));
            for (((h, dy), dh), (&mu, &rs)) in rows.zip(stats) {
                let g_mean = lanes_sum([dy, gamma], |[dy, g]| (dy * g) as f64) / c as f64;
                let gx_mean =
                    lanes_sum([h, dy, gamma], |[h, dy, g]| (dy * g * ((h - mu) * rs)) as f64)
                        / c as f64;
                let (g_mean, gx_mean) = (g_mean as f32, gx_mean as f32);
                let cols = h.iter().zip(dy).zip(gamma).zip(pg.iter_mut().zip(pb.iter_mut()));
                for ((((&h, &dy), &g), (pg, pb)), dh) in cols.zip(dh) {
                    let xhat = (h - mu) * rs;
                    *dh = rs * (dy * g - g_mean - xhat * gx_mean);
                    *pg += dy * xhat;
                    *pb += dy;
                }
            }
        },
    );
    for part in partial.chunks_exact(2 * c) {
        let (pg, pb) = part.split_at(c);
        dgamma.iter_mut().zip(pg).for_each(|(d, v)| *d += v);
        dbeta.iter_mut().zip(pb).for_each(|(d, v)| *d += v);
    }
}

impl NormKernels for CpuBackend {
    fn layer_norm_fwd(
        &self, p: &LayerNorm, [x, gamma, beta]: [&CpuBuffer; 3],
        residual: Option<(&CpuBuffer, Option<&mut CpuBuffer>)>,
        [y, mean, rstd]: [&mut CpuBuffer; 3],
    ) -> Result<()> {
        let (residual, sum_out) = residual.map(|(r, s)| (r.f32(), s.map(|s| s.f32_mut()))).unzip();
        let sum_out = sum_out.flatten();
        let (x, gamma, beta) = (x.f32(), gamma.f32(), beta.f32());
        let outs = (y.f32_mut(), mean.f32_mut(), rstd.f32_mut());
        layer_norm_fwd(p, x, residual, gamma, beta, outs.0, outs.1, outs.2, sum_out);
        Ok(())
    }

    fn layer_norm_bwd(
        &self, p: &LayerNorm, ins: [&CpuBuffer; 5], [dh, dgamma, dbeta]: [&mut CpuBuffer; 3],
        accumulate_params: bool,
    ) -> Result<()> {
        let [h, dy, gamma, mean, rstd] = ins.map(CpuBuffer::f32);
        let outs = (dh.f32_mut(), dgamma.f32_mut(), dbeta.f32_mut());
        layer_norm_bwd(p, h, dy, gamma, mean, rstd, outs.0, outs.1, outs.2, accumulate_params);
        Ok(())
    }
}
