//! The subcommands of the `tfmpe` binary.

pub mod bench;
pub mod benchmark;
pub mod eval;
pub mod info;
pub mod log_prob;
pub mod progress;
pub mod run;
pub mod sample;

use tfmpe::model::density::Divergence;
use tfmpe::model::tfmpe::{ArchOverrides, TfmpeConfig};
use tfmpe::sbi::train::{Overrides, Preset, TrainConfig};

/// The network's sizes, shared by `run` and `benchmark`; unset ones keep the defaults
/// (docs/architecture.md#model). Both networks of a run get the same sizes.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct ArchArgs {
    /// Width of the transformer (the token embedding's size) [default: 64].
    #[arg(long)]
    pub width: Option<usize>,
    /// Transformer layers [default: 2].
    #[arg(long)]
    pub layers: Option<usize>,
    /// Attention heads per layer; they must divide --width [default: 16].
    #[arg(long)]
    pub heads: Option<usize>,
    /// Size of the group (site) embedding, by which a token finds its site's tokens
    /// [default: 32; the reference's is 8].
    #[arg(long)]
    pub group_dim: Option<usize>,
    /// Fourier features of the functional inputs, an even number [default: 64].
    #[arg(long)]
    pub fourier_dim: Option<usize>,
}

impl ArchArgs {
    /// `base` with the sizes given, checked.
    pub fn apply(&self, base: &TfmpeConfig) -> tfmpe::Result<TfmpeConfig> {
        base.overridden(&ArchOverrides {
            width: self.width,
            layers: self.layers,
            heads: self.heads,
            group_dim: self.group_dim,
            fourier_dim: self.fourier_dim,
        })
    }
}

/// The ODE solver options shared by `run`, `sample` and `eval`.
#[derive(clap::Args, Clone, Debug)]
pub struct SolverArgs {
    /// euler, rk4 or dopri5.
    #[arg(long, default_value = "rk4")]
    pub solver: String,
    /// Steps of the fixed-step solvers.
    #[arg(long, default_value_t = 25)]
    pub steps: usize,
}

impl SolverArgs {
    pub fn solver(&self) -> tfmpe::Result<tfmpe::model::ode::Solver> {
        if self.steps == 0 {
            return Err(tfmpe::Error::Invalid("--steps must be at least 1".into()));
        }
        tfmpe::model::ode::Solver::from_name(&self.solver, self.steps)
    }
}

/// How `sample`, `log-prob` and `eval` take the posterior's log density: by integrating the
/// flow back to noise (with the solver of --solver and --steps) and the velocity's divergence
/// along it.
#[derive(clap::Args, Clone, Debug)]
pub struct DivergenceArgs {
    /// The divergence: exact (one backward pass per parameter), hutchinson (an unbiased
    /// estimate from --probes random probes), or auto (exact up to 32 parameters).
    #[arg(long, default_value = "auto")]
    pub divergence: String,
    /// Probes of the Hutchinson estimator.
    #[arg(long, default_value_t = 8)]
    pub probes: usize,
}

impl DivergenceArgs {
    /// The divergence for `dim` parameters; Hutchinson's probes are drawn from `seed`.
    pub fn divergence(&self, dim: usize, seed: u64) -> tfmpe::Result<Divergence> {
        Divergence::from_name(&self.divergence, dim, self.probes, seed)
    }

    /// The settings as the library's evaluation takes them.
    pub fn coverage_eval(&self) -> tfmpe::Result<tfmpe::run_folder::CoverageEval> {
        // Checked now, in the flags' words, with a dimension that forces the choice.
        Divergence::from_name(&self.divergence, usize::MAX, self.probes, 0)?;
        Ok(tfmpe::run_folder::CoverageEval {
            divergence: self.divergence.clone(),
            probes: self.probes,
        })
    }
}

/// The training recipe as `run` and `benchmark` take it: a preset with its parts overridden.
#[derive(clap::Args, Clone, Debug)]
pub struct TrainArgs {
    /// The training recipe of both networks: fast (the default: Adam at a peak of 1e-3, a 5%
    /// warm-up and a cosine decay over 3 000 steps) or paper (the reference's: Adam 1e-4, up to
    /// 1 000 epochs, early stopping with patience 100). The options below override its parts.
    #[arg(long)]
    pub preset: Option<String>,
    /// Cap on the training epochs of each network (given alone, it sets the length instead of
    /// the recipe's step count).
    #[arg(long)]
    pub max_epochs: Option<usize>,
    /// Cap on the optimiser steps of each network (fast: 3 000).
    #[arg(long)]
    pub max_steps: Option<usize>,
    /// Early-stopping patience in epochs.
    #[arg(long)]
    pub patience: Option<usize>,
    /// Adam's learning rate of both networks (its peak under the cosine schedule).
    #[arg(long)]
    pub lr: Option<f32>,
    /// The learning rate over training: constant, or cosine (a linear warm-up over the first
    /// 5% of the steps, then a cosine decay to 1% of --lr at the last step).
    #[arg(long)]
    pub schedule: Option<String>,
}

impl TrainArgs {
    /// `base` (the preset's settings when one is named), with the options given.
    pub fn apply(&self, base: TrainConfig) -> tfmpe::Result<TrainConfig> {
        let base = match &self.preset {
            Some(name) => TrainConfig { batch: base.batch, ..Preset::from_name(name)?.train() },
            None => base,
        };
        base.overridden(&Overrides {
            max_epochs: self.max_epochs,
            max_steps: self.max_steps,
            patience: self.patience,
            lr: self.lr,
            schedule: self.schedule.clone(),
        })
    }
}

/// The L-C2ST options shared by `run` and `eval`.
#[derive(clap::Args, Clone, Debug)]
pub struct Lc2stArgs {
    /// Also compute L-C2ST (local C2ST) of the posterior network at the observation; the
    /// report gets an `lc2st` object with the statistic, p-value and reject decision.
    #[arg(long)]
    pub lc2st: bool,
    /// L-C2ST: data sets simulated from the prior, one posterior draw each.
    #[arg(long, default_value_t = 1000)]
    pub lc2st_data_sets: usize,
    /// L-C2ST: permutation-null classifiers (the p-value's resolution is one over this).
    #[arg(long, default_value_t = 100)]
    pub lc2st_nulls: usize,
    /// L-C2ST: the test rejects when the p-value is below this.
    #[arg(long, default_value_t = 0.05)]
    pub lc2st_alpha: f64,
}

impl Lc2stArgs {
    /// The evaluation's L-C2ST settings, or `None` without `--lc2st`; refuses bad values in
    /// the flags' words.
    pub fn eval(&self) -> tfmpe::Result<Option<tfmpe::run_folder::Lc2stEval>> {
        if !self.lc2st {
            return Ok(None);
        }
        let bad = |m: &str| Err(tfmpe::Error::Invalid(m.into()));
        if self.lc2st_data_sets < 20 {
            return bad("--lc2st-data-sets must be at least 20 (1000 is usual)");
        }
        if self.lc2st_nulls == 0 {
            return bad("--lc2st-nulls must be at least 1 (100 is usual)");
        }
        if !(self.lc2st_alpha > 0.0 && self.lc2st_alpha < 1.0) {
            return bad("--lc2st-alpha must lie in (0, 1)");
        }
        let config = tfmpe::metrics::Lc2stConfig {
            null_trials: self.lc2st_nulls,
            alpha: self.lc2st_alpha,
            ..Default::default()
        };
        Ok(Some(tfmpe::run_folder::Lc2stEval { data_sets: self.lc2st_data_sets, config }))
    }
}

/// Refuses calibration settings SBC and TARP cannot use, in the flags' words.
pub fn check_calibration(calibration: usize, draws: usize) -> tfmpe::Result<()> {
    use tfmpe::run_folder::MIN_CALIBRATION;
    if calibration > 0 && calibration < MIN_CALIBRATION {
        return Err(tfmpe::Error::Invalid(format!(
            "--calibration {calibration} is too few data sets for the KS tests of SBC and TARP: \
             give 0 (none) or at least {MIN_CALIBRATION} (200 is usual)"
        )));
    }
    if calibration > 0 && draws == 0 {
        return Err(tfmpe::Error::Invalid(
            "--calibration-draws must be at least 1 (99 is the usual choice)".into(),
        ));
    }
    Ok(())
}

/// Refuses `--samples 0` in the flag's own words.
pub fn check_chunk(chunk: usize) -> tfmpe::Result<()> {
    if chunk == 0 {
        return Err(tfmpe::Error::Invalid(
            "--chunk must be at least 1 (the default is 1000)".into(),
        ));
    }
    Ok(())
}

/// The posterior network at `path` (a checkpoint folder, or a run folder holding one) and its
/// task: a built-in task by name, or the model file copied into the run folder.
pub fn load_model(
    device: &tfmpe::Device, path: &std::path::Path,
) -> tfmpe::Result<(tfmpe::sbi::Posterior, Box<dyn tfmpe::tasks::HierarchicalModel>)> {
    let net = tfmpe::run_folder::load_posterior(device, path)?;
    let run = if path.join("posterior").is_dir() {
        path.to_path_buf()
    } else {
        path.parent().map(std::path::PathBuf::from).unwrap_or_default()
    };
    let task = tfmpe::run_folder::RunFolder::new(&run).task(&net.config().task)?;
    Ok((net, task))
}

pub fn check_samples(samples: usize) -> tfmpe::Result<()> {
    if samples == 0 {
        return Err(tfmpe::Error::Invalid("--samples must be at least 1".into()));
    }
    Ok(())
}
