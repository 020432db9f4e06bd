//! The performance workloads, defined once for `tfmpe bench` and the criterion benches
//! (`benches/train_step.rs`), so that both time the same graph as the PyTorch peer:
//!
//! - **W1**, [`TrainStep`]: one training step of the posterior network (forward, flow-matching
//!   loss, backward, AdamW) on a batch of sets, cycling through [`TRAIN_BATCHES`] batches;
//! - **W2**, [`Sampling`]: posterior samples for one observation;
//! - W2's inner loop alone, [`Velocity`]: one network evaluation of a sampling step.
//!
//! All of them use the posterior network at the reference's configuration
//! ([`TfmpeConfig::reference`], which the PyTorch peer builds) on data sets simulated from the
//! task, standardised by their own statistics: the shapes and value ranges of a real run. The
//! defaults ([`TASK`], [`SITES`], [`BATCH`]) give 101 tokens per set. Everything is seeded, so
//! two runs build the same network and data.

use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::backend::Device;
use crate::backend::{Buffer, DType, Precision};
use crate::error::Result;
use crate::model::flow::{Conditions, Field};
use crate::model::ode::{Solver, VectorField};
use crate::model::tfmpe::{DeviceTokens, Tfmpe, TfmpeConfig};
use crate::model::tokens::TokenBatch;
use crate::sbi::network::Network;
use crate::sbi::train::{Sets, Stepper, TrainConfig};
use crate::sbi::Posterior;
use crate::sbi::{new_network, to_sets, Quiet, Role, Rows, Sampler};
use crate::tape::{Tape, Var};
use crate::tasks::{simulate_dataset, HierarchicalModel, Observed};

/// The benchmark task: `hier-gaussian-linear`, one observation and one local parameter per site
/// and one global parameter.
pub const TASK: &str = "hier-gaussian-linear";
/// Sites per set: 50 condition and 51 target tokens.
pub const SITES: usize = 50;
/// Sets per training batch.
pub const BATCH: usize = 100;
/// W1 cycles through this many distinct batches, as the PyTorch peer does.
pub const TRAIN_BATCHES: usize = 16;
/// Samples per chunk of W2's ODE solves: the sampler's default, as in a run.
pub const SAMPLE_CHUNK: usize = Sampler::DEFAULT_CHUNK;

/// A freshly initialised posterior network for `sites` sites of `task`, and `n_sets` data sets
/// simulated directly, standardised by their own statistics.
pub fn posterior_network(
    dev: &Device, task: &dyn HierarchicalModel, sites: usize, n_sets: usize,
) -> Result<(Network, Sets)> {
    let mut rng = StdRng::seed_from_u64(1);
    let (mut cond, mut target) = (Vec::new(), Vec::new());
    for _ in 0..n_sets {
        let d = simulate_dataset(task, sites, &mut rng)?;
        cond.extend(d.obs);
        target.extend(task.to_unconstrained(&d.params, sites));
    }
    let rows = Rows::new(sites, &cond, &target, None);
    let net =
        new_network(dev, task, Role::Posterior, sites, &[rows], &TfmpeConfig::reference(), 0)?;
    let sets = to_sets(&net, rows)?;
    Ok((net, sets))
}

/// W1: the posterior network and [`TRAIN_BATCHES`] batches of `batch` sets.
pub struct TrainStep {
    dev: Device,
    net: Network,
    sets: Sets,
    batch: usize,
}

impl TrainStep {
    pub fn new(
        dev: &Device, task: &dyn HierarchicalModel, sites: usize, batch: usize,
    ) -> Result<Self> {
        let (net, sets) = posterior_network(dev, task, sites, TRAIN_BATCHES * batch)?;
        Ok(TrainStep { dev: dev.clone(), net, sets, batch })
    }

    /// The optimiser (AdamW at the training defaults) over this network, ready to step.
    pub fn steps(&mut self) -> Result<Steps<'_>> {
        let cfg = TrainConfig { batch: self.batch, ..Default::default() };
        let net = &mut self.net;
        Ok(Steps {
            stepper: Stepper::new(&self.dev, &net.tape, &cfg)?,
            model: &net.model,
            tape: &mut net.tape,
            sets: &self.sets,
            indices: (0..TRAIN_BATCHES * self.batch).collect(),
            batch: self.batch,
        })
    }
}

/// W1's training steps; the optimiser's state lives as long as this.
pub struct Steps<'a> {
    stepper: Stepper<'a>,
    model: &'a Tfmpe,
    tape: &'a mut Tape,
    sets: &'a Sets,
    /// Every set's index in order: batch `i` is the sets `i·batch..(i+1)·batch`.
    indices: Vec<usize>,
    batch: usize,
}

impl Steps<'_> {
    /// Step number `draw`: batch `draw mod TRAIN_BATCHES` with the noise and times of draw
    /// `draw`, so the same `draw` repeats the same batch exactly. Returns the loss node, valid
    /// until the next step; the device may still be working on it.
    pub fn step(&mut self, draw: u64) -> Result<Var> {
        let first = (draw as usize % TRAIN_BATCHES) * self.batch;
        let idx = &self.indices[first..first + self.batch];
        self.stepper.step(self.tape, self.model, self.sets, idx, 0, draw)
    }

    /// The value of a loss node from [`Steps::step`]; waits for the device, as the peer's
    /// `float(loss)` does.
    pub fn loss(&self, loss: Var) -> Result<f32> {
        Ok(self.tape.to_vec(loss)?[0])
    }
}

/// W2: the posterior network (untrained) and one simulated observation.
pub struct Sampling<'t> {
    task: &'t dyn HierarchicalModel,
    posterior: Posterior,
    obs: Observed,
}

impl<'t> Sampling<'t> {
    /// The network is W1's for `batch`-set batches, before training.
    pub fn new(
        dev: &Device, task: &'t dyn HierarchicalModel, sites: usize, batch: usize,
    ) -> Result<Self> {
        let (net, _) = posterior_network(dev, task, sites, 4 * batch)?;
        let obs = simulate_dataset(task, sites, &mut StdRng::seed_from_u64(2))?.observed();
        Ok(Sampling { task, posterior: net.into(), obs })
    }

    /// `n` posterior samples of the observation, [`SAMPLE_CHUNK`] at a time, the linear layers
    /// multiplying in `precision`.
    pub fn sample(
        &mut self, dev: &Device, n: usize, solver: Solver, precision: Precision,
    ) -> Result<()> {
        let sampler =
            Sampler::new(dev, solver).with_chunk(SAMPLE_CHUNK).with_precision(precision)?;
        sampler.posterior(&mut self.posterior, self.task, &self.obs, n, 0, &Quiet).map(drop)
    }

    /// W2's inner loop for `n` samples of the observation at once.
    pub fn velocity(&mut self, dev: &Device, n: usize) -> Result<Velocity<'_>> {
        let net = &mut self.posterior.net;
        let layout = &net.config.layout;
        let tokens = DeviceTokens::upload(dev, &TokenBatch::repeat(layout, n)?)?;
        let cond = net.standardize(&self.obs.values, true)?;
        let be = dev.backend();
        let cond = be.upload_f32(&cond.repeat(n))?;
        let mut x = be.alloc(DType::F32, n * layout.target.len())?;
        be.normal_fill(&mut x, 3, 0)?;
        let mut t = be.alloc(DType::F32, n)?;
        be.fill(&mut t, 0.5)?;
        let v = be.alloc(DType::F32, n * layout.target.len())?;
        net.tape.reset();
        net.tape.set_inference(true)?;
        Ok(Velocity { dev: dev.clone(), net, tokens, cond, x, t, v })
    }
}

/// One network evaluation of a sampling step: the velocity of every sample at its current
/// state, in inference mode (nothing recorded for backward).
pub struct Velocity<'a> {
    dev: Device,
    net: &'a mut Network,
    tokens: DeviceTokens,
    cond: Buffer,
    x: Buffer,
    t: Buffer,
    v: Buffer,
}

impl Velocity<'_> {
    /// Evaluates the network once; the device may still be working when this returns.
    pub fn eval(&mut self) -> Result<()> {
        let on =
            Conditions { tokens: &self.tokens, cond: &self.cond, inputs: None, key_mask: None };
        let mut field = Field { model: &self.net.model, tape: &mut self.net.tape, on };
        field.eval(&self.dev, &self.x, &self.t, &mut self.v)
    }
}
