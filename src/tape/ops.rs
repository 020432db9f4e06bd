//! Forward ops. Each checks its operands, runs one or two kernels into pooled buffers and
//! records what its backward rule (in `backward.rs`) needs.
//!
//! Matrices are row-major with features on the last axis; leading axes are flattened into rows.

use super::numel;
use super::{Op, Tape, Value, Var};
use crate::backend::{self, CopyCols, DType, Epilogue, Gemm};
use crate::error::{Error, Result};

impl Tape {
    /// `x · W + b` with `x: [.., in]`, `W: [in, out]`, `b: [out]`; gives `[.., out]`.
    pub fn linear(&mut self, x: Var, w: Var, b: Option<Var>) -> Result<Var> {
        self.linear_impl(x, w, b, false)
    }

    /// `relu(x · W + b)` in one GEMM pass (the bias is required by the fused epilogue).
    pub fn linear_relu(&mut self, x: Var, w: Var, b: Var) -> Result<Var> {
        self.linear_impl(x, w, Some(b), true)
    }

    fn linear_impl(&mut self, x: Var, w: Var, b: Option<Var>, relu: bool) -> Result<Var> {
        let xi = self.operand(x, "linear: x")?;
        let wi = self.operand(w, "linear: weight")?;
        let bi = b.map(|b| self.operand(b, "linear: bias")).transpose()?;
        let &[inp, out] = self.node(wi).shape.as_slice() else {
            return Err(Error::Shape(format!(
                "linear: the weight must be [in, out], got {:?}",
                self.node(wi).shape
            )));
        };
        let (rows, cols) = self.rows_cols(xi, "linear: x")?;
        if cols != inp {
            return Err(Error::Shape(format!(
                "linear: x has {cols} features per row but the weight [{inp}, {out}] expects {inp}"
            )));
        }
        if let Some(bi) = bi {
            if self.node(bi).shape != [out] {
                return Err(Error::Shape(format!(
                    "linear: the bias must be [{out}], got {:?}",
                    self.node(bi).shape
                )));
            }
        }
        let epilogue = match (bi.is_some(), relu) {
            (false, _) => Epilogue::None,
            (true, false) => Epilogue::Bias,
            (true, true) => Epilogue::BiasRelu,
        };
        let mut y = self.alloc(rows * out)?;
        let vals = self.values();
        let bias = bi.map(|b| vals.get(b)).transpose()?;
        let precision = self.linear_precision();
        let gemm = Gemm { epilogue, precision, ..Gemm::new(rows, out, inp) };
        self.backend().gemm(&gemm, vals.get(xi)?, vals.get(wi)?, bias, &mut y)?;
        let shape = with_last(&self.node(xi).shape, out);
        let rg = self.rg(xi) || self.rg(wi) || bi.is_some_and(|b| self.rg(b));
        let op = Op::Linear { x: xi, w: wi, b: bi, relu, rows, inp, out };
        self.push(shape, Value::Buf(y), op, rg)
    }

    /// `G` independent linear layers in one batched GEMM: `y[g] = x[g] · W[g] (+ b[g])` with
    /// `W: [G, in, out]`, `b: [G, out]` or none, and `x` either `[G, rows, in]` or
    /// `[rows, in]` shared by every layer (then it must be data). Gives `[G, rows, out]`. This
    /// trains many small networks on the same inputs as one wide network (L-C2ST's null
    /// classifiers); without a bias it is a batched product (a deep set's mean pooling).
    pub fn batched_linear(&mut self, x: Var, w: Var, b: Option<Var>) -> Result<Var> {
        let xi = self.operand(x, "batched_linear: x")?;
        let wi = self.operand(w, "batched_linear: weight")?;
        let bi = b.map(|b| self.operand(b, "batched_linear: bias")).transpose()?;
        let &[groups, inp, out] = self.node(wi).shape.as_slice() else {
            return Err(Error::Shape(format!(
                "batched_linear: the weight must be [groups, in, out], got {:?}",
                self.node(wi).shape
            )));
        };
        if let Some(bi) = bi.filter(|&bi| self.node(bi).shape != [groups, out]) {
            return Err(Error::Shape(format!(
                "batched_linear: the bias must be [{groups}, {out}], got {:?}",
                self.node(bi).shape
            )));
        }
        let (shared, rows) = match *self.node(xi).shape.as_slice() {
            [rows, i] if i == inp => (true, rows),
            [g, rows, i] if g == groups && i == inp => (false, rows),
            _ => {
                return Err(Error::Shape(format!(
                    "batched_linear: x must be [rows, {inp}] or [{groups}, rows, {inp}] for the \
                     weight {:?}, got {:?}",
                    self.node(wi).shape,
                    self.node(xi).shape
                )))
            }
        };
        if shared && self.rg(xi) {
            return Err(Error::Invalid(
                "batched_linear: an x shared by every group is data and gets no gradient, but it \
                 depends on trainable values"
                    .into(),
            ));
        }
        let mut y = self.alloc(groups * rows * out)?;
        let gemm = Gemm {
            batch: groups,
            stride_a: if shared { 0 } else { rows * inp },
            ..Gemm::new(rows, out, inp)
        };
        let vals = self.values();
        self.backend().gemm(&gemm, vals.get(xi)?, vals.get(wi)?, None, &mut y)?;
        if let Some(bi) = bi {
            // The bias of group g as a rank-one update: y[g] += 1 · b[g] (one [rows, 1] column
            // of ones shared by every group), so per-group biases need no kernel of their own.
            let mut ones = self.alloc(rows)?;
            self.backend().fill(&mut ones, 1.0)?;
            let bias = Gemm {
                batch: groups,
                beta: 1.0,
                stride_a: 0,
                stride_b: out,
                stride_c: rows * out,
                ..Gemm::new(rows, out, 1)
            };
            self.backend().gemm(&bias, &ones, self.values().get(bi)?, None, &mut y)?;
            self.pool.give(ones);
        }
        let rg = self.rg(xi) || self.rg(wi) || bi.is_some_and(|b| self.rg(b));
        let op = Op::BatchedLinear { x: xi, w: wi, b: bi, shared, groups, rows, inp, out };
        self.push(vec![groups, rows, out], Value::Buf(y), op, rg)
    }

    pub fn relu(&mut self, x: Var) -> Result<Var> {
        let xi = self.operand(x, "relu: x")?;
        let mut y = self.alloc(self.node(xi).numel())?;
        self.backend().relu_fwd(self.values().get(xi)?, &mut y)?;
        let shape = self.node(xi).shape.clone();
        self.push(shape, Value::Buf(y), Op::Relu { x: xi }, self.rg(xi))
    }

    /// Elementwise `a + b` (a residual connection); shapes must match.
    pub fn add(&mut self, a: Var, b: Var) -> Result<Var> {
        let ai = self.operand(a, "add: a")?;
        let bi = self.operand(b, "add: b")?;
        self.same_shape("add", ai, bi)?;
        let mut y = self.alloc(self.node(ai).numel())?;
        let vals = self.values();
        self.backend().add(vals.get(ai)?, vals.get(bi)?, &mut y)?;
        let shape = self.node(ai).shape.clone();
        let rg = self.rg(ai) || self.rg(bi);
        self.push(shape, Value::Buf(y), Op::Add { a: ai, b: bi }, rg)
    }

    /// The same elements under another shape (no copy).
    pub fn reshape(&mut self, x: Var, shape: &[usize]) -> Result<Var> {
        let xi = self.operand(x, "reshape: x")?;
        if numel(shape) != self.node(xi).numel() {
            return Err(Error::Shape(format!(
                "reshape: {:?} has {} elements, {shape:?} would need {}",
                self.node(xi).shape,
                self.node(xi).numel(),
                numel(shape)
            )));
        }
        let target = match self.node(xi).value {
            Value::Alias(j) => j,
            _ => xi,
        };
        let rg = self.rg(xi);
        self.push(shape.to_vec(), Value::Alias(target), Op::Reshape { x: xi }, rg)
    }

    /// Layer norm over the last axis of `x (+ residual)`, scaled by `gamma` and shifted by
    /// `beta` (both `[cols]`). With a residual this is the post-LN `LN(x + residual)` in one pass.
    pub fn layer_norm(
        &mut self, x: Var, residual: Option<Var>, gamma: Var, beta: Var, eps: f32,
    ) -> Result<Var> {
        let xi = self.operand(x, "layer_norm: x")?;
        let ri = residual.map(|r| self.operand(r, "layer_norm: residual")).transpose()?;
        let gi = self.operand(gamma, "layer_norm: gamma")?;
        let bi = self.operand(beta, "layer_norm: beta")?;
        if let Some(ri) = ri {
            self.same_shape("layer_norm: x and residual", xi, ri)?;
        }
        let (rows, cols) = self.rows_cols(xi, "layer_norm: x")?;
        for (name, i) in [("gamma", gi), ("beta", bi)] {
            if self.node(i).shape != [cols] {
                return Err(Error::Shape(format!(
                    "layer_norm: {name} must be [{cols}], got {:?}",
                    self.node(i).shape
                )));
            }
        }
        let p = backend::LayerNorm { rows, cols, eps };
        let mut y = self.alloc(rows * cols)?;
        let mut mean = self.alloc(rows)?;
        let mut rstd = self.alloc(rows)?;
        // The backward reads x + residual; inference has none, so nothing keeps the sum.
        let keep_sum = ri.is_some() && !self.inference;
        let mut sum = keep_sum.then(|| self.alloc(rows * cols)).transpose()?;
        let vals = self.values();
        self.backend().layer_norm_fwd(
            &p,
            vals.get(xi)?,
            ri.map(|r| vals.get(r)).transpose()?,
            vals.get(gi)?,
            vals.get(bi)?,
            &mut y,
            &mut mean,
            &mut rstd,
            sum.as_mut(),
        )?;
        let shape = self.node(xi).shape.clone();
        let rg = [Some(xi), ri, Some(gi), Some(bi)].into_iter().flatten().any(|i| self.rg(i));
        let op = Op::LayerNorm { x: xi, residual: ri, gamma: gi, beta: bi, p, mean, rstd, sum };
        self.push(shape, Value::Buf(y), op, rg)
    }

    /// Multi-head self-attention over packed `qkv: [batch, tokens, 3·D]` (see
    /// [`backend::Attention`]) with an optional key-padding `mask: [batch, tokens]`
    /// (1 = attend, 0 = padding); gives `[batch, tokens, D]`. Scores are scaled by
    /// `1/sqrt(D / heads)`.
    pub fn attention(&mut self, qkv: Var, mask: Option<Var>, heads: usize) -> Result<Var> {
        let qi = self.operand(qkv, "attention: qkv")?;
        let mi = mask.map(|m| self.data_operand(m, "attention: mask")).transpose()?;
        let &[batch, tokens, three_d] = self.node(qi).shape.as_slice() else {
            return Err(Error::Shape(format!(
                "attention: qkv must be [batch, tokens, 3·D], got {:?}",
                self.node(qi).shape
            )));
        };
        if heads == 0 || three_d % (3 * heads) != 0 {
            return Err(Error::Shape(format!(
                "attention: the last axis of qkv ({three_d}) must be 3 × heads ({heads}) × head_dim"
            )));
        }
        if let Some(mi) = mi {
            if self.node(mi).shape != [batch, tokens] {
                return Err(Error::Shape(format!(
                    "attention: the mask must be [{batch}, {tokens}], got {:?}",
                    self.node(mi).shape
                )));
            }
        }
        let head_dim = three_d / (3 * heads);
        let p = backend::Attention {
            batch,
            tokens,
            heads,
            head_dim,
            scale: 1.0 / (head_dim as f32).sqrt(),
        };
        let mut y = self.alloc(batch * tokens * p.model_dim())?;
        let mut lse = self.alloc(batch * heads * tokens)?;
        let vals = self.values();
        self.backend().attention_fwd(
            &p,
            vals.get(qi)?,
            mi.map(|m| vals.get(m)).transpose()?,
            &mut y,
            &mut lse,
        )?;
        let op = Op::Attention { qkv: qi, mask: mi, p, lse };
        let shape = vec![batch, tokens, p.model_dim()];
        self.push(shape, Value::Buf(y), op, self.rg(qi))
    }

    /// Embedding lookup: rows of `table: [vocab, dim]` named by the u32 `ids`; gives
    /// `ids.shape + [dim]`. Ids may repeat (their gradients add up).
    pub fn embedding(&mut self, table: Var, ids: Var) -> Result<Var> {
        let ti = self.operand(table, "embedding: table")?;
        let ii = self.ids_operand(ids, "embedding: ids")?;
        let (_, dim) = self.rows_cols(ti, "embedding: table")?;
        let y = self.gather_kernel(ti, ii, dim)?;
        let shape = with_extra(&self.node(ii).shape, dim);
        let op = Op::Embedding { table: ti, ids: ii, dim };
        self.push(shape, Value::Buf(y), op, self.rg(ti))
    }

    /// Rows of `x` (leading axes flattened) at the u32 indices `idx`; gives
    /// `idx.shape + [x's last axis]`. Indices must be distinct (the backward scatters); use
    /// [`Tape::embedding`] when they repeat.
    pub fn gather_rows(&mut self, x: Var, idx: Var) -> Result<Var> {
        let xi = self.operand(x, "gather_rows: x")?;
        let ii = self.ids_operand(idx, "gather_rows: idx")?;
        let (_, width) = self.rows_cols(xi, "gather_rows: x")?;
        let y = self.gather_kernel(xi, ii, width)?;
        let shape = with_extra(&self.node(ii).shape, width);
        let op = Op::Gather { x: xi, idx: ii, width };
        self.push(shape, Value::Buf(y), op, self.rg(xi))
    }

    fn gather_kernel(&mut self, src: u32, idx: u32, width: usize) -> Result<backend::Buffer> {
        let mut y = self.alloc(self.node(idx).numel() * width)?;
        let vals = self.values();
        self.backend().gather_rows(vals.get(src)?, vals.get(idx)?, width, &mut y)?;
        Ok(y)
    }

    /// Concatenation along the last axis; the leading axes must agree.
    pub fn concat(&mut self, parts: &[Var]) -> Result<Var> {
        let Some(&first) = parts.first() else {
            return Err(Error::Invalid("concat: no inputs".into()));
        };
        let first = self.operand(first, "concat: part")?;
        let (rows, _) = self.rows_cols(first, "concat: part")?;
        let lead = &self.node(first).shape[..self.node(first).shape.len() - 1];
        let mut cols = Vec::with_capacity(parts.len());
        for &v in parts {
            let i = self.operand(v, "concat: part")?;
            let (_, width) = self.rows_cols(i, "concat: part")?;
            let shape = &self.node(i).shape;
            if shape[..shape.len() - 1] != *lead {
                return Err(Error::Shape(format!(
                    "concat: parts must agree on all but the last axis, got {:?} and {shape:?}",
                    self.node(first).shape
                )));
            }
            cols.push((i, width));
        }
        let total: usize = cols.iter().map(|c| c.1).sum();
        let mut y = self.alloc(rows * total)?;
        let vals = self.values();
        let mut offset = 0;
        for &(i, width) in &cols {
            let p = CopyCols {
                rows,
                width,
                src_stride: width,
                src_offset: 0,
                dst_stride: total,
                dst_offset: offset,
                accumulate: false,
            };
            self.backend().copy_cols(&p, vals.get(i)?, &mut y)?;
            offset += width;
        }
        let shape = with_last(&self.node(first).shape, total);
        let rg = cols.iter().any(|c| self.rg(c.0));
        let op = Op::Concat { parts: cols, rows };
        self.push(shape, Value::Buf(y), op, rg)
    }

    /// Fourier features `[sin z, cos z]`, `z = 2π · x · freqs`, of functional inputs
    /// `x: [.., in_dim]` (data) with trainable `freqs: [in_dim, half]`; gives `[.., 2·half]`.
    pub fn fourier(&mut self, x: Var, freqs: Var) -> Result<Var> {
        let xi = self.data_operand(x, "fourier: x")?;
        let fi = self.operand(freqs, "fourier: freqs")?;
        let (rows, in_dim) = self.rows_cols(xi, "fourier: x")?;
        let &[f_in, half] = self.node(fi).shape.as_slice() else {
            return Err(Error::Shape(format!(
                "fourier: freqs must be [in_dim, half], got {:?}",
                self.node(fi).shape
            )));
        };
        if f_in != in_dim {
            return Err(Error::Shape(format!(
                "fourier: x has {in_dim} inputs per row but freqs are [{f_in}, {half}]"
            )));
        }
        let mut y = self.alloc(rows * 2 * half)?;
        let vals = self.values();
        self.backend().fourier_fwd(vals.get(xi)?, vals.get(fi)?, rows, in_dim, half, &mut y)?;
        let shape = with_last(&self.node(xi).shape, 2 * half);
        let op = Op::Fourier { x: xi, freqs: fi, rows, in_dim, half };
        self.push(shape, Value::Buf(y), op, self.rg(fi))
    }

    /// Masked mean squared error `Σ m (pred - target)² / max(Σ m, 1)` as a `[1]` loss; `pred`,
    /// `target` and the optional data `mask` must have the same number of elements. With
    /// target `u` from [`Tape::fm_prepare`] this is the flow-matching loss. Root of backward only.
    pub fn mse(&mut self, pred: Var, target: Var, mask: Option<Var>) -> Result<Var> {
        let pi = self.operand(pred, "mse: pred")?;
        let ti = self.operand(target, "mse: target")?;
        let mi = mask.map(|m| self.data_operand(m, "mse: mask")).transpose()?;
        let n = self.node(pi).numel();
        for (name, i) in [("target", Some(ti)), ("mask", mi)] {
            if let Some(i) = i.filter(|&i| self.node(i).numel() != n) {
                return Err(Error::Shape(format!(
                    "mse: pred has {n} elements but the {name} has {}",
                    self.node(i).numel()
                )));
            }
        }
        let mut loss = self.alloc(1)?;
        let mut dpred = self.alloc(n)?;
        let vals = self.values();
        self.backend().fm_loss(
            vals.get(pi)?,
            vals.get(ti)?,
            mi.map(|m| vals.get(m)).transpose()?,
            &mut loss,
            &mut dpred,
        )?;
        let rg = self.rg(pi) || self.rg(ti);
        let op = Op::Mse { pred: pi, target: ti, dpred };
        self.push(vec![1], Value::Buf(loss), op, rg)
    }

    /// Mean binary cross-entropy of `logits` against data `targets` in [0, 1], as a `[1]` loss.
    /// Root of backward only.
    pub fn bce_with_logits(&mut self, logits: Var, targets: Var) -> Result<Var> {
        let li = self.operand(logits, "bce_with_logits: logits")?;
        let ti = self.data_operand(targets, "bce_with_logits: targets")?;
        self.same_numel("bce_with_logits: logits and targets", li, ti)?;
        let mut loss = self.alloc(1)?;
        let mut dlogits = self.alloc(self.node(li).numel())?;
        let vals = self.values();
        self.backend().bce_with_logits(vals.get(li)?, vals.get(ti)?, &mut loss, &mut dlogits)?;
        let op = Op::Bce { logits: li, dlogits };
        self.push(vec![1], Value::Buf(loss), op, self.rg(li))
    }

    /// Sum of all elements as a `[1]` value. Root of backward only.
    pub fn sum(&mut self, x: Var) -> Result<Var> {
        self.reduce(x, false)
    }

    /// Mean of all elements as a `[1]` value. Root of backward only.
    pub fn mean(&mut self, x: Var) -> Result<Var> {
        self.reduce(x, true)
    }

    fn reduce(&mut self, x: Var, mean: bool) -> Result<Var> {
        let xi = self.operand(x, "sum/mean: x")?;
        let n = self.node(xi).numel();
        let scale = if mean { 1.0 / n.max(1) as f32 } else { 1.0 };
        let mut y = self.alloc(1)?;
        self.backend().reduce_sum(self.values().get(xi)?, scale, &mut y)?;
        self.push(vec![1], Value::Buf(y), Op::Sum { x: xi, scale }, self.rg(xi))
    }

    // ---- data ops (no gradient) -----------------------------------------------------------

    /// Flow-matching inputs from noise `x0`, data `x1` (same shape) and one time per sample
    /// `t: [batch]`: returns `(x_t, u)` with `x_t = (1 - (1-σ)t) x0 + t x1`, `u = x1 - (1-σ) x0`.
    pub fn fm_prepare(&mut self, x0: Var, x1: Var, t: Var, sigma_min: f32) -> Result<(Var, Var)> {
        let x0i = self.data_operand(x0, "fm_prepare: x0")?;
        let x1i = self.data_operand(x1, "fm_prepare: x1")?;
        let ti = self.data_operand(t, "fm_prepare: t")?;
        self.same_shape("fm_prepare: x0 and x1", x0i, x1i)?;
        let (n, batch) = (self.node(x0i).numel(), self.node(ti).numel());
        if batch == 0 || n % batch != 0 {
            return Err(Error::Shape(format!(
                "fm_prepare: {n} elements cannot be split into {batch} samples (one t each)"
            )));
        }
        let mut xt = self.alloc(n)?;
        let mut u = self.alloc(n)?;
        let vals = self.values();
        self.backend().fm_prepare(
            vals.get(x0i)?,
            vals.get(x1i)?,
            vals.get(ti)?,
            n / batch,
            sigma_min,
            &mut xt,
            &mut u,
        )?;
        let shape = self.node(x0i).shape.clone();
        let xt = self.push(shape.clone(), Value::Buf(xt), Op::Leaf, false)?;
        let u = self.push(shape, Value::Buf(u), Op::Leaf, false)?;
        Ok((xt, u))
    }

    /// Standard normal data from the counter-based generator (see `Backend::normal_fill`).
    pub fn randn(&mut self, shape: &[usize], seed: u64, offset: u64) -> Result<Var> {
        let mut y = self.alloc(numel(shape))?;
        self.backend().normal_fill(&mut y, seed, offset)?;
        self.push(shape.to_vec(), Value::Buf(y), Op::Leaf, false)
    }

    /// Uniform data in `(lo, hi)` from the counter-based generator.
    pub fn rand_uniform(
        &mut self, shape: &[usize], seed: u64, offset: u64, lo: f32, hi: f32,
    ) -> Result<Var> {
        let mut y = self.alloc(numel(shape))?;
        self.backend().uniform_fill(&mut y, seed, offset, lo, hi)?;
        self.push(shape.to_vec(), Value::Buf(y), Op::Leaf, false)
    }

    // ---- operand checks -------------------------------------------------------------------

    /// A float operand of this graph that is not a differentiable loss.
    fn operand(&self, v: Var, what: &str) -> Result<u32> {
        let i = self.index(v)?;
        let node = self.node(i);
        if node.dtype != DType::F32 {
            return Err(Error::Buffer(format!(
                "{what}: expected f32 values, got {:?}",
                node.dtype
            )));
        }
        if node.requires_grad && node.op.is_root_only() {
            return Err(Error::Invalid(format!(
                "{what}: a loss or reduction can only be the root of backward (its gradient is \
                 computed for a seed of 1); call backward on it directly"
            )));
        }
        Ok(i)
    }

    /// A float operand that is data: it cannot carry a gradient through this op.
    fn data_operand(&self, v: Var, what: &str) -> Result<u32> {
        let i = self.operand(v, what)?;
        if self.rg(i) {
            return Err(Error::Invalid(format!(
                "{what} is data and gets no gradient, but it depends on trainable values"
            )));
        }
        Ok(i)
    }

    fn ids_operand(&self, v: Var, what: &str) -> Result<u32> {
        let i = self.index(v)?;
        if self.node(i).dtype != DType::U32 {
            return Err(Error::Buffer(format!(
                "{what}: expected u32 indices (Tape::input_u32), got {:?}",
                self.node(i).dtype
            )));
        }
        Ok(i)
    }

    fn rg(&self, i: u32) -> bool {
        self.node(i).requires_grad
    }

    /// (rows, features) of a node: leading axes flattened, the last axis as features.
    fn rows_cols(&self, i: u32, what: &str) -> Result<(usize, usize)> {
        match self.node(i).shape.split_last() {
            Some((&cols, lead)) => Ok((numel(lead), cols)),
            None => Err(Error::Shape(format!("{what}: needs at least one axis"))),
        }
    }

    fn same_shape(&self, what: &str, a: u32, b: u32) -> Result<()> {
        if self.node(a).shape != self.node(b).shape {
            return Err(Error::Shape(format!(
                "{what}: shapes {:?} and {:?} differ",
                self.node(a).shape,
                self.node(b).shape
            )));
        }
        Ok(())
    }

    fn same_numel(&self, what: &str, a: u32, b: u32) -> Result<()> {
        if self.node(a).numel() != self.node(b).numel() {
            return Err(Error::Shape(format!(
                "{what}: {:?} and {:?} have different sizes",
                self.node(a).shape,
                self.node(b).shape
            )));
        }
        Ok(())
    }
}

/// `shape` with its last axis replaced by `last`.
fn with_last(shape: &[usize], last: usize) -> Vec<usize> {
    let mut s = shape.to_vec();
    if let Some(l) = s.last_mut() {
        *l = last;
    }
    s
}

/// `shape` with one more axis of `extra` at the end.
fn with_extra(shape: &[usize], extra: usize) -> Vec<usize> {
    let mut s = shape.to_vec();
    s.push(extra);
    s
}
