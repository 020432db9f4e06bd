//! The checked layer: the one implementation of [`Backend`], for every type that implements
//! the unchecked kernel traits of `kernels.rs`.
//!
//! Each entry validates its call once, with the function of `check.rs` named after it (lengths
//! and shapes), then unwraps every buffer, checking that it has the dtype the contract names and
//! belongs to this backend, and checks index values where the host holds them. Only then does
//! it hand the backend's own buffers to the kernel, which trusts them. So every backend returns
//! the same error for the same bad call, and a rejected call writes nothing.

use super::kernels::{
    AttentionKernels, ElementwiseKernels, EmbeddingKernels, FlowKernels, LossKernels,
    MatmulKernels, MemoryKernels, NormKernels, OdeKernels, OptimKernels, RandomKernels, Storage,
};
use super::{
    check, AdamW, Attention, Backend, Buffer, CopyCols, DType, Gemm, LayerNorm, Precision,
};
use crate::error::{Error, Result};

/// `b` as the backend's own buffer, which must hold `dtype`.
fn arg<'a, K: Storage>(name: &str, b: &'a Buffer, dtype: DType) -> Result<&'a K::Buf> {
    check::dtype(name, b, dtype)?;
    K::unwrap(b).ok_or_else(|| foreign(name))
}

fn arg_mut<'a, K: Storage>(name: &str, b: &'a mut Buffer, dtype: DType) -> Result<&'a mut K::Buf> {
    check::dtype(name, b, dtype)?;
    K::unwrap_mut(b).ok_or_else(|| foreign(name))
}

fn foreign(name: &str) -> Error {
    Error::Buffer(format!("{name}: a buffer of another backend"))
}

fn f32s<'a, K: Storage>(name: &str, b: &'a Buffer) -> Result<&'a K::Buf> {
    arg::<K>(name, b, DType::F32)
}

fn f32s_mut<'a, K: Storage>(name: &str, b: &'a mut Buffer) -> Result<&'a mut K::Buf> {
    arg_mut::<K>(name, b, DType::F32)
}

fn opt_f32s<'a, K: Storage>(name: &str, b: Option<&'a Buffer>) -> Result<Option<&'a K::Buf>> {
    b.map(|b| f32s::<K>(name, b)).transpose()
}

/// The u32 indices of `idx`, checked against the rows of `table` where the host holds them.
fn ids<'a, K: Storage>(
    what: &str, idx: &'a Buffer, (table, table_rows): (&str, usize), distinct: bool,
) -> Result<&'a K::Buf> {
    let buf = arg::<K>("idx", idx, DType::U32)?;
    if let Some(values) = K::host_u32(buf) {
        check::row_ids(what, table, table_rows, values, distinct)?;
    }
    Ok(buf)
}

impl<K> Backend for K
where
    K: MemoryKernels
        + RandomKernels
        + MatmulKernels
        + ElementwiseKernels
        + NormKernels
        + AttentionKernels
        + EmbeddingKernels
        + FlowKernels
        + OdeKernels
        + OptimKernels
        + LossKernels,
{
    fn name(&self) -> &'static str {
        Storage::name(self)
    }

    fn device_name(&self) -> String {
        Storage::device_name(self)
    }

    fn synchronize(&self) -> Result<()> {
        Storage::synchronize(self)
    }

    fn buffers_allocated(&self) -> u64 {
        Storage::buffers_allocated(self)
    }

    fn supports(&self, precision: Precision) -> bool {
        precision == Precision::F32 || MatmulKernels::supports_bf16(self)
    }

    // ---- memory -------------------------------------------------------------------------
    fn alloc(&self, dtype: DType, len: usize) -> Result<Buffer> {
        check::alloc(len)?;
        Ok(K::wrap(Storage::alloc(self, dtype, len)?))
    }

    fn upload_f32(&self, data: &[f32]) -> Result<Buffer> {
        Ok(K::wrap(self.upload(DType::F32, bytemuck::cast_slice(data))?))
    }

    fn upload_u32(&self, data: &[u32]) -> Result<Buffer> {
        Ok(K::wrap(self.upload(DType::U32, bytemuck::cast_slice(data))?))
    }

    fn write_f32(&self, dst: &mut Buffer, data: &[f32]) -> Result<()> {
        check::expect_len("data", dst, data.len())?;
        let dst = f32s_mut::<K>("dst", dst)?;
        self.write(dst, bytemuck::cast_slice(data))
    }

    fn write_u32(&self, dst: &mut Buffer, data: &[u32]) -> Result<()> {
        check::expect_len("data", dst, data.len())?;
        let dst = arg_mut::<K>("dst", dst, DType::U32)?;
        self.write(dst, bytemuck::cast_slice(data))
    }

    fn download_f32(&self, src: &Buffer) -> Result<Vec<f32>> {
        self.read(f32s::<K>("src", src)?)
    }

    fn download_u32(&self, src: &Buffer) -> Result<Vec<u32>> {
        self.read(arg::<K>("src", src, DType::U32)?)
    }

    fn copy(
        &self, src: &Buffer, src_offset: usize, dst: &mut Buffer, dst_offset: usize, len: usize,
    ) -> Result<()> {
        check::copy(src, src_offset, dst, dst_offset, len)?;
        let dtype = src.dtype();
        let (s, d) = (arg::<K>("src", src, dtype)?, arg_mut::<K>("dst", dst, dtype)?);
        Storage::copy(self, s, src_offset, d, dst_offset, len)
    }

    fn copy_cols(&self, p: &CopyCols, src: &Buffer, dst: &mut Buffer) -> Result<()> {
        check::copy_cols(p, src, dst)?;
        MemoryKernels::copy_cols(self, p, f32s::<K>("src", src)?, f32s_mut::<K>("dst", dst)?)
    }

    fn fill(&self, dst: &mut Buffer, value: f32) -> Result<()> {
        MemoryKernels::fill(self, f32s_mut::<K>("dst", dst)?, value)
    }

    fn gather_rows(
        &self, src: &Buffer, idx: &Buffer, row_len: usize, dst: &mut Buffer,
    ) -> Result<()> {
        check::rows("gather_rows", idx, row_len, ("dst", dst), ("src", src))?;
        let table = ("src", src.len() / row_len);
        let i = ids::<K>("gather_rows", idx, table, false)?;
        let (s, d) = (f32s::<K>("src", src)?, f32s_mut::<K>("dst", dst)?);
        MemoryKernels::gather_rows(self, s, i, row_len, d)
    }

    fn scatter_rows(
        &self, src: &Buffer, idx: &Buffer, row_len: usize, dst: &mut Buffer,
    ) -> Result<()> {
        check::rows("scatter_rows", idx, row_len, ("src", src), ("dst", dst))?;
        let table = ("dst", dst.len() / row_len);
        let i = ids::<K>("scatter_rows", idx, table, true)?;
        let (s, d) = (f32s::<K>("src", src)?, f32s_mut::<K>("dst", dst)?);
        MemoryKernels::scatter_rows(self, s, i, row_len, d)
    }

    // ---- random ---------------------------------------------------------------------------
    fn normal_fill(&self, dst: &mut Buffer, seed: u64, offset: u64) -> Result<()> {
        RandomKernels::normal_fill(self, f32s_mut::<K>("dst", dst)?, seed, offset)
    }

    fn uniform_fill(
        &self, dst: &mut Buffer, seed: u64, offset: u64, lo: f32, hi: f32,
    ) -> Result<()> {
        let dst = f32s_mut::<K>("dst", dst)?;
        RandomKernels::uniform_fill(self, dst, seed, offset, (lo, hi))
    }

    // ---- matmul ---------------------------------------------------------------------------
    fn gemm(
        &self, p: &Gemm, a: &Buffer, b: &Buffer, bias: Option<&Buffer>, c: &mut Buffer,
    ) -> Result<()> {
        check::gemm(p, a.len(), b.len(), bias.map(|b| b.len()), c.len())?;
        p.precision.check(self)?;
        let ab = [f32s::<K>("a", a)?, f32s::<K>("b", b)?];
        let bias = opt_f32s::<K>("bias", bias)?;
        MatmulKernels::gemm(self, p, ab, bias, f32s_mut::<K>("c", c)?)
    }

    fn bias_grad(
        &self, dy: &Buffer, rows: usize, cols: usize, db: &mut Buffer, accumulate: bool,
    ) -> Result<()> {
        check::expect_len("dy", dy, rows * cols)?;
        check::expect_len("db", db, cols)?;
        let (dy, db) = (f32s::<K>("dy", dy)?, f32s_mut::<K>("db", db)?);
        MatmulKernels::bias_grad(self, dy, (rows, cols), db, accumulate)
    }

    // ---- elementwise ----------------------------------------------------------------------
    fn add(&self, a: &Buffer, b: &Buffer, out: &mut Buffer) -> Result<()> {
        check::lens(a.len(), &[("b", b), ("out", out)])?;
        let (a, b) = (f32s::<K>("a", a)?, f32s::<K>("b", b)?);
        ElementwiseKernels::add(self, a, b, f32s_mut::<K>("out", out)?)
    }

    fn scale(&self, x: &Buffer, alpha: f32, out: &mut Buffer) -> Result<()> {
        check::expect_len("out", out, x.len())?;
        let (x, out) = (f32s::<K>("x", x)?, f32s_mut::<K>("out", out)?);
        ElementwiseKernels::scale(self, x, alpha, out)
    }

    fn axpy(&self, alpha: f32, x: &Buffer, y: &mut Buffer) -> Result<()> {
        check::expect_len("y", y, x.len())?;
        ElementwiseKernels::axpy(self, alpha, f32s::<K>("x", x)?, f32s_mut::<K>("y", y)?)
    }

    fn relu_fwd(&self, x: &Buffer, out: &mut Buffer) -> Result<()> {
        check::expect_len("out", out, x.len())?;
        let (x, out) = (f32s::<K>("x", x)?, f32s_mut::<K>("out", out)?);
        ElementwiseKernels::relu_fwd(self, x, out)
    }

    fn relu_bwd(&self, y: &Buffer, dy: &Buffer, dx: &mut Buffer, accumulate: bool) -> Result<()> {
        check::lens(y.len(), &[("dy", dy), ("dx", dx)])?;
        let (y, dy) = (f32s::<K>("y", y)?, f32s::<K>("dy", dy)?);
        ElementwiseKernels::relu_bwd(self, y, dy, f32s_mut::<K>("dx", dx)?, accumulate)
    }

    // ---- norm -----------------------------------------------------------------------------
    fn layer_norm_fwd(
        &self, p: &LayerNorm, x: &Buffer, residual: Option<&Buffer>, gamma: &Buffer, beta: &Buffer,
        y: &mut Buffer, mean: &mut Buffer, rstd: &mut Buffer, sum_out: Option<&mut Buffer>,
    ) -> Result<()> {
        let sums = sum_out.as_deref();
        check::layer_norm_fwd(p, x, residual, gamma, beta, y, mean, rstd, sums)?;
        let ins = [f32s::<K>("x", x)?, f32s::<K>("gamma", gamma)?, f32s::<K>("beta", beta)?];
        // The check above allows a sum_out without a residual; it is then left alone.
        let residual = match (residual, sum_out) {
            (Some(r), s) => Some((
                f32s::<K>("residual", r)?,
                s.map(|s| f32s_mut::<K>("sum_out", s)).transpose()?,
            )),
            (None, _) => None,
        };
        let outs =
            [f32s_mut::<K>("y", y)?, f32s_mut::<K>("mean", mean)?, f32s_mut::<K>("rstd", rstd)?];
        NormKernels::layer_norm_fwd(self, p, ins, residual, outs)
    }

    fn layer_norm_bwd(
        &self, p: &LayerNorm, h: &Buffer, dy: &Buffer, gamma: &Buffer, mean: &Buffer,
        rstd: &Buffer, dh: &mut Buffer, dgamma: &mut Buffer, dbeta: &mut Buffer,
        accumulate_params: bool,
    ) -> Result<()> {
        check::layer_norm_bwd(p, h, dy, gamma, mean, rstd, dh, dgamma, dbeta)?;
        let ins = [
            f32s::<K>("h", h)?,
            f32s::<K>("dy", dy)?,
            f32s::<K>("gamma", gamma)?,
            f32s::<K>("mean", mean)?,
            f32s::<K>("rstd", rstd)?,
        ];
        let outs = [
            f32s_mut::<K>("dh", dh)?,
            f32s_mut::<K>("dgamma", dgamma)?,
            f32s_mut::<K>("dbeta", dbeta)?,
        ];
        NormKernels::layer_norm_bwd(self, p, ins, outs, accumulate_params)
    }

    // ---- attention ------------------------------------------------------------------------
    fn attention_fwd(
        &self, p: &Attention, qkv: &Buffer, mask: Option<&Buffer>, out: &mut Buffer,
        lse: &mut Buffer,
    ) -> Result<()> {
        check::attention(p, qkv, mask)?;
        check::attention_outputs(p, &[("out", out)], lse)?;
        let (qkv, mask) = (f32s::<K>("qkv", qkv)?, opt_f32s::<K>("mask", mask)?);
        let outs = [f32s_mut::<K>("out", out)?, f32s_mut::<K>("lse", lse)?];
        AttentionKernels::attention_fwd(self, p, qkv, mask, outs)
    }

    fn attention_bwd(
        &self, p: &Attention, qkv: &Buffer, mask: Option<&Buffer>, out: &Buffer, lse: &Buffer,
        dout: &Buffer, dqkv: &mut Buffer,
    ) -> Result<()> {
        check::attention(p, qkv, mask)?;
        check::attention_outputs(p, &[("out", out), ("dout", dout)], lse)?;
        check::expect_len("dqkv", dqkv, qkv.len())?;
        let (qkv, mask) = (f32s::<K>("qkv", qkv)?, opt_f32s::<K>("mask", mask)?);
        let saved = [f32s::<K>("out", out)?, f32s::<K>("lse", lse)?, f32s::<K>("dout", dout)?];
        let dqkv = f32s_mut::<K>("dqkv", dqkv)?;
        AttentionKernels::attention_bwd(self, p, qkv, mask, saved, dqkv)
    }

    // ---- embedding ------------------------------------------------------------------------
    fn embedding_fwd(
        &self, table: &Buffer, ids: &Buffer, dim: usize, out: &mut Buffer,
    ) -> Result<()> {
        check::rows("embedding_fwd", ids, dim, ("out", out), ("table", table))?;
        let i = self::ids::<K>("embedding_fwd", ids, ("table", table.len() / dim), false)?;
        let (t, o) = (f32s::<K>("table", table)?, f32s_mut::<K>("out", out)?);
        EmbeddingKernels::embedding_fwd(self, t, i, dim, o)
    }

    fn embedding_bwd(
        &self, dout: &Buffer, ids: &Buffer, dim: usize, dtable: &mut Buffer, accumulate: bool,
    ) -> Result<()> {
        check::rows("embedding_bwd", ids, dim, ("dout", dout), ("dtable", dtable))?;
        let table = ("dtable", dtable.len() / dim);
        let i = self::ids::<K>("embedding_bwd", ids, table, false)?;
        let (d, t) = (f32s::<K>("dout", dout)?, f32s_mut::<K>("dtable", dtable)?);
        EmbeddingKernels::embedding_bwd(self, d, i, dim, t, accumulate)
    }

    fn fourier_fwd(
        &self, x: &Buffer, freqs: &Buffer, rows: usize, in_dim: usize, half: usize,
        out: &mut Buffer,
    ) -> Result<()> {
        let dims = (rows, in_dim, half);
        check::fourier(dims, x, freqs, ("out", out))?;
        let ins = [f32s::<K>("x", x)?, f32s::<K>("freqs", freqs)?];
        EmbeddingKernels::fourier_fwd(self, ins, dims, f32s_mut::<K>("out", out)?)
    }

    fn fourier_bwd(
        &self, x: &Buffer, freqs: &Buffer, dout: &Buffer, rows: usize, in_dim: usize, half: usize,
        dfreqs: &mut Buffer, accumulate: bool,
    ) -> Result<()> {
        let dims = (rows, in_dim, half);
        check::fourier(dims, x, freqs, ("dout", dout))?;
        check::expect_len("dfreqs", dfreqs, freqs.len())?;
        let ins = [f32s::<K>("x", x)?, f32s::<K>("freqs", freqs)?, f32s::<K>("dout", dout)?];
        let dfreqs = f32s_mut::<K>("dfreqs", dfreqs)?;
        EmbeddingKernels::fourier_bwd(self, ins, dims, dfreqs, accumulate)
    }

    // ---- flow matching --------------------------------------------------------------------
    fn fm_prepare(
        &self, x0: &Buffer, x1: &Buffer, t: &Buffer, per_sample: usize, sigma_min: f32,
        xt: &mut Buffer, u: &mut Buffer,
    ) -> Result<()> {
        check::fm_prepare(x0, x1, t, per_sample, xt, u)?;
        let ins = [f32s::<K>("x0", x0)?, f32s::<K>("x1", x1)?, f32s::<K>("t", t)?];
        let outs = [f32s_mut::<K>("xt", xt)?, f32s_mut::<K>("u", u)?];
        FlowKernels::fm_prepare(self, ins, per_sample, sigma_min, outs)
    }

    fn fm_loss(
        &self, pred: &Buffer, target: &Buffer, mask: Option<&Buffer>, loss: &mut Buffer,
        dpred: &mut Buffer,
    ) -> Result<()> {
        check::fm_loss(pred, target, mask, loss, dpred)?;
        let (pred, target) = (f32s::<K>("pred", pred)?, f32s::<K>("target", target)?);
        let mask = opt_f32s::<K>("mask", mask)?;
        let outs = [f32s_mut::<K>("loss", loss)?, f32s_mut::<K>("dpred", dpred)?];
        FlowKernels::fm_loss(self, pred, target, mask, outs)
    }

    // ---- ode ------------------------------------------------------------------------------
    fn ode_stage(
        &self, x: &Buffer, k: &Buffer, coeffs: &[f32], h: &Buffer, per_sample: usize,
        out: &mut Buffer,
    ) -> Result<()> {
        check::ode_stage(x, k, coeffs.len(), h, per_sample, out)?;
        let ins = [f32s::<K>("x", x)?, f32s::<K>("k", k)?, f32s::<K>("h", h)?];
        let out = f32s_mut::<K>("out", out)?;
        OdeKernels::ode_stage(self, ins, coeffs, per_sample, out)
    }

    fn dopri5_error(
        &self, x: &Buffer, x_new: &Buffer, k: &Buffer, err_coeffs: &[f32], h: &Buffer,
        per_sample: usize, rtol: f32, atol: f32, err: &mut Buffer,
    ) -> Result<()> {
        check::dopri5_error(x, x_new, k, err_coeffs.len(), h, per_sample, err)?;
        let ins = [
            f32s::<K>("x", x)?,
            f32s::<K>("x_new", x_new)?,
            f32s::<K>("k", k)?,
            f32s::<K>("h", h)?,
        ];
        let (shape, err) = ((per_sample, (rtol, atol)), f32s_mut::<K>("err", err)?);
        OdeKernels::dopri5_error(self, ins, err_coeffs, shape, err)
    }

    fn dopri5_accept(
        &self, x: &mut Buffer, x_new: &Buffer, err: &Buffer, t: &mut Buffer, h: &mut Buffer,
        per_sample: usize, t_end: f32,
    ) -> Result<()> {
        check::dopri5_accept(x, x_new, err, t, h, per_sample)?;
        let ins = [f32s::<K>("x_new", x_new)?, f32s::<K>("err", err)?];
        let state = [f32s_mut::<K>("x", x)?, f32s_mut::<K>("t", t)?, f32s_mut::<K>("h", h)?];
        OdeKernels::dopri5_accept(self, ins, state, per_sample, t_end)
    }

    // ---- optimiser ------------------------------------------------------------------------
    fn sum_squares(&self, x: &Buffer, out: &mut Buffer, accumulate: bool) -> Result<()> {
        check::expect_len("out", out, 1)?;
        let (x, out) = (f32s::<K>("x", x)?, f32s_mut::<K>("out", out)?);
        OptimKernels::sum_squares(self, x, out, accumulate)
    }

    fn adamw_step(
        &self, p: &AdamW, param: &mut Buffer, grad: &Buffer, m: &mut Buffer, v: &mut Buffer,
        clip: Option<(&Buffer, f32)>,
    ) -> Result<()> {
        check::adamw(p, param, grad, m, v, clip.map(|c| c.0))?;
        let clip = match clip {
            Some((norm_sq, max_norm)) => Some((f32s::<K>("norm_sq", norm_sq)?, max_norm)),
            None => None,
        };
        let grad = f32s::<K>("grad", grad)?;
        let state =
            [f32s_mut::<K>("param", param)?, f32s_mut::<K>("m", m)?, f32s_mut::<K>("v", v)?];
        OptimKernels::adamw_step(self, p, grad, state, clip)
    }

    // ---- loss and reductions --------------------------------------------------------------
    fn bce_with_logits(
        &self, logits: &Buffer, targets: &Buffer, loss: &mut Buffer, dlogits: &mut Buffer,
    ) -> Result<()> {
        check::bce(logits, targets, loss, dlogits)?;
        let (z, y) = (f32s::<K>("logits", logits)?, f32s::<K>("targets", targets)?);
        let outs = [f32s_mut::<K>("loss", loss)?, f32s_mut::<K>("dlogits", dlogits)?];
        LossKernels::bce_with_logits(self, z, y, outs)
    }

    fn reduce_sum(&self, x: &Buffer, scale: f32, out: &mut Buffer) -> Result<()> {
        check::expect_len("out", out, 1)?;
        let (x, out) = (f32s::<K>("x", x)?, f32s_mut::<K>("out", out)?);
        LossKernels::reduce_sum(self, x, scale, out)
    }
}
