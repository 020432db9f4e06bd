//! The output folder of a run, owned by the library so that a program embedding the crate gets
//! the same files and metrics as `tfmpe run`. [`RunFolder::run`] writes:
//!
//! - `posterior/` and, for LF, `surrogate/`: the networks' checkpoints;
//! - `samples.csv`: posterior samples for the observation, one parameter vector per row;
//! - `observation.csv`, and `true_params.csv` when the observation was simulated;
//! - `posterior.svg` (marginals) and `losses.svg` (loss curves);
//! - `report.json`: a [`Report`].
//!
//! [`RunFolder::evaluate`] scores a folder (C2ST against the exact posterior, SBC and TARP,
//! writing `calibration.svg` for the latter two); [`RunFolder::update_metrics`] puts the result
//! into `report.json` (or `metrics.json` in a folder without one).

mod evaluate;
mod observations;
mod plots;
mod report;
mod run;

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::io::Table;
use crate::model::checkpoint;
use crate::sbi::{Posterior, Trained};
use crate::tasks::{check_observed, HierarchicalModel, Observed};
use crate::Device;
pub use evaluate::{
    calibration_metrics, exact_c2st, exact_reference, lc2st_summary, CalibrationMetrics,
    CoverageEval, EvalConfig, Lc2stEval, MAX_REFERENCE_SAMPLES, MIN_CALIBRATION, REFERENCE_SAMPLES,
};
pub use observations::{
    observations_table, parse_observations, read_observations, write_observations,
};
pub use report::{
    C2st, CoverageSummary, Lc2stSummary, Losses, Metrics, ObservationSource, Report, SbcSummary,
    Training,
};
pub use run::{Observation, RunSpec};

use crate::tasks::custom::model_file::MODEL_FILE;

const SAMPLES: &str = "samples.csv";
const OBSERVATION: &str = "observation.csv";
const TRUE_PARAMS: &str = "true_params.csv";
const REPORT: &str = "report.json";
const POSTERIOR_DIR: &str = "posterior";
const SURROGATE_DIR: &str = "surrogate";
const SETTINGS: &str = "settings.json";
const METRICS: &str = "metrics.json";

/// Every file and folder a run writes into its folder (the plots' names live in `plots.rs`).
const RUN_FILES: [&str; 12] = [
    SETTINGS,
    MODEL_FILE,
    METRICS,
    SAMPLES,
    OBSERVATION,
    TRUE_PARAMS,
    REPORT,
    POSTERIOR_DIR,
    SURROGATE_DIR,
    plots::POSTERIOR_PLOT,
    plots::LOSS_PLOT,
    plots::CALIBRATION_PLOT,
];

/// What [`RunFolder::prepare`] does with a folder that already holds files.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Existing {
    /// Refuse it.
    #[default]
    Refuse,
    /// Remove an earlier run's files first.
    Replace,
    /// Go on with the run there, keeping its finished phases.
    Resume,
}

/// A run's output folder.
#[derive(Clone, Debug)]
pub struct RunFolder {
    dir: PathBuf,
}

impl RunFolder {
    /// The folder at `dir` (nothing is read or created yet).
    pub fn new(dir: impl Into<PathBuf>) -> RunFolder {
        RunFolder { dir: dir.into() }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Makes the folder ready for a run, creating it if missing. A folder that already holds
    /// anything is refused, so that no earlier work is overwritten and no stale file of an
    /// earlier run sits beside the new ones; with [`Existing::Replace`] the files of an earlier
    /// run are removed first and any other file is kept; with [`Existing::Resume`] the folder
    /// must hold a run (its `settings.json`), whose finished phases the run keeps.
    pub fn prepare(&self, existing: Existing) -> Result<()> {
        let dir = &self.dir;
        if existing == Existing::Resume {
            if !self.file(SETTINGS).is_file() {
                return Err(Error::Invalid(format!(
                    "--resume: {} holds no run to resume (no {SETTINGS}); drop --resume",
                    dir.display()
                )));
            }
            return Ok(());
        }
        let replace = existing == Existing::Replace;
        if dir.parent().is_none() {
            return Err(Error::Invalid(format!(
                "--out {} is the root of the file system; give a folder for the run",
                dir.display()
            )));
        }
        let io = |source| Error::Io { path: dir.display().to_string(), source };
        match std::fs::metadata(dir) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return crate::io::ensure_dir(dir)
            }
            Err(e) => return Err(io(e)),
            Ok(m) if !m.is_dir() => {
                return Err(Error::Invalid(format!(
                    "--out {} exists and is not a folder",
                    dir.display()
                )))
            }
            Ok(_) => {}
        }
        let mut entries: Vec<String> = std::fs::read_dir(dir)
            .map_err(io)?
            .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect::<std::io::Result<_>>()
            .map_err(io)?;
        if entries.is_empty() {
            return Ok(());
        }
        if !replace {
            entries.sort();
            let shown: Vec<&str> = entries.iter().take(4).map(String::as_str).collect();
            let more = if entries.len() > 4 { ", …" } else { "" };
            return Err(Error::Invalid(format!(
                "--out {} already holds files ({}{more}); pass --force to replace an earlier \
                 run's files there (other files are kept), or choose a new folder",
                dir.display(),
                shown.join(", ")
            )));
        }
        for name in RUN_FILES.iter().filter(|n| entries.iter().any(|e| e == *n)) {
            let path = self.file(name);
            let removed = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            removed.map_err(|source| Error::Io { path: path.display().to_string(), source })?;
        }
        Ok(())
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The posterior checkpoint's folder.
    pub fn posterior_dir(&self) -> PathBuf {
        self.file(POSTERIOR_DIR)
    }

    /// Saves the trained networks (the surrogate only where the method has one).
    pub fn write_networks(&self, trained: &Trained) -> Result<()> {
        trained.posterior.save(&self.posterior_dir())?;
        if let Some(s) = &trained.surrogate {
            s.save(&self.file(SURROGATE_DIR))?;
        }
        Ok(())
    }

    /// The saved posterior (with pf's local network).
    pub fn load_posterior(&self, dev: &Device) -> Result<Posterior> {
        load_posterior(dev, &self.posterior_dir())
    }

    /// Keeps a copy of a model file (`model.toml`, with the folder of its simulator written in)
    /// so that `sample` and `eval` find the run's model without being told.
    pub fn write_model_file(&self, source: &Path) -> Result<()> {
        let text = crate::tasks::custom::model_file::portable_copy(source)?;
        crate::io::atomic_write(&self.file(MODEL_FILE), text.as_bytes())
    }

    /// The run's model: the built-in task `name`, or the kept model file.
    pub fn task(&self, name: &str) -> Result<Box<dyn HierarchicalModel>> {
        crate::tasks::custom::model_file::task_for_run(name, self.path())
    }

    /// Writes `samples.csv`: one full parameter vector (natural space) per row.
    pub fn write_samples(
        &self, task: &dyn HierarchicalModel, sites: usize, rows: Vec<Vec<f64>>,
    ) -> Result<()> {
        write_parameter_rows(&self.file(SAMPLES), task, sites, rows)
    }

    /// Reads `samples.csv`, whose columns must be the parameters of `task` with `sites` sites.
    pub fn read_samples(
        &self, task: &dyn HierarchicalModel, sites: usize,
    ) -> Result<Vec<Vec<f64>>> {
        let path = self.file(SAMPLES);
        let samples = Table::read(&path)?;
        if samples.columns != task.parameter_names(sites) {
            return Err(Error::Invalid(format!(
                "{}: the columns are not the parameters of `{}` with {sites} sites",
                path.display(),
                task.name()
            )));
        }
        Ok(samples.rows)
    }

    /// Writes `observation.csv` (the long format for a task with functional inputs).
    pub fn write_observation(&self, task: &dyn HierarchicalModel, obs: &Observed) -> Result<()> {
        write_observations(&self.file(OBSERVATION), task, std::slice::from_ref(obs))
    }

    /// Reads `observation.csv`.
    pub fn read_observation(&self, task: &dyn HierarchicalModel) -> Result<Observed> {
        read_observation(&self.file(OBSERVATION), task, None)
    }

    /// Writes `true_params.csv`: the parameters the observation was simulated with.
    pub fn write_true_params(
        &self, task: &dyn HierarchicalModel, sites: usize, truth: Vec<f64>,
    ) -> Result<()> {
        write_parameter_rows(&self.file(TRUE_PARAMS), task, sites, vec![truth])
    }

    pub fn write_report(&self, report: &Report) -> Result<()> {
        let text = report.to_json_pretty()?;
        crate::io::atomic_write(&self.file(REPORT), text.as_bytes())
    }

    pub fn read_report(&self) -> Result<Report> {
        let path = self.file(REPORT);
        let text = std::fs::read_to_string(&path)
            .map_err(|source| Error::Io { path: path.display().to_string(), source })?;
        serde_json::from_str(&text)
            .map_err(|e| Error::Invalid(format!("{}: not a tfmpe report: {e}", path.display())))
    }

    /// Puts `metrics` into `report.json`, or into `metrics.json` when the folder has no report;
    /// returns the file written.
    pub fn update_metrics(&self, metrics: &Metrics) -> Result<PathBuf> {
        if !self.file(REPORT).is_file() {
            // A folder without its report (deleted, or checkpoints copied alone) keeps the
            // evaluation in a file of its own rather than losing it.
            let path = self.file(METRICS);
            let text = serde_json::to_string_pretty(metrics)
                .map_err(|e| Error::Invalid(format!("{METRICS}: {e}")))?;
            crate::io::atomic_write(&path, text.as_bytes())?;
            return Ok(path);
        }
        let mut report = self.read_report()?;
        report.metrics = metrics.clone();
        self.write_report(&report)?;
        Ok(self.file(REPORT))
    }
}

/// Writes a CSV of full parameter vectors (natural space), one per row, headed by the
/// parameter names of `task` with `sites` sites: the format of `samples.csv`.
pub fn write_parameter_rows(
    path: &Path, task: &dyn HierarchicalModel, sites: usize, rows: Vec<Vec<f64>>,
) -> Result<()> {
    Table { columns: task.parameter_names(sites), rows }.write(path)
}

/// Reads full parameter vectors (natural space) from a CSV whose header names the parameters
/// of `task` with `sites` sites (in any order; other columns, such as `dataset` or
/// `log_prob`, are ignored).
pub fn read_parameter_rows(
    path: &Path, task: &dyn HierarchicalModel, sites: usize,
) -> Result<Vec<Vec<f64>>> {
    let table = Table::read(path)?;
    let names = task.parameter_names(sites);
    let index = names
        .iter()
        .map(|name| {
            table.columns.iter().position(|c| c == name).ok_or_else(|| {
                Error::Invalid(format!(
                    "{}: no column `{name}`; the parameters of task `{}` with {sites} sites are \
                     {}",
                    path.display(),
                    task.name(),
                    names.join(",")
                ))
            })
        })
        .collect::<Result<Vec<usize>>>()?;
    if table.rows.is_empty() {
        return Err(Error::Invalid(format!(
            "{}: no rows; give one parameter vector per row",
            path.display()
        )));
    }
    Ok(table.rows.iter().map(|row| index.iter().map(|&i| row[i]).collect()).collect())
}

/// Loads a posterior (with pf's local network beside it) from its checkpoint folder or from a
/// run folder holding one.
pub fn load_posterior(dev: &Device, path: &Path) -> Result<Posterior> {
    let dir = if path.join(POSTERIOR_DIR).is_dir() {
        path.join(POSTERIOR_DIR)
    } else {
        path.to_path_buf()
    };
    Posterior::load(dev, &dir)
}

/// The configuration saved with the posterior network of the run folder at `dir`, without its
/// weights.
fn posterior_config(dir: &Path) -> Result<crate::sbi::network::NetworkConfig> {
    checkpoint::load_config(&dir.join(POSTERIOR_DIR))
}

/// Reads an observation file that must hold exactly one data set (of `sites` sites, when
/// given), in the wide or the long format.
pub fn read_observation(
    path: &Path, task: &dyn HierarchicalModel, sites: Option<usize>,
) -> Result<Observed> {
    let shown = path.display();
    let mut all = read_observations(path, task)?;
    if all.len() != 1 {
        return Err(Error::Invalid(format!(
            "{shown}: an observation for `run` holds exactly one data set, found {}; sample many data sets with `tfmpe sample`",
            all.len()
        )));
    }
    let obs = all.pop().expect("one data set");
    if let Some(s) = sites.filter(|&s| s != obs.sites) {
        return Err(Error::Invalid(format!(
            "{shown}: the file has {} sites of observations but --sites is {s}",
            obs.sites
        )));
    }
    check_observed(task, &obs).map_err(|e| Error::Invalid(format!("{shown}: {e}")))?;
    Ok(obs)
}

/// Writes posterior draws of one or many data sets (every one of `sites` sites): the parameter
/// columns, led by a `dataset` column when there are several data sets and followed by a
/// `log_prob` column when `log_prob` holds each draw's log density.
pub fn write_draws(
    path: &Path, task: &dyn HierarchicalModel, sites: usize, sets: Vec<Vec<Vec<f64>>>,
    log_prob: Option<Vec<Vec<f64>>>,
) -> Result<()> {
    let many = sets.len() > 1;
    let mut columns = if many { vec!["dataset".to_string()] } else { Vec::new() };
    columns.extend(task.parameter_names(sites));
    if log_prob.is_some() {
        columns.push("log_prob".into());
    }
    let mut log_prob = log_prob.map(Vec::into_iter);
    let mut rows = Vec::new();
    for (k, draws) in sets.into_iter().enumerate() {
        let mut lp = log_prob.as_mut().and_then(Iterator::next).map(Vec::into_iter);
        for draw in draws {
            let mut row = Vec::with_capacity(draw.len() + 2);
            if many {
                row.push(k as f64);
            }
            row.extend(draw);
            if let Some(lp) = lp.as_mut() {
                row.push(lp.next().ok_or_else(|| {
                    Error::Shape(format!("fewer log densities than draws in data set {k}"))
                })?);
            }
            rows.push(row);
        }
    }
    Table { columns, rows }.write(path)
}

#[cfg(test)]
mod tests;
