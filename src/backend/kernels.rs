//! The unchecked kernel traits that every backend implements.
//!
//! [`Backend`](super::Backend) is the checked contract the layers above call; its one
//! implementation (`checked.rs`) validates every argument and then calls these traits with the
//! backend's own buffer type. An implementation may therefore trust its arguments: lengths fit
//! the parameters, every buffer has the dtype the contract names and belongs to this backend,
//! and index values are in range where the host can see them. The semantics of each method are
//! those of the `Backend` method of the same name.
//!
//! One trait per kernel family, each implemented in the backend's file of the same stem
//! (`cpu/norm.rs`, `wgpu/norm.rs`, `cuda/norm.rs`, beside `shaders/norm.wgsl` and
//! `kernels/norm.cu`). [`Storage`] is the memory every kernel works on.

use super::{AdamW, Attention, Buffer, CopyCols, DType, Gemm, LayerNorm};
use crate::error::Result;

/// A backend's memory: its buffer type, how it sits inside a [`Buffer`], and the host
/// transfers.
pub trait Storage: Send + Sync {
    /// The backend's own buffer.
    type Buf;

    /// Short name: `cpu`, `wgpu`, `cuda`.
    fn name(&self) -> &'static str;
    fn device_name(&self) -> String;
    fn synchronize(&self) -> Result<()>;
    fn buffers_allocated(&self) -> u64;

    fn wrap(buf: Self::Buf) -> Buffer;
    /// The backend's buffer inside `buf`, or `None` for a buffer of another backend.
    fn unwrap(buf: &Buffer) -> Option<&Self::Buf>;
    fn unwrap_mut(buf: &mut Buffer) -> Option<&mut Self::Buf>;
    /// The values of a u32 buffer where the host can read them without a transfer (the CPU
    /// backend), so that the checked layer can validate indices; `None` on a device.
    fn host_u32(_buf: &Self::Buf) -> Option<&[u32]> {
        None
    }

    /// A zero-filled buffer.
    fn alloc(&self, dtype: DType, len: usize) -> Result<Self::Buf>;
    /// A new buffer holding `data` (4 bytes per element).
    fn upload(&self, dtype: DType, data: &[u8]) -> Result<Self::Buf>;
    /// Overwrites `dst` with `data`, which has its length.
    fn write(&self, dst: &mut Self::Buf, data: &[u8]) -> Result<()>;
    fn read<T: bytemuck::Pod>(&self, src: &Self::Buf) -> Result<Vec<T>>;
    /// Copies `len` elements; the ranges lie inside their buffers.
    fn copy(
        &self, src: &Self::Buf, src_offset: usize, dst: &mut Self::Buf, dst_offset: usize,
        len: usize,
    ) -> Result<()>;
}

pub trait MemoryKernels: Storage {
    fn copy_cols(&self, p: &CopyCols, src: &Self::Buf, dst: &mut Self::Buf) -> Result<()>;
    fn fill(&self, dst: &mut Self::Buf, value: f32) -> Result<()>;
    fn gather_rows(
        &self, src: &Self::Buf, idx: &Self::Buf, row_len: usize, dst: &mut Self::Buf,
    ) -> Result<()>;
    fn scatter_rows(
        &self, src: &Self::Buf, idx: &Self::Buf, row_len: usize, dst: &mut Self::Buf,
    ) -> Result<()>;
}

pub trait RandomKernels: Storage {
    fn normal_fill(&self, dst: &mut Self::Buf, seed: u64, offset: u64) -> Result<()>;
    fn uniform_fill(
        &self, dst: &mut Self::Buf, seed: u64, offset: u64, range: (f32, f32),
    ) -> Result<()>;
}

pub trait MatmulKernels: Storage {
    /// Whether `gemm` takes [`super::Precision::Bf16`] (else the checked layer refuses it).
    fn supports_bf16(&self) -> bool {
        false
    }
    fn gemm(
        &self, p: &Gemm, ab: [&Self::Buf; 2], bias: Option<&Self::Buf>, c: &mut Self::Buf,
    ) -> Result<()>;
    /// `shape` is `(rows, cols)` of `dy`.
    fn bias_grad(
        &self, dy: &Self::Buf, shape: (usize, usize), db: &mut Self::Buf, acc: bool,
    ) -> Result<()>;
}

pub trait ElementwiseKernels: Storage {
    fn add(&self, a: &Self::Buf, b: &Self::Buf, out: &mut Self::Buf) -> Result<()>;
    fn scale(&self, x: &Self::Buf, alpha: f32, out: &mut Self::Buf) -> Result<()>;
    fn axpy(&self, alpha: f32, x: &Self::Buf, y: &mut Self::Buf) -> Result<()>;
    fn relu_fwd(&self, x: &Self::Buf, out: &mut Self::Buf) -> Result<()>;
    fn relu_bwd(&self, y: &Self::Buf, dy: &Self::Buf, dx: &mut Self::Buf, acc: bool) -> Result<()>;
}

/// Layer norm's buffers: the inputs, the outputs of the forward (`y`, `mean`, `rstd`), and of
/// the backward (`dh`, `dgamma`, `dbeta`).
pub trait NormKernels: Storage {
    /// `ins` is `[x, gamma, beta]`; `residual` is `(residual, sum_out)`, with `sum_out` absent
    /// where no backward will read x + residual.
    fn layer_norm_fwd(
        &self, p: &LayerNorm, ins: [&Self::Buf; 3],
        residual: Option<(&Self::Buf, Option<&mut Self::Buf>)>, outs: [&mut Self::Buf; 3],
    ) -> Result<()>;
    /// `ins` is `[h, dy, gamma, mean, rstd]`, `outs` is `[dh, dgamma, dbeta]`.
    fn layer_norm_bwd(
        &self, p: &LayerNorm, ins: [&Self::Buf; 5], outs: [&mut Self::Buf; 3],
        accumulate_params: bool,
    ) -> Result<()>;
}

pub trait AttentionKernels: Storage {
    /// `outs` is `[out, lse]`.
    fn attention_fwd(
        &self, p: &Attention, qkv: &Self::Buf, mask: Option<&Self::Buf>, outs: [&mut Self::Buf; 2],
    ) -> Result<()>;
    /// `saved` is `[out, lse, dout]`.
    fn attention_bwd(
        &self, p: &Attention, qkv: &Self::Buf, mask: Option<&Self::Buf>, saved: [&Self::Buf; 3],
        dqkv: &mut Self::Buf,
    ) -> Result<()>;
}

/// `dims` of the Fourier features is `(rows, in_dim, half)`.
pub trait EmbeddingKernels: Storage {
    fn embedding_fwd(
        &self, table: &Self::Buf, ids: &Self::Buf, dim: usize, out: &mut Self::Buf,
    ) -> Result<()>;
    fn embedding_bwd(
        &self, dout: &Self::Buf, ids: &Self::Buf, dim: usize, dtable: &mut Self::Buf, acc: bool,
    ) -> Result<()>;
    /// `ins` is `[x, freqs]`.
    fn fourier_fwd(
        &self, ins: [&Self::Buf; 2], dims: (usize, usize, usize), out: &mut Self::Buf,
    ) -> Result<()>;
    /// `ins` is `[x, freqs, dout]`.
    fn fourier_bwd(
        &self, ins: [&Self::Buf; 3], dims: (usize, usize, usize), dfreqs: &mut Self::Buf, acc: bool,
    ) -> Result<()>;
}

pub trait FlowKernels: Storage {
    /// `ins` is `[x0, x1, t]`, `outs` is `[xt, u]`.
    fn fm_prepare(
        &self, ins: [&Self::Buf; 3], per_sample: usize, sigma_min: f32, outs: [&mut Self::Buf; 2],
    ) -> Result<()>;
    /// `outs` is `[loss, dpred]`.
    fn fm_loss(
        &self, pred: &Self::Buf, target: &Self::Buf, mask: Option<&Self::Buf>,
        outs: [&mut Self::Buf; 2],
    ) -> Result<()>;
}

pub trait OdeKernels: Storage {
    /// `ins` is `[x, k, h]`.
    fn ode_stage(
        &self, ins: [&Self::Buf; 3], coeffs: &[f32], per_sample: usize, out: &mut Self::Buf,
    ) -> Result<()>;
    /// `ins` is `[x, x_new, k, h]`, `shape` is `(per_sample, (rtol, atol))`.
    fn dopri5_error(
        &self, ins: [&Self::Buf; 4], err_coeffs: &[f32], shape: (usize, (f32, f32)),
        err: &mut Self::Buf,
    ) -> Result<()>;
    /// `ins` is `[x_new, err]`, `state` is `[x, t, h]`.
    fn dopri5_accept(
        &self, ins: [&Self::Buf; 2], state: [&mut Self::Buf; 3], per_sample: usize, t_end: f32,
    ) -> Result<()>;
}

pub trait OptimKernels: Storage {
    fn sum_squares(&self, x: &Self::Buf, out: &mut Self::Buf, acc: bool) -> Result<()>;
    /// `state` is `[param, m, v]`.
    fn adamw_step(
        &self, p: &AdamW, grad: &Self::Buf, state: [&mut Self::Buf; 3],
        clip: Option<(&Self::Buf, f32)>,
    ) -> Result<()>;
}

pub trait LossKernels: Storage {
    /// `outs` is `[loss, dlogits]`.
    fn bce_with_logits(
        &self, logits: &Self::Buf, targets: &Self::Buf, outs: [&mut Self::Buf; 2],
    ) -> Result<()>;
    fn reduce_sum(&self, x: &Self::Buf, scale: f32, out: &mut Self::Buf) -> Result<()>;
}
