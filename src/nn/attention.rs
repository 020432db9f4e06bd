//! Multi-head self-attention.

use rand::Rng;

use super::Linear;
use crate::error::{Error, Result};
use crate::tape::{ParamStore, Tape, Var};

/// Multi-head self-attention without biases: one packed projection `[d → 3d]` (`{name}.qkv`)
/// gives Q, K and V, the fused attention kernel mixes tokens, and `{name}.out` `[d → d]` maps
/// the heads back.
#[derive(Clone, Debug)]
pub struct MultiHeadAttention {
    pub qkv: Linear,
    pub out: Linear,
    pub heads: usize,
}

impl MultiHeadAttention {
    pub fn new<R: Rng + ?Sized>(
        store: &mut ParamStore, name: &str, width: usize, heads: usize, rng: &mut R,
    ) -> Result<Self> {
        if heads == 0 || !width.is_multiple_of(heads) {
            return Err(Error::Invalid(format!(
                "attention `{name}`: width {width} is not a multiple of {heads} heads"
            )));
        }
        Ok(MultiHeadAttention {
            qkv: Linear::new(store, &format!("{name}.qkv"), width, 3 * width, false, rng)?,
            out: Linear::new(store, &format!("{name}.out"), width, width, false, rng)?,
            heads,
        })
    }

    /// `x: [batch, tokens, width]`, optional key-padding `mask: [batch, tokens]`.
    pub fn forward(&self, tape: &mut Tape, x: Var, mask: Option<Var>) -> Result<Var> {
        let qkv = self.qkv.forward(tape, x)?;
        let mixed = tape.attention(qkv, mask, self.heads)?;
        tape.release(qkv)?;
        let y = self.out.forward(tape, mixed)?;
        tape.release(mixed)?;
        Ok(y)
    }
}
