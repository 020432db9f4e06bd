//! The post-LN transformer encoder of TFMPE (docs/architecture.md#model).

use rand::Rng;

use super::{LayerNorm, Linear, MultiHeadAttention};
use crate::error::{Error, Result};
use crate::tape::{ParamStore, Tape, Var};

/// Shape of a [`Transformer`]; the benchmark configuration is width 64, 2 layers, 16 heads,
/// n_ff 2.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TransformerConfig {
    pub width: usize,
    pub layers: usize,
    pub heads: usize,
    /// Linear(width, width) + ReLU layers in each block's MLP (no widening).
    pub n_ff: usize,
}

/// One post-LN encoder block: `x ← LN(x + MHA(x))`, `x ← LN(x + MLP(x))` where the MLP is
/// `n_ff` layers of Linear(d, d) + ReLU. Parameters: `{name}.attn`, `{name}.norm1`,
/// `{name}.ff.{i}`, `{name}.norm2`.
#[derive(Clone, Debug)]
pub struct EncoderBlock {
    pub attn: MultiHeadAttention,
    pub norm1: LayerNorm,
    pub ff: Vec<Linear>,
    pub norm2: LayerNorm,
}

impl EncoderBlock {
    pub fn new<R: Rng + ?Sized>(
        store: &mut ParamStore, name: &str, config: &TransformerConfig, rng: &mut R,
    ) -> Result<Self> {
        if config.n_ff == 0 {
            return Err(Error::Invalid(format!("encoder block `{name}`: n_ff must be at least 1")));
        }
        let d = config.width;
        let attn = MultiHeadAttention::new(store, &format!("{name}.attn"), d, config.heads, rng)?;
        let norm1 = LayerNorm::new(store, &format!("{name}.norm1"), d)?;
        let ff = (0..config.n_ff)
            .map(|i| Linear::new(store, &format!("{name}.ff.{i}"), d, d, true, rng))
            .collect::<Result<_>>()?;
        let norm2 = LayerNorm::new(store, &format!("{name}.norm2"), d)?;
        Ok(EncoderBlock { attn, norm1, ff, norm2 })
    }

    /// `x: [batch, tokens, width]`, optional key-padding `mask: [batch, tokens]`.
    pub fn forward(&self, tape: &mut Tape, x: Var, mask: Option<Var>) -> Result<Var> {
        let a = self.attn.forward(tape, x, mask)?;
        let x1 = self.norm1.forward(tape, a, Some(x))?;
        tape.release(a)?;
        let mut h = x1;
        for layer in &self.ff {
            let next = layer.forward_relu(tape, h)?;
            if h != x1 {
                tape.release(h)?;
            }
            h = next;
        }
        let y = self.norm2.forward(tape, h, Some(x1))?;
        tape.release(h)?;
        tape.release(x1)?;
        Ok(y)
    }
}

/// A stack of [`EncoderBlock`]s named `{name}.{layer}`.
#[derive(Clone, Debug)]
pub struct Transformer {
    pub config: TransformerConfig,
    pub blocks: Vec<EncoderBlock>,
}

impl Transformer {
    pub fn new<R: Rng + ?Sized>(
        store: &mut ParamStore, name: &str, config: TransformerConfig, rng: &mut R,
    ) -> Result<Self> {
        let blocks = (0..config.layers)
            .map(|l| EncoderBlock::new(store, &format!("{name}.{l}"), &config, rng))
            .collect::<Result<_>>()?;
        Ok(Transformer { config, blocks })
    }

    /// `x: [batch, tokens, width]`, optional key-padding `mask: [batch, tokens]`; gives the
    /// same shape. The input stays the caller's; intermediate values are released.
    pub fn forward(&self, tape: &mut Tape, x: Var, mask: Option<Var>) -> Result<Var> {
        let mut h = x;
        for block in &self.blocks {
            let next = block.forward(tape, h, mask)?;
            if h != x {
                tape.release(h)?;
            }
            h = next;
        }
        Ok(h)
    }
}
