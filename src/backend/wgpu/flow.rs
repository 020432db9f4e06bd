//! flow: flow-matching interpolation and the fused masked-MSE loss (`shaders/flow.wgsl`).

use super::context::{groups, Kernel, WgpuBuffer};
use super::loss::{reduction, split_f32, ONE};
use super::WgpuBackend;
use crate::backend::kernels::FlowKernels;
use crate::error::Result;

const fn k(entry: &'static str) -> Kernel {
    Kernel { shader: "flow", entry }
}

impl FlowKernels for WgpuBackend {
    fn fm_prepare(
        &self, [x0, x1, t]: [&WgpuBuffer; 3], per_sample: usize, sigma_min: f32,
        [xt, u]: [&mut WgpuBuffer; 2],
    ) -> Result<()> {
        let g = &self.gpu;
        let n = xt.len();
        let keep = 1.0 - sigma_min;
        g.dispatch(
            k("fm_prepare"),
            &[n as u32, per_sample as u32, keep.to_bits()],
            &[x0, x1, t, xt, u],
            groups(n, 256)?,
        )
    }

    /// Two dispatches at most: see flow.wgsl.
    fn fm_loss(
        &self, pred: &WgpuBuffer, target: &WgpuBuffer, mask: Option<&WgpuBuffer>,
        [loss, dpred]: [&mut WgpuBuffer; 2],
    ) -> Result<()> {
        let g = &self.gpu;
        let n = pred.len();
        let r = reduction(n)?;
        // Without a mask the weight is max(n, 1), and the gradient factor 2 / max(n, 1) is
        // rounded once, as the CPU backend forms it.
        let (w_hi, w_lo) = split_f32(n.max(1));
        let grad = (2.0 / n.max(1) as f64) as f32;
        let params = [r.n, r.chunk, r.groups, grad.to_bits(), w_hi.to_bits(), w_lo.to_bits(), ONE];
        match mask {
            None if r.single() => {
                g.dispatch(k("fm_plain_partial"), &params, &[pred, target, dpred, loss], 1)
            }
            None => {
                let partials = g.scratch(2 * r.groups as usize)?;
                g.dispatch(
                    k("fm_plain_partial"),
                    &params,
                    &[pred, target, dpred, &partials],
                    r.groups,
                )?;
                g.dispatch(k("fm_plain_finish"), &params, &[&partials, loss], 1)
            }
            Some(mask) => {
                let partials = if r.single() {
                    g.placeholder()?
                } else {
                    let partials = g.scratch(4 * r.groups as usize)?;
                    g.dispatch(
                        k("fm_masked_partial"),
                        &params,
                        &[pred, target, mask, &partials],
                        r.groups,
                    )?;
                    partials
                };
                g.dispatch(
                    k("fm_masked_apply"),
                    &params,
                    &[pred, target, mask, &partials, dpred, loss],
                    r.groups,
                )
            }
        }
    }
}
