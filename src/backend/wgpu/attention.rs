//! attention: flash-style multi-head attention forward and backward (`shaders/attention.wgsl`).
//!
//! Every kernel runs one invocation per row (a query row, or a key row in the dK/dV pass) in
//! workgroups of [`ROWS`] rows of one (batch, head), and walks the other side in tiles staged in
//! workgroup memory, so nothing of size N × N is ever stored. The forward is one dispatch (online
//! softmax); the backward is two, both recomputing the probabilities from the saved `lse`: dQ
//! (one invocation per query row, over key tiles) and dK/dV (one per key row, over query
//! tiles). `Δ_i = dout_i · out_i` is recomputed inside both backward kernels by one shared
//! function (a head row is at most 64 products), which saves a third dispatch and a scratch
//! buffer: the backend allocates nothing here beyond the pooled mask placeholder.

use super::context::{groups, Kernel, WgpuBuffer};
use super::WgpuBackend;
use crate::backend::kernels::AttentionKernels;
use crate::backend::Attention;
use crate::error::{Error, Result};

/// Rows per workgroup (the shader's `ROWS` and `@workgroup_size`).
const ROWS: usize = 64;
/// The widest head the shader holds in registers (`4 · MAX_HD4` there).
const MAX_HEAD_DIM: usize = 64;

const fn k(entry: &'static str) -> Kernel {
    Kernel { shader: "attention", entry }
}

/// The shader's parameters and the number of workgroups of one launch (same for all three
/// kernels: one workgroup per (batch, head, block of `ROWS` rows)).
fn launch(p: &Attention, has_mask: bool) -> Result<([u32; 7], u32)> {
    if p.head_dim > MAX_HEAD_DIM {
        return Err(Error::Invalid(format!(
            "attention: the wgpu backend supports head_dim up to {MAX_HEAD_DIM}, got {} \
             (use more heads of a smaller width, or the CPU backend)",
            p.head_dim
        )));
    }
    let small = |what: &str, v: usize| {
        u32::try_from(v)
            .map_err(|_| Error::Shape(format!("attention: {what} = {v} is too large for wgpu")))
    };
    let params = [
        small("batch", p.batch)?,
        small("tokens", p.tokens)?,
        small("heads", p.heads)?,
        p.head_dim as u32,
        has_mask as u32,
        p.scale.to_bits(),
        (p.scale * std::f32::consts::LOG2_E).to_bits(),
    ];
    let blocks = p.batch * p.heads * p.tokens.div_ceil(ROWS);
    Ok((params, groups(blocks, 1)?))
}

impl AttentionKernels for WgpuBackend {
    fn attention_fwd(
        &self, p: &Attention, qkv: &WgpuBuffer, mask: Option<&WgpuBuffer>,
        [out, lse]: [&mut WgpuBuffer; 2],
    ) -> Result<()> {
        let g = &self.gpu;
        let (params, n) = launch(p, mask.is_some())?;
        let placeholder;
        let mask = match mask {
            Some(m) => m,
            None => {
                placeholder = g.placeholder()?;
                &placeholder
            }
        };
        g.dispatch(k("attention_fwd"), &params, &[qkv, mask, out, lse], n)
    }

    fn attention_bwd(
        &self, p: &Attention, qkv: &WgpuBuffer, mask: Option<&WgpuBuffer>,
        [out, lse, dout]: [&WgpuBuffer; 3], dqkv: &mut WgpuBuffer,
    ) -> Result<()> {
        let g = &self.gpu;
        let (params, n) = launch(p, mask.is_some())?;
        let placeholder;
        let mask = match mask {
            Some(m) => m,
            None => {
                placeholder = g.placeholder()?;
                &placeholder
            }
        };
        let bufs = [qkv, mask, out, lse, dout, dqkv];
        // The two passes write disjoint parts of dqkv (the q columns, then the k and v columns).
        g.dispatch(k("attention_dq"), &params, &bufs, n)?;
        g.dispatch(k("attention_dkv"), &params, &bufs, n)
    }
}
