//! flow: flow-matching interpolation and the masked MSE loss.
use rayon::prelude::*;

use super::loss::{lanes_sum, lanes_sum_mut, sample_block, sum_blocks, sum_blocks_mut, PAR_BLOCK};
use super::{CpuBackend, CpuBuffer};
use crate::backend::kernels::FlowKernels;
use crate::error::Result;

pub fn fm_prepare(
    x0: &[f32], x1: &[f32], t: &[f32], per_sample: usize, sigma_min: f32, xt: &mut [f32],
    u: &mut [f32],
) {
    let keep = 1.0 - sigma_min;
    // `start` is a multiple of `per_sample`: blocks hold whole samples.
    let block = |start: usize, xt: &mut [f32], u: &mut [f32]| {
        let (x0, x1) = (&x0[start..][..xt.len()], &x1[start..][..xt.len()]);
        let samples = xt
            .chunks_mut(per_sample)
            .zip(u.chunks_mut(per_sample))
            .zip(x0.chunks(per_sample).zip(x1.chunks(per_sample)));
        for (s, ((xt, u), (x0, x1))) in samples.enumerate() {
            let t = t[start / per_sample + s];
            let a = 1.0 - keep * t;
            let outs = xt.iter_mut().zip(u.iter_mut());
            for ((xt, u), (&x0, &x1)) in outs.zip(x0.iter().zip(x1)) {
                *xt = a * x0 + t * x1;
                *u = x1 - keep * x0;
            }
        }
    };
    if xt.len() > PAR_BLOCK {
        let len = sample_block(per_sample);
        xt.par_chunks_mut(len)
            .zip(u.par_chunks_mut(len))
            .enumerate()
            .for_each(|(b, (xt, u))| block(b * len, xt, u));
    } else {
        block(0, xt, u);
    }
}

pub fn fm_loss(
    pred: &[f32], target: &[f32], mask: Option<&[f32]>, loss: &mut [f32], dpred: &mut [f32],
) {
    let n = pred.len();
    let weight = mask.map_or(n as f64, |m| sum_blocks(n, |r| lanes_sum([&m[r]], |[m]| m as f64)));
    // max(Σ m, 1): an all-padding batch gives loss 0 and zero gradients, not NaN.
    let inv = 1.0 / weight.max(1.0);
    let grad_scale = (2.0 * inv) as f32;
    // One pass that writes dpred and reduces m (p - y)², each term formed in f32.
    let total = sum_blocks_mut(dpred, |start, dp| {
        let r = start..start + dp.len();
        let (p, y) = (&pred[r.clone()], &target[r.clone()]);
        match mask {
            Some(m) => lanes_sum_mut([p, y, &m[r]], dp, |[p, y, m]| {
                let d = p - y;
                (grad_scale * m * d, (m * d * d) as f64)
            }),
            None => lanes_sum_mut([p, y], dp, |[p, y]| {
                let d = p - y;
                (grad_scale * d, (d * d) as f64)
            }),
        }
    });
    loss[0] = (total * inv) as f32;
}

impl FlowKernels for CpuBackend {
    fn fm_prepare(
        &self, ins: [&CpuBuffer; 3], per_sample: usize, sigma_min: f32,
        [xt, u]: [&mut CpuBuffer; 2],
    ) -> Result<()> {
        let [x0, x1, t] = ins.map(CpuBuffer::f32);
        fm_prepare(x0, x1, t, per_sample, sigma_min, xt.f32_mut(), u.f32_mut());
        Ok(())
    }

    fn fm_loss(
        &self, pred: &CpuBuffer, target: &CpuBuffer, mask: Option<&CpuBuffer>,
        [loss, dpred]: [&mut CpuBuffer; 2],
    ) -> Result<()> {
        let mask = mask.map(CpuBuffer::f32);
        fm_loss(pred.f32(), target.f32(), mask, loss.f32_mut(), dpred.f32_mut());
        Ok(())
    }
}
