//! The flow-matching training loop: minibatches over a pool of sets, a validation split,
//! early stopping with patience and min-delta, best weights restored, and a clean stop on a
//! non-finite loss that names the step.

use std::collections::BTreeMap;
use std::time::Instant;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use super::epoch_state::{EpochFile, EpochState};
use super::Progress;
use crate::backend::{Buffer, DType};
use crate::error::{Error, Result};
use crate::model::flow::{fm_loss, Conditions};
use crate::model::tfmpe::{DeviceTokens, Tfmpe};
use crate::model::tokens::{Layout, TokenBatch};
use crate::nn::{AdamW, AdamWConfig};
use crate::tape::Tape;
use crate::Device;

/// How the learning rate moves over a training phase.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Schedule {
    /// `lr` at every step.
    Constant,
    /// A linear warm-up from 0 over the first `warmup` share of the phase's steps (all
    /// `max_epochs`), then a cosine decay to `floor` · `lr` at its last step.
    WarmupCosine { warmup: f64, floor: f64 },
}

impl Schedule {
    /// `constant`, or `cosine`: a warm-up over the first 5% of the steps and a decay to 1%.
    pub fn from_name(name: &str) -> Result<Schedule> {
        match name {
            "constant" => Ok(Schedule::Constant),
            "cosine" => Ok(Schedule::WarmupCosine { warmup: 0.05, floor: 0.01 }),
            other => {
                Err(Error::Invalid(format!("unknown schedule `{other}`: use constant or cosine")))
            }
        }
    }

    /// The factor of `lr` at step `step` (from 0) of `total`.
    pub fn factor(self, step: usize, total: usize) -> f64 {
        match self {
            Schedule::Constant => 1.0,
            Schedule::WarmupCosine { warmup, floor } => {
                let x = step as f64 / total.max(1) as f64;
                if x < warmup {
                    return (step + 1) as f64 / (warmup * total as f64).ceil().max(1.0);
                }
                let progress = ((x - warmup) / (1.0 - warmup).max(f64::EPSILON)).min(1.0);
                floor + (1.0 - floor) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
            }
        }
    }
}

/// Training hyperparameters; the defaults are those of docs/architecture.md#training-defaults.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TrainConfig {
    /// The learning rate, or its peak under a schedule.
    pub lr: f32,
    pub schedule: Schedule,
    pub batch: usize,
    pub max_epochs: usize,
    /// A cap on the optimiser steps: the phase runs at most as many epochs as make this many
    /// steps (`None`: `max_epochs` alone caps it). The fast recipe ties its length to it, so
    /// a larger budget, with more steps per epoch, trains for fewer epochs.
    pub max_steps: Option<usize>,
    /// Epochs without an improvement of at least `min_delta` before stopping.
    pub patience: usize,
    pub min_delta: f64,
    pub max_grad_norm: Option<f32>,
    pub seed: u64,
    /// Where the phase saves its state after every epoch (`None`: nowhere), and whether it
    /// goes on from a state found there.
    #[serde(skip)]
    pub epoch_file: Option<EpochFile>,
}

/// The training recipes (docs/architecture.md#training-defaults).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// The default: Adam at a peak of 1e-3 with a 5% warm-up and a cosine decay over 3 000
    /// optimiser steps, the best epoch by validation kept.
    Fast,
    /// The reference's: Adam 1e-4, up to 1 000 epochs, early stopping with patience 100.
    Paper,
}

impl Preset {
    pub fn from_name(name: &str) -> Result<Preset> {
        match name {
            "fast" => Ok(Preset::Fast),
            "paper" => Ok(Preset::Paper),
            other => Err(Error::Invalid(format!("unknown preset `{other}`: use fast or paper"))),
        }
    }

    /// Its training settings (seed and epoch file at their defaults).
    pub fn train(self) -> TrainConfig {
        match self {
            Preset::Paper => TrainConfig::default(),
            Preset::Fast => TrainConfig {
                lr: 1e-3,
                schedule: Schedule::WarmupCosine { warmup: 0.05, floor: 0.01 },
                max_steps: Some(3000),
                // The schedule sets the length; stopping early would cut its decay short.
                patience: 1000,
                ..TrainConfig::default()
            },
        }
    }
}

/// Changes to a recipe, as the command line and Python take them (`None`: keep).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Overrides {
    pub max_epochs: Option<usize>,
    pub max_steps: Option<usize>,
    pub patience: Option<usize>,
    pub lr: Option<f32>,
    /// `constant` or `cosine` ([`Schedule::from_name`]).
    pub schedule: Option<String>,
}

/// The paper's recipe ([`Preset::Paper`]); [`Preset::Fast`] is the pipelines' default.
impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            lr: 1e-4,
            schedule: Schedule::Constant,
            batch: 100,
            max_epochs: 1000,
            max_steps: None,
            patience: 100,
            min_delta: 1e-3,
            max_grad_norm: None,
            seed: 0,
            epoch_file: None,
        }
    }
}

impl TrainConfig {
    /// These settings with the parts `o` names changed. Epochs given without steps set the
    /// length alone (the recipe's step cap is dropped).
    pub fn overridden(mut self, o: &Overrides) -> Result<TrainConfig> {
        if let Some(epochs) = o.max_epochs {
            self.max_epochs = epochs;
            self.max_steps = o.max_steps;
        } else if o.max_steps.is_some() {
            self.max_steps = o.max_steps;
        }
        self.patience = o.patience.unwrap_or(self.patience);
        self.lr = o.lr.unwrap_or(self.lr);
        if let Some(name) = &o.schedule {
            self.schedule = Schedule::from_name(name)?;
        }
        Ok(self)
    }

    /// The epochs a phase with `batches_per_epoch` steps per epoch runs at most.
    pub fn epoch_cap(&self, batches_per_epoch: usize) -> usize {
        match self.max_steps {
            Some(steps) => self.max_epochs.min(steps.div_ceil(batches_per_epoch.max(1))).max(1),
            None => self.max_epochs,
        }
    }

    /// Refuses hyperparameters that cannot train: a batch of 0, no epoch, no patience, or a
    /// learning rate or min-delta that is not a finite positive number.
    pub fn check(&self) -> Result<()> {
        if self.batch == 0 {
            return Err(Error::Invalid("--batch-size must be at least 1".into()));
        }
        if self.max_epochs == 0 || self.max_steps == Some(0) {
            return Err(Error::Invalid("--max-epochs and --max-steps must be at least 1".into()));
        }
        if self.patience == 0 {
            return Err(Error::Invalid("--patience must be at least 1".into()));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(Error::Invalid(format!(
                "--lr {} is not a finite positive number; the default is 1e-3 (1e-4 with --preset paper)",
                self.lr
            )));
        }
        if !(self.min_delta.is_finite() && self.min_delta >= 0.0) {
            return Err(Error::Invalid(format!(
                "min-delta {} must be finite and >= 0",
                self.min_delta
            )));
        }
        Ok(())
    }
}

/// Standardised sets of one layout (one site count): `cond` is `[sets · n_cond]`, `target`
/// `[sets · n_target]`, `inputs` `[sets · input_tokens · input_dim]` (empty for a model without
/// functional inputs).
#[derive(Clone, Debug, Default)]
pub struct Sets {
    /// Sites of every set (1 for the likelihood surrogate).
    pub sites: usize,
    pub layout: Layout,
    pub cond: Vec<f32>,
    pub target: Vec<f32>,
    pub inputs: Vec<f32>,
    /// `[sets · tokens]` key masks (1 = present) of ragged sets, whose sites lack some
    /// observations; empty when every set has every token.
    pub mask: Vec<f32>,
}

impl Sets {
    pub fn len(&self) -> usize {
        self.target.len() / self.layout.target.len().max(1)
    }

    pub fn is_empty(&self) -> bool {
        self.target.is_empty()
    }
}

/// Where training sets come from: a fixed pool, or fresh sets every epoch. Each holds one
/// bucket of [`Sets`] per site count; a batch never mixes buckets.
pub trait SetSource {
    /// The training sets for `epoch` (0-based).
    fn train(&mut self, epoch: usize) -> Result<&[Sets]>;
    /// The validation sets (the same every epoch).
    fn validation(&self) -> &[Sets];
}

/// A fixed pool of training and validation sets.
pub struct FixedSets {
    pub train: Vec<Sets>,
    pub validation: Vec<Sets>,
}

impl SetSource for FixedSets {
    fn train(&mut self, _epoch: usize) -> Result<&[Sets]> {
        Ok(&self.train)
    }

    fn validation(&self) -> &[Sets] {
        &self.validation
    }
}

/// What training did.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainReport {
    pub epochs: usize,
    pub steps: usize,
    pub best_epoch: usize,
    pub best_val_loss: f64,
    pub train_losses: Vec<f64>,
    pub val_losses: Vec<f64>,
    /// With sets of several site counts: the validation loss of each site count at the best
    /// epoch, keyed by the count.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub val_loss_by_sites: BTreeMap<usize, f64>,
    /// Why training stopped: `max_epochs`, `early_stopping`, or `non_finite_loss`.
    pub stop_reason: String,
    /// The message of a non-finite stop, naming the step.
    pub stop_message: Option<String>,
    pub seconds: f64,
    pub steps_per_s: f64,
    /// A surrogate's conditional standardisation, fitted before its flow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scaling: Option<super::scaling::ScalingReport>,
}

/// Device buffers of one batch size, reused every step.
struct BatchBuffers {
    tokens: DeviceTokens,
    cond: Buffer,
    target: Buffer,
    inputs: Option<Buffer>,
    mask: Option<Buffer>,
}

impl BatchBuffers {
    fn conditions(&self) -> Conditions<'_> {
        Conditions {
            tokens: &self.tokens,
            cond: &self.cond,
            inputs: self.inputs.as_ref(),
            key_mask: self.mask.as_ref(),
        }
    }
}

struct Batcher<'a> {
    dev: &'a Device,
    /// Buffers per layout and batch size (a joint network trains on two layouts of one site).
    by_size: Vec<(Layout, usize, BatchBuffers)>,
    host_cond: Vec<f32>,
    host_target: Vec<f32>,
    host_inputs: Vec<f32>,
    host_mask: Vec<f32>,
}

impl<'a> Batcher<'a> {
    fn new(dev: &'a Device) -> Self {
        Batcher {
            dev,
            by_size: Vec::new(),
            host_cond: Vec::new(),
            host_target: Vec::new(),
            host_inputs: Vec::new(),
            host_mask: Vec::new(),
        }
    }

    /// Uploads the sets named by `idx` into the buffers for their batch size.
    fn load(&mut self, sets: &Sets, idx: &[usize]) -> Result<&BatchBuffers> {
        let (c, m) = (sets.layout.cond.len(), sets.layout.target.len());
        // Input values per set; the sets of one layout all carry the same number.
        let k = if sets.inputs.is_empty() { 0 } else { sets.inputs.len() / sets.len() };
        self.host_cond.clear();
        self.host_target.clear();
        self.host_inputs.clear();
        self.host_mask.clear();
        // Mask values per set: every token, or none.
        let n = if sets.mask.is_empty() { 0 } else { c + m };
        for &i in idx {
            self.host_cond.extend_from_slice(&sets.cond[i * c..(i + 1) * c]);
            self.host_target.extend_from_slice(&sets.target[i * m..(i + 1) * m]);
            self.host_inputs.extend_from_slice(&sets.inputs[i * k..(i + 1) * k]);
            self.host_mask.extend_from_slice(&sets.mask[i * n..(i + 1) * n]);
        }
        let b = self.dev.backend();
        let found = self.by_size.iter().position(|(l, n, _)| *n == idx.len() && *l == sets.layout);
        let at = if let Some(at) = found {
            at
        } else {
            let tb = TokenBatch::repeat(&sets.layout, idx.len())?;
            let bufs = BatchBuffers {
                tokens: DeviceTokens::upload(self.dev, &tb)?,
                cond: b.alloc(DType::F32, idx.len() * c)?,
                target: b.alloc(DType::F32, idx.len() * m)?,
                inputs: (k > 0).then(|| b.alloc(DType::F32, idx.len() * k)).transpose()?,
                mask: (n > 0).then(|| b.alloc(DType::F32, idx.len() * n)).transpose()?,
            };
            self.by_size.push((sets.layout.clone(), idx.len(), bufs));
            self.by_size.len() - 1
        };
        let bufs = &mut self.by_size[at].2;
        b.write_f32(&mut bufs.cond, &self.host_cond)?;
        b.write_f32(&mut bufs.target, &self.host_target)?;
        if let Some(inputs) = bufs.inputs.as_mut() {
            b.write_f32(inputs, &self.host_inputs)?;
        }
        if let Some(mask) = bufs.mask.as_mut() {
            b.write_f32(mask, &self.host_mask)?;
        }
        Ok(bufs)
    }
}

/// One optimisation step at a time: loads a batch, runs forward, backward and AdamW. The
/// training loop and `tfmpe bench train-step` share it.
pub struct Stepper<'a> {
    batcher: Batcher<'a>,
    opt: AdamW,
}

impl<'a> Stepper<'a> {
    pub fn new(dev: &'a Device, tape: &Tape, cfg: &TrainConfig) -> Result<Self> {
        let opt = AdamW::new(
            tape.params(),
            AdamWConfig { lr: cfg.lr, max_grad_norm: cfg.max_grad_norm, ..Default::default() },
        )?;
        Ok(Stepper { batcher: Batcher::new(dev), opt })
    }

    /// One step on the sets named by `idx`; returns the loss node (valid until the next step).
    pub fn step(
        &mut self, tape: &mut Tape, model: &Tfmpe, sets: &Sets, idx: &[usize], seed: u64, draw: u64,
    ) -> Result<crate::tape::Var> {
        let bufs = self.batcher.load(sets, idx)?;
        tape.reset();
        let loss = fm_loss(tape, model, bufs.conditions(), &bufs.target, seed, draw)?;
        tape.backward(loss)?;
        self.opt.step(tape.params_mut())?;
        Ok(loss)
    }
}

/// Seeds of the validation noise: fixed, so every epoch scores the same draws.
const VALIDATION_STREAM: u64 = 0x0005_EED0_FA11;

/// Trains `model` (whose parameters the tape owns) by flow matching on the sets of `data`.
pub fn train(
    dev: &Device, model: &Tfmpe, tape: &mut Tape, data: &mut dyn SetSource, cfg: &TrainConfig,
    phase: &str, progress: &dyn Progress,
) -> Result<TrainReport> {
    if cfg.batch == 0 {
        return Err(Error::Invalid("the batch size must be at least 1".into()));
    }
    let n_val: usize = data.validation().iter().map(Sets::len).sum();
    // One look at the first epoch's sets: a fresh source draws new sets on every call.
    let first = data.train(0)?;
    let (n_train, batches_per_epoch) =
        (first.iter().map(Sets::len).sum::<usize>(), whole_batches(first, cfg.batch));
    if batches_per_epoch == 0 {
        return Err(Error::Invalid(format!(
            "{phase}: {n_train} training sets are fewer than one batch of {}; raise the simulation budget or lower the batch size",
            cfg.batch
        )));
    }
    if n_val == 0 {
        return Err(Error::Invalid(format!(
            "{phase}: no validation sets; raise the simulation budget"
        )));
    }
    let max_epochs = cfg.epoch_cap(batches_per_epoch);
    let start = Instant::now();
    let mut stepper = Stepper::new(dev, tape, cfg)?;
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let backend = dev.backend();
    let mut step_losses = backend.alloc(DType::F32, batches_per_epoch)?;
    let mut report = TrainReport {
        epochs: 0,
        steps: 0,
        best_epoch: 0,
        best_val_loss: f64::INFINITY,
        train_losses: Vec::new(),
        val_losses: Vec::new(),
        val_loss_by_sites: BTreeMap::new(),
        stop_reason: "max_epochs".into(),
        stop_message: None,
        seconds: 0.0,
        steps_per_s: 0.0,
        scaling: None,
    };
    // The starting weights count as the best until an epoch validates, so a run that fails in
    // its first epoch still ends with finite weights.
    let mut best = snapshot(tape)?;
    let mut last_improvement = 0;
    let mut batches: Vec<(usize, Vec<usize>)> = Vec::new();
    let mut first_epoch = 0;
    let epoch_file = cfg.epoch_file.as_ref();
    if let Some(state) =
        epoch_file.map(|f| EpochState::load(f, tape.params())).transpose()?.flatten()
    {
        restore(tape, &state.weights)?;
        stepper.opt = AdamW::with_state(tape.params(), stepper.opt.config, &state.adam)?;
        best = state.best;
        last_improvement = state.last_improvement;
        report = state.report;
        first_epoch = state.epoch;
        // The batch order of the epochs done, drawn again (every epoch has the sets of the
        // first), so that the next epochs draw what an uninterrupted phase draws.
        let sizes: Vec<usize> = first.iter().map(Sets::len).collect();
        for _ in 0..first_epoch {
            epoch_batches(&sizes, cfg.batch, &mut rng, &mut batches);
        }
        progress.phase(&format!("{phase}: resumed after epoch {first_epoch}"));
        if first_epoch - last_improvement >= cfg.patience {
            first_epoch = max_epochs;
        }
    }
    for epoch in first_epoch..max_epochs {
        let buckets = data.train(epoch)?;
        let sizes: Vec<usize> = buckets.iter().map(Sets::len).collect();
        epoch_batches(&sizes, cfg.batch, &mut rng, &mut batches);
        if step_losses.len() < batches.len() {
            step_losses = backend.alloc(DType::F32, batches.len())?;
        }
        let total_steps = max_epochs * batches_per_epoch;
        for (s, (b, idx)) in batches.iter().enumerate() {
            let factor = cfg.schedule.factor(report.steps, total_steps);
            stepper.opt.config.lr = (f64::from(cfg.lr) * factor) as f32;
            let loss =
                stepper.step(tape, model, &buckets[*b], idx, cfg.seed, report.steps as u64)?;
            backend.copy(tape.value(loss)?, 0, &mut step_losses, s, 1)?;
            report.steps += 1;
        }
        // One read-back per epoch: the losses of every step, to name a non-finite one.
        let losses = backend.download_f32(&step_losses)?;
        let losses = &losses[..batches.len()];
        if let Some(bad) = losses.iter().position(|l| !l.is_finite()) {
            let step = report.steps - batches.len() + bad + 1;
            report.stop_reason = "non_finite_loss".into();
            report.stop_message = Some(format!(
                "{phase}: the training loss became {} at step {step} (epoch {}); stopped and kept the best weights (epoch {})",
                losses[bad],
                epoch + 1,
                report.best_epoch
            ));
            report.epochs = epoch + 1;
            break;
        }
        let train_loss = losses.iter().map(|&l| l as f64).sum::<f64>() / losses.len() as f64;
        let by_sites = validation_loss(tape, model, &mut stepper.batcher, data.validation(), cfg)?;
        let val_loss = by_sites.iter().map(|&(_, n, l)| n as f64 * l).sum::<f64>() / n_val as f64;
        report.train_losses.push(train_loss);
        report.val_losses.push(val_loss);
        report.epochs = epoch + 1;
        progress.epoch(phase, epoch + 1, max_epochs, train_loss, val_loss);
        if val_loss < report.best_val_loss - cfg.min_delta {
            last_improvement = epoch + 1;
        }
        // An improvement too small to reset patience still gives the best weights so far.
        if val_loss < report.best_val_loss {
            report.best_val_loss = val_loss;
            report.best_epoch = epoch + 1;
            if by_sites.len() > 1 {
                report.val_loss_by_sites = by_sites.iter().map(|&(s, _, l)| (s, l)).collect();
            }
            best = snapshot(tape)?;
        }
        if let Some(file) = epoch_file {
            let state = EpochState {
                epoch: epoch + 1,
                last_improvement,
                weights: snapshot(tape)?,
                best: best.clone(),
                adam: stepper.opt.state(dev)?,
                report: report.clone(),
            };
            state.save(file)?;
        }
        if epoch + 1 - last_improvement >= cfg.patience {
            report.stop_reason = "early_stopping".into();
            break;
        }
    }
    // A resumed phase whose saved state had already run out of patience stops where it was.
    if report.stop_reason == "max_epochs" && report.epochs - last_improvement >= cfg.patience {
        report.stop_reason = "early_stopping".into();
    }
    restore(tape, &best)?;
    tape.reset();
    report.seconds = start.elapsed().as_secs_f64();
    report.steps_per_s = report.steps as f64 / report.seconds.max(1e-9);
    Ok(report)
}

/// One epoch's batches of the buckets of `sizes` sets: each bucket shuffled and cut into whole
/// batches, then the batches of all buckets interleaved.
fn epoch_batches(
    sizes: &[usize], batch: usize, rng: &mut StdRng, batches: &mut Vec<(usize, Vec<usize>)>,
) {
    batches.clear();
    for (b, &n) in sizes.iter().enumerate() {
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(rng);
        // Whole batches only: a ragged last batch would weigh its few sets more.
        batches.extend(order.chunks_exact(batch).map(|idx| (b, idx.to_vec())));
    }
    // Site counts interleave; one bucket keeps the order (and the draws) it always had.
    if sizes.len() > 1 {
        batches.shuffle(rng);
    }
}

/// Whole batches of `batch` sets that the buckets make.
fn whole_batches(buckets: &[Sets], batch: usize) -> usize {
    buckets.iter().map(|s| s.len() / batch).sum()
}

/// Mean flow-matching loss over each bucket of validation sets, with fixed noise:
/// `(sites, sets, loss)` per bucket.
fn validation_loss(
    tape: &mut Tape, model: &Tfmpe, batcher: &mut Batcher, val: &[Sets], cfg: &TrainConfig,
) -> Result<Vec<(usize, usize, f64)>> {
    tape.reset();
    tape.set_inference(true)?;
    let mut k = 0u64;
    let result = (|| {
        let mut out = Vec::with_capacity(val.len());
        for sets in val {
            let idx: Vec<usize> = (0..sets.len()).collect();
            let mut total = 0.0;
            for chunk in idx.chunks(cfg.batch) {
                let bufs = batcher.load(sets, chunk)?;
                tape.reset();
                let seed = VALIDATION_STREAM ^ cfg.seed;
                let loss = fm_loss(tape, model, bufs.conditions(), &bufs.target, seed, k)?;
                total += tape.to_vec(loss)?[0] as f64 * chunk.len() as f64;
                k += 1;
            }
            out.push((sets.sites, sets.len(), total / sets.len().max(1) as f64));
        }
        Ok(out)
    })();
    tape.reset();
    tape.set_inference(false)?;
    result
}

fn snapshot(tape: &Tape) -> Result<Vec<Vec<f32>>> {
    let p = tape.params();
    p.iter().map(|v| p.to_vec(v.id)).collect()
}

fn restore(tape: &mut Tape, values: &[Vec<f32>]) -> Result<()> {
    let names: Vec<String> = tape.params().iter().map(|p| p.name.to_string()).collect();
    for (name, v) in names.iter().zip(values) {
        tape.params_mut().load(name, v)?;
    }
    Ok(())
}
