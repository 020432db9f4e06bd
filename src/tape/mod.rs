//! Reverse-mode automatic differentiation over device buffers.
//!
//! A [`Tape`] records operations as nodes of an arena, in creation order; a [`Var`] is a small
//! copyable handle to one node. Every forward op and every backward rule is a call of the
//! kernel contract ([`crate::backend::Backend`]): the tape never computes on the host and never
//! reads a buffer back during a step. Losses are one-element device buffers that the caller
//! downloads when it wants to.
//!
//! Life of a training step:
//! 1. [`Tape::reset`] (returns every buffer of the previous step to the tape's pool),
//! 2. inputs ([`Tape::input`]), parameters ([`Tape::param`]) and ops build the graph,
//! 3. [`Tape::backward`] from a scalar loss writes the parameter gradients into the
//!    [`ParamStore`] owned by the tape,
//! 4. an optimiser ([`crate::nn::AdamW`]) updates [`Tape::params_mut`].
//!
//! Buffers come from a pool keyed by (dtype, length): a step asks for the same sizes in the
//! same order every time, so after the first step nothing new is allocated.
//!
//! Rules worth knowing:
//! - Gradients accumulate: a value used by several ops receives the sum of their
//!   contributions (the first writes, the later ones add, through the kernels' accumulate
//!   flags where they exist).
//! - Losses and reductions (`mse`, `bce_with_logits`, `sum`, `mean`) compute their gradient in
//!   the forward pass, for a seed of 1; so they can only be the root of a backward pass. Using a
//!   differentiable loss as the input of another op is an error.
//! - Data (inputs, ids, masks, targets of `bce_with_logits`, functional inputs of `fourier`) gets
//!   no gradient; only parameters and [`Tape::variable`] leaves do.
//! - In inference mode ([`Tape::set_inference`]) ops record nothing for backward and keep no
//!   saved state; [`Tape::release`] then hands a consumed value straight back to the pool.

mod backward;
mod ops;
mod params;
mod pool;

pub use params::{ParamId, ParamStore, ParamView};

use std::sync::atomic::{AtomicU32, Ordering};

use crate::backend::Device;
use crate::backend::{self, Backend, Buffer, DType, Precision};
use crate::error::{Error, Result};
use pool::Pool;

/// Elements of a row-major shape.
pub(crate) fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

static NEXT_TAPE: AtomicU32 = AtomicU32::new(1);

/// A handle to a value recorded on a [`Tape`]. It is valid until the tape's next
/// [`Tape::reset`]; using it afterwards, or on another tape, is an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Var {
    tape: u32,
    generation: u32,
    index: u32,
}

/// Where a node's value lives.
enum Value {
    Buf(Buffer),
    /// A parameter of the tape's store.
    Param(usize),
    /// The same elements as another node, under a new shape.
    Alias(u32),
    /// Handed back to the pool by [`Tape::release`].
    Released,
}

/// An op and what its backward rule needs. Inputs are node indices of the same generation.
enum Op {
    /// An input, a parameter, or a node that needs no gradient.
    Leaf,
    Linear {
        x: u32,
        w: u32,
        b: Option<u32>,
        relu: bool,
        rows: usize,
        inp: usize,
        out: usize,
    },
    BatchedLinear {
        x: u32,
        w: u32,
        b: Option<u32>,
        /// One x for every group (stride 0).
        shared: bool,
        groups: usize,
        rows: usize,
        inp: usize,
        out: usize,
    },
    Relu {
        x: u32,
    },
    Add {
        a: u32,
        b: u32,
    },
    Reshape {
        x: u32,
    },
    LayerNorm {
        x: u32,
        residual: Option<u32>,
        gamma: u32,
        beta: u32,
        p: backend::LayerNorm,
        mean: Buffer,
        rstd: Buffer,
        /// `x + residual`, the normalised input, when there is a residual.
        sum: Option<Buffer>,
    },
    Attention {
        qkv: u32,
        mask: Option<u32>,
        p: backend::Attention,
        lse: Buffer,
    },
    Embedding {
        table: u32,
        ids: u32,
        dim: usize,
    },
    Gather {
        x: u32,
        idx: u32,
        width: usize,
    },
    Concat {
        /// (input, width) in column order.
        parts: Vec<(u32, usize)>,
        rows: usize,
    },
    Fourier {
        x: u32,
        freqs: u32,
        rows: usize,
        in_dim: usize,
        half: usize,
    },
    Mse {
        pred: u32,
        target: u32,
        dpred: Buffer,
    },
    Bce {
        logits: u32,
        dlogits: Buffer,
    },
    Sum {
        x: u32,
        scale: f32,
    },
}

impl Op {
    /// Losses and reductions: their gradient assumes a seed of 1.
    fn is_root_only(&self) -> bool {
        matches!(self, Op::Mse { .. } | Op::Bce { .. } | Op::Sum { .. })
    }

    /// Hands the saved buffers back to the pool.
    fn recycle(self, pool: &mut Pool) {
        match self {
            Op::LayerNorm { mean, rstd, sum, .. } => {
                pool.give(mean);
                pool.give(rstd);
                if let Some(s) = sum {
                    pool.give(s);
                }
            }
            Op::Attention { lse: b, .. }
            | Op::Mse { dpred: b, .. }
            | Op::Bce { dlogits: b, .. } => pool.give(b),
            _ => {}
        }
    }
}

struct Node {
    shape: Vec<usize>,
    dtype: DType,
    value: Value,
    requires_grad: bool,
    op: Op,
}

impl Node {
    fn numel(&self) -> usize {
        numel(&self.shape)
    }
}

/// Read access to node values, usable while gradients are borrowed mutably.
#[derive(Clone, Copy)]
struct Values<'a> {
    nodes: &'a [Node],
    params: &'a [Buffer],
}

impl<'a> Values<'a> {
    fn get(self, i: u32) -> Result<&'a Buffer> {
        match &self.nodes[i as usize].value {
            Value::Buf(b) => Ok(b),
            Value::Param(p) => Ok(&self.params[*p]),
            Value::Alias(j) => self.get(*j),
            Value::Released => Err(Error::Invalid(format!(
                "node {i} was released (Tape::release) and cannot be read again"
            ))),
        }
    }
}

/// The autodiff tape; see the module docs.
pub struct Tape {
    device: Device,
    params: ParamStore,
    nodes: Vec<Node>,
    /// Gradient per node, parallel to `nodes`. Between backward passes only
    /// [`Tape::variable`] leaves hold one.
    grads: Vec<Option<Buffer>>,
    /// The node of each parameter in this generation, so every use shares one leaf.
    param_nodes: Vec<Option<u32>>,
    /// Which parameter gradients the running backward pass has written.
    param_written: Vec<bool>,
    pool: Pool,
    uid: u32,
    generation: u32,
    inference: bool,
    /// The GEMMs of linear layers in inference mode; f32 while recording.
    precision: Precision,
}

impl Tape {
    /// A tape on the store's device, owning the store.
    pub fn new(params: ParamStore) -> Self {
        Tape {
            device: params.device().clone(),
            params,
            nodes: Vec::new(),
            grads: Vec::new(),
            param_nodes: Vec::new(),
            param_written: Vec::new(),
            pool: Pool::default(),
            uid: NEXT_TAPE.fetch_add(1, Ordering::Relaxed),
            generation: 0,
            inference: false,
            precision: Precision::F32,
        }
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn params(&self) -> &ParamStore {
        &self.params
    }

    pub fn params_mut(&mut self) -> &mut ParamStore {
        &mut self.params
    }

    pub fn into_params(self) -> ParamStore {
        self.params
    }

    /// Ends the current graph: every buffer goes back to the pool and every [`Var`] becomes
    /// invalid. Parameters and their gradients are kept.
    pub fn reset(&mut self) {
        for node in self.nodes.drain(..) {
            if let Value::Buf(b) = node.value {
                self.pool.give(b);
            }
            node.op.recycle(&mut self.pool);
        }
        for g in self.grads.drain(..).flatten() {
            self.pool.give(g);
        }
        self.param_nodes.clear();
        self.generation = self.generation.wrapping_add(1);
    }

    /// Frees the pooled buffers (for instance after switching to other shapes).
    pub fn trim(&mut self) {
        self.pool.clear();
    }

    /// In inference mode ops record nothing for backward and save no state. The mode belongs
    /// to a whole graph, so it can only change while the tape is empty (after a reset).
    pub fn set_inference(&mut self, on: bool) -> Result<()> {
        if !self.nodes.is_empty() && on != self.inference {
            return Err(Error::Invalid(
                "set_inference: reset the tape before switching modes".into(),
            ));
        }
        self.inference = on;
        Ok(())
    }

    pub fn is_inference(&self) -> bool {
        self.inference
    }

    /// The arithmetic of linear layers in inference mode (sampling). Training always multiplies
    /// in f32, so no gradient sees rounded operands. Refused where the backend lacks it.
    pub fn set_precision(&mut self, precision: Precision) -> Result<()> {
        precision.check(self.device.backend())?;
        self.precision = precision;
        Ok(())
    }

    /// The precision of a linear layer's GEMM now.
    pub(crate) fn linear_precision(&self) -> Precision {
        if self.inference {
            self.precision
        } else {
            Precision::F32
        }
    }

    /// Declares that `v` will not be read again. In inference mode its buffer goes back to the
    /// pool at once, so a forward pass holds only the values still in use; while recording,
    /// backward still needs the value and nothing happens.
    pub fn release(&mut self, v: Var) -> Result<()> {
        let i = self.index(v)? as usize;
        if !self.inference || matches!(self.nodes[i].value, Value::Param(_)) {
            return Ok(());
        }
        if let Value::Buf(b) = std::mem::replace(&mut self.nodes[i].value, Value::Released) {
            self.pool.give(b);
        }
        Ok(())
    }

    /// Number of nodes recorded since the last reset.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Device buffers the graph holds right now: values, saved state and gradients (not the
    /// pool, not the parameters).
    pub fn live_buffers(&self) -> usize {
        let saved = |op: &Op| match op {
            Op::LayerNorm { sum, .. } => 2 + usize::from(sum.is_some()),
            Op::Attention { .. } | Op::Mse { .. } | Op::Bce { .. } => 1,
            _ => 0,
        };
        self.nodes
            .iter()
            .map(|n| usize::from(matches!(n.value, Value::Buf(_))) + saved(&n.op))
            .sum::<usize>()
            + self.grads.iter().flatten().count()
    }

    pub fn shape(&self, v: Var) -> Result<&[usize]> {
        Ok(&self.nodes[self.index(v)? as usize].shape)
    }

    /// The device buffer holding `v`'s value.
    pub fn value(&self, v: Var) -> Result<&Buffer> {
        let i = self.index(v)?;
        self.values().get(i)
    }

    /// Copies `v`'s value to the host (a synchronisation point on GPUs; use at the edges).
    pub fn to_vec(&self, v: Var) -> Result<Vec<f32>> {
        self.device.backend().download_f32(self.value(v)?)
    }

    /// The gradient of a [`Tape::variable`] leaf after [`Tape::backward`] (None if the loss
    /// does not depend on it). Parameter gradients are in [`Tape::params`].
    pub fn grad(&self, v: Var) -> Result<Option<&Buffer>> {
        Ok(self.grads[self.index(v)? as usize].as_ref())
    }

    // ---- leaves ---------------------------------------------------------------------------

    /// Data from the host (no gradient).
    pub fn input(&mut self, data: &[f32], shape: &[usize]) -> Result<Var> {
        self.leaf_f32(data, shape, false)
    }

    /// A leaf that receives a gradient, readable with [`Tape::grad`] after backward.
    pub fn variable(&mut self, data: &[f32], shape: &[usize]) -> Result<Var> {
        let rg = !self.inference;
        self.leaf_f32(data, shape, rg)
    }

    /// Indices from the host (token ids, rows to gather).
    pub fn input_u32(&mut self, data: &[u32], shape: &[usize]) -> Result<Var> {
        check_numel("input_u32", data.len(), shape)?;
        let mut buf = self.pool.take(self.device.backend(), DType::U32, data.len())?;
        self.device.backend().write_u32(&mut buf, data)?;
        self.push(shape.to_vec(), Value::Buf(buf), Op::Leaf, false)
    }

    /// Data already on the device, copied into a pooled buffer (the source stays the caller's).
    pub fn input_copy(&mut self, src: &Buffer, shape: &[usize]) -> Result<Var> {
        check_numel("input_copy", src.len(), shape)?;
        let mut buf = self.pool.take(self.device.backend(), src.dtype(), src.len())?;
        self.device.backend().copy(src, 0, &mut buf, 0, src.len())?;
        self.push(shape.to_vec(), Value::Buf(buf), Op::Leaf, false)
    }

    /// [`Tape::variable`] from data already on the device (copied; the source stays the
    /// caller's).
    pub fn variable_copy(&mut self, src: &Buffer, shape: &[usize]) -> Result<Var> {
        if src.dtype() != DType::F32 {
            return Err(Error::Buffer(format!(
                "variable_copy: expected f32 values, got {:?}",
                src.dtype()
            )));
        }
        let v = self.input_copy(src, shape)?;
        let i = self.index(v)? as usize;
        self.nodes[i].requires_grad = !self.inference;
        Ok(v)
    }

    /// Data already on the device; the tape takes the buffer (into its pool at reset).
    pub fn input_buffer(&mut self, buf: Buffer, shape: &[usize]) -> Result<Var> {
        check_numel("input_buffer", buf.len(), shape)?;
        self.push(shape.to_vec(), Value::Buf(buf), Op::Leaf, false)
    }

    /// A parameter of the tape's store as a leaf; every use in one graph shares the leaf, so
    /// its gradient is the sum over uses.
    pub fn param(&mut self, id: ParamId) -> Result<Var> {
        let p = self.params.check(id)?;
        if self.param_nodes.len() < self.params.len() {
            self.param_nodes.resize(self.params.len(), None);
        }
        if let Some(i) = self.param_nodes[p] {
            return Ok(self.var(i));
        }
        let shape = self.params.shape(id)?.to_vec();
        let rg = !self.inference;
        let v = self.push(shape, Value::Param(p), Op::Leaf, rg)?;
        self.param_nodes[p] = Some(v.index);
        Ok(v)
    }

    fn leaf_f32(&mut self, data: &[f32], shape: &[usize], requires_grad: bool) -> Result<Var> {
        check_numel("input", data.len(), shape)?;
        let mut buf = self.alloc(data.len())?;
        self.device.backend().write_f32(&mut buf, data)?;
        self.push(shape.to_vec(), Value::Buf(buf), Op::Leaf, requires_grad)
    }

    // ---- internals shared by ops and backward ---------------------------------------------

    fn backend(&self) -> &dyn Backend {
        self.device.backend()
    }

    fn values(&self) -> Values<'_> {
        Values { nodes: &self.nodes, params: &self.params.values }
    }

    fn alloc(&mut self, len: usize) -> Result<Buffer> {
        self.pool.f32(self.device.backend(), len)
    }

    fn var(&self, index: u32) -> Var {
        Var { tape: self.uid, generation: self.generation, index }
    }

    /// The node index of `v`, or an error if `v` is from another tape or an earlier graph.
    fn index(&self, v: Var) -> Result<u32> {
        if v.tape != self.uid {
            return Err(Error::Invalid("this Var belongs to another tape".into()));
        }
        if v.generation != self.generation || v.index as usize >= self.nodes.len() {
            return Err(Error::Invalid(
                "this Var is from a graph that Tape::reset has ended".into(),
            ));
        }
        Ok(v.index)
    }

    fn node(&self, i: u32) -> &Node {
        &self.nodes[i as usize]
    }

    /// Records a node. One that needs no gradient keeps no saved state.
    fn push(
        &mut self, shape: Vec<usize>, value: Value, op: Op, requires_grad: bool,
    ) -> Result<Var> {
        let dtype = match &value {
            Value::Buf(b) => b.dtype(),
            Value::Alias(j) => self.node(*j).dtype,
            Value::Param(_) | Value::Released => DType::F32,
        };
        let op = if requires_grad {
            op
        } else {
            op.recycle(&mut self.pool);
            Op::Leaf
        };
        let index = u32::try_from(self.nodes.len())
            .map_err(|_| Error::Invalid("a tape holds at most 2^32 nodes".into()))?;
        self.nodes.push(Node { shape, dtype, value, requires_grad, op });
        self.grads.push(None);
        Ok(self.var(index))
    }
}

fn check_numel(what: &str, len: usize, shape: &[usize]) -> Result<()> {
    if len != numel(shape) {
        return Err(Error::Shape(format!("{what}: {len} elements do not fill shape {shape:?}")));
    }
    Ok(())
}
