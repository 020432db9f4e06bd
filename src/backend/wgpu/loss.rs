//! loss: BCE with logits and scaled sums (`shaders/loss.wgsl`), and the shape of the
//! fixed-order reductions that `optim` and `flow` share.

use super::context::{Gpu, Kernel, WgpuBuffer};
use super::WgpuBackend;
use crate::backend::kernels::LossKernels;
use crate::error::{Error, Result};

const fn k(entry: &'static str) -> Kernel {
    Kernel { shader: "loss", entry }
}

/// The bits of 1.0, for the `one` parameter of every kernel that uses double-float sums
/// (see common.wgsl: a 1.0 the shader compiler cannot fold away).
pub(super) const ONE: u32 = 0x3f80_0000;

/// Elements per workgroup below which a reduction uses fewer groups (16 per thread).
const MIN_CHUNK: usize = 4096;
/// Most workgroups in a reduction's first pass, so the second pass is one workgroup reading
/// at most four partials per thread.
const MAX_GROUPS: usize = 1024;

/// The shape of a reduction over `n` elements: `groups` workgroups, each over `chunk`
/// consecutive elements. It depends on `n` only, so the summation order (and every bit of
/// the result) is the same on every run and every adapter of one kind.
#[derive(Clone, Copy, Debug)]
pub(super) struct Reduction {
    pub n: u32,
    pub groups: u32,
    pub chunk: u32,
}

pub(super) fn reduction(n: usize) -> Result<Reduction> {
    let groups = n.div_ceil(MIN_CHUNK).clamp(1, MAX_GROUPS);
    let chunk = n.div_ceil(groups);
    let n = u32::try_from(n)
        .map_err(|_| Error::Shape(format!("{n} elements are too many for one wgpu reduction")))?;
    Ok(Reduction { n, groups: groups as u32, chunk: chunk as u32 })
}

impl Reduction {
    /// Whether the first pass writes the result itself (a single workgroup).
    pub fn single(&self) -> bool {
        self.groups == 1
    }
}

/// `n` as a double-float `(hi, lo)`: exact for any length.
pub(super) fn split_f32(n: usize) -> (f32, f32) {
    let hi = n as f32;
    (hi, (n as f64 - hi as f64) as f32)
}

/// Runs `partial` (whose last buffer is the output) and, over several groups, `sum_finish`.
fn reduce(
    g: &Gpu, r: Reduction, partial: &'static str, params: &[u32], inputs: &[&WgpuBuffer],
    out: &WgpuBuffer,
) -> Result<()> {
    if r.single() {
        let mut bufs = inputs.to_vec();
        bufs.push(out);
        return g.dispatch(k(partial), params, &bufs, 1);
    }
    let partials = g.scratch(2 * r.groups as usize)?;
    let mut bufs = inputs.to_vec();
    bufs.push(&partials);
    g.dispatch(k(partial), params, &bufs, r.groups)?;
    g.dispatch(k("sum_finish"), params, &[&partials, out], 1)
}

/// `[n, chunk, groups, mode, scale, n_hi, n_lo, grad, one]`, as `Red` in loss.wgsl.
fn params(r: Reduction, mode: u32, scale: f32, n: usize, grad: f32) -> [u32; 9] {
    let (hi, lo) = split_f32(n.max(1));
    [r.n, r.chunk, r.groups, mode, scale.to_bits(), hi.to_bits(), lo.to_bits(), grad.to_bits(), ONE]
}

impl LossKernels for WgpuBackend {
    fn bce_with_logits(
        &self, logits: &WgpuBuffer, targets: &WgpuBuffer, [loss, dlogits]: [&mut WgpuBuffer; 2],
    ) -> Result<()> {
        let g = &self.gpu;
        let n = logits.len();
        let r = reduction(n)?;
        // 1/n rounded once, as the CPU backend forms it.
        let grad = (1.0 / n.max(1) as f64) as f32;
        let p = params(r, 1, 1.0, n, grad);
        reduce(g, r, "bce_partial", &p, &[logits, targets, dlogits], loss)
    }

    fn reduce_sum(&self, x: &WgpuBuffer, scale: f32, out: &mut WgpuBuffer) -> Result<()> {
        let g = &self.gpu;
        let r = reduction(x.len())?;
        let p = params(r, 0, scale, x.len(), 0.0);
        reduce(g, r, "sum_partial", &p, &[x], out)
    }
}
