//! The CPU backend: the reference for the other backends and the default without a GPU.
//!
//! Each kernel family lives in its own file as plain functions over slices (same stems as
//! `kernels/*.cu` and `shaders/*.wgsl`); this module only unwraps buffers, checks lengths and
//! delegates. Parallelism comes from rayon; GEMM from the `gemm` crate.

mod attention;
mod elementwise;
mod embedding;
mod flow;
mod loss;
mod matmul;
mod memory;
mod norm;
mod ode;
mod optim;
pub(crate) mod random;

use super::{
    check, expect_len, AdamW, Attention, Backend, Buffer, CopyCols, DType, Gemm, LayerNorm,
};
use crate::error::{Error, Result};
use std::sync::atomic::{AtomicU64, Ordering};

/// Host memory behind a CPU [`Buffer`].
#[derive(Clone, Debug)]
pub enum CpuBuffer {
    F32(Vec<f32>),
    U32(Vec<u32>),
}

impl CpuBuffer {
    pub fn len(&self) -> usize {
        match self {
            CpuBuffer::F32(v) => v.len(),
            CpuBuffer::U32(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn dtype(&self) -> DType {
        match self {
            CpuBuffer::F32(_) => DType::F32,
            CpuBuffer::U32(_) => DType::U32,
        }
    }
}

fn f32s<'a>(name: &str, b: &'a Buffer) -> Result<&'a [f32]> {
    match b {
        Buffer::Cpu(CpuBuffer::F32(v)) => Ok(v),
        #[allow(unreachable_patterns)]
        _ => Err(Error::Buffer(format!("{name}: expected an f32 CPU buffer"))),
    }
}

fn f32s_mut<'a>(name: &str, b: &'a mut Buffer) -> Result<&'a mut [f32]> {
    match b {
        Buffer::Cpu(CpuBuffer::F32(v)) => Ok(v),
        #[allow(unreachable_patterns)]
        _ => Err(Error::Buffer(format!("{name}: expected an f32 CPU buffer"))),
    }
}

fn u32s<'a>(name: &str, b: &'a Buffer) -> Result<&'a [u32]> {
    match b {
        Buffer::Cpu(CpuBuffer::U32(v)) => Ok(v),
        #[allow(unreachable_patterns)]
        _ => Err(Error::Buffer(format!("{name}: expected a u32 CPU buffer"))),
    }
}

fn u32s_mut<'a>(name: &str, b: &'a mut Buffer) -> Result<&'a mut [u32]> {
    match b {
        Buffer::Cpu(CpuBuffer::U32(v)) => Ok(v),
        #[allow(unreachable_patterns)]
        _ => Err(Error::Buffer(format!("{name}: expected a u32 CPU buffer"))),
    }
}

fn opt_f32s<'a>(name: &str, b: Option<&'a Buffer>) -> Result<Option<&'a [f32]>> {
    b.map(|b| f32s(name, b)).transpose()
}

fn check_len(name: &str, len: usize, want: usize) -> Result<()> {
    if len != want {
        return Err(Error::Shape(format!(
            "{name}: expected {want} elements, got {len}"
        )));
    }
    Ok(())
}

/// The CPU backend. Scratch space lives in thread-local pools inside the kernels; the only
/// state is a count of allocations.
#[derive(Debug, Default)]
pub struct CpuBackend {
    allocations: AtomicU64,
}

impl CpuBackend {
    pub fn new() -> Self {
        CpuBackend::default()
    }

    fn counted<T>(&self, value: T) -> T {
        self.allocations.fetch_add(1, Ordering::Relaxed);
        value
    }
}

impl Backend for CpuBackend {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn device_name(&self) -> String {
        format!("CPU ({} threads)", rayon::current_num_threads())
    }

    fn synchronize(&self) -> Result<()> {
        Ok(())
    }

    fn buffers_allocated(&self) -> u64 {
        self.allocations.load(Ordering::Relaxed)
    }

    // ---- memory ---------------------------------------------------------------------------
    fn alloc(&self, dtype: DType, len: usize) -> Result<Buffer> {
        Ok(self.counted(Buffer::Cpu(match dtype {
            DType::F32 => CpuBuffer::F32(vec![0.0; len]),
            DType::U32 => CpuBuffer::U32(vec![0; len]),
        })))
    }

    fn upload_f32(&self, data: &[f32]) -> Result<Buffer> {
        Ok(self.counted(Buffer::Cpu(CpuBuffer::F32(data.to_vec()))))
    }

    fn upload_u32(&self, data: &[u32]) -> Result<Buffer> {
        Ok(self.counted(Buffer::Cpu(CpuBuffer::U32(data.to_vec()))))
    }

    fn write_f32(&self, dst: &mut Buffer, data: &[f32]) -> Result<()> {
        let d = f32s_mut("dst", dst)?;
        check_len("data", data.len(), d.len())?;
        d.copy_from_slice(data);
        Ok(())
    }

    fn write_u32(&self, dst: &mut Buffer, data: &[u32]) -> Result<()> {
        let d = u32s_mut("dst", dst)?;
        check_len("data", data.len(), d.len())?;
        d.copy_from_slice(data);
        Ok(())
    }

    fn download_f32(&self, src: &Buffer) -> Result<Vec<f32>> {
        Ok(f32s("src", src)?.to_vec())
    }

    fn download_u32(&self, src: &Buffer) -> Result<Vec<u32>> {
        Ok(u32s("src", src)?.to_vec())
    }

    fn copy(
        &self,
        src: &Buffer,
        src_offset: usize,
        dst: &mut Buffer,
        dst_offset: usize,
        len: usize,
    ) -> Result<()> {
        check::copy(src, src_offset, dst, dst_offset, len)?;
        match (src, dst) {
            (Buffer::Cpu(CpuBuffer::F32(s)), Buffer::Cpu(CpuBuffer::F32(d))) => memory::copy(
                &s[src_offset..src_offset + len],
                &mut d[dst_offset..dst_offset + len],
            ),
            (Buffer::Cpu(CpuBuffer::U32(s)), Buffer::Cpu(CpuBuffer::U32(d))) => memory::copy(
                &s[src_offset..src_offset + len],
                &mut d[dst_offset..dst_offset + len],
            ),
            #[allow(unreachable_patterns)]
            _ => return Err(Error::Buffer("copy: src and dst must share a dtype".into())),
        }
        Ok(())
    }

    fn copy_cols(&self, p: &CopyCols, src: &Buffer, dst: &mut Buffer) -> Result<()> {
        check::copy_cols(p, src, dst)?;
        let (s, d) = (f32s("src", src)?, f32s_mut("dst", dst)?);
        memory::copy_cols(p, s, d);
        Ok(())
    }

    fn fill(&self, dst: &mut Buffer, value: f32) -> Result<()> {
        memory::fill(f32s_mut("dst", dst)?, value);
        Ok(())
    }

    fn gather_rows(
        &self,
        src: &Buffer,
        idx: &Buffer,
        row_len: usize,
        dst: &mut Buffer,
    ) -> Result<()> {
        let (s, i, d) = (f32s("src", src)?, u32s("idx", idx)?, f32s_mut("dst", dst)?);
        check_len("dst", d.len(), i.len() * row_len)?;
        memory::gather_rows(s, i, row_len, d)
    }

    fn scatter_rows(
        &self,
        src: &Buffer,
        idx: &Buffer,
        row_len: usize,
        dst: &mut Buffer,
    ) -> Result<()> {
        let (s, i, d) = (f32s("src", src)?, u32s("idx", idx)?, f32s_mut("dst", dst)?);
        check_len("src", s.len(), i.len() * row_len)?;
        memory::scatter_rows(s, i, row_len, d)
    }

    // ---- random ---------------------------------------------------------------------------
    fn normal_fill(&self, dst: &mut Buffer, seed: u64, offset: u64) -> Result<()> {
        random::normal_fill(f32s_mut("dst", dst)?, seed, offset);
        Ok(())
    }

    fn uniform_fill(
        &self,
        dst: &mut Buffer,
        seed: u64,
        offset: u64,
        lo: f32,
        hi: f32,
    ) -> Result<()> {
        random::uniform_fill(f32s_mut("dst", dst)?, seed, offset, lo, hi);
        Ok(())
    }

    // ---- matmul ---------------------------------------------------------------------------
    fn gemm(
        &self,
        p: &Gemm,
        a: &Buffer,
        b: &Buffer,
        bias: Option<&Buffer>,
        c: &mut Buffer,
    ) -> Result<()> {
        let (a, b, bias, c) = (
            f32s("a", a)?,
            f32s("b", b)?,
            opt_f32s("bias", bias)?,
            f32s_mut("c", c)?,
        );
        check::gemm(p, a.len(), b.len(), bias.map(|b| b.len()), c.len())?;
        matmul::gemm(p, a, b, bias, c);
        Ok(())
    }

    fn bias_grad(
        &self,
        dy: &Buffer,
        rows: usize,
        cols: usize,
        db: &mut Buffer,
        accumulate: bool,
    ) -> Result<()> {
        let (dy, db) = (f32s("dy", dy)?, f32s_mut("db", db)?);
        check_len("dy", dy.len(), rows * cols)?;
        check_len("db", db.len(), cols)?;
        matmul::bias_grad(dy, rows, cols, db, accumulate);
        Ok(())
    }

    // ---- elementwise ----------------------------------------------------------------------
    fn add(&self, a: &Buffer, b: &Buffer, out: &mut Buffer) -> Result<()> {
        let (a, b, o) = (f32s("a", a)?, f32s("b", b)?, f32s_mut("out", out)?);
        check_len("b", b.len(), a.len())?;
        check_len("out", o.len(), a.len())?;
        elementwise::add(a, b, o);
        Ok(())
    }

    fn scale(&self, x: &Buffer, alpha: f32, out: &mut Buffer) -> Result<()> {
        let (x, o) = (f32s("x", x)?, f32s_mut("out", out)?);
        check_len("out", o.len(), x.len())?;
        elementwise::scale(x, alpha, o);
        Ok(())
    }

    fn axpy(&self, alpha: f32, x: &Buffer, y: &mut Buffer) -> Result<()> {
        let (x, y) = (f32s("x", x)?, f32s_mut("y", y)?);
        check_len("y", y.len(), x.len())?;
        elementwise::axpy(alpha, x, y);
        Ok(())
    }

    fn relu_fwd(&self, x: &Buffer, out: &mut Buffer) -> Result<()> {
        let (x, o) = (f32s("x", x)?, f32s_mut("out", out)?);
        check_len("out", o.len(), x.len())?;
        elementwise::relu_fwd(x, o);
        Ok(())
    }

    fn relu_bwd(&self, y: &Buffer, dy: &Buffer, dx: &mut Buffer, accumulate: bool) -> Result<()> {
        let (y, dy, dx) = (f32s("y", y)?, f32s("dy", dy)?, f32s_mut("dx", dx)?);
        check_len("dy", dy.len(), y.len())?;
        check_len("dx", dx.len(), y.len())?;
        elementwise::relu_bwd(y, dy, dx, accumulate);
        Ok(())
    }

    // ---- norm -----------------------------------------------------------------------------
    fn layer_norm_fwd(
        &self,
        p: &LayerNorm,
        x: &Buffer,
        residual: Option<&Buffer>,
        gamma: &Buffer,
        beta: &Buffer,
        y: &mut Buffer,
        mean: &mut Buffer,
        rstd: &mut Buffer,
        sum_out: Option<&mut Buffer>,
    ) -> Result<()> {
        check::layer_norm_fwd(
            p,
            x,
            residual,
            gamma,
            beta,
            y,
            mean,
            rstd,
            sum_out.as_deref(),
        )?;
        let sum_out = match sum_out {
            Some(s) if residual.is_some() => Some(f32s_mut("sum_out", s)?),
            _ => None,
        };
        norm::layer_norm_fwd(
            p,
            f32s("x", x)?,
            opt_f32s("residual", residual)?,
            f32s("gamma", gamma)?,
            f32s("beta", beta)?,
            f32s_mut("y", y)?,
            f32s_mut("mean", mean)?,
            f32s_mut("rstd", rstd)?,
            sum_out,
        );
        Ok(())
    }

    fn layer_norm_bwd(
        &self,
        p: &LayerNorm,
        h: &Buffer,
        dy: &Buffer,
        gamma: &Buffer,
        mean: &Buffer,
        rstd: &Buffer,
        dh: &mut Buffer,
        dgamma: &mut Buffer,
        dbeta: &mut Buffer,
        accumulate_params: bool,
    ) -> Result<()> {
        check::layer_norm_bwd(p, h, dy, gamma, mean, rstd, dh, dgamma, dbeta)?;
        norm::layer_norm_bwd(
            p,
            f32s("h", h)?,
            f32s("dy", dy)?,
            f32s("gamma", gamma)?,
            f32s("mean", mean)?,
            f32s("rstd", rstd)?,
            f32s_mut("dh", dh)?,
            f32s_mut("dgamma", dgamma)?,
            f32s_mut("dbeta", dbeta)?,
            accumulate_params,
        );
        Ok(())
    }

    // ---- attention ------------------------------------------------------------------------
    fn attention_fwd(
        &self,
        p: &Attention,
        qkv: &Buffer,
        mask: Option<&Buffer>,
        out: &mut Buffer,
        lse: &mut Buffer,
    ) -> Result<()> {
        check::attention(p, qkv, mask)?;
        expect_len("out", out, p.batch * p.tokens * p.model_dim())?;
        expect_len("lse", lse, p.batch * p.heads * p.tokens)?;
        attention::attention_fwd(
            p,
            f32s("qkv", qkv)?,
            opt_f32s("mask", mask)?,
            f32s_mut("out", out)?,
            f32s_mut("lse", lse)?,
        );
        Ok(())
    }

    fn attention_bwd(
        &self,
        p: &Attention,
        qkv: &Buffer,
        mask: Option<&Buffer>,
        out: &Buffer,
        lse: &Buffer,
        dout: &Buffer,
        dqkv: &mut Buffer,
    ) -> Result<()> {
        check::attention(p, qkv, mask)?;
        let n = p.batch * p.tokens * p.model_dim();
        expect_len("out", out, n)?;
        expect_len("dout", dout, n)?;
        expect_len("lse", lse, p.batch * p.heads * p.tokens)?;
        expect_len("dqkv", dqkv, 3 * n)?;
        attention::attention_bwd(
            p,
            f32s("qkv", qkv)?,
            opt_f32s("mask", mask)?,
            f32s("out", out)?,
            f32s("lse", lse)?,
            f32s("dout", dout)?,
            f32s_mut("dqkv", dqkv)?,
        );
        Ok(())
    }

    // ---- embedding ------------------------------------------------------------------------
    fn embedding_fwd(
        &self,
        table: &Buffer,
        ids: &Buffer,
        dim: usize,
        out: &mut Buffer,
    ) -> Result<()> {
        self.gather_rows(table, ids, dim, out)
    }

    fn embedding_bwd(
        &self,
        dout: &Buffer,
        ids: &Buffer,
        dim: usize,
        dtable: &mut Buffer,
        accumulate: bool,
    ) -> Result<()> {
        let (dout, ids, dtable) = (
            f32s("dout", dout)?,
            u32s("ids", ids)?,
            f32s_mut("dtable", dtable)?,
        );
        check_len("dout", dout.len(), ids.len() * dim)?;
        embedding::embedding_bwd(dout, ids, dim, dtable, accumulate)
    }

    fn fourier_fwd(
        &self,
        x: &Buffer,
        freqs: &Buffer,
        rows: usize,
        in_dim: usize,
        half: usize,
        out: &mut Buffer,
    ) -> Result<()> {
        expect_len("x", x, rows * in_dim)?;
        expect_len("freqs", freqs, in_dim * half)?;
        expect_len("out", out, rows * 2 * half)?;
        embedding::fourier_fwd(
            f32s("x", x)?,
            f32s("freqs", freqs)?,
            rows,
            in_dim,
            half,
            f32s_mut("out", out)?,
        );
        Ok(())
    }

    fn fourier_bwd(
        &self,
        x: &Buffer,
        freqs: &Buffer,
        dout: &Buffer,
        rows: usize,
        in_dim: usize,
        half: usize,
        dfreqs: &mut Buffer,
        accumulate: bool,
    ) -> Result<()> {
        expect_len("x", x, rows * in_dim)?;
        expect_len("freqs", freqs, in_dim * half)?;
        expect_len("dout", dout, rows * 2 * half)?;
        expect_len("dfreqs", dfreqs, in_dim * half)?;
        embedding::fourier_bwd(
            f32s("x", x)?,
            f32s("freqs", freqs)?,
            f32s("dout", dout)?,
            rows,
            in_dim,
            half,
            f32s_mut("dfreqs", dfreqs)?,
            accumulate,
        );
        Ok(())
    }

    // ---- flow matching --------------------------------------------------------------------
    fn fm_prepare(
        &self,
        x0: &Buffer,
        x1: &Buffer,
        t: &Buffer,
        per_sample: usize,
        sigma_min: f32,
        xt: &mut Buffer,
        u: &mut Buffer,
    ) -> Result<()> {
        check::fm_prepare(x0, x1, t, per_sample, xt, u)?;
        flow::fm_prepare(
            f32s("x0", x0)?,
            f32s("x1", x1)?,
            f32s("t", t)?,
            per_sample,
            sigma_min,
            f32s_mut("xt", xt)?,
            f32s_mut("u", u)?,
        );
        Ok(())
    }

    fn fm_loss(
        &self,
        pred: &Buffer,
        target: &Buffer,
        mask: Option<&Buffer>,
        loss: &mut Buffer,
        dpred: &mut Buffer,
    ) -> Result<()> {
        check::fm_loss(pred, target, mask, loss, dpred)?;
        flow::fm_loss(
            f32s("pred", pred)?,
            f32s("target", target)?,
            opt_f32s("mask", mask)?,
            f32s_mut("loss", loss)?,
            f32s_mut("dpred", dpred)?,
        );
        Ok(())
    }

    // ---- ode ------------------------------------------------------------------------------
    fn ode_stage(
        &self,
        x: &Buffer,
        k: &Buffer,
        coeffs: &[f32],
        h: &Buffer,
        per_sample: usize,
        out: &mut Buffer,
    ) -> Result<()> {
        check::ode_stage(x, k, coeffs.len(), h, per_sample, out)?;
        ode::ode_stage(
            f32s("x", x)?,
            f32s("k", k)?,
            coeffs,
            f32s("h", h)?,
            per_sample,
            f32s_mut("out", out)?,
        );
        Ok(())
    }

    fn dopri5_error(
        &self,
        x: &Buffer,
        x_new: &Buffer,
        k: &Buffer,
        err_coeffs: &[f32],
        h: &Buffer,
        per_sample: usize,
        rtol: f32,
        atol: f32,
        err: &mut Buffer,
    ) -> Result<()> {
        check::dopri5_error(x, x_new, k, err_coeffs.len(), h, per_sample, err)?;
        ode::dopri5_error(
            f32s("x", x)?,
            f32s("x_new", x_new)?,
            f32s("k", k)?,
            err_coeffs,
            f32s("h", h)?,
            per_sample,
            rtol,
            atol,
            f32s_mut("err", err)?,
        );
        Ok(())
    }

    fn dopri5_accept(
        &self,
        x: &mut Buffer,
        x_new: &Buffer,
        err: &Buffer,
        t: &mut Buffer,
        h: &mut Buffer,
        per_sample: usize,
        t_end: f32,
    ) -> Result<()> {
        check::dopri5_accept(x, x_new, err, t, h, per_sample)?;
        ode::dopri5_accept(
            f32s_mut("x", x)?,
            f32s("x_new", x_new)?,
            f32s("err", err)?,
            f32s_mut("t", t)?,
            f32s_mut("h", h)?,
            per_sample,
            t_end,
        );
        Ok(())
    }

    // ---- optimiser ------------------------------------------------------------------------
    fn sum_squares(&self, x: &Buffer, out: &mut Buffer, accumulate: bool) -> Result<()> {
        expect_len("out", out, 1)?;
        optim::sum_squares(f32s("x", x)?, f32s_mut("out", out)?, accumulate);
        Ok(())
    }

    fn adamw_step(
        &self,
        p: &AdamW,
        param: &mut Buffer,
        grad: &Buffer,
        m: &mut Buffer,
        v: &mut Buffer,
        clip: Option<(&Buffer, f32)>,
    ) -> Result<()> {
        check::adamw(p, param, grad, m, v)?;
        let clip = match clip {
            Some((norm_sq, max_norm)) => {
                expect_len("norm_sq", norm_sq, 1)?;
                Some((f32s("norm_sq", norm_sq)?[0], max_norm))
            }
            None => None,
        };
        optim::adamw_step(
            p,
            f32s_mut("param", param)?,
            f32s("grad", grad)?,
            f32s_mut("m", m)?,
            f32s_mut("v", v)?,
            clip,
        );
        Ok(())
    }

    // ---- loss and reductions --------------------------------------------------------------
    fn bce_with_logits(
        &self,
        logits: &Buffer,
        targets: &Buffer,
        loss: &mut Buffer,
        dlogits: &mut Buffer,
    ) -> Result<()> {
        check::bce(logits, targets, loss, dlogits)?;
        loss::bce_with_logits(
            f32s("logits", logits)?,
            f32s("targets", targets)?,
            f32s_mut("loss", loss)?,
            f32s_mut("dlogits", dlogits)?,
        );
        Ok(())
    }

    fn reduce_sum(&self, x: &Buffer, scale: f32, out: &mut Buffer) -> Result<()> {
        expect_len("out", out, 1)?;
        loss::reduce_sum(f32s("x", x)?, scale, f32s_mut("out", out)?);
        Ok(())
    }
}
