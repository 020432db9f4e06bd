//! The backward pass: one rule per op, each a few kernel calls.
//!
//! Nodes are visited in reverse creation order. A node's gradient is taken out of its slot
//! when the node is visited and either handed to an input (moved, when the input has no
//! gradient yet) or returned to the pool, so intermediate gradients live only as long as they
//! are needed.

use super::{Node, Op, Tape, Value, Values, Var};
use crate::backend::{Backend, Buffer, CopyCols, DType, Gemm};
use crate::error::{Error, Result};

use super::pool::Pool;

impl Tape {
    /// Writes `d loss / d parameter` into the parameter store (parameters the loss does not
    /// depend on get zeros) and `d loss / d v` for every [`Tape::variable`] leaf `v`.
    ///
    /// `loss` must hold one element; the seed is 1. Gradients from an earlier backward pass are
    /// replaced, not added to.
    pub fn backward(&mut self, loss: Var) -> Result<()> {
        let root = self.index(loss)? as usize;
        self.check_recording()?;
        if self.nodes[root].numel() != 1 {
            return Err(Error::Shape(format!(
                "backward: the loss must hold one element, got shape {:?}",
                self.nodes[root].shape
            )));
        }
        let mut seed = self.pool.f32(self.device.backend(), 1)?;
        self.device.backend().fill(&mut seed, 1.0)?;
        self.reverse(root, seed, true)
    }

    /// A vector–Jacobian product: writes `d ⟨cotangent, root⟩ / d v` for every
    /// [`Tape::variable`] leaf `v` (read them with [`Tape::grad`]); parameter gradients are
    /// neither computed nor touched. `cotangent` has the root's elements. Called several times
    /// on one recorded graph it gives the rows of a Jacobian, one pass each.
    pub fn vjp(&mut self, root: Var, cotangent: &Buffer) -> Result<()> {
        let root = self.index(root)? as usize;
        self.check_recording()?;
        let node = &self.nodes[root];
        if node.op.is_root_only() {
            return Err(Error::Invalid(
                "vjp: a loss or reduction has its gradient built for a seed of 1; call backward"
                    .into(),
            ));
        }
        if cotangent.len() != node.numel() || cotangent.dtype() != DType::F32 {
            return Err(Error::Shape(format!(
                "vjp: a cotangent of {} {:?} values for a root of shape {:?}",
                cotangent.len(),
                cotangent.dtype(),
                node.shape
            )));
        }
        let mut seed = self.pool.f32(self.device.backend(), cotangent.len())?;
        self.device.backend().copy(cotangent, 0, &mut seed, 0, cotangent.len())?;
        self.reverse(root, seed, false)
    }

    fn check_recording(&self) -> Result<()> {
        if self.inference {
            return Err(Error::Invalid(
                "backward: the tape is in inference mode and recorded nothing".into(),
            ));
        }
        Ok(())
    }

    /// Reverse mode from `root` seeded with `seed`; `params`: whether parameters get gradients.
    fn reverse(&mut self, root: usize, seed: Buffer, params: bool) -> Result<()> {
        for g in self.grads.iter_mut().filter_map(Option::take) {
            self.pool.give(g);
        }
        self.param_written.clear();
        self.param_written.resize(self.params.len(), false);

        let backend = self.device.backend();
        let mut sink = Sink {
            backend,
            pool: &mut self.pool,
            nodes: &self.nodes,
            grads: &mut self.grads,
            param_grads: &mut self.params.grads,
            param_written: &mut self.param_written,
            params,
        };
        let vals = Values { nodes: &self.nodes, params: &self.params.values };
        if self.nodes[root].requires_grad {
            sink.grads[root] = Some(seed);
        } else {
            sink.pool.give(seed);
        }
        for i in (0..=root).rev() {
            if let Some(dy) = sink.grads[i].take() {
                apply(&mut sink, vals, i, dy)?;
            }
        }
        if !params {
            return Ok(());
        }
        for (grad, _) in sink
            .param_grads
            .iter_mut()
            .zip(sink.param_written.iter())
            .filter(|(_, &written)| !written)
        {
            backend.fill(grad, 0.0)?;
        }
        Ok(())
    }
}

/// Where gradients go: node slots, or the parameter store for parameter leaves.
struct Sink<'a> {
    backend: &'a dyn Backend,
    pool: &'a mut Pool,
    nodes: &'a [Node],
    grads: &'a mut [Option<Buffer>],
    param_grads: &'a mut [Buffer],
    param_written: &'a mut [bool],
    /// Whether parameter leaves receive gradients (false for a [`Tape::vjp`]).
    params: bool,
}

impl Sink<'_> {
    fn wants(&self, j: u32) -> bool {
        let node = &self.nodes[j as usize];
        node.requires_grad && (self.params || !matches!(node.value, Value::Param(_)))
    }

    fn temp(&mut self, len: usize) -> Result<Buffer> {
        self.pool.f32(self.backend, len)
    }

    /// Runs `kernel(grad, accumulate)` on the gradient of node `j`: `accumulate` is false for
    /// the first contribution (the kernel overwrites) and true after.
    fn with(&mut self, j: u32, kernel: impl FnOnce(&mut Buffer, bool) -> Result<()>) -> Result<()> {
        if !self.wants(j) {
            return Ok(());
        }
        let node = &self.nodes[j as usize];
        if let Value::Param(p) = node.value {
            let accumulate = std::mem::replace(&mut self.param_written[p], true);
            return kernel(&mut self.param_grads[p], accumulate);
        }
        match &mut self.grads[j as usize] {
            Some(g) => kernel(g, true),
            slot @ None => {
                let mut g = self.pool.f32(self.backend, node.numel())?;
                kernel(&mut g, false)?;
                *slot = Some(g);
                Ok(())
            }
        }
    }

    /// Adds a computed gradient to node `j`, moving it in when `j` has none yet.
    fn add_owned(&mut self, j: u32, buf: Buffer) -> Result<()> {
        if self.wants(j) {
            let slot = match self.nodes[j as usize].value {
                Value::Param(p) if !std::mem::replace(&mut self.param_written[p], true) => {
                    Some(std::mem::replace(&mut self.param_grads[p], buf))
                }
                Value::Param(p) => {
                    self.backend.axpy(1.0, &buf, &mut self.param_grads[p])?;
                    Some(buf)
                }
                _ => match &mut self.grads[j as usize] {
                    Some(g) => {
                        self.backend.axpy(1.0, &buf, g)?;
                        Some(buf)
                    }
                    slot @ None => {
                        *slot = Some(buf);
                        None
                    }
                },
            };
            if let Some(spare) = slot {
                self.pool.give(spare);
            }
        } else {
            self.pool.give(buf);
        }
        Ok(())
    }

    /// Adds `alpha · src` to the gradient of node `j`.
    fn add_ref(&mut self, j: u32, src: &Buffer, alpha: f32) -> Result<()> {
        let backend = self.backend;
        self.with(j, |g, accumulate| match (accumulate, alpha == 1.0) {
            (true, _) => backend.axpy(alpha, src, g),
            (false, true) => backend.copy(src, 0, g, 0, src.len()),
            (false, false) => backend.scale(src, alpha, g),
        })
    }
}

/// The backward rule of node `i`, given its gradient `dy`.
fn apply(sink: &mut Sink, vals: Values, i: usize, dy: Buffer) -> Result<()> {
    let (be, nodes) = (sink.backend, sink.nodes);
    match &nodes[i].op {
        Op::Leaf => {
            // A variable keeps its gradient for Tape::grad (parameters never get here).
            sink.grads[i] = Some(dy);
            return Ok(());
        }
        &Op::Linear { x, w, b, relu, rows, inp, out } => {
            let dz = if relu {
                let mut dz = sink.temp(dy.len())?;
                be.relu_bwd(vals.get(i as u32)?, &dy, &mut dz, false)?;
                sink.pool.give(dy);
                dz
            } else {
                dy
            };
            if let Some(b) = b {
                sink.with(b, |db, acc| be.bias_grad(&dz, rows, out, db, acc))?;
            }
            // dW = xᵀ · dz, dx = dz · Wᵀ; beta = 1 accumulates.
            sink.with(w, |dw, acc| {
                let g = Gemm {
                    trans_a: true,
                    beta: f32::from(u8::from(acc)),
                    ..Gemm::new(inp, out, rows)
                };
                be.gemm(&g, vals.get(x)?, &dz, None, dw)
            })?;
            sink.with(x, |dx, acc| {
                let g = Gemm {
                    trans_b: true,
                    beta: f32::from(u8::from(acc)),
                    ..Gemm::new(rows, inp, out)
                };
                be.gemm(&g, &dz, vals.get(w)?, None, dx)
            })?;
            sink.pool.give(dz);
            return Ok(());
        }
        &Op::BatchedLinear { x, w, b, shared, groups, rows, inp, out } => {
            // Per group: dW = xᵀ · dy, dx = dy · Wᵀ, db = 1ᵀ · dy; beta = 1 accumulates.
            let stride_x = if shared { 0 } else { rows * inp };
            sink.with(w, |dw, acc| {
                let g = Gemm {
                    batch: groups,
                    trans_a: true,
                    beta: f32::from(u8::from(acc)),
                    stride_a: stride_x,
                    stride_b: rows * out,
                    stride_c: inp * out,
                    ..Gemm::new(inp, out, rows)
                };
                be.gemm(&g, vals.get(x)?, &dy, None, dw)
            })?;
            if let Some(b) = b.filter(|&b| sink.wants(b)) {
                let mut ones = sink.temp(rows)?;
                be.fill(&mut ones, 1.0)?;
                sink.with(b, |db, acc| {
                    let g = Gemm {
                        batch: groups,
                        trans_a: true,
                        beta: f32::from(u8::from(acc)),
                        stride_a: 0,
                        stride_b: rows * out,
                        stride_c: out,
                        ..Gemm::new(1, out, rows)
                    };
                    be.gemm(&g, &ones, &dy, None, db)
                })?;
                sink.pool.give(ones);
            }
            // A shared x is data (checked in the forward), so only a per-group x gets here.
            sink.with(x, |dx, acc| {
                let g = Gemm {
                    batch: groups,
                    trans_b: true,
                    beta: f32::from(u8::from(acc)),
                    stride_a: rows * out,
                    stride_b: inp * out,
                    stride_c: rows * inp,
                    ..Gemm::new(rows, inp, out)
                };
                be.gemm(&g, &dy, vals.get(w)?, None, dx)
            })?;
        }
        &Op::Relu { x } => {
            let y = vals.get(i as u32)?;
            sink.with(x, |dx, acc| be.relu_bwd(y, &dy, dx, acc))?;
        }
        &Op::Add { a, b } => {
            sink.add_ref(b, &dy, 1.0)?;
            return sink.add_owned(a, dy);
        }
        &Op::Reshape { x } => return sink.add_owned(x, dy),
        Op::LayerNorm { x, residual, gamma, beta, p, mean, rstd, sum } => {
            let h = match sum {
                Some(s) => s,
                None => vals.get(*x)?,
            };
            let mut dh = sink.temp(dy.len())?;
            let mut dgamma = sink.temp(p.cols)?;
            let mut dbeta = sink.temp(p.cols)?;
            be.layer_norm_bwd(
                p,
                h,
                &dy,
                vals.get(*gamma)?,
                mean,
                rstd,
                &mut dh,
                &mut dgamma,
                &mut dbeta,
                false,
            )?;
            sink.add_owned(*gamma, dgamma)?;
            sink.add_owned(*beta, dbeta)?;
            if let Some(r) = residual {
                sink.add_ref(*r, &dh, 1.0)?;
            }
            sink.add_owned(*x, dh)?;
        }
        Op::Attention { qkv, mask, p, lse } => {
            let mut dqkv = sink.temp(3 * dy.len())?;
            let mask = mask.map(|m| vals.get(m)).transpose()?;
            be.attention_bwd(p, vals.get(*qkv)?, mask, vals.get(i as u32)?, lse, &dy, &mut dqkv)?;
            sink.add_owned(*qkv, dqkv)?;
        }
        &Op::Embedding { table, ids, dim } => {
            let ids = vals.get(ids)?;
            sink.with(table, |dt, acc| be.embedding_bwd(&dy, ids, dim, dt, acc))?;
        }
        &Op::Gather { x, idx, width } => {
            if sink.wants(x) {
                let mut dx = sink.temp(nodes[x as usize].numel())?;
                be.fill(&mut dx, 0.0)?;
                be.scatter_rows(&dy, vals.get(idx)?, width, &mut dx)?;
                sink.add_owned(x, dx)?;
            }
        }
        Op::Concat { parts, rows } => {
            let total: usize = parts.iter().map(|p| p.1).sum();
            let mut offset = 0;
            for &(part, width) in parts {
                sink.with(part, |d, accumulate| {
                    let p = CopyCols {
                        rows: *rows,
                        width,
                        src_stride: total,
                        src_offset: offset,
                        dst_stride: width,
                        dst_offset: 0,
                        accumulate,
                    };
                    be.copy_cols(&p, &dy, d)
                })?;
                offset += width;
            }
        }
        &Op::Fourier { x, freqs, rows, in_dim, half } => {
            let (x, f) = (vals.get(x)?, vals.get(freqs)?);
            sink.with(freqs, |df, acc| be.fourier_bwd(x, f, &dy, rows, in_dim, half, df, acc))?;
        }
        // Losses and reductions are only ever the root (ops refuse them as inputs), so `dy`
        // is the seed 1 and their saved gradient is already d loss / d input.
        Op::Mse { pred, target, dpred } => {
            sink.add_ref(*pred, dpred, 1.0)?;
            sink.add_ref(*target, dpred, -1.0)?;
        }
        Op::Bce { logits, dlogits } => sink.add_ref(*logits, dlogits, 1.0)?,
        &Op::Sum { x, scale } => {
            let mut dx = sink.temp(nodes[x as usize].numel())?;
            be.fill(&mut dx, scale)?;
            sink.add_owned(x, dx)?;
        }
    }
    sink.pool.give(dy);
    Ok(())
}
