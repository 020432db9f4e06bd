//! The kernel contract: one trait with one method per kernel, implemented by every backend.
//!
//! Everything above this module sees only [`Backend`], [`Buffer`] and the parameter structs
//! defined here; no `wgpu` or `cudarc` type leaves `backend/`. All tensors are row-major and
//! contiguous; all floating-point data is f32, indices are u32, masks are f32 (1 = keep, 0 = pad).
//!
//! Conventions every implementation follows:
//! - Output buffers are passed as `&mut Buffer` and are overwritten unless the entry says it
//!   accumulates. Every call is checked before a kernel runs: a wrong length is a
//!   [`crate::Error::Shape`], never a panic, and a rejected call writes nothing.
//! - Scalar results (losses, norms) stay on the device in one-element buffers, so a training step
//!   or an ODE step never has to read anything back.
//! - Reductions run in a fixed order, and nothing that feeds a gradient uses float atomics: the
//!   same inputs give bit-identical outputs run to run on one backend.

pub(crate) mod check;
mod checked;
pub mod cpu;
#[cfg(feature = "cuda")]
pub mod cuda;
mod device;
pub mod kernels;
mod select;
#[cfg(feature = "wgpu")]
pub mod wgpu;

pub use device::Device;
pub use select::{
    kind_from_env, probe, quiet_headless_vulkan, select, BackendKind, BackendReport, CUDA_KERNELS,
};

use crate::error::Result;

/// Element type of a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    U32,
}

/// An opaque device buffer. Only backends look inside.
#[derive(Debug)]
pub enum Buffer {
    Cpu(cpu::CpuBuffer),
    #[cfg(feature = "wgpu")]
    Wgpu(wgpu::WgpuBuffer),
    #[cfg(feature = "cuda")]
    Cuda(cuda::CudaBuffer),
}

impl Buffer {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            Buffer::Cpu(b) => b.len(),
            #[cfg(feature = "wgpu")]
            Buffer::Wgpu(b) => b.len(),
            #[cfg(feature = "cuda")]
            Buffer::Cuda(b) => b.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn dtype(&self) -> DType {
        match self {
            Buffer::Cpu(b) => b.dtype(),
            #[cfg(feature = "wgpu")]
            Buffer::Wgpu(b) => b.dtype(),
            #[cfg(feature = "cuda")]
            Buffer::Cuda(b) => b.dtype(),
        }
    }
}

/// What a GEMM does after the product, fused in the same pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Epilogue {
    None,
    /// Add `bias[j]` to every row of C.
    Bias,
    /// Add `bias[j]`, then ReLU.
    BiasRelu,
}

/// Batched GEMM: for each `b < batch`,
/// `C[b] = alpha · op(A[b]) · op(B[b]) + beta · C[b]`, then the epilogue.
///
/// `op(A)` is `m × k` (stored `k × m` when `trans_a`), `op(B)` is `k × n` (stored `n × k` when
/// `trans_b`), C is `m × n`. Batch `b` starts at `b · stride_*` elements; a stride of 0
/// broadcasts one matrix to every batch. With `beta == 0` C is not read (it may hold NaN).
/// The epilogue is applied after the beta term.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Gemm {
    pub batch: usize,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub trans_a: bool,
    pub trans_b: bool,
    pub alpha: f32,
    pub beta: f32,
    pub stride_a: usize,
    pub stride_b: usize,
    pub stride_c: usize,
    pub epilogue: Epilogue,
    /// The arithmetic of the product (f32 unless a caller asks for less).
    pub precision: Precision,
}

/// How a GEMM multiplies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Precision {
    /// f32 operands and sums.
    #[default]
    F32,
    /// Operands rounded to bfloat16 (8 significant bits), products summed in f32: about twice
    /// the multiply-adds per instruction on CPUs with AVX-512 BF16, for sampling only (see
    /// `Tape::set_precision`). Backends without it refuse it ([`Backend::supports`]).
    Bf16,
}

impl Precision {
    pub fn from_name(name: &str) -> crate::error::Result<Precision> {
        match name {
            "f32" => Ok(Precision::F32),
            "bf16" => Ok(Precision::Bf16),
            _ => Err(crate::error::Error::Invalid(format!(
                "--precision: unknown precision `{name}`: use f32 or bf16"
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
        }
    }

    /// An error naming the fix unless `backend` multiplies in this precision.
    pub fn check(self, backend: &dyn Backend) -> crate::error::Result<()> {
        if backend.supports(self) {
            return Ok(());
        }
        Err(crate::error::Error::Invalid(format!(
            "--precision {}: the {} backend multiplies in f32 only; use --backend cpu, or \
             --precision f32",
            self.name(),
            backend.name()
        )))
    }
}

impl Gemm {
    /// A plain `C = A · B` with `A: m × k`, `B: k × n`, one batch.
    pub fn new(m: usize, n: usize, k: usize) -> Self {
        Gemm {
            batch: 1,
            m,
            n,
            k,
            trans_a: false,
            trans_b: false,
            alpha: 1.0,
            beta: 0.0,
            stride_a: m * k,
            stride_b: k * n,
            stride_c: m * n,
            epilogue: Epilogue::None,
            precision: Precision::F32,
        }
    }
}

/// Multi-head self-attention over packed QKV.
///
/// `qkv` is `[batch, tokens, 3 · heads · head_dim]`: columns `0..D` are Q, `D..2D` are K,
/// `2D..3D` are V (`D = heads · head_dim`), and head `h` owns columns `h·head_dim..(h+1)·head_dim`
/// within each. The optional key-padding mask is `[batch, tokens]` (1 = attend, 0 = padding).
/// Output `[batch, tokens, D]`, and the log-sum-exp of the scaled, masked scores per row,
/// `lse: [batch, heads, tokens]`, which the backward pass uses to recompute probabilities.
/// A row whose keys are all masked gets output 0 and lse = -inf.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Attention {
    pub batch: usize,
    pub tokens: usize,
    pub heads: usize,
    pub head_dim: usize,
    /// Multiplies `q · k` before the softmax; usually `1 / sqrt(head_dim)`.
    pub scale: f32,
}

impl Attention {
    pub fn model_dim(&self) -> usize {
        self.heads * self.head_dim
    }
}

/// Row layout for [`Backend::layer_norm_fwd`] and [`Backend::layer_norm_bwd`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LayerNorm {
    pub rows: usize,
    pub cols: usize,
    pub eps: f32,
}

/// A block copy between two row-major matrices: `dst[r, dst_offset + c] (+)= src[r, src_offset + c]`
/// for `r < rows`, `c < width`. It concatenates features (forward) and splits their gradients
/// (backward).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CopyCols {
    pub rows: usize,
    pub width: usize,
    pub src_stride: usize,
    pub src_offset: usize,
    pub dst_stride: usize,
    pub dst_offset: usize,
    pub accumulate: bool,
}

/// Hyperparameters of one AdamW update.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamW {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    /// 1-based step number, for bias correction.
    pub step: u32,
}

/// The kernel contract, checked: one method per kernel. Its one implementation (`checked.rs`)
/// validates every call and dispatches to the unchecked kernel traits of [`kernels`], which
/// each backend implements (see `docs/architecture.md#kernel-contract`).
pub trait Backend: Send + Sync {
    /// Short name: `cpu`, `wgpu`, `cuda`.
    fn name(&self) -> &'static str;
    /// Human-readable device description.
    fn device_name(&self) -> String;
    /// Waits for queued work to finish (a no-op on the CPU). Used at the edges only.
    fn synchronize(&self) -> Result<()>;
    /// How many buffers this backend has allocated (or uploaded into new memory) so far. A
    /// training step that reuses its buffers leaves this unchanged after its first run.
    fn buffers_allocated(&self) -> u64;
    /// Whether [`Backend::gemm`] multiplies in `precision` (every backend does f32).
    fn supports(&self, precision: Precision) -> bool;

    // ---- memory -------------------------------------------------------------------------
    /// A zero-filled buffer of `len` elements.
    fn alloc(&self, dtype: DType, len: usize) -> Result<Buffer>;
    fn upload_f32(&self, data: &[f32]) -> Result<Buffer>;
    fn upload_u32(&self, data: &[u32]) -> Result<Buffer>;
    /// Overwrites an existing buffer with host data of the same length (no allocation).
    fn write_f32(&self, dst: &mut Buffer, data: &[f32]) -> Result<()>;
    fn write_u32(&self, dst: &mut Buffer, data: &[u32]) -> Result<()>;
    fn download_f32(&self, src: &Buffer) -> Result<Vec<f32>>;
    fn download_u32(&self, src: &Buffer) -> Result<Vec<u32>>;
    /// `dst[dst_offset + i] = src[src_offset + i]` for `i < len` (same dtype).
    fn copy(
        &self, src: &Buffer, src_offset: usize, dst: &mut Buffer, dst_offset: usize, len: usize,
    ) -> Result<()>;
    /// Block copy of columns, see [`CopyCols`].
    fn copy_cols(&self, p: &CopyCols, src: &Buffer, dst: &mut Buffer) -> Result<()>;
    fn fill(&self, dst: &mut Buffer, value: f32) -> Result<()>;
    /// `dst[i, :] = src[idx[i], :]`, rows of `row_len` elements; `idx` is u32. An index past
    /// `src` is an error where the host holds the indices (the CPU backend); a GPU kernel, which
    /// cannot report one, leaves that row of `dst` zero (reading indices back would stall it).
    fn gather_rows(
        &self, src: &Buffer, idx: &Buffer, row_len: usize, dst: &mut Buffer,
    ) -> Result<()>;
    /// `dst[idx[i], :] = src[i, :]`; rows not named in `idx` are left alone. Indices must be
    /// distinct (the inverse of [`Backend::gather_rows`] on a permutation or a selection). An
    /// index past `dst` or named twice is an error where the host holds the indices; a GPU
    /// kernel skips an index past `dst`.
    fn scatter_rows(
        &self, src: &Buffer, idx: &Buffer, row_len: usize, dst: &mut Buffer,
    ) -> Result<()>;

    // ---- random (Philox4x32-10) -----------------------------------------------------------
    /// Standard normal numbers. Element `i` comes from Philox4x32-10 with key
    /// `(seed as u32, seed >> 32)` and counter `(offset + i / 4) as a 128-bit integer`
    /// (little-endian words `[lo, hi, 0, 0]`); word `i % 4` of that block. Words are mapped to
    /// uniforms in (0, 1) by `((w >> 8) + 0.5) · 2^-24`, and pairs (0,1) and (2,3) of a block go
    /// through Box–Muller: `r = sqrt(-2 ln u_a)`, `n_a = r cos(2π u_b)`, `n_b = r sin(2π u_b)`.
    /// The same `(seed, offset)` gives the same numbers on every backend.
    fn normal_fill(&self, dst: &mut Buffer, seed: u64, offset: u64) -> Result<()>;
    /// Uniform numbers in `(lo, hi)`: `lo + (hi - lo) · u` with `u` as in `normal_fill`.
    fn uniform_fill(
        &self, dst: &mut Buffer, seed: u64, offset: u64, lo: f32, hi: f32,
    ) -> Result<()>;

    // ---- matmul ---------------------------------------------------------------------------
    /// Batched GEMM, see [`Gemm`]. `bias` (length n) is required by the bias epilogues.
    fn gemm(
        &self, p: &Gemm, a: &Buffer, b: &Buffer, bias: Option<&Buffer>, c: &mut Buffer,
    ) -> Result<()>;
    /// Column sums of `dy: [rows, cols]`: `db[j] = Σ_i dy[i, j]` (`+=` when `accumulate`).
    fn bias_grad(
        &self, dy: &Buffer, rows: usize, cols: usize, db: &mut Buffer, accumulate: bool,
    ) -> Result<()>;

    // ---- elementwise ----------------------------------------------------------------------
    /// `out = a + b`.
    fn add(&self, a: &Buffer, b: &Buffer, out: &mut Buffer) -> Result<()>;
    /// `out = alpha · x`.
    fn scale(&self, x: &Buffer, alpha: f32, out: &mut Buffer) -> Result<()>;
    /// `y += alpha · x`.
    fn axpy(&self, alpha: f32, x: &Buffer, y: &mut Buffer) -> Result<()>;
    /// `out = max(x, 0)`.
    fn relu_fwd(&self, x: &Buffer, out: &mut Buffer) -> Result<()>;
    /// `dx = dy · [y > 0]` where `y` is the ReLU output (`+=` when `accumulate`).
    fn relu_bwd(&self, y: &Buffer, dy: &Buffer, dx: &mut Buffer, accumulate: bool) -> Result<()>;

    // ---- norm -----------------------------------------------------------------------------
    /// Layer norm over the last axis of `h = x (+ residual)`:
    /// `y = (h - mean) · rstd · gamma + beta`, saving `mean`, `rstd` (`[rows]`) for the backward.
    /// With a residual, `h` is also written to `sum_out` when given, as the backward needs it;
    /// inference, which has no backward, passes none and saves a write of the whole tensor.
    #[allow(clippy::too_many_arguments)]
    fn layer_norm_fwd(
        &self, p: &LayerNorm, x: &Buffer, residual: Option<&Buffer>, gamma: &Buffer, beta: &Buffer,
        y: &mut Buffer, mean: &mut Buffer, rstd: &mut Buffer, sum_out: Option<&mut Buffer>,
    ) -> Result<()>;
    /// Backward of [`Backend::layer_norm_fwd`] given `h` (the normalised input), `dy`, and the saved
    /// statistics: writes `dh` (the gradient for x and for the residual alike) and the
    /// parameter gradients `dgamma`, `dbeta` (`+=` when `accumulate_params`).
    #[allow(clippy::too_many_arguments)]
    fn layer_norm_bwd(
        &self, p: &LayerNorm, h: &Buffer, dy: &Buffer, gamma: &Buffer, mean: &Buffer,
        rstd: &Buffer, dh: &mut Buffer, dgamma: &mut Buffer, dbeta: &mut Buffer,
        accumulate_params: bool,
    ) -> Result<()>;

    // ---- attention ------------------------------------------------------------------------
    /// Forward pass, see [`Attention`].
    fn attention_fwd(
        &self, p: &Attention, qkv: &Buffer, mask: Option<&Buffer>, out: &mut Buffer,
        lse: &mut Buffer,
    ) -> Result<()>;
    /// Backward pass: writes `dqkv: [batch, tokens, 3D]` from the forward's inputs and outputs.
    #[allow(clippy::too_many_arguments)]
    fn attention_bwd(
        &self, p: &Attention, qkv: &Buffer, mask: Option<&Buffer>, out: &Buffer, lse: &Buffer,
        dout: &Buffer, dqkv: &mut Buffer,
    ) -> Result<()>;

    // ---- embedding ------------------------------------------------------------------------
    /// `out[i, :] = table[ids[i], :]`, rows of `dim`; ids past the table as in
    /// [`Backend::gather_rows`].
    fn embedding_fwd(
        &self, table: &Buffer, ids: &Buffer, dim: usize, out: &mut Buffer,
    ) -> Result<()>;
    /// `dtable[r, :] = Σ_{i: ids[i] = r} dout[i, :]` summed in order of i (deterministic, no
    /// atomics); rows no id names become 0 (`+=` when `accumulate`). An id past the table is an
    /// error where the host holds the ids; a GPU kernel skips it.
    fn embedding_bwd(
        &self, dout: &Buffer, ids: &Buffer, dim: usize, dtable: &mut Buffer, accumulate: bool,
    ) -> Result<()>;
    /// Fourier features of functional inputs `x: [rows, in_dim]` with trainable frequencies
    /// `freqs: [in_dim, half]`: `z = 2π · x · freqs`, `out = [sin z, cos z]` (`[rows, 2·half]`).
    fn fourier_fwd(
        &self, x: &Buffer, freqs: &Buffer, rows: usize, in_dim: usize, half: usize,
        out: &mut Buffer,
    ) -> Result<()>;
    /// Gradient of the frequencies (`+=` when `accumulate`); the inputs are data and get none.
    #[allow(clippy::too_many_arguments)]
    fn fourier_bwd(
        &self, x: &Buffer, freqs: &Buffer, dout: &Buffer, rows: usize, in_dim: usize, half: usize,
        dfreqs: &mut Buffer, accumulate: bool,
    ) -> Result<()>;

    // ---- flow matching --------------------------------------------------------------------
    /// For samples of `per_sample` elements and one time `t[b]` each:
    /// `xt = (1 - (1 - sigma_min) t) x0 + t x1` and the target `u = x1 - (1 - sigma_min) x0`.
    #[allow(clippy::too_many_arguments)]
    fn fm_prepare(
        &self, x0: &Buffer, x1: &Buffer, t: &Buffer, per_sample: usize, sigma_min: f32,
        xt: &mut Buffer, u: &mut Buffer,
    ) -> Result<()>;
    /// Masked mean squared error `loss[0] = Σ m (pred - target)² / max(Σ m, 1)` and its gradient
    /// `dpred = 2 m (pred - target) / max(Σ m, 1)`, in one pass. No mask means all ones.
    /// This is the flow-matching loss (target = u) and the tape's MSE.
    fn fm_loss(
        &self, pred: &Buffer, target: &Buffer, mask: Option<&Buffer>, loss: &mut Buffer,
        dpred: &mut Buffer,
    ) -> Result<()>;

    // ---- ode ------------------------------------------------------------------------------
    /// One fused explicit Runge–Kutta combination for samples of `per_sample` elements:
    /// `out[i] = x[i] + h[i / per_sample] · Σ_j coeffs[j] · k[j · n + i]`, `n = x.len()`.
    /// `k` holds the stage derivatives back to back (`[stages, n]`, at least `coeffs.len()`
    /// stages); `h` is the per-sample step (`[n / per_sample]`). Euler, every RK4 stage and the
    /// RK4 combination, and every Dopri5 stage are calls of this kernel.
    fn ode_stage(
        &self, x: &Buffer, k: &Buffer, coeffs: &[f32], h: &Buffer, per_sample: usize,
        out: &mut Buffer,
    ) -> Result<()>;
    /// Dopri5 per-sample error norm: `e_i = h_s · Σ_j err_coeffs[j] · k[j, i]`,
    /// `err[s] = sqrt(mean_i (e_i / (atol + rtol · max(|x_i|, |x_new_i|)))²)` over the sample's
    /// elements.
    #[allow(clippy::too_many_arguments)]
    fn dopri5_error(
        &self, x: &Buffer, x_new: &Buffer, k: &Buffer, err_coeffs: &[f32], h: &Buffer,
        per_sample: usize, rtol: f32, atol: f32, err: &mut Buffer,
    ) -> Result<()>;
    /// Dopri5 step control per sample, on the device: where `err[s] <= 1` the step is accepted
    /// (`x = x_new`, `t += h`); every sample then gets `h = h · clamp(0.9 · err^(-1/5), 0.2, 10)`
    /// limited to `t_end - t` (0 once finished).
    #[allow(clippy::too_many_arguments)]
    fn dopri5_accept(
        &self, x: &mut Buffer, x_new: &Buffer, err: &Buffer, t: &mut Buffer, h: &mut Buffer,
        per_sample: usize, t_end: f32,
    ) -> Result<()>;

    // ---- optimiser ------------------------------------------------------------------------
    /// `out[0] (+)= Σ x²` (fixed order). Accumulating over all gradients gives the squared
    /// global norm for clipping without a read-back.
    fn sum_squares(&self, x: &Buffer, out: &mut Buffer, accumulate: bool) -> Result<()>;
    /// One AdamW update with bias correction and decoupled weight decay. With `clip =
    /// Some((norm_sq, max_norm))` the gradient is first scaled by `min(1, max_norm / sqrt(norm_sq[0]))`.
    #[allow(clippy::too_many_arguments)]
    fn adamw_step(
        &self, p: &AdamW, param: &mut Buffer, grad: &Buffer, m: &mut Buffer, v: &mut Buffer,
        clip: Option<(&Buffer, f32)>,
    ) -> Result<()>;

    // ---- loss and reductions --------------------------------------------------------------
    /// Mean binary cross-entropy with logits, stable form, and its gradient:
    /// `loss[0] = mean(max(z,0) - z·y + ln(1 + e^-|z|))`, `dz = (σ(z) - y) / n`.
    fn bce_with_logits(
        &self, logits: &Buffer, targets: &Buffer, loss: &mut Buffer, dlogits: &mut Buffer,
    ) -> Result<()>;
    /// `out[0] = scale · Σ x` (fixed order): sum with scale 1, mean with scale 1/n.
    fn reduce_sum(&self, x: &Buffer, scale: f32, out: &mut Buffer) -> Result<()>;
}
