//! Argument checks of the kernel contract, one per entry, called by the checked layer
//! (`checked.rs`) before any kernel runs: each returns the [`Error::Shape`] or
//! [`Error::Invalid`] that names the offending argument, so that a wrong call is the same clear
//! error on every backend and never reaches a kernel.

use super::{AdamW, Attention, Buffer, CopyCols, DType, Epilogue, Gemm, LayerNorm};
use crate::error::{Error, Result};

/// Checks a buffer's length, naming the argument in the error.
pub(crate) fn expect_len(name: &str, buf: &Buffer, len: usize) -> Result<()> {
    if buf.len() != len {
        return Err(Error::Shape(format!("{name}: expected {len} elements, got {}", buf.len())));
    }
    Ok(())
}

/// Checks a buffer's element type.
pub(crate) fn dtype(name: &str, buf: &Buffer, dtype: DType) -> Result<()> {
    if buf.dtype() != dtype {
        return Err(Error::Buffer(format!(
            "{name}: expected {dtype:?} elements, got {:?}",
            buf.dtype()
        )));
    }
    Ok(())
}

/// A buffer of `len` elements must be addressable in bytes.
pub(crate) fn alloc(len: usize) -> Result<()> {
    if len > isize::MAX as usize / 4 {
        return Err(Error::Invalid(format!(
            "alloc: a buffer of {len} elements overflows the address space"
        )));
    }
    Ok(())
}

/// Checks that every buffer has `len` elements.
pub(crate) fn lens(len: usize, bufs: &[(&str, &Buffer)]) -> Result<()> {
    bufs.iter().try_for_each(|&(name, b)| expect_len(name, b, len))
}

/// `offset + len` must lie inside `total`.
pub(crate) fn range(name: &str, offset: usize, len: usize, total: usize) -> Result<()> {
    if offset.checked_add(len).is_none_or(|end| end > total) {
        return Err(Error::Shape(format!(
            "{name}: range {offset}..{} is past its {total} elements",
            offset.saturating_add(len)
        )));
    }
    Ok(())
}

pub(crate) fn copy(
    src: &Buffer, src_offset: usize, dst: &Buffer, dst_offset: usize, len: usize,
) -> Result<()> {
    range("src", src_offset, len, src.len())?;
    range("dst", dst_offset, len, dst.len())?;
    if src.dtype() != dst.dtype() {
        return Err(Error::Buffer("copy: src and dst must share a dtype".into()));
    }
    Ok(())
}

pub(crate) fn copy_cols(p: &CopyCols, src: &Buffer, dst: &Buffer) -> Result<()> {
    if p.rows == 0 {
        return Ok(());
    }
    range("src", p.src_offset + (p.rows - 1) * p.src_stride, p.width, src.len())?;
    range("dst", p.dst_offset + (p.rows - 1) * p.dst_stride, p.width, dst.len())?;
    if p.src_offset + p.width > p.src_stride || p.dst_offset + p.width > p.dst_stride {
        return Err(Error::Shape("copy_cols: columns run past the row stride".into()));
    }
    Ok(())
}

/// Rows of `row_len` moved by `idx` between a table and packed rows: `rows` must hold one row
/// per index, and `table` whole rows. Whether each index names a row of the table is checked
/// by [`row_ids`] where the host holds the indices.
pub(crate) fn rows(
    what: &str, idx: &Buffer, row_len: usize, rows: (&str, &Buffer), table: (&str, &Buffer),
) -> Result<()> {
    if row_len == 0 {
        return Err(Error::Invalid(format!("{what}: row_len must be positive")));
    }
    expect_len(rows.0, rows.1, idx.len() * row_len)?;
    if !table.1.len().is_multiple_of(row_len) {
        return Err(Error::Shape(format!(
            "{what}: {} has {} elements, not a whole number of rows of {row_len}",
            table.0,
            table.1.len()
        )));
    }
    Ok(())
}

/// Every index names one of the `table_rows` rows of `table` (and, when `distinct`, none is
/// named twice). Only the CPU backend's indices are on the host; a GPU kernel skips a row
/// whose index is past the table, since reading the indices back would stall the device.
pub(crate) fn row_ids(
    what: &str, table: &str, table_rows: usize, idx: &[u32], distinct: bool,
) -> Result<()> {
    if let Some((i, &r)) = idx.iter().enumerate().find(|&(_, &r)| r as usize >= table_rows) {
        return Err(Error::Invalid(format!(
            "{what}: index {r} (idx[{i}]) is past the {table_rows} rows of {table}"
        )));
    }
    if distinct {
        let mut seen = vec![false; table_rows];
        for (i, &r) in idx.iter().enumerate() {
            if std::mem::replace(&mut seen[r as usize], true) {
                return Err(Error::Invalid(format!(
                    "{what}: index {r} (idx[{i}]) appears twice; indices must be distinct"
                )));
            }
        }
    }
    Ok(())
}

/// Elements an operand spans: batch `b` starts at `b · stride` and holds `len` elements.
fn span(batch: usize, stride: usize, len: usize) -> Option<usize> {
    if batch == 0 || len == 0 {
        return Some(0);
    }
    (batch - 1).checked_mul(stride)?.checked_add(len)
}

/// Checks every buffer is long enough for `p` (and that the epilogue has its bias).
pub(crate) fn gemm(
    p: &Gemm, a_len: usize, b_len: usize, bias_len: Option<usize>, c_len: usize,
) -> Result<()> {
    let (m, n, k) = (p.m, p.n, p.k);
    let overflow = || Error::Shape(format!("gemm: {m}×{n}×{k} in {} batches overflows", p.batch));
    let (a_rows, a_cols) = if p.trans_a { (k, m) } else { (m, k) };
    let (b_rows, b_cols) = if p.trans_b { (n, k) } else { (k, n) };
    for (name, rows, cols, stride, have) in [
        ("a", a_rows, a_cols, p.stride_a, a_len),
        ("b", b_rows, b_cols, p.stride_b, b_len),
        ("c", m, n, p.stride_c, c_len),
    ] {
        let len = rows.checked_mul(cols).ok_or_else(overflow)?;
        let need = span(p.batch, stride, len).ok_or_else(overflow)?;
        if have < need {
            return Err(Error::Shape(format!(
                "gemm: {name} holds {have} elements, but {} batches of {rows}×{cols} \
                 at stride {stride} need {need}",
                p.batch
            )));
        }
    }
    if p.batch > 1 && m * n > 0 && p.stride_c < m * n {
        return Err(Error::Invalid(format!(
            "gemm: stride_c = {} is less than one {m}×{n} output, so output batches would overlap",
            p.stride_c
        )));
    }
    match (p.epilogue, bias_len) {
        (Epilogue::None, Some(_)) => Err(Error::Invalid(
            "gemm: a bias was given but the epilogue is None; use Epilogue::Bias".into(),
        )),
        (Epilogue::Bias | Epilogue::BiasRelu, None) => Err(Error::Invalid(format!(
            "gemm: epilogue {:?} needs a bias of n = {n} elements",
            p.epilogue
        ))),
        (_, Some(len)) if len != n => {
            Err(Error::Shape(format!("gemm: bias holds {len} elements, expected n = {n}")))
        }
        _ => Ok(()),
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn layer_norm_fwd(
    p: &LayerNorm, x: &Buffer, residual: Option<&Buffer>, gamma: &Buffer, beta: &Buffer,
    y: &Buffer, mean: &Buffer, rstd: &Buffer, sum_out: Option<&Buffer>,
) -> Result<()> {
    let n = p.rows * p.cols;
    for (name, b, len) in [
        ("x", x, n),
        ("gamma", gamma, p.cols),
        ("beta", beta, p.cols),
        ("y", y, n),
        ("mean", mean, p.rows),
        ("rstd", rstd, p.rows),
    ] {
        expect_len(name, b, len)?;
    }
    match (residual, sum_out) {
        (Some(r), Some(s)) => {
            expect_len("residual", r, n)?;
            expect_len("sum_out", s, n)
        }
        (Some(r), None) => expect_len("residual", r, n),
        (None, _) => Ok(()),
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn layer_norm_bwd(
    p: &LayerNorm, h: &Buffer, dy: &Buffer, gamma: &Buffer, mean: &Buffer, rstd: &Buffer,
    dh: &Buffer, dgamma: &Buffer, dbeta: &Buffer,
) -> Result<()> {
    let n = p.rows * p.cols;
    for (name, b, len) in [
        ("h", h, n),
        ("dy", dy, n),
        ("gamma", gamma, p.cols),
        ("mean", mean, p.rows),
        ("rstd", rstd, p.rows),
        ("dh", dh, n),
        ("dgamma", dgamma, p.cols),
        ("dbeta", dbeta, p.cols),
    ] {
        expect_len(name, b, len)?;
    }
    Ok(())
}

pub(crate) fn attention(p: &Attention, qkv: &Buffer, mask: Option<&Buffer>) -> Result<()> {
    if p.heads == 0 || p.head_dim == 0 {
        return Err(Error::Invalid("attention: heads and head_dim must be positive".into()));
    }
    expect_len("qkv", qkv, p.batch * p.tokens * 3 * p.model_dim())?;
    if let Some(m) = mask {
        expect_len("mask", m, p.batch * p.tokens)?;
    }
    Ok(())
}

/// The attention outputs (and their gradients) of `[batch, tokens, D]`, and `lse` of
/// `[batch, heads, tokens]`.
pub(crate) fn attention_outputs(
    p: &Attention, outs: &[(&str, &Buffer)], lse: &Buffer,
) -> Result<()> {
    lens(p.batch * p.tokens * p.model_dim(), outs)?;
    expect_len("lse", lse, p.batch * p.heads * p.tokens)
}

/// Fourier features of `dims = (rows, in_dim, half)`: `x` is `[rows, in_dim]`, `freqs`
/// `[in_dim, half]` and the features (or their gradient) `[rows, 2 · half]`.
pub(crate) fn fourier(
    (rows, in_dim, half): (usize, usize, usize), x: &Buffer, freqs: &Buffer,
    features: (&str, &Buffer),
) -> Result<()> {
    expect_len("x", x, rows * in_dim)?;
    expect_len("freqs", freqs, in_dim * half)?;
    expect_len(features.0, features.1, rows * 2 * half)
}

pub(crate) fn per_sample(n: usize, per_sample: usize) -> Result<()> {
    if per_sample == 0 {
        return Err(Error::Invalid("per_sample must be positive".into()));
    }
    if !n.is_multiple_of(per_sample) {
        return Err(Error::Shape(format!(
            "{n} elements do not split into samples of {per_sample}"
        )));
    }
    Ok(())
}

pub(crate) fn stages(k: &Buffer, n: usize, stages: usize) -> Result<()> {
    if k.len() < stages * n {
        return Err(Error::Shape(format!(
            "k: {stages} stages of {n} elements need {} elements, got {}",
            stages * n,
            k.len()
        )));
    }
    Ok(())
}

pub(crate) fn adamw(
    p: &AdamW, param: &Buffer, grad: &Buffer, m: &Buffer, v: &Buffer, norm_sq: Option<&Buffer>,
) -> Result<()> {
    lens(param.len(), &[("grad", grad), ("m", m), ("v", v)])?;
    if let Some(norm_sq) = norm_sq {
        expect_len("norm_sq", norm_sq, 1)?;
    }
    if p.step == 0 {
        return Err(Error::Invalid("adamw_step: step counts from 1".into()));
    }
    Ok(())
}

pub(crate) fn fm_prepare(
    x0: &Buffer, x1: &Buffer, t: &Buffer, per_sample_len: usize, xt: &Buffer, u: &Buffer,
) -> Result<()> {
    let n = x0.len();
    per_sample(n, per_sample_len)?;
    expect_len("x1", x1, n)?;
    expect_len("t", t, n / per_sample_len)?;
    expect_len("xt", xt, n)?;
    expect_len("u", u, n)
}

pub(crate) fn fm_loss(
    pred: &Buffer, target: &Buffer, mask: Option<&Buffer>, loss: &Buffer, dpred: &Buffer,
) -> Result<()> {
    let n = pred.len();
    expect_len("target", target, n)?;
    if let Some(m) = mask {
        expect_len("mask", m, n)?;
    }
    expect_len("loss", loss, 1)?;
    expect_len("dpred", dpred, n)
}

pub(crate) fn ode_stage(
    x: &Buffer, k: &Buffer, coeffs: usize, h: &Buffer, per_sample_len: usize, out: &Buffer,
) -> Result<()> {
    let n = x.len();
    per_sample(n, per_sample_len)?;
    stages(k, n, coeffs)?;
    expect_len("h", h, n / per_sample_len)?;
    expect_len("out", out, n)
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn dopri5_error(
    x: &Buffer, x_new: &Buffer, k: &Buffer, coeffs: usize, h: &Buffer, per_sample_len: usize,
    err: &Buffer,
) -> Result<()> {
    let n = x.len();
    per_sample(n, per_sample_len)?;
    stages(k, n, coeffs)?;
    expect_len("x_new", x_new, n)?;
    expect_len("h", h, n / per_sample_len)?;
    expect_len("err", err, n / per_sample_len)
}

pub(crate) fn dopri5_accept(
    x: &Buffer, x_new: &Buffer, err: &Buffer, t: &Buffer, h: &Buffer, per_sample_len: usize,
) -> Result<()> {
    let n = x.len();
    per_sample(n, per_sample_len)?;
    let s = n / per_sample_len;
    expect_len("x_new", x_new, n)?;
    expect_len("err", err, s)?;
    expect_len("t", t, s)?;
    expect_len("h", h, s)
}

pub(crate) fn bce(
    logits: &Buffer, targets: &Buffer, loss: &Buffer, dlogits: &Buffer,
) -> Result<()> {
    let n = logits.len();
    expect_len("targets", targets, n)?;
    expect_len("loss", loss, 1)?;
    expect_len("dlogits", dlogits, n)
}
