//! Pipelines from a simulator to a trained posterior network, one file per [`Method`]:
//!
//! - **lf** (default, `lf.rs`): single-site simulations → a likelihood surrogate → synthetic
//!   S-site sets → the posterior network.
//! - **direct** (`direct.rs`): the posterior network on budget / S real S-site simulations.
//! - **joint** (`lf.rs` too): LF with one network that is first the surrogate, then also the
//!   posterior.
//! - **pf** (`pf.rs`): a global network on real sets of 1..S sites, then a local network per
//!   site given the globals; a [`Posterior`] holds the pair.
//!
//! The budget always counts single-site simulator calls. Simulations run in parallel; those
//! with non-finite output are dropped and counted. Every random draw takes its seed from a
//! named [`Stream`] of the run's seed. A trained posterior is sampled through a [`Sampler`];
//! [`calibration`] makes the draws SBC and TARP score.

pub mod calibration;
mod config;
mod direct;
mod epoch_state;
mod footprint;
mod global_scaling;
mod host_mlp;
mod lf;
mod local_scaling;
pub mod network;
mod pf;
mod posterior;
mod progress;
mod proposal;
mod resume;
mod sampler;
mod scaling;
mod seeds;
mod sets;
pub mod train;

use serde::Serialize;

use crate::error::Result;
use crate::tasks::HierarchicalModel;
use crate::Device;
pub use calibration::{calibration_draws, CalibrationDraws};
pub use config::{Method, RunConfig, Scaling};
pub use epoch_state::EpochFile;
pub use footprint::check_draws;
pub use network::{new_network, to_sets, Network, NoiseRun, Role, Rows};
pub use pf::stick_breaking;
pub use posterior::{Posterior, LOCAL_DIR};
pub use progress::{Progress, Quiet};
pub use proposal::{importance_weights, resample, RoundReport};
pub use resume::Checkpoints;
pub use sampler::Sampler;
pub use scaling::ScalingReport;
pub use seeds::Stream;
pub use sets::{posterior_rows, FreshSets, InputSource, SetRows, SiteCounts};
use train::{SetSource, Sets, TrainConfig, TrainReport};

/// Wall time and counts of a pipeline run, for `report.json`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PipelineReport {
    /// `(phase, seconds)` in order.
    pub phases: Vec<(String, f64)>,
    pub simulator_calls: usize,
    pub dropped_simulations: usize,
    pub training_sets: usize,
    pub validation_sets: usize,
    /// lf and joint: the synthetic pool's training sets (of the last round).
    pub synthetic_sets: Option<usize>,
    pub surrogate: Option<TrainReport>,
    /// The posterior network (pf: the global network).
    pub posterior: Option<TrainReport>,
    /// pf's local network.
    pub local: Option<TrainReport>,
    /// `--rounds`: each round's simulations and proposal.
    pub rounds: Vec<RoundReport>,
}

/// What a run produced.
pub struct Trained {
    pub posterior: Posterior,
    pub surrogate: Option<Network>,
    pub report: PipelineReport,
}

impl Trained {
    /// Saves the networks as a run folder holds them (`posterior/`, `surrogate/`, each with
    /// its training record), for `tfmpe sample` and [`Network::load`].
    pub fn save(&self, dir: &std::path::Path) -> Result<()> {
        let checkpoints = Checkpoints { dir: Some(dir.to_path_buf()), resume: false };
        let pairs = [
            ("posterior", Some(&self.posterior.net), &self.report.posterior),
            (LOCAL_DIR, self.posterior.local.as_ref(), &self.report.local),
            ("surrogate", self.surrogate.as_ref(), &self.report.surrogate),
        ];
        for (role, net, report) in pairs {
            // A loaded network has no training record to keep.
            match (net, report) {
                (Some(net), Some(report)) => checkpoints.save(role, net, report)?,
                (Some(net), None) => net.save(&dir.join(role))?,
                (None, _) => {}
            }
        }
        Ok(())
    }
}

impl Method {
    /// Runs this method's pipeline.
    fn train(
        self, dev: &Device, task: &dyn HierarchicalModel, cfg: &RunConfig, progress: &dyn Progress,
    ) -> Result<Trained> {
        match self {
            Method::Lf => lf::run(dev, task, cfg, progress),
            Method::Direct => direct::run(dev, task, cfg, progress),
            Method::Pf => pf::run(dev, task, cfg, progress),
            Method::Joint => lf::run(dev, task, cfg, progress),
        }
    }
}

/// The network of `role` that reads whole data sets (the posterior, or pf's global network):
/// initial weights from the run's [`Stream::PosteriorInit`], standardisation fitted on the
/// training rows.
fn new_posterior(
    dev: &Device, task: &dyn HierarchicalModel, cfg: &RunConfig, role: Role, rows: &[Rows],
) -> Result<Network> {
    let seed = Stream::PosteriorInit.seed(cfg.seed, 0);
    let sites = cfg.site_counts().max();
    new_network(dev, task, role, sites, rows, &cfg.architecture, seed)
}

/// With `--posterior-scaling conditional`, fits a new posterior's scaling of its locals
/// ([`local_scaling`]) on its training and validation rows, before any of its sets are made for
/// training. A posterior that has one (a later round's) keeps it.
fn scale_locals(
    posterior: &mut Network, cfg: &RunConfig, train: &[Rows], validation: &[Rows],
    progress: &dyn Progress,
) -> Result<Option<ScalingReport>> {
    if cfg.local_scaling() != Scaling::Conditional || posterior.config.local_scaling.is_some() {
        return Ok(None);
    }
    // Minutes on a large run, before the first epoch: say what is going on.
    progress.phase("posterior scaling (fitting the conditional scaling of its parameters)");
    let sets = |rows: &[Rows]| -> Result<Vec<Sets>> {
        rows.iter().map(|r| to_sets(posterior, *r)).collect()
    };
    let (train, validation) = (sets(train)?, sets(validation)?);
    let seed = Stream::PosteriorScaling.seed(cfg.seed, 0);
    posterior.fit_local_scaling(&train, &validation, seed).map(Some)
}

/// Trains the posterior network with the run's settings and [`Stream::PosteriorTraining`].
fn fit_posterior(
    dev: &Device, posterior: &mut Network, data: &mut dyn SetSource, cfg: &RunConfig,
    progress: &dyn Progress,
) -> Result<TrainReport> {
    let train = TrainConfig {
        seed: Stream::PosteriorTraining.seed(cfg.seed, 0),
        // Fresh sets are drawn anew each epoch from a running stream, which a resumed phase
        // could not continue: such a training resumes from its start.
        epoch_file: cfg.checkpoints.epoch_file("posterior").filter(|_| !cfg.fresh_sets),
        ..cfg.train.clone()
    };
    let report = posterior.fit(dev, data, &train, progress)?;
    cfg.checkpoints.save("posterior", posterior, &report)?;
    Ok(report)
}

/// Runs the configured pipeline for `task`. A training that stopped early on a non-finite loss
/// is reported through [`Progress::warning`] (and in the returned report).
pub fn run(
    dev: &Device, task: &dyn HierarchicalModel, cfg: &RunConfig, progress: &dyn Progress,
) -> Result<Trained> {
    cfg.check(task)?;
    let trained = cfg.method.train(dev, task, cfg, progress)?;
    let report = &trained.report;
    for t in [&report.surrogate, &report.posterior, &report.local].into_iter().flatten() {
        if let Some(message) = &t.stop_message {
            progress.warning(message);
        }
    }
    Ok(trained)
}
