//! Flow matching: the training loss for one batch, and the trained network as an ODE velocity
//! field for sampling.

use super::ode::VectorField;
use super::tfmpe::{DeviceTokens, Tfmpe};
use crate::backend::Buffer;
use crate::backend::Device;
use crate::error::Result;
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

/// The flow-matching loss of one batch (a `[1]` node, the root for backward): noise x0 and
/// times t are drawn on the device from `(seed, draw)`, where `draw` numbers the batches so
/// that no two batches share noise.
pub fn fm_loss(
    tape: &mut Tape, model: &Tfmpe, tok: &DeviceTokens, cond: &Buffer, x1: &Buffer, seed: u64,
    draw: u64,
) -> Result<Var> {
    let (b, m) = (tok.batch, tok.n_target);
    // Four numbers per Philox block: offsets in blocks, rounded up.
    let x0 = tape.randn(&[b, m], stream_key(seed, 1), draw * (b * m).div_ceil(4) as u64)?;
    let t = tape.rand_uniform(&[b], stream_key(seed, 2), draw * b.div_ceil(4) as u64, 0.0, 1.0)?;
    let x1 = tape.input_copy(x1, &[b, m])?;
    let (xt, u) = tape.fm_prepare(x0, x1, t, SIGMA_MIN)?;
    let cond = tape.input_copy(cond, &[b, tok.n_cond])?;
    let v = model.velocity(tape, tok, cond, xt, t)?;
    let mask = tok.target_mask.as_ref().map(|mk| tape.input_copy(mk, &[b * m, 1])).transpose()?;
    let u = tape.reshape(u, &[b * m, 1])?;
    tape.mse(v, u, mask)
}

/// The network as dx/dt = v(x, t | condition) for a batch of samples sharing one layout.
pub struct Field<'a> {
    pub model: &'a Tfmpe,
    pub tape: &'a mut Tape,
    pub tokens: &'a DeviceTokens,
    /// `[batch · n_cond]` condition values.
    pub cond: &'a Buffer,
}

impl VectorField for Field<'_> {
    fn per_sample(&self) -> usize {
        self.tokens.n_target
    }

    fn eval(&mut self, dev: &Device, x: &Buffer, t: &Buffer, v: &mut Buffer) -> Result<()> {
        let (b, m) = (self.tokens.batch, self.tokens.n_target);
        self.tape.reset();
        let cond = self.tape.input_copy(self.cond, &[b, self.tokens.n_cond])?;
        let xt = self.tape.input_copy(x, &[b, m])?;
        let tt = self.tape.input_copy(t, &[b])?;
        let out = self.model.velocity(self.tape, self.tokens, cond, xt, tt)?;
        dev.backend().copy(self.tape.value(out)?, 0, v, 0, b * m)
    }
}
