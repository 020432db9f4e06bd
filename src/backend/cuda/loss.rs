//! loss: binary cross-entropy with logits, scaled sums (`kernels/loss.cu`).

use super::context::{n32, Arg, CudaBuffer, Gpu};
use crate::error::Result;

pub(super) fn bce_with_logits(
    g: &Gpu,
    logits: &CudaBuffer,
    targets: &CudaBuffer,
    loss: &CudaBuffer,
    dlogits: &CudaBuffer,
) -> Result<()> {
    let n = n32(logits.len())?;
    g.reduce("bce_with_logits", n, |partials, ticket| {
        vec![
            Arg::P(logits.ptr()),
            Arg::P(targets.ptr()),
            Arg::P(loss.ptr()),
            Arg::P(dlogits.ptr()),
            partials,
            ticket,
            Arg::U(n),
        ]
    })
}

pub(super) fn reduce_sum(g: &Gpu, x: &CudaBuffer, scale: f32, out: &CudaBuffer) -> Result<()> {
    let n = n32(x.len())?;
    g.reduce("reduce_sum", n, |partials, ticket| {
        vec![
            Arg::P(x.ptr()),
            Arg::P(out.ptr()),
            partials,
            ticket,
            Arg::U(n),
            Arg::F(scale),
        ]
    })
}
