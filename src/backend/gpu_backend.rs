//! The [`Backend`](super::Backend) implementation that the GPU backends (wgpu, CUDA) share
//! word for word: check the arguments with [`check`](super::check), unwrap the buffers, and hand
//! each kernel to the launcher of its family. The macro is expanded in each backend's `mod.rs`,
//! where the family modules (`memory`, `matmul`, ...) and `self.gpu` resolve to that backend's
//! own: each family file holds the launch geometry, `context` the device. The launchers of both
//! backends take the same arguments, so one body serves both.
//!
//! The caller must have in scope: `check`, `expect_len`, the parameter types of the contract
//! (`AdamW`, `Attention`, `Backend`, `Buffer`, `CopyCols`, `DType`, `Gemm`, `LayerNorm`),
//! `Error` and `Result`.

/// `gpu_backend!(Backend type, Buffer variant, buffer type, name, "name in messages")`.
macro_rules! gpu_backend {
    ($backend:ty, $variant:ident, $buf:ty, $name:literal, $what:literal) => {
        /// The backend's own buffer inside `b`, which must hold `dtype`.
        fn raw<'a>(name: &str, b: &'a Buffer, dtype: DType) -> Result<&'a $buf> {
            match b {
                Buffer::$variant(w) if w.dtype() == dtype => Ok(w),
                Buffer::$variant(w) => Err(Error::Buffer(format!(
                    "{name}: expected {dtype:?} elements, got {:?}",
                    w.dtype()
                ))),
                #[allow(unreachable_patterns)]
                _ => Err(Error::Buffer(format!(
                    concat!(
                        "{}: expected a ",
                        $what,
                        " buffer, got one of another backend"
                    ),
                    name
                ))),
            }
        }

        fn f32b<'a>(name: &str, b: &'a Buffer) -> Result<&'a $buf> {
            raw(name, b, DType::F32)
        }

        fn u32b<'a>(name: &str, b: &'a Buffer) -> Result<&'a $buf> {
            raw(name, b, DType::U32)
        }

        fn opt_f32b<'a>(name: &str, b: Option<&'a Buffer>) -> Result<Option<&'a $buf>> {
            b.map(|b| f32b(name, b)).transpose()
        }

        impl Backend for $backend {
            fn name(&self) -> &'static str {
                $name
            }

            fn device_name(&self) -> String {
                self.gpu.describe()
            }

            fn synchronize(&self) -> Result<()> {
                self.gpu.wait()
            }

            fn buffers_allocated(&self) -> u64 {
                self.gpu.buffers_created()
            }

            // ---- memory -------------------------------------------------------------------------
            fn alloc(&self, dtype: DType, len: usize) -> Result<Buffer> {
                Ok(Buffer::$variant(self.gpu.alloc(dtype, len)?))
            }

            fn upload_f32(&self, data: &[f32]) -> Result<Buffer> {
                Ok(Buffer::$variant(
                    self.gpu.upload(DType::F32, bytemuck::cast_slice(data))?,
                ))
            }

            fn upload_u32(&self, data: &[u32]) -> Result<Buffer> {
                Ok(Buffer::$variant(
                    self.gpu.upload(DType::U32, bytemuck::cast_slice(data))?,
                ))
            }

            fn write_f32(&self, dst: &mut Buffer, data: &[f32]) -> Result<()> {
                expect_len("data", dst, data.len())?;
                self.gpu
                    .write(f32b("dst", dst)?, bytemuck::cast_slice(data))
            }

            fn write_u32(&self, dst: &mut Buffer, data: &[u32]) -> Result<()> {
                expect_len("data", dst, data.len())?;
                self.gpu
                    .write(u32b("dst", dst)?, bytemuck::cast_slice(data))
            }

            fn download_f32(&self, src: &Buffer) -> Result<Vec<f32>> {
                self.gpu.read(f32b("src", src)?)
            }

            fn download_u32(&self, src: &Buffer) -> Result<Vec<u32>> {
                self.gpu.read(u32b("src", src)?)
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
                let dtype = src.dtype();
                self.gpu.copy(
                    raw("src", src, dtype)?,
                    src_offset as u64 * 4,
                    raw("dst", dst, dtype)?,
                    dst_offset as u64 * 4,
                    len as u64 * 4,
                )
            }

            fn copy_cols(&self, p: &CopyCols, src: &Buffer, dst: &mut Buffer) -> Result<()> {
                check::copy_cols(p, src, dst)?;
                memory::copy_cols(&self.gpu, p, f32b("src", src)?, f32b("dst", dst)?)
            }

            fn fill(&self, dst: &mut Buffer, value: f32) -> Result<()> {
                memory::fill(&self.gpu, f32b("dst", dst)?, value)
            }

            fn gather_rows(
                &self,
                src: &Buffer,
                idx: &Buffer,
                row_len: usize,
                dst: &mut Buffer,
            ) -> Result<()> {
                check::rows("gather_rows", idx, row_len, ("dst", dst), ("src", src))?;
                let (s, i, d) = (f32b("src", src)?, u32b("idx", idx)?, f32b("dst", dst)?);
                memory::gather_rows(&self.gpu, s, i, row_len, d)
            }

            fn scatter_rows(
                &self,
                src: &Buffer,
                idx: &Buffer,
                row_len: usize,
                dst: &mut Buffer,
            ) -> Result<()> {
                check::rows("scatter_rows", idx, row_len, ("src", src), ("dst", dst))?;
                let (s, i, d) = (f32b("src", src)?, u32b("idx", idx)?, f32b("dst", dst)?);
                memory::scatter_rows(&self.gpu, s, i, row_len, d)
            }

            // ---- random ---------------------------------------------------------------------------
            fn normal_fill(&self, dst: &mut Buffer, seed: u64, offset: u64) -> Result<()> {
                random::normal_fill(&self.gpu, f32b("dst", dst)?, seed, offset)
            }

            fn uniform_fill(
                &self,
                dst: &mut Buffer,
                seed: u64,
                offset: u64,
                lo: f32,
                hi: f32,
            ) -> Result<()> {
                random::uniform_fill(&self.gpu, f32b("dst", dst)?, seed, offset, lo, hi)
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
                check::gemm(p, a.len(), b.len(), bias.map(|b| b.len()), c.len())?;
                matmul::gemm(
                    &self.gpu,
                    p,
                    f32b("a", a)?,
                    f32b("b", b)?,
                    opt_f32b("bias", bias)?,
                    f32b("c", c)?,
                )
            }

            fn bias_grad(
                &self,
                dy: &Buffer,
                rows: usize,
                cols: usize,
                db: &mut Buffer,
                accumulate: bool,
            ) -> Result<()> {
                expect_len("dy", dy, rows * cols)?;
                expect_len("db", db, cols)?;
                matmul::bias_grad(
                    &self.gpu,
                    f32b("dy", dy)?,
                    rows,
                    cols,
                    f32b("db", db)?,
                    accumulate,
                )
            }

            // ---- elementwise ----------------------------------------------------------------------
            fn add(&self, a: &Buffer, b: &Buffer, out: &mut Buffer) -> Result<()> {
                expect_len("b", b, a.len())?;
                expect_len("out", out, a.len())?;
                elementwise::add(&self.gpu, f32b("a", a)?, f32b("b", b)?, f32b("out", out)?)
            }

            fn scale(&self, x: &Buffer, alpha: f32, out: &mut Buffer) -> Result<()> {
                expect_len("out", out, x.len())?;
                elementwise::scale(&self.gpu, f32b("x", x)?, alpha, f32b("out", out)?)
            }

            fn axpy(&self, alpha: f32, x: &Buffer, y: &mut Buffer) -> Result<()> {
                expect_len("y", y, x.len())?;
                elementwise::axpy(&self.gpu, alpha, f32b("x", x)?, f32b("y", y)?)
            }

            fn relu_fwd(&self, x: &Buffer, out: &mut Buffer) -> Result<()> {
                expect_len("out", out, x.len())?;
                elementwise::relu_fwd(&self.gpu, f32b("x", x)?, f32b("out", out)?)
            }

            fn relu_bwd(
                &self,
                y: &Buffer,
                dy: &Buffer,
                dx: &mut Buffer,
                accumulate: bool,
            ) -> Result<()> {
                expect_len("dy", dy, y.len())?;
                expect_len("dx", dx, y.len())?;
                let (y, dy, dx) = (f32b("y", y)?, f32b("dy", dy)?, f32b("dx", dx)?);
                elementwise::relu_bwd(&self.gpu, y, dy, dx, accumulate)
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
                let sum_out = sum_out.map(|s| &*s);
                check::layer_norm_fwd(p, x, residual, gamma, beta, y, mean, rstd, sum_out)?;
                let with_residual = match (residual, sum_out) {
                    (Some(r), Some(s)) => Some((f32b("residual", r)?, f32b("sum_out", s)?)),
                    _ => None,
                };
                norm::layer_norm_fwd(
                    &self.gpu,
                    p,
                    f32b("x", x)?,
                    with_residual,
                    f32b("gamma", gamma)?,
                    f32b("beta", beta)?,
                    f32b("y", y)?,
                    f32b("mean", mean)?,
                    f32b("rstd", rstd)?,
                )
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
                    &self.gpu,
                    p,
                    f32b("h", h)?,
                    f32b("dy", dy)?,
                    f32b("gamma", gamma)?,
                    f32b("mean", mean)?,
                    f32b("rstd", rstd)?,
                    f32b("dh", dh)?,
                    f32b("dgamma", dgamma)?,
                    f32b("dbeta", dbeta)?,
                    accumulate_params,
                )
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
                    &self.gpu,
                    p,
                    f32b("qkv", qkv)?,
                    opt_f32b("mask", mask)?,
                    f32b("out", out)?,
                    f32b("lse", lse)?,
                )
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
                    &self.gpu,
                    p,
                    f32b("qkv", qkv)?,
                    opt_f32b("mask", mask)?,
                    f32b("out", out)?,
                    f32b("lse", lse)?,
                    f32b("dout", dout)?,
                    f32b("dqkv", dqkv)?,
                )
            }

            // ---- embedding ------------------------------------------------------------------------
            fn embedding_fwd(
                &self,
                table: &Buffer,
                ids: &Buffer,
                dim: usize,
                out: &mut Buffer,
            ) -> Result<()> {
                check::rows("embedding_fwd", ids, dim, ("out", out), ("table", table))?;
                let (t, i, o) = (f32b("table", table)?, u32b("ids", ids)?, f32b("out", out)?);
                embedding::embedding_fwd(&self.gpu, t, i, dim, o)
            }

            fn embedding_bwd(
                &self,
                dout: &Buffer,
                ids: &Buffer,
                dim: usize,
                dtable: &mut Buffer,
                accumulate: bool,
            ) -> Result<()> {
                check::rows(
                    "embedding_bwd",
                    ids,
                    dim,
                    ("dout", dout),
                    ("dtable", dtable),
                )?;
                let (dout, ids, dt) = (
                    f32b("dout", dout)?,
                    u32b("ids", ids)?,
                    f32b("dtable", dtable)?,
                );
                embedding::embedding_bwd(&self.gpu, dout, ids, dim, dt, accumulate)
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
                let (x, f, o) = (f32b("x", x)?, f32b("freqs", freqs)?, f32b("out", out)?);
                embedding::fourier_fwd(&self.gpu, x, f, (rows, in_dim, half), o)
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
                    &self.gpu,
                    [f32b("x", x)?, f32b("freqs", freqs)?, f32b("dout", dout)?],
                    (rows, in_dim, half),
                    f32b("dfreqs", dfreqs)?,
                    accumulate,
                )
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
                    &self.gpu,
                    [f32b("x0", x0)?, f32b("x1", x1)?, f32b("t", t)?],
                    per_sample,
                    sigma_min,
                    f32b("xt", xt)?,
                    f32b("u", u)?,
                )
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
                    &self.gpu,
                    f32b("pred", pred)?,
                    f32b("target", target)?,
                    opt_f32b("mask", mask)?,
                    f32b("loss", loss)?,
                    f32b("dpred", dpred)?,
                )
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
                let (x, k, h, o) = (
                    f32b("x", x)?,
                    f32b("k", k)?,
                    f32b("h", h)?,
                    f32b("out", out)?,
                );
                ode::ode_stage(&self.gpu, [x, k, h], coeffs, per_sample, o)
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
                    &self.gpu,
                    [
                        f32b("x", x)?,
                        f32b("x_new", x_new)?,
                        f32b("k", k)?,
                        f32b("h", h)?,
                    ],
                    err_coeffs,
                    per_sample,
                    (rtol, atol),
                    f32b("err", err)?,
                )
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
                    &self.gpu,
                    [f32b("x", x)?, f32b("x_new", x_new)?, f32b("err", err)?],
                    [f32b("t", t)?, f32b("h", h)?],
                    per_sample,
                    t_end,
                )
            }

            // ---- optimiser ------------------------------------------------------------------------
            fn sum_squares(&self, x: &Buffer, out: &mut Buffer, accumulate: bool) -> Result<()> {
                expect_len("out", out, 1)?;
                optim::sum_squares(&self.gpu, f32b("x", x)?, f32b("out", out)?, accumulate)
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
                        Some((f32b("norm_sq", norm_sq)?, max_norm))
                    }
                    None => None,
                };
                optim::adamw_step(
                    &self.gpu,
                    p,
                    [
                        f32b("param", param)?,
                        f32b("grad", grad)?,
                        f32b("m", m)?,
                        f32b("v", v)?,
                    ],
                    clip,
                )
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
                    &self.gpu,
                    f32b("logits", logits)?,
                    f32b("targets", targets)?,
                    f32b("loss", loss)?,
                    f32b("dlogits", dlogits)?,
                )
            }

            fn reduce_sum(&self, x: &Buffer, scale: f32, out: &mut Buffer) -> Result<()> {
                expect_len("out", out, 1)?;
                loss::reduce_sum(&self.gpu, f32b("x", x)?, scale, f32b("out", out)?)
            }
        }
    };
}

pub(crate) use gpu_backend;
