//! The W1 training workload of DESIGN.md §12 at the tape level, shared by the train_step bench
//! and the allocation test: tokens `[batch · tokens, 50]` (value, label 32, position 8, t,
//! group 8) → Linear(50 → width) → post-LN Transformer → the target tokens → Linear(width → 1)
//! → flow-matching MSE → backward → AdamW.
#![allow(dead_code)]

use tfmpe::nn::{AdamW, AdamWConfig, Linear, Transformer, TransformerConfig};
use tfmpe::tape::{ParamStore, Tape, Var};
use tfmpe::{Device, Result};

/// `hier-gaussian-linear` with S = 50: 50 observations and 50 local + 1 global parameter.
pub const TOKENS: usize = 101;
pub const TARGETS: usize = 51;
pub const IN_DIM: usize = 1 + 32 + 8 + 1 + 8;
pub const MODEL: TransformerConfig = TransformerConfig {
    width: 64,
    layers: 2,
    heads: 16,
    n_ff: 2,
};

/// One model, its optimiser and a fixed batch of synthetic tokens.
pub struct W1 {
    pub tape: Tape,
    batch: usize,
    embed: Linear,
    encoder: Transformer,
    head: Linear,
    opt: AdamW,
    tokens: Vec<f32>,
    mask: Vec<f32>,
    targets: Vec<u32>,
    velocity: Vec<f32>,
}

impl W1 {
    pub fn new(device: &Device, batch: usize, seed: u64) -> Result<Self> {
        use rand::{RngExt, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut store = ParamStore::new(device);
        let embed = Linear::new(&mut store, "embed", IN_DIM, MODEL.width, true, &mut rng)?;
        let encoder = Transformer::new(&mut store, "encoder", MODEL, &mut rng)?;
        let head = Linear::new(&mut store, "head", MODEL.width, 1, true, &mut rng)?;
        let opt = AdamW::new(&store, AdamWConfig::default())?;
        let mut uniform =
            |n: usize| -> Vec<f32> { (0..n).map(|_| rng.random_range(-1.0..1.0)).collect() };
        let tokens = uniform(batch * TOKENS * IN_DIM);
        let velocity = uniform(batch * TARGETS);
        // Condition tokens first, then the targets (DESIGN.md §6).
        let targets = (0..batch)
            .flat_map(|b| (TOKENS - TARGETS..TOKENS).map(move |t| (b * TOKENS + t) as u32))
            .collect();
        Ok(W1 {
            tape: Tape::new(store),
            batch,
            embed,
            encoder,
            head,
            opt,
            tokens,
            mask: vec![1.0; batch * TOKENS],
            targets,
            velocity,
        })
    }

    /// The predicted velocity of every target token, `[batch, TARGETS, 1]`.
    fn forward(&mut self) -> Result<Var> {
        let t = &mut self.tape;
        let (b, n) = (self.batch, TOKENS);
        let x = t.input(&self.tokens, &[b * n, IN_DIM])?;
        let mask = t.input(&self.mask, &[b, n])?;
        let h = self.embed.forward(t, x)?;
        let h = t.reshape(h, &[b, n, MODEL.width])?;
        let h = self.encoder.forward(t, h, Some(mask))?;
        let idx = t.input_u32(&self.targets, &[b, TARGETS])?;
        let h = t.gather_rows(h, idx)?;
        self.head.forward(t, h)
    }

    /// One training step; returns the loss (still on the device).
    pub fn train_step(&mut self) -> Result<Var> {
        self.tape.reset();
        let pred = self.forward()?;
        let u = self.tape.input(&self.velocity, &[self.batch, TARGETS, 1])?;
        let loss = self.tape.mse(pred, u, None)?;
        self.tape.backward(loss)?;
        self.opt.step(self.tape.params_mut())?;
        Ok(loss)
    }

    /// One network evaluation of a sampling step (no recording).
    pub fn infer(&mut self) -> Result<Var> {
        self.tape.reset();
        self.tape.set_inference(true)?;
        self.forward()
    }
}
