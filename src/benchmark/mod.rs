//! `tfmpe benchmark`: the paper's protocol over tasks × methods × budgets × site counts, ten
//! observations each, scored by L-C2ST (and C2ST where an exact posterior exists).
//!
//! Each configuration (task, method, budget, S) trains once: the posterior network is amortised,
//! so the same network answers every observation, and L-C2ST's classifiers, trained on data sets
//! from the prior, are evaluated at each observation in turn. Observation k is simulated from a
//! prior draw with seed k (as `tfmpe run --obs-seed k`). A configuration's rows are appended to
//! `results.csv` when it finishes, so an interrupted benchmark resumes where it stopped;
//! `table.md` and `benchmark.svg` are written from the whole file at the end.

mod method;
mod results;
mod table;

use std::path::Path;
use std::time::Instant;

use rand::rngs::StdRng;
use rand::SeedableRng;

pub use method::{BenchMethod, SEQUENTIAL_ROUNDS};
pub use results::{read_results, Row};
pub use table::table_markdown;

use crate::error::{Error, Result};
use crate::metrics::{sbc, tarp, Calibration, Lc2stClassifiers, Lc2stConfig};
use crate::model::ode::Solver;
use crate::model::tfmpe::TfmpeConfig;
use crate::run_folder::{self, C2st};
use crate::sbi::train::{Preset, TrainConfig};
use crate::sbi::{self, calibration_draws, Method, Progress, RunConfig, Sampler, Stream};
use crate::tasks::{simulate_dataset, task_by_name, HierarchicalModel, Observed};
use crate::Device;

/// The tasks of the paper's hierarchical benchmark.
pub const PAPER_TASKS: [&str; 6] = [
    "hier-gaussian-linear",
    "hier-gaussian-linear-uniform",
    "hier-gaussian-mixture",
    "hier-two-moons",
    "hier-slcp",
    "hier-sir",
];

/// What a benchmark runs.
#[derive(Clone, Debug)]
pub struct BenchmarkConfig {
    pub tasks: Vec<String>,
    pub methods: Vec<BenchMethod>,
    /// Single-site simulator calls of each configuration.
    pub budgets: Vec<usize>,
    pub sites: Vec<usize>,
    /// Observations per configuration (observation k from prior seed k).
    pub observations: usize,
    /// Posterior samples per observation.
    pub samples: usize,
    /// L-C2ST: data sets from the prior with one posterior draw each.
    pub lc2st_data_sets: usize,
    pub lc2st: Lc2stConfig,
    /// SBC and TARP data sets per configuration (0: skip), 99 draws each.
    pub calibration: usize,
    pub solver: Solver,
    /// The training of both networks.
    pub train: TrainConfig,
    /// The sizes of both networks.
    pub architecture: TfmpeConfig,
    /// lf and joint: a pool of as many synthetic sets as the budget's simulations, in place of
    /// the run's default (five per training simulation).
    pub small_pool: bool,
    pub seed: u64,
}

impl Default for BenchmarkConfig {
    /// The paper's protocol: six tasks, lf, direct, pf, joint and sequential, budgets 1 000 /
    /// 5 000 / 10 000, S = 50,
    /// ten observations, 1 000 samples, L-C2ST from 1 000 data sets and 100 nulls.
    fn default() -> Self {
        let train = Preset::Fast.train();
        BenchmarkConfig {
            tasks: PAPER_TASKS.iter().map(|t| t.to_string()).collect(),
            methods: BenchMethod::ALL.to_vec(),
            budgets: vec![1000, 5000, 10000],
            sites: vec![50],
            observations: 10,
            samples: 1000,
            lc2st_data_sets: 1000,
            lc2st: Lc2stConfig::default(),
            calibration: 100,
            solver: Solver::Rk4 { steps: 25 },
            train,
            architecture: TfmpeConfig::default(),
            small_pool: false,
            seed: 0,
        }
    }
}

impl BenchmarkConfig {
    /// Everything shrunk so that a smoke run of a task takes seconds to a minute.
    pub fn quick() -> Self {
        BenchmarkConfig {
            budgets: vec![500],
            sites: vec![3],
            observations: 2,
            samples: 200,
            lc2st_data_sets: 100,
            lc2st: Lc2stConfig { null_trials: 20, ..Lc2stConfig::default() },
            // SBC and TARP from 10 data sets only show that they run: their 990 draws were
            // most of a quick configuration's time at 20.
            calibration: 10,
            train: TrainConfig { max_epochs: 10, patience: 10, lr: 1e-3, ..TrainConfig::default() },
            // A smoke run need not pay for the default pool.
            small_pool: true,
            ..BenchmarkConfig::default()
        }
    }

    /// Refuses an empty or unknown grid before any work.
    pub fn check(&self) -> Result<()> {
        for (what, empty) in [
            ("--tasks", self.tasks.is_empty()),
            ("--methods", self.methods.is_empty()),
            ("--budgets", self.budgets.is_empty()),
            ("--sites", self.sites.is_empty()),
        ] {
            if empty {
                return Err(Error::Invalid(format!("{what} lists nothing to run")));
            }
        }
        for t in &self.tasks {
            task_by_name(t)?;
        }
        if self.observations == 0 || self.samples == 0 {
            return Err(Error::Invalid("--observations and --samples must be at least 1".into()));
        }
        if self.lc2st_data_sets < 20 {
            return Err(Error::Invalid("--lc2st-data-sets must be at least 20".into()));
        }
        self.architecture.check()
    }

    /// Every configuration, in the order they run (task, then method, then S, then budget).
    fn grid(&self) -> Vec<(String, BenchMethod, usize, usize)> {
        let mut grid = Vec::new();
        for task in &self.tasks {
            for &method in &self.methods {
                for &sites in &self.sites {
                    for &budget in &self.budgets {
                        grid.push((task.clone(), method, budget, sites));
                    }
                }
            }
        }
        grid
    }
}

/// Runs every configuration not yet in `out/results.csv`, then writes `table.md` and
/// `benchmark.svg` from all rows. Returns all rows.
pub fn run_benchmark(
    device: &Device, out: &Path, cfg: &BenchmarkConfig, progress: &dyn Progress,
) -> Result<Vec<Row>> {
    cfg.check()?;
    crate::io::ensure_dir(out)?;
    let path = out.join("results.csv");
    let mut rows = read_results(&path)?;
    for (task_name, method, budget, sites) in cfg.grid() {
        let done = rows
            .iter()
            .filter(|r| {
                r.task == task_name && r.method == method && r.budget == budget && r.sites == sites
            })
            .count();
        if done >= cfg.observations {
            continue;
        }
        progress.phase(&format!("{task_name} {} budget {budget} S {sites}", method.name()));
        let task = task_by_name(&task_name)?;
        let new = match method {
            BenchMethod::Amortised(m) => {
                configuration(device, &*task, m, budget, sites, cfg, progress)?
            }
            BenchMethod::Sequential => sequential(device, &*task, budget, sites, cfg, progress)?,
        };
        results::append(&path, &new)?;
        rows.extend(new);
    }
    crate::io::atomic_write(&out.join("table.md"), table_markdown(&rows, cfg).as_bytes())?;
    crate::io::atomic_write(&out.join("benchmark.svg"), table::budget_plot(&rows).as_bytes())?;
    Ok(rows)
}

/// One configuration: train, then score each observation. A configuration the pipeline
/// refuses (too few data sets for a batch, say) gives rows with the reason as their note.
fn configuration(
    device: &Device, task: &dyn HierarchicalModel, method: Method, budget: usize, sites: usize,
    cfg: &BenchmarkConfig, progress: &dyn Progress,
) -> Result<Vec<Row>> {
    let run = run_config(method, budget, sites, cfg);
    let blank =
        |k: usize| blank_row(device, task, BenchMethod::Amortised(method), budget, sites, k);
    let mut trained = match run.check(task).and_then(|()| sbi::run(device, task, &run, progress)) {
        Ok(t) => t,
        Err(Error::Invalid(why)) => {
            let note = format!("not run: {why}");
            return Ok((0..cfg.observations)
                .map(|k| Row { note: note.clone(), ..blank(k) })
                .collect());
        }
        Err(e) => return Err(e),
    };
    let timing = phase_timings(&trained.report);
    let calls = trained.report.simulator_calls;
    let sampler = Sampler::new(device, cfg.solver);
    let net = &mut trained.posterior;

    // Amortised figures, the same for every observation of the configuration.
    let t0 = Instant::now();
    let (sbc_min_ks_p, tarp_ks_p, tarp_atc) = if cfg.calibration > 0 {
        let cal = calibration_draws(&sampler, net, task, cfg.calibration, 99, cfg.seed, progress)?;
        let (s, t) = (sbc(&cal.truths, &cal.draws)?, tarp(&cal.truths, &cal.draws)?);
        (s.ks_p.iter().copied().fold(f64::INFINITY, f64::min), t.ks_p, t.atc())
    } else {
        (f64::NAN, f64::NAN, f64::NAN)
    };
    let cal = calibration_draws(&sampler, net, task, cfg.lc2st_data_sets, 1, cfg.seed, progress)?;
    let xs: Vec<Vec<f64>> = cal.observations.iter().map(Observed::features).collect();
    let posterior: Vec<Vec<f64>> = cal.draws.into_iter().map(|mut d| d.remove(0)).collect();
    let calibration = Calibration { prior: &cal.truths, xs: &xs, posterior: &posterior };
    let mut classifiers = Lc2stClassifiers::train(device, &calibration, &cfg.lc2st)?;
    let amortised_s = t0.elapsed().as_secs_f64();

    per_observation(task, sites, cfg, blank, |k, obs| {
        let t0 = Instant::now();
        let seed = Stream::PosteriorSamples.seed(cfg.seed, 0);
        let samples = sampler.posterior(net, task, obs, cfg.samples, seed, progress)?;
        let sampling_s = t0.elapsed().as_secs_f64();
        let t0 = Instant::now();
        let l = classifiers.at(&samples, &obs.features())?;
        let c2st = exact_c2st(task, obs, &samples)?;
        Ok(Row {
            lc2st_statistic: l.statistic,
            lc2st_p_value: l.p_value,
            lc2st_reject: l.reject,
            c2st,
            sbc_min_ks_p,
            tarp_ks_p,
            tarp_atc,
            simulator_calls: calls,
            simulate_s: timing[0],
            surrogate_training_s: timing[1],
            synthetic_sets_s: timing[2],
            posterior_training_s: timing[3],
            sampling_s,
            evaluation_s: t0.elapsed().as_secs_f64() + amortised_s / cfg.observations as f64,
            ..blank(k)
        })
    })
}

/// `run`'s settings for one configuration of `method`.
fn run_config(method: Method, budget: usize, sites: usize, cfg: &BenchmarkConfig) -> RunConfig {
    let mut run = RunConfig::new(sites, budget);
    run.method = method;
    run.seed = cfg.seed;
    run.architecture = cfg.architecture.clone();
    if cfg.small_pool && matches!(method, Method::Lf | Method::Joint) {
        run.synthetic_sets = Some(budget);
    }
    for t in [&mut run.train, &mut run.surrogate_train] {
        *t = cfg.train.clone();
    }
    run
}

/// A configuration's row for observation `k`, before any figure.
fn blank_row(
    device: &Device, task: &dyn HierarchicalModel, method: BenchMethod, budget: usize,
    sites: usize, k: usize,
) -> Row {
    Row {
        task: task.name().to_string(),
        method,
        budget,
        sites,
        observation: k,
        backend: device.name().to_string(),
        ..Row::default()
    }
}

/// Seconds of the phases a row reports: simulation, surrogate training, synthetic sets and
/// posterior training (0 for a phase the method does not have).
fn phase_timings(report: &sbi::PipelineReport) -> [f64; 4] {
    let phase = |name: &str| report.phases.iter().find(|p| p.0 == name).map_or(0.0, |p| p.1);
    ["simulate", "surrogate_training", "synthetic_sets", "posterior_training"].map(phase)
}

/// A configuration's rows: `score` of each observation of the protocol (observation k
/// simulated from a prior draw with seed k), or a row that says it simulated non-finite values.
fn per_observation(
    task: &dyn HierarchicalModel, sites: usize, cfg: &BenchmarkConfig,
    blank: impl Fn(usize) -> Row, mut score: impl FnMut(usize, &Observed) -> Result<Row>,
) -> Result<Vec<Row>> {
    (0..cfg.observations)
        .map(|k| {
            let data = simulate_dataset(task, sites, &mut StdRng::seed_from_u64(k as u64))?;
            if !data.is_finite() {
                let note = format!("observation {k} simulated non-finite values");
                return Ok(Row { note, ..blank(k) });
            }
            score(k, &data.observed())
        })
        .collect()
}

/// C2ST of `samples` against the exact posterior at `obs`; NaN where the task has none.
fn exact_c2st(task: &dyn HierarchicalModel, obs: &Observed, samples: &[Vec<f64>]) -> Result<f64> {
    Ok(match run_folder::exact_c2st(task, obs, samples, run_folder::REFERENCE_SAMPLES)? {
        C2st::Measured { c2st, .. } => c2st,
        C2st::Unavailable { .. } => f64::NAN,
    })
}

/// A `sequential` configuration: for each observation, LF in [`SEQUENTIAL_ROUNDS`] rounds
/// whose later round simulates at a proposal drawn at that observation, then its C2ST where
/// the task's posterior is exact. A network answers only its own observation, so the
/// amortised figures (L-C2ST, SBC, TARP) stay empty.
fn sequential(
    device: &Device, task: &dyn HierarchicalModel, budget: usize, sites: usize,
    cfg: &BenchmarkConfig, progress: &dyn Progress,
) -> Result<Vec<Row>> {
    let blank = |k: usize| blank_row(device, task, BenchMethod::Sequential, budget, sites, k);
    let sampler = Sampler::new(device, cfg.solver);
    per_observation(task, sites, cfg, blank, |k, obs| {
        let mut run = run_config(Method::Lf, budget, sites, cfg);
        run.rounds = SEQUENTIAL_ROUNDS;
        run.observation = Some(obs.clone());
        let mut trained =
            match run.check(task).and_then(|()| sbi::run(device, task, &run, progress)) {
                Ok(t) => t,
                Err(Error::Invalid(why)) => {
                    return Ok(Row { note: format!("not run: {why}"), ..blank(k) })
                }
                Err(e) => return Err(e),
            };
        let timing = phase_timings(&trained.report);
        let t0 = Instant::now();
        let seed = Stream::PosteriorSamples.seed(cfg.seed, 0);
        let net = &mut trained.posterior;
        let samples = sampler.posterior(net, task, obs, cfg.samples, seed, progress)?;
        let sampling_s = t0.elapsed().as_secs_f64();
        let t0 = Instant::now();
        let c2st = exact_c2st(task, obs, &samples)?;
        Ok(Row {
            c2st,
            simulator_calls: trained.report.simulator_calls,
            simulate_s: timing[0],
            surrogate_training_s: timing[1],
            synthetic_sets_s: timing[2],
            posterior_training_s: timing[3],
            sampling_s,
            evaluation_s: t0.elapsed().as_secs_f64(),
            ..blank(k)
        })
    })
}
