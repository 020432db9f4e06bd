//! Flow matching: the training loss for one batch, and the trained network as an ODE velocity
//! field for sampling.

use super::ode::VectorField;
use super::tfmpe::{DeviceTokens, Tfmpe};
use crate::backend::Buffer;
use crate::backend::Device;
use crate::error::{Error, Result};
use crate::tape::{Tape, Var};

/// Width of the probability path at t = 1 (x_t = (1 − (1−σ)t)·x0 + t·x1).
pub const SIGMA_MIN: f32 = 1e-3;

/// Philox streams: noise and times come from distinct keys derived from the training seed, and
/// a step's numbers start at a counter offset past every earlier step's.
fn stream_key(seed: u64, stream: u64) -> u64 {
    // SplitMix64 finaliser: well-separated keys from consecutive inputs.
    let mut z = seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// What a batch's velocities are conditioned on, on the device: its tokens, the condition
/// values `[batch · n_cond]` and, for a model with functional inputs, the standardised inputs
/// `[input_rows · input_dim]`.
#[derive(Clone, Copy)]
pub struct Conditions<'a> {
    pub tokens: &'a DeviceTokens,
    pub cond: &'a Buffer,
    pub inputs: Option<&'a Buffer>,
    /// `[batch · tokens]` (1 = present): the observation tokens that ragged sets lack, masked
    /// like padding; `None`: the token batch's own mask.
    pub key_mask: Option<&'a Buffer>,
}

impl Conditions<'_> {
    /// The condition values, inputs and key mask as tape inputs.
    pub(crate) fn record(&self, tape: &mut Tape) -> Result<(Var, Option<Var>, Option<Var>)> {
        let tok = self.tokens;
        let cond = tape.input_copy(self.cond, &[tok.batch, tok.n_cond])?;
        let inputs = match self.inputs {
            Some(buf) if tok.input_rows == 0 || !buf.len().is_multiple_of(tok.input_rows) => {
                return Err(Error::Shape(format!(
                    "{} functional-input values for {} input tokens",
                    buf.len(),
                    tok.input_rows
                )))
            }
            Some(buf) => Some(tape.input_copy(buf, &[tok.input_rows, buf.len() / tok.input_rows])?),
            None => None,
        };
        let mask =
            self.key_mask.map(|m| tape.input_copy(m, &[tok.batch, tok.tokens()])).transpose()?;
        Ok((cond, inputs, mask))
    }
}

/// The flow-matching loss of one batch (a `[1]` node, the root for backward): noise x0 and
/// times t are drawn on the device from `(seed, draw)`, where `draw` numbers the batches so
/// that no two batches share noise.
pub fn fm_loss(
    tape: &mut Tape, model: &Tfmpe, on: Conditions, x1: &Buffer, seed: u64, draw: u64,
) -> Result<Var> {
    let tok = on.tokens;
    let (b, m) = (tok.batch, tok.n_target);
    // Four numbers per Philox block: offsets in blocks, rounded up.
    let x0 = tape.randn(&[b, m], stream_key(seed, 1), draw * (b * m).div_ceil(4) as u64)?;
    let t = tape.rand_uniform(&[b], stream_key(seed, 2), draw * b.div_ceil(4) as u64, 0.0, 1.0)?;
    let x1 = tape.input_copy(x1, &[b, m])?;
    let (xt, u) = tape.fm_prepare(x0, x1, t, SIGMA_MIN)?;
    let (cond, inputs, mask) = on.record(tape)?;
    let v = model.velocity(tape, tok, cond, xt, t, inputs, mask)?;
    let mask = tok.target_mask.as_ref().map(|mk| tape.input_copy(mk, &[b * m, 1])).transpose()?;
    let u = tape.reshape(u, &[b * m, 1])?;
    tape.mse(v, u, mask)
}

/// The network as dx/dt = v(x, t | condition) for a batch of samples sharing one layout.
pub struct Field<'a> {
    pub model: &'a Tfmpe,
    pub tape: &'a mut Tape,
    pub on: Conditions<'a>,
}

impl VectorField for Field<'_> {
    fn per_sample(&self) -> usize {
        self.on.tokens.n_target
    }

    fn eval(&mut self, dev: &Device, x: &Buffer, t: &Buffer, v: &mut Buffer) -> Result<()> {
        let (b, m) = (self.on.tokens.batch, self.on.tokens.n_target);
        self.tape.reset();
        let (cond, inputs, mask) = self.on.record(self.tape)?;
        let xt = self.tape.input_copy(x, &[b, m])?;
        let tt = self.tape.input_copy(t, &[b])?;
        let out = self.model.velocity(self.tape, self.on.tokens, cond, xt, tt, inputs, mask)?;
        dev.backend().copy(self.tape.value(out)?, 0, v, 0, b * m)
    }
}
