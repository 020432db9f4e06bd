//! The table of bad calls: for each entry of the contract a well-formed call, with the buffer
//! arguments it spoils, and the calls whose parameters are wrong.

use tfmpe::backend::{AdamW, Attention, CopyCols, DType, Epilogue, Gemm, LayerNorm, Precision};
use tfmpe::Result;

use super::Defect::{Dtype, Foreign, Long, Short};
use super::{param, spoil, Args, Row, Want};

/// One line per row or per well-formed call: rustfmt would spread this table over four times
/// as many lines.
#[rustfmt::skip]
pub(super) fn bad_calls() -> Vec<Row> {
    use Want::{Invalid, Shape};
    let rows = [
        // ---- memory
        param("alloc of usize::MAX elements",
              |a| a.be().alloc(DType::F32, usize::MAX).map(drop), Invalid),
        spoil("write_f32", write_f32, &[("dst", Short), ("dst", Dtype), ("dst", Foreign)]),
        spoil("write_u32", write_u32, &[("dst", Short), ("dst", Dtype), ("dst", Foreign)]),
        spoil("download_f32", download_f32, &[("src", Dtype), ("src", Foreign)]),
        spoil("download_u32", download_u32, &[("src", Dtype), ("src", Foreign)]),
        spoil("copy", |a| copy(a, 5, 5, 5),
              &[("dst", Dtype), ("src", Foreign), ("dst", Foreign)]),
        param("copy past the end of src", |a| copy(a, 5, 0, 6), Shape),
        param("copy past the end of dst", |a| copy(a, 0, 5, 6), Shape),
        param("copy from usize::MAX", |a| copy(a, usize::MAX, 0, 2), Shape),
        spoil("copy_cols", |a| copy_cols(a, COPY_COLS),
              &[("src", Dtype), ("dst", Dtype), ("src", Foreign)]),
        param("copy_cols with rows past the end of src",
              |a| copy_cols(a, CopyCols { rows: 5, ..COPY_COLS }), Shape),
        param("copy_cols with columns past the src stride",
              |a| copy_cols(a, CopyCols { src_offset: 2, ..COPY_COLS }), Shape),
        spoil("fill", fill, &[("dst", Dtype), ("dst", Foreign)]),
        spoil("gather_rows", |a| gather_rows(a, 3),
              &[("src", Short), ("dst", Short), ("src", Dtype), ("idx", Dtype), ("src", Foreign)]),
        param("gather_rows with row_len 0", |a| gather_rows(a, 0), Invalid),
        spoil("scatter_rows", |a| scatter_rows(a, 3),
              &[("src", Short), ("dst", Short), ("dst", Dtype), ("idx", Dtype), ("dst", Foreign)]),
        param("scatter_rows with row_len 0", |a| scatter_rows(a, 0), Invalid),
        // ---- random
        spoil("normal_fill", normal_fill, &[("dst", Dtype), ("dst", Foreign)]),
        spoil("uniform_fill", uniform_fill, &[("dst", Dtype), ("dst", Foreign)]),
        // ---- matmul
        spoil("gemm", |a| gemm(a, GEMM, true),
              &[("a", Short), ("b", Short), ("c", Short), ("bias", Short),
                ("a", Dtype), ("bias", Dtype), ("b", Foreign), ("c", Foreign)]),
        param("gemm with a bias epilogue but no bias", |a| gemm(a, GEMM, false), Invalid),
        param("gemm with a bias but no epilogue",
              |a| gemm(a, Gemm { epilogue: Epilogue::None, ..GEMM }, true), Invalid),
        param("gemm with overlapping output batches",
              |a| gemm(a, Gemm { batch: 2, stride_c: 5, ..GEMM }, true), Invalid),
        spoil("bias_grad", bias_grad,
              &[("dy", Short), ("db", Short), ("db", Dtype), ("dy", Foreign)]),
        // ---- elementwise
        spoil("add", add, &[("b", Short), ("out", Short), ("a", Dtype), ("b", Foreign)]),
        spoil("scale", scale, &[("out", Short), ("x", Dtype), ("out", Foreign)]),
        spoil("axpy", axpy, &[("y", Short), ("y", Dtype), ("x", Foreign)]),
        spoil("relu_fwd", relu_fwd, &[("out", Short), ("out", Dtype), ("x", Foreign)]),
        spoil("relu_bwd", relu_bwd,
              &[("dy", Short), ("dx", Short), ("dy", Dtype), ("dx", Foreign)]),
        // ---- norm
        spoil("layer_norm_fwd", layer_norm_fwd,
              &[("x", Short), ("residual", Long), ("gamma", Short), ("beta", Long),
                ("y", Short), ("mean", Short), ("rstd", Long), ("sum_out", Short),
                ("gamma", Dtype), ("residual", Dtype), ("y", Foreign)]),
        spoil("layer_norm_bwd", layer_norm_bwd,
              &[("h", Short), ("dy", Long), ("gamma", Short), ("mean", Short), ("rstd", Long),
                ("dh", Short), ("dgamma", Long), ("dbeta", Short),
                ("mean", Dtype), ("dbeta", Foreign)]),
        // ---- attention
        spoil("attention_fwd", |a| attention_fwd(a, ATTENTION),
              &[("qkv", Short), ("mask", Short), ("out", Long), ("lse", Short),
                ("mask", Dtype), ("qkv", Foreign)]),
        param("attention_fwd with zero heads",
              |a| attention_fwd(a, Attention { heads: 0, ..ATTENTION }), Invalid),
        param("attention_fwd with zero head_dim",
              |a| attention_fwd(a, Attention { head_dim: 0, ..ATTENTION }), Invalid),
        spoil("attention_bwd", |a| attention_bwd(a, ATTENTION),
              &[("qkv", Long), ("mask", Short), ("out", Short), ("lse", Short), ("dout", Short),
                ("dqkv", Short), ("lse", Dtype), ("dout", Foreign)]),
        param("attention_bwd with zero heads",
              |a| attention_bwd(a, Attention { heads: 0, ..ATTENTION }), Invalid),
        // ---- embedding
        spoil("embedding_fwd", |a| embedding_fwd(a, 3),
              &[("table", Short), ("out", Short), ("table", Dtype), ("ids", Dtype),
                ("out", Foreign)]),
        param("embedding_fwd with dim 0", |a| embedding_fwd(a, 0), Invalid),
        spoil("embedding_bwd", |a| embedding_bwd(a, 3),
              &[("dout", Short), ("dtable", Short), ("dout", Dtype), ("ids", Dtype),
                ("dtable", Foreign)]),
        param("embedding_bwd with dim 0", |a| embedding_bwd(a, 0), Invalid),
        spoil("fourier_fwd", fourier_fwd,
              &[("x", Short), ("freqs", Long), ("out", Short), ("freqs", Dtype),
                ("out", Foreign)]),
        spoil("fourier_bwd", fourier_bwd,
              &[("x", Long), ("freqs", Short), ("dout", Short), ("dfreqs", Short),
                ("dout", Dtype), ("x", Foreign)]),
        // ---- flow
        spoil("fm_prepare", |a| fm_prepare(a, 3),
              &[("x1", Short), ("t", Long), ("xt", Short), ("u", Short), ("t", Dtype),
                ("u", Foreign)]),
        param("fm_prepare with per_sample 0", |a| fm_prepare(a, 0), Invalid),
        param("fm_prepare with per_sample not dividing", |a| fm_prepare(a, 4), Shape),
        spoil("fm_loss", fm_loss,
              &[("target", Short), ("mask", Short), ("loss", Long), ("dpred", Short),
                ("mask", Dtype), ("pred", Foreign)]),
        // ---- ode
        spoil("ode_stage", |a| ode_stage(a, 3),
              &[("k", Short), ("h", Long), ("out", Short), ("x", Dtype), ("k", Foreign)]),
        param("ode_stage with per_sample 0", |a| ode_stage(a, 0), Invalid),
        param("ode_stage with per_sample not dividing", |a| ode_stage(a, 4), Shape),
        spoil("dopri5_error", |a| dopri5_error(a, 3),
              &[("x_new", Short), ("k", Short), ("h", Short), ("err", Long), ("h", Dtype),
                ("err", Foreign)]),
        param("dopri5_error with per_sample 0", |a| dopri5_error(a, 0), Invalid),
        spoil("dopri5_accept", |a| dopri5_accept(a, 3),
              &[("x_new", Short), ("err", Short), ("t", Long), ("h", Short), ("t", Dtype),
                ("x", Foreign)]),
        param("dopri5_accept with per_sample 0", |a| dopri5_accept(a, 0), Invalid),
        param("dopri5_accept with per_sample not dividing", |a| dopri5_accept(a, 4), Shape),
        // ---- optimiser
        spoil("sum_squares", sum_squares, &[("out", Long), ("x", Dtype), ("out", Foreign)]),
        spoil("adamw_step", |a| adamw_step(a, ADAMW),
              &[("grad", Short), ("m", Long), ("v", Short), ("norm_sq", Long),
                ("grad", Dtype), ("norm_sq", Dtype), ("v", Foreign)]),
        param("adamw_step at step 0", |a| adamw_step(a, AdamW { step: 0, ..ADAMW }), Invalid),
        // ---- loss
        spoil("bce_with_logits", bce_with_logits,
              &[("targets", Short), ("loss", Long), ("dlogits", Short), ("targets", Dtype),
                ("loss", Foreign)]),
        spoil("reduce_sum", reduce_sum, &[("out", Long), ("x", Dtype), ("x", Foreign)]),
    ];
    rows.into_iter().flatten().collect()
}

// ---- the well-formed calls ------------------------------------------------------------------

fn write_f32(a: &Args) -> Result<()> {
    a.be().write_f32(&mut a.f32("dst", 4), &[1.0; 4])
}

fn write_u32(a: &Args) -> Result<()> {
    a.be().write_u32(&mut a.u32("dst", &[0; 4]), &[1; 4])
}

fn download_f32(a: &Args) -> Result<()> {
    a.be().download_f32(&a.f32("src", 4)).map(drop)
}

fn download_u32(a: &Args) -> Result<()> {
    a.be().download_u32(&a.u32("src", &[1, 2])).map(drop)
}

/// `len` elements between two buffers of 10.
fn copy(a: &Args, src_offset: usize, dst_offset: usize, len: usize) -> Result<()> {
    let (src, mut dst) = (a.f32("src", 10), a.f32("dst", 10));
    a.be().copy(&src, src_offset, &mut dst, dst_offset, len)
}

/// Four rows; each buffer holds one element past the last row's block, so that a block past
/// its stride is caught by the stride check rather than by the buffer's end.
const COPY_COLS: CopyCols = CopyCols {
    rows: 4,
    width: 2,
    src_stride: 3,
    src_offset: 1,
    dst_stride: 4,
    dst_offset: 2,
    accumulate: false,
};

fn copy_cols(a: &Args, p: CopyCols) -> Result<()> {
    a.be().copy_cols(&p, &a.f32("src", 13), &mut a.f32("dst", 17))
}

fn fill(a: &Args) -> Result<()> {
    a.be().fill(&mut a.f32("dst", 4), 1.0)
}

/// Two rows of a table of four.
fn gather_rows(a: &Args, row_len: usize) -> Result<()> {
    let (src, idx) = (a.f32("src", 4 * row_len), a.u32("idx", &[3, 0]));
    a.be().gather_rows(&src, &idx, row_len, &mut a.f32("dst", 2 * row_len))
}

fn scatter_rows(a: &Args, row_len: usize) -> Result<()> {
    let (src, idx) = (a.f32("src", 2 * row_len), a.u32("idx", &[3, 0]));
    a.be().scatter_rows(&src, &idx, row_len, &mut a.f32("dst", 4 * row_len))
}

fn normal_fill(a: &Args) -> Result<()> {
    a.be().normal_fill(&mut a.f32("dst", 5), 1, 0)
}

fn uniform_fill(a: &Args) -> Result<()> {
    a.be().uniform_fill(&mut a.f32("dst", 5), 1, 0, -1.0, 1.0)
}

const GEMM: Gemm = Gemm {
    batch: 1,
    m: 2,
    n: 3,
    k: 4,
    trans_a: false,
    trans_b: false,
    alpha: 1.0,
    beta: 0.0,
    stride_a: 8,
    stride_b: 12,
    stride_c: 6,
    epilogue: Epilogue::Bias,
    precision: Precision::F32,
};

/// Operands as long as `p` needs.
fn gemm(a: &Args, p: Gemm, with_bias: bool) -> Result<()> {
    let span = |stride: usize, len: usize| (p.batch - 1) * stride + len;
    let (lhs, rhs) =
        (a.f32("a", span(p.stride_a, p.m * p.k)), a.f32("b", span(p.stride_b, p.k * p.n)));
    let bias = with_bias.then(|| a.f32("bias", p.n));
    let mut c = a.f32("c", span(p.stride_c, p.m * p.n));
    a.be().gemm(&p, &lhs, &rhs, bias.as_ref(), &mut c)
}

fn bias_grad(a: &Args) -> Result<()> {
    a.be().bias_grad(&a.f32("dy", 12), 3, 4, &mut a.f32("db", 4), false)
}

fn add(a: &Args) -> Result<()> {
    a.be().add(&a.f32("a", 5), &a.f32("b", 5), &mut a.f32("out", 5))
}

fn scale(a: &Args) -> Result<()> {
    a.be().scale(&a.f32("x", 5), 2.0, &mut a.f32("out", 5))
}

fn axpy(a: &Args) -> Result<()> {
    a.be().axpy(2.0, &a.f32("x", 5), &mut a.f32("y", 5))
}

fn relu_fwd(a: &Args) -> Result<()> {
    a.be().relu_fwd(&a.f32("x", 5), &mut a.f32("out", 5))
}

fn relu_bwd(a: &Args) -> Result<()> {
    let (y, dy) = (a.f32("y", 5), a.f32("dy", 5));
    a.be().relu_bwd(&y, &dy, &mut a.f32("dx", 5), false)
}

const LAYER_NORM: LayerNorm = LayerNorm { rows: 3, cols: 5, eps: 1e-5 };

/// With a residual and `sum_out`.
fn layer_norm_fwd(a: &Args) -> Result<()> {
    let (rows, n) = (LAYER_NORM.rows, LAYER_NORM.rows * LAYER_NORM.cols);
    let (x, residual) = (a.f32("x", n), a.f32("residual", n));
    let (gamma, beta) = (a.f32("gamma", 5), a.f32("beta", 5));
    let (mut y, mut mean, mut rstd) = (a.f32("y", n), a.f32("mean", rows), a.f32("rstd", rows));
    let mut sum_out = a.f32("sum_out", n);
    a.be().layer_norm_fwd(
        &LAYER_NORM,
        &x,
        Some(&residual),
        &gamma,
        &beta,
        &mut y,
        &mut mean,
        &mut rstd,
        Some(&mut sum_out),
    )
}

fn layer_norm_bwd(a: &Args) -> Result<()> {
    let (rows, n) = (LAYER_NORM.rows, LAYER_NORM.rows * LAYER_NORM.cols);
    let (h, dy, gamma) = (a.f32("h", n), a.f32("dy", n), a.f32("gamma", 5));
    let (mean, rstd) = (a.f32("mean", rows), a.f32("rstd", rows));
    let (mut dh, mut dgamma, mut dbeta) = (a.f32("dh", n), a.f32("dgamma", 5), a.f32("dbeta", 5));
    a.be().layer_norm_bwd(
        &LAYER_NORM,
        &h,
        &dy,
        &gamma,
        &mean,
        &rstd,
        &mut dh,
        &mut dgamma,
        &mut dbeta,
        false,
    )
}

const ATTENTION: Attention = Attention { batch: 2, tokens: 3, heads: 2, head_dim: 2, scale: 0.5 };

/// With a key-padding mask (all zeros: every key masked, which is allowed).
fn attention_fwd(a: &Args, p: Attention) -> Result<()> {
    let n = p.batch * p.tokens * p.model_dim();
    let (qkv, mask) = (a.f32("qkv", 3 * n), a.f32("mask", p.batch * p.tokens));
    let (mut out, mut lse) = (a.f32("out", n), a.f32("lse", p.batch * p.heads * p.tokens));
    a.be().attention_fwd(&p, &qkv, Some(&mask), &mut out, &mut lse)
}

fn attention_bwd(a: &Args, p: Attention) -> Result<()> {
    let n = p.batch * p.tokens * p.model_dim();
    let (qkv, mask) = (a.f32("qkv", 3 * n), a.f32("mask", p.batch * p.tokens));
    let (out, lse) = (a.f32("out", n), a.f32("lse", p.batch * p.heads * p.tokens));
    let (dout, mut dqkv) = (a.f32("dout", n), a.f32("dqkv", 3 * n));
    a.be().attention_bwd(&p, &qkv, Some(&mask), &out, &lse, &dout, &mut dqkv)
}

/// Two lookups into a table of four rows of `dim`.
fn embedding_fwd(a: &Args, dim: usize) -> Result<()> {
    let (table, ids) = (a.f32("table", 4 * dim), a.u32("ids", &[3, 0]));
    a.be().embedding_fwd(&table, &ids, dim, &mut a.f32("out", 2 * dim))
}

fn embedding_bwd(a: &Args, dim: usize) -> Result<()> {
    let (dout, ids) = (a.f32("dout", 2 * dim), a.u32("ids", &[3, 0]));
    a.be().embedding_bwd(&dout, &ids, dim, &mut a.f32("dtable", 4 * dim), false)
}

/// Three rows of two inputs, four frequencies each.
fn fourier_fwd(a: &Args) -> Result<()> {
    let (x, freqs) = (a.f32("x", 6), a.f32("freqs", 8));
    a.be().fourier_fwd(&x, &freqs, 3, 2, 4, &mut a.f32("out", 24))
}

fn fourier_bwd(a: &Args) -> Result<()> {
    let (x, freqs, dout) = (a.f32("x", 6), a.f32("freqs", 8), a.f32("dout", 24));
    a.be().fourier_bwd(&x, &freqs, &dout, 3, 2, 4, &mut a.f32("dfreqs", 8), false)
}

/// Six elements and two times: two samples when `per_sample` is 3.
fn fm_prepare(a: &Args, per_sample: usize) -> Result<()> {
    let (x0, x1, t) = (a.f32("x0", 6), a.f32("x1", 6), a.f32("t", 2));
    let (mut xt, mut u) = (a.f32("xt", 6), a.f32("u", 6));
    a.be().fm_prepare(&x0, &x1, &t, per_sample, 0.0, &mut xt, &mut u)
}

fn fm_loss(a: &Args) -> Result<()> {
    let (pred, target, mask) = (a.f32("pred", 6), a.f32("target", 6), a.f32("mask", 6));
    let (mut loss, mut dpred) = (a.f32("loss", 1), a.f32("dpred", 6));
    a.be().fm_loss(&pred, &target, Some(&mask), &mut loss, &mut dpred)
}

/// Six elements, two stages, and two step sizes: two samples when `per_sample` is 3.
fn ode_stage(a: &Args, per_sample: usize) -> Result<()> {
    let (x, k, h) = (a.f32("x", 6), a.f32("k", 12), a.f32("h", 2));
    a.be().ode_stage(&x, &k, &[0.5, 0.5], &h, per_sample, &mut a.f32("out", 6))
}

fn dopri5_error(a: &Args, per_sample: usize) -> Result<()> {
    let (x, x_new, k, h) = (a.f32("x", 6), a.f32("x_new", 6), a.f32("k", 12), a.f32("h", 2));
    let mut err = a.f32("err", 2);
    a.be().dopri5_error(&x, &x_new, &k, &[1.0, -1.0], &h, per_sample, 1e-3, 1e-5, &mut err)
}

fn dopri5_accept(a: &Args, per_sample: usize) -> Result<()> {
    let (mut x, x_new, err) = (a.f32("x", 6), a.f32("x_new", 6), a.f32("err", 2));
    let (mut t, mut h) = (a.f32("t", 2), a.f32("h", 2));
    a.be().dopri5_accept(&mut x, &x_new, &err, &mut t, &mut h, per_sample, 1.0)
}

fn sum_squares(a: &Args) -> Result<()> {
    a.be().sum_squares(&a.f32("x", 5), &mut a.f32("out", 1), false)
}

const ADAMW: AdamW =
    AdamW { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0, step: 1 };

/// Four parameters, clipped by a squared norm.
fn adamw_step(a: &Args, p: AdamW) -> Result<()> {
    let (mut param, grad) = (a.f32("param", 4), a.f32("grad", 4));
    let (mut m, mut v, norm_sq) = (a.f32("m", 4), a.f32("v", 4), a.f32("norm_sq", 1));
    a.be().adamw_step(&p, &mut param, &grad, &mut m, &mut v, Some((&norm_sq, 1.0)))
}

fn bce_with_logits(a: &Args) -> Result<()> {
    let (logits, targets) = (a.f32("logits", 4), a.f32("targets", 4));
    let (mut loss, mut dlogits) = (a.f32("loss", 1), a.f32("dlogits", 4));
    a.be().bce_with_logits(&logits, &targets, &mut loss, &mut dlogits)
}

fn reduce_sum(a: &Args) -> Result<()> {
    a.be().reduce_sum(&a.f32("x", 5), 1.0, &mut a.f32("out", 1))
}
