//! Pipelines from a simulator to a trained posterior network (DESIGN §7):
//!
//! - **lf** (default): single-site simulations → a flow-matching likelihood surrogate
//!   q(y_s | θ_g, η_s) → synthetic S-site sets (prior draws + surrogate samples) → the
//!   posterior network. Synthetic sets come from one fixed pool (the reference's behaviour) or,
//!   with `fresh_sets`, are drawn anew every epoch.
//! - **direct**: the posterior network on budget / S real S-site simulations.
//!
//! The budget always counts single-site simulator calls. Simulations run in parallel; those
//! with non-finite output are dropped and counted.

pub mod network;
mod sets;
pub mod train;

use std::time::Instant;

use rand::rngs::StdRng;
use rand::SeedableRng;
use rayon::prelude::*;
use serde::Serialize;

use crate::backend::Device;
use crate::error::{Error, Result};
use crate::model::flow::SIGMA_MIN;
use crate::model::ode::Solver;
use crate::model::standardize::Standardizer;
use crate::model::tfmpe::TfmpeConfig;
use crate::model::tokens::{n_labels, Layout};
use crate::tasks::HierarchicalModel;
use network::{Network, NetworkConfig};
pub use sets::{posterior_rows, FreshSets};
use train::{FixedSets, Sets, TrainConfig, TrainReport};

/// Reports progress of long phases; the command line draws bars, the library stays quiet.
pub trait Progress: Sync {
    fn phase(&self, _name: &str) {}
    fn epoch(
        &self,
        _phase: &str,
        _epoch: usize,
        _max_epochs: usize,
        _train_loss: f64,
        _val_loss: f64,
    ) {
    }
    fn samples(&self, _phase: &str, _done: usize, _total: usize) {}
}

/// No progress output.
pub struct Quiet;

impl Progress for Quiet {}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    Lf,
    Direct,
}

impl std::str::FromStr for Method {
    type Err = Error;

    fn from_str(s: &str) -> Result<Method> {
        match s {
            "lf" => Ok(Method::Lf),
            "direct" => Ok(Method::Direct),
            "pf" => Err(Error::Invalid(
                "method `pf` (posterior factorisation) is not implemented yet; use lf or direct"
                    .into(),
            )),
            other => Err(Error::Invalid(format!(
                "unknown method `{other}`: use lf or direct"
            ))),
        }
    }
}

/// Settings of a pipeline run.
#[derive(Clone, Debug, Serialize)]
pub struct RunConfig {
    pub sites: usize,
    /// Single-site simulator calls.
    pub budget: usize,
    pub method: Method,
    pub seed: u64,
    /// Fraction of simulations held out for validation.
    pub val_fraction: f64,
    pub train: TrainConfig,
    /// The surrogate's training (LF only).
    pub surrogate_train: TrainConfig,
    pub architecture: TfmpeConfig,
    /// LF: draw fresh synthetic sets every epoch instead of one fixed pool.
    pub fresh_sets: bool,
    /// LF: how surrogate samples are integrated.
    pub surrogate_solver: Solver,
    /// Samples per ODE batch.
    pub chunk: usize,
}

impl RunConfig {
    pub fn new(sites: usize, budget: usize) -> RunConfig {
        RunConfig {
            sites,
            budget,
            method: Method::Lf,
            seed: 0,
            val_fraction: 0.1,
            train: TrainConfig::default(),
            surrogate_train: TrainConfig::default(),
            architecture: TfmpeConfig::default(),
            fresh_sets: false,
            surrogate_solver: Solver::Rk4 { steps: 10 },
            chunk: 2000,
        }
    }
}

/// Wall time and counts of a pipeline run, for `report.json`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PipelineReport {
    /// `(phase, seconds)` in order.
    pub phases: Vec<(String, f64)>,
    pub simulator_calls: usize,
    pub dropped_simulations: usize,
    pub training_sets: usize,
    pub validation_sets: usize,
    pub surrogate: Option<TrainReport>,
    pub posterior: Option<TrainReport>,
}

/// What a run produced.
pub struct Trained {
    pub posterior: Network,
    pub surrogate: Option<Network>,
    pub report: PipelineReport,
}

/// Wall time per phase, in order.
struct Timer {
    phases: Vec<(String, f64)>,
    start: Instant,
}

impl Timer {
    fn start() -> Timer {
        Timer {
            phases: Vec::new(),
            start: Instant::now(),
        }
    }

    fn lap(&mut self, phase: &str) {
        self.phases
            .push((phase.to_string(), self.start.elapsed().as_secs_f64()));
        self.start = Instant::now();
    }
}

/// Runs the configured pipeline for `task`.
pub fn run(
    dev: &Device,
    task: &dyn HierarchicalModel,
    cfg: &RunConfig,
    progress: &dyn Progress,
) -> Result<Trained> {
    if cfg.sites == 0 {
        return Err(Error::Invalid("--sites must be at least 1".into()));
    }
    if task.functional_input_dim() > 0 {
        return Err(Error::Invalid(format!(
            "task `{}` has functional inputs, which the pipelines do not feed to the network yet",
            task.name()
        )));
    }
    match cfg.method {
        Method::Lf => run_lf(dev, task, cfg, progress),
        Method::Direct => run_direct(dev, task, cfg, progress),
    }
}

/// Mixes a seed with a stream number and an index into an independent seed.
pub fn sub_seed(seed: u64, stream: u64, index: u64) -> u64 {
    let mut z = seed
        ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03)
        ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn split(n: usize, val_fraction: f64) -> usize {
    let n_val = ((n as f64) * val_fraction).round() as usize;
    n_val.clamp(1, n.saturating_sub(1))
}

/// Which network of a pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Conditions: observations of S sites; targets: all parameters.
    Posterior,
    /// LF's likelihood surrogate. Conditions: globals and one site's locals (unconstrained);
    /// targets: that site's observation.
    Surrogate,
}

/// A freshly initialised network of `role` for `task`, its embedding tables sized for its
/// layout and its standardisation fitted on the given training rows (`cond` and `target`,
/// one set per row, token order).
#[allow(clippy::too_many_arguments)]
pub fn new_network(
    dev: &Device,
    task: &dyn HierarchicalModel,
    role: Role,
    sites: usize,
    cond: &[f64],
    target: &[f64],
    architecture: &TfmpeConfig,
    seed: u64,
) -> Result<Network> {
    let (layout, name, cond_names, target_names) = match role {
        Role::Posterior => (
            Layout::posterior(task, sites),
            "posterior",
            task.observation_names(sites),
            task.parameter_names(sites),
        ),
        Role::Surrogate => (
            Layout::surrogate(task),
            "surrogate",
            task.parameter_names(1),
            task.observation_names(1),
        ),
    };
    let (_, pos, group) = layout.max_ids();
    let architecture = TfmpeConfig {
        n_labels: n_labels(task),
        max_positions: pos as usize + 1,
        max_groups: group as usize + 1,
        ..architecture.clone()
    };
    let config = NetworkConfig {
        role: name.to_string(),
        task: task.name().to_string(),
        sites,
        architecture,
        standardizer: fit_standardizer(&layout, cond, target)?,
        layout,
        cond_names,
        target_names,
        bijections: task.parameter_bijections(sites),
        time_convention: "t = 0 is noise, t = 1 is data".into(),
        sigma_min: SIGMA_MIN,
    };
    Network::new(dev, config, seed)
}

/// Fits a standardiser over cond and target rows of one layout.
fn fit_standardizer(layout: &Layout, cond: &[f64], target: &[f64]) -> Result<Standardizer> {
    let (c, m) = (layout.cond.len(), layout.target.len());
    let tokens: Vec<_> = layout.cond.iter().chain(&layout.target).copied().collect();
    let n = target.len() / m;
    let rows: Vec<Vec<f64>> = (0..n)
        .map(|i| {
            cond[i * c..(i + 1) * c]
                .iter()
                .chain(&target[i * m..(i + 1) * m])
                .copied()
                .collect()
        })
        .collect();
    Standardizer::fit(&tokens, rows.iter().map(|r| r.as_slice()))
}

/// Standardised sets for `net` from unstandardised rows.
pub fn to_sets(net: &Network, cond: &[f64], target: &[f64]) -> Result<Sets> {
    Ok(Sets {
        cond: net.standardize(cond, true)?,
        target: net.standardize(target, false)?,
    })
}

/// Single-site simulations: `[globals, locals]` (natural) and observations, finite ones only.
fn simulate_single_sites(
    task: &dyn HierarchicalModel,
    n: usize,
    seed: u64,
) -> (Vec<f64>, Vec<f64>, usize) {
    let sims: Vec<Option<(Vec<f64>, Vec<f64>)>> = (0..n)
        .into_par_iter()
        .map(|i| {
            let mut rng = StdRng::seed_from_u64(sub_seed(seed, 1, i as u64));
            let g = task.sample_globals(&mut rng);
            let l = task.sample_locals(&g, &mut rng);
            let inputs = task.sample_functional_inputs(&mut rng);
            let y = task.simulate_site(&g, &l, inputs.as_deref(), &mut rng);
            y.iter()
                .all(|v| v.is_finite())
                .then(|| ([g, l].concat(), y))
        })
        .collect();
    let dropped = sims.iter().filter(|s| s.is_none()).count();
    let (mut params, mut obs) = (Vec::new(), Vec::new());
    for (p, y) in sims.into_iter().flatten() {
        params.extend(p);
        obs.extend(y);
    }
    (params, obs, dropped)
}

fn run_lf(
    dev: &Device,
    task: &dyn HierarchicalModel,
    cfg: &RunConfig,
    progress: &dyn Progress,
) -> Result<Trained> {
    let mut report = PipelineReport::default();
    let mut timer = Timer::start();
    progress.phase("simulate");
    let (params, obs, dropped) = simulate_single_sites(task, cfg.budget, cfg.seed);
    report.simulator_calls = cfg.budget;
    report.dropped_simulations = dropped;
    let (pd, od) = (task.global_dim() + task.local_dim(), task.obs_dim());
    let n = params.len() / pd;
    if n < 2 {
        return Err(Error::Invalid(format!(
            "only {n} of {} simulations were finite; raise --budget",
            cfg.budget
        )));
    }
    let n_val = split(n, cfg.val_fraction);
    let n_train = n - n_val;
    timer.lap("simulate");

    // The surrogate: conditions are the unconstrained site parameters, targets the observation.
    progress.phase("surrogate");
    let site_bij: Vec<_> = task.parameter_bijections(1);
    let unconstrained: Vec<f64> = params
        .chunks(pd)
        .flat_map(|p| p.iter().zip(&site_bij).map(|(&v, b)| b.forward(v)))
        .collect();
    let mut surrogate = new_network(
        dev,
        task,
        Role::Surrogate,
        1,
        &unconstrained[..n_train * pd],
        &obs[..n_train * od],
        &cfg.architecture,
        sub_seed(cfg.seed, 2, 0),
    )?;
    let mut s_data = FixedSets {
        train: to_sets(
            &surrogate,
            &unconstrained[..n_train * pd],
            &obs[..n_train * od],
        )?,
        validation: to_sets(
            &surrogate,
            &unconstrained[n_train * pd..],
            &obs[n_train * od..],
        )?,
    };
    let s_cfg = TrainConfig {
        seed: sub_seed(cfg.seed, 3, 0),
        ..cfg.surrogate_train.clone()
    };
    report.surrogate = Some(surrogate.fit(dev, &mut s_data, &s_cfg, progress)?);
    timer.lap("surrogate_training");

    // Synthetic S-site sets: globals of the simulations, fresh locals from the prior, and
    // surrogate observations.
    progress.phase("synthetic sets");
    let globals: Vec<Vec<f64>> = params
        .chunks(pd)
        .map(|p| p[..task.global_dim()].to_vec())
        .collect();
    let (train_g, val_g) = globals.split_at(n_train);
    let mut fresh = FreshSets::new(
        task,
        cfg.sites,
        cfg.surrogate_solver,
        cfg.chunk,
        sub_seed(cfg.seed, 4, 0),
    );
    let (tc, tt) = fresh.synthesize(dev, &mut surrogate, train_g, progress)?;
    let (vc, vt) = fresh.synthesize(dev, &mut surrogate, val_g, progress)?;
    timer.lap("synthetic_sets");

    progress.phase("posterior");
    let mut posterior = new_network(
        dev,
        task,
        Role::Posterior,
        cfg.sites,
        &tc,
        &tt,
        &cfg.architecture,
        sub_seed(cfg.seed, 5, 0),
    )?;
    let validation = to_sets(&posterior, &vc, &vt)?;
    let p_cfg = TrainConfig {
        seed: sub_seed(cfg.seed, 6, 0),
        ..cfg.train.clone()
    };
    report.training_sets = n_train;
    report.validation_sets = n_val;
    report.posterior = Some(if cfg.fresh_sets {
        let mut source = fresh.into_source(
            &mut surrogate,
            &posterior,
            n_train,
            validation,
            dev,
            progress,
        );
        posterior.fit(dev, &mut source, &p_cfg, progress)?
    } else {
        let mut data = FixedSets {
            train: to_sets(&posterior, &tc, &tt)?,
            validation,
        };
        posterior.fit(dev, &mut data, &p_cfg, progress)?
    });
    timer.lap("posterior_training");
    report.phases = timer.phases;
    Ok(Trained {
        posterior,
        surrogate: Some(surrogate),
        report,
    })
}

fn run_direct(
    dev: &Device,
    task: &dyn HierarchicalModel,
    cfg: &RunConfig,
    progress: &dyn Progress,
) -> Result<Trained> {
    let mut report = PipelineReport::default();
    let mut timer = Timer::start();
    progress.phase("simulate");
    let n_sets = cfg.budget / cfg.sites;
    let sets: Vec<Option<(Vec<f64>, Vec<f64>)>> = (0..n_sets)
        .into_par_iter()
        .map(|i| {
            let mut rng = StdRng::seed_from_u64(sub_seed(cfg.seed, 7, i as u64));
            let d = crate::tasks::simulate_dataset(task, cfg.sites, &mut rng);
            d.is_finite()
                .then(|| (task.to_unconstrained(&d.params, cfg.sites), d.obs))
        })
        .collect();
    report.simulator_calls = n_sets * cfg.sites;
    report.dropped_simulations = sets.iter().filter(|s| s.is_none()).count();
    let (mut target, mut cond) = (Vec::new(), Vec::new());
    for (p, y) in sets.into_iter().flatten() {
        target.extend(p);
        cond.extend(y);
    }
    let layout = Layout::posterior(task, cfg.sites);
    let n = target.len() / layout.target.len().max(1);
    if n < 2 {
        return Err(Error::Invalid(format!(
            "direct needs at least 2 finite {}-site simulations but the budget {} gives {n}; raise --budget",
            cfg.sites, cfg.budget
        )));
    }
    let n_val = split(n, cfg.val_fraction);
    let n_train = n - n_val;
    let (c, m) = (layout.cond.len(), layout.target.len());
    timer.lap("simulate");
    progress.phase("posterior");
    let mut posterior = new_network(
        dev,
        task,
        Role::Posterior,
        cfg.sites,
        &cond[..n_train * c],
        &target[..n_train * m],
        &cfg.architecture,
        sub_seed(cfg.seed, 5, 0),
    )?;
    let mut data = FixedSets {
        train: to_sets(&posterior, &cond[..n_train * c], &target[..n_train * m])?,
        validation: to_sets(&posterior, &cond[n_train * c..], &target[n_train * m..])?,
    };
    report.training_sets = n_train;
    report.validation_sets = n_val;
    let p_cfg = TrainConfig {
        seed: sub_seed(cfg.seed, 6, 0),
        ..cfg.train.clone()
    };
    report.posterior = Some(posterior.fit(dev, &mut data, &p_cfg, progress)?);
    timer.lap("posterior_training");
    report.phases = timer.phases;
    Ok(Trained {
        posterior,
        surrogate: None,
        report,
    })
}

/// Draws `n` posterior samples for an observation (natural space, one full parameter vector
/// each), from a trained posterior network.
#[allow(clippy::too_many_arguments)]
pub fn sample_posterior(
    dev: &Device,
    posterior: &mut Network,
    task: &dyn HierarchicalModel,
    obs: &[f64],
    n: usize,
    solver: Solver,
    seed: u64,
    chunk: usize,
    progress: &dyn Progress,
) -> Result<Vec<Vec<f64>>> {
    let mut sets = sample_posteriors(
        dev,
        posterior,
        task,
        &[obs],
        n,
        solver,
        seed,
        chunk,
        progress,
    )?;
    Ok(sets.pop().unwrap_or_default())
}

/// Draws `n` posterior samples for each of `observations` in one batched solve: set `k` holds
/// the draws at noise offsets `k·n .. (k+1)·n`, so a single observation gets the same draws as
/// [`sample_posterior`].
#[allow(clippy::too_many_arguments)]
pub fn sample_posteriors(
    dev: &Device,
    posterior: &mut Network,
    task: &dyn HierarchicalModel,
    observations: &[impl AsRef<[f64]>],
    n: usize,
    solver: Solver,
    seed: u64,
    chunk: usize,
    progress: &dyn Progress,
) -> Result<Vec<Vec<Vec<f64>>>> {
    network::check_samples(n)?;
    let sites = posterior.config.sites;
    let mut conds = Vec::new();
    for obs in observations.iter().map(AsRef::as_ref) {
        crate::tasks::check_observation(task, obs, sites)?;
        let cond = posterior.standardize(obs, true)?;
        conds.extend((0..n).flat_map(|_| cond.iter().copied()));
    }
    let (z, _) = posterior.sample(dev, &conds, solver, seed, chunk, progress)?;
    let unconstrained = posterior.unstandardize(&z, false)?;
    let d = posterior.layout().target.len();
    Ok(unconstrained
        .chunks(n * d)
        .map(|set| set.chunks(d).map(|u| task.to_natural(u, sites)).collect())
        .collect())
}

/// The input of SBC and TARP (`metrics::sbc`, `metrics::tarp`), natural space.
pub struct CalibrationDraws {
    /// The true parameters of each data set.
    pub truths: Vec<Vec<f64>>,
    /// The posterior draws for each data set.
    pub draws: Vec<Vec<Vec<f64>>>,
}

/// `data_sets` data sets simulated from the prior with `seed`, and `draws` posterior samples
/// for each.
#[allow(clippy::too_many_arguments)]
pub fn calibration_draws(
    dev: &Device,
    posterior: &mut Network,
    task: &dyn HierarchicalModel,
    data_sets: usize,
    draws: usize,
    solver: Solver,
    seed: u64,
    chunk: usize,
    progress: &dyn Progress,
) -> Result<CalibrationDraws> {
    let sites = posterior.config.sites;
    let mut rng = StdRng::seed_from_u64(sub_seed(seed, 7, 0));
    let (mut truths, mut observations) = (Vec::new(), Vec::new());
    // Redraw the rare simulation that is not finite, as training drops them.
    for _ in 0..10 * data_sets {
        if truths.len() == data_sets {
            break;
        }
        let d = crate::tasks::simulate_dataset(task, sites, &mut rng);
        if d.obs.iter().chain(&d.params).all(|v| v.is_finite()) {
            truths.push(d.params);
            observations.push(d.obs);
        }
    }
    if truths.len() < data_sets {
        return Err(Error::Invalid(format!(
            "calibration: only {} of {} simulated data sets were finite",
            truths.len(),
            data_sets
        )));
    }
    let sets = sample_posteriors(
        dev,
        posterior,
        task,
        &observations,
        draws,
        solver,
        seed,
        chunk,
        progress,
    )?;
    Ok(CalibrationDraws {
        truths,
        draws: sets,
    })
}
