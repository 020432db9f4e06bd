//! A whole run into a folder: train, save the networks, sample the observation's posterior,
//! write the CSVs, plots and report, and evaluate.

use std::collections::BTreeMap;
use std::time::Instant;

use rand::rngs::StdRng;
use rand::SeedableRng;

use super::{
    exact_reference, EvalConfig, Existing, Losses, Metrics, ObservationSource, Report, RunFolder,
    Training, SETTINGS,
};
use crate::error::{Error, Result};
use crate::model::ode::Solver;
use crate::sbi::{self, Checkpoints, InputSource, Progress, RunConfig, Sampler, Stream};
use crate::tasks::{simulate_dataset, HierarchicalModel, Observed};
use crate::Device;

/// The observation whose posterior a run samples.
#[derive(Clone, Debug)]
pub enum Observation {
    /// A given data set of `sites` sites.
    Given(Observed),
    /// Simulated from the prior with this seed; its parameters become `true_params.csv`.
    Prior { obs_seed: u64 },
}

/// What [`RunFolder::run`] does.
#[derive(Clone, Debug)]
pub struct RunSpec {
    pub config: RunConfig,
    pub observation: Observation,
    /// Posterior samples to draw into `samples.csv`.
    pub samples: usize,
    /// The solver of those samples.
    pub solver: Solver,
    /// The evaluation that ends the run (`None`: none).
    pub evaluation: Option<EvalConfig>,
    /// LF, a task with functional inputs: simulated sites observe at the observation's inputs
    /// instead of fresh draws from the task's input distribution.
    pub observed_inputs: bool,
    /// What to do with a folder that already holds files (see [`RunFolder::prepare`]).
    pub existing: Existing,
    /// The model file `task` was read from, kept in the folder (see
    /// [`RunFolder::write_model_file`]); `None` for a built-in task.
    pub model_file: Option<std::path::PathBuf>,
}

impl RunFolder {
    /// Runs `spec` for `task` on `device` and writes every file of the folder; returns the
    /// report it wrote. `backend_reason` says why the device was chosen (for the report).
    /// The report is written once before the evaluation, so a failed evaluation leaves it.
    pub fn run(
        &self, device: &Device, backend_reason: &str, task: &dyn HierarchicalModel, spec: &RunSpec,
        progress: &dyn Progress,
    ) -> Result<Report> {
        let start = Instant::now();
        let cfg = &spec.config;
        sbi::network::check_samples(spec.samples)?;
        let (obs, truth, source) = match &spec.observation {
            Observation::Given(obs) => {
                crate::tasks::check_observed(task, obs)?;
                if obs.sites != cfg.sites {
                    return Err(Error::Invalid(format!(
                        "the observation has {} sites but the run is for {}",
                        obs.sites, cfg.sites
                    )));
                }
                (obs.clone(), None, ObservationSource::Given)
            }
            Observation::Prior { obs_seed } => {
                let mut rng = StdRng::seed_from_u64(*obs_seed);
                let d = simulate_dataset(task, cfg.sites, &mut rng)?;
                let source = ObservationSource::Prior { obs_seed: *obs_seed };
                (d.observed(), Some(d.params), source)
            }
        };
        self.prepare(spec.existing)?;
        if let Some(file) = &spec.model_file {
            self.write_model_file(file)?;
        }
        self.check_settings(spec, &obs)?;
        let cfg = &RunConfig {
            checkpoints: Checkpoints {
                dir: Some(self.path().to_path_buf()),
                resume: spec.existing == Existing::Resume,
            },
            observation: Some(obs.clone()),
            ..cfg.clone()
        };

        let mut trained = if spec.observed_inputs {
            let inputs = obs.inputs.as_ref().ok_or_else(|| {
                Error::Invalid(format!(
                    "--observed-inputs: task `{}` has no functional inputs",
                    task.name()
                ))
            })?;
            let per_site = inputs.len() / obs.sites.max(1);
            let sites = inputs.chunks(per_site.max(1)).map(<[f64]>::to_vec).collect();
            let cfg = RunConfig { inputs: InputSource::Observed(sites), ..cfg.clone() };
            sbi::run(device, task, &cfg, progress)?
        } else {
            sbi::run(device, task, cfg, progress)?
        };
        self.write_networks(&trained)?;

        progress.phase("sample");
        let t0 = Instant::now();
        let samples = Sampler::new(device, spec.solver).posterior(
            &mut trained.posterior,
            task,
            &obs,
            spec.samples,
            Stream::PosteriorSamples.seed(cfg.seed, 0),
            progress,
        )?;
        let sampling_s = t0.elapsed().as_secs_f64();
        let names = task.parameter_names(cfg.sites);
        let reference = exact_reference(task, &obs, super::REFERENCE_SAMPLES);
        self.write_posterior_plot(
            task,
            cfg.sites,
            &names,
            &samples,
            reference.as_deref(),
            truth.as_deref(),
        )?;
        self.write_loss_plot(&trained.report)?;
        self.write_samples(task, cfg.sites, samples)?;
        self.write_observation(task, &obs)?;
        if let Some(t) = truth {
            self.write_true_params(task, cfg.sites, t)?;
        }

        let r = &trained.report;
        let mut timings: BTreeMap<String, f64> = r.phases.iter().cloned().collect();
        timings.insert("sampling".into(), sampling_s);
        let mut report = Report {
            backend: device.name().to_string(),
            backend_reason: backend_reason.to_string(),
            budget: cfg.budget,
            device: device.backend().device_name(),
            dropped_simulations: r.dropped_simulations,
            fresh_sets: cfg.fresh_sets,
            synthetic_sets: r.synthetic_sets,
            surrogate_scaling: (cfg.method == sbi::Method::Lf).then(|| {
                match r.surrogate.as_ref().and_then(|s| s.scaling.as_ref()) {
                    Some(_) => sbi::Scaling::Conditional,
                    None => sbi::Scaling::Marginal,
                }
            }),
            posterior_scaling: matches!(cfg.method, sbi::Method::Lf | sbi::Method::Direct)
                .then(|| cfg.local_scaling()),
            losses: Losses {
                posterior: r.posterior.as_ref().map(Training::from),
                surrogate: r.surrogate.as_ref().map(Training::from),
                local: r.local.as_ref().map(Training::from),
            },
            max_sites: cfg.max_sites,
            method: cfg.method,
            metrics: Metrics::default(),
            observation: source,
            observed_inputs: spec.observed_inputs,
            ragged: cfg.ragged,
            rounds: r.rounds.clone(),
            samples: spec.samples,
            seed: cfg.seed,
            simulator_calls: r.simulator_calls,
            sites: cfg.sites,
            solver: spec.solver,
            task: task.name().to_string(),
            tfmpe_version: env!("CARGO_PKG_VERSION").to_string(),
            timings_s: timings,
            training_sets: r.training_sets,
            validation_sets: r.validation_sets,
        };
        self.write_report(&report)?;
        if let Some(eval) = &spec.evaluation {
            progress.phase("evaluate");
            report.metrics = self.evaluate(device, eval, progress)?;
        }
        report.timings_s.insert("total".into(), start.elapsed().as_secs_f64());
        self.write_report(&report)?;
        Ok(report)
    }
}

impl RunFolder {
    /// Writes `settings.json` (what the networks are trained from: the pipeline's settings and
    /// the observation, which `--observed-inputs` trains on), or, when resuming, checks that
    /// they are the ones the folder's run was started with.
    pub(super) fn check_settings(&self, spec: &RunSpec, obs: &Observed) -> Result<()> {
        let settings = serde_json::json!({
            "config": spec.config,
            "observed_inputs": spec.observed_inputs,
            "observation": obs.values,
            "inputs": obs.inputs,
        });
        let path = self.file(SETTINGS);
        if spec.existing == Existing::Resume {
            let text = std::fs::read_to_string(&path)
                .map_err(|source| Error::Io { path: path.display().to_string(), source })?;
            let before: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))?;
            if before != settings {
                let differ = |a: &serde_json::Value, b: &serde_json::Value| -> Vec<String> {
                    let (a, b) = (flat(a), flat(b));
                    a.iter().filter(|(k, v)| b.get(*k) != Some(v)).map(|(k, _)| k.clone()).collect()
                };
                let mut keys = differ(&before, &settings);
                keys.extend(differ(&settings, &before));
                keys.sort();
                keys.dedup();
                return Err(Error::Invalid(format!(
                    "--resume: the run in {} was started with other settings ({}); resume with \
                     the same ones, or start anew with --force",
                    self.path().display(),
                    keys.join(", ")
                )));
            }
            return Ok(());
        }
        let text = serde_json::to_string_pretty(&settings)
            .map_err(|e| Error::Invalid(format!("{SETTINGS}: {e}")))?;
        crate::io::atomic_write(&path, text.as_bytes())
    }
}

/// The leaves of a JSON value by their dotted path.
fn flat(v: &serde_json::Value) -> BTreeMap<String, serde_json::Value> {
    let mut out = BTreeMap::new();
    fn walk(v: &serde_json::Value, at: String, out: &mut BTreeMap<String, serde_json::Value>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, x) in m {
                    walk(x, if at.is_empty() { k.clone() } else { format!("{at}.{k}") }, out);
                }
            }
            // An observation or a loss list differs as a whole.
            other => {
                out.insert(at, other.clone());
            }
        }
    }
    walk(v, String::new(), &mut out);
    out
}
