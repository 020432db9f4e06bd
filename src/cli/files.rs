//! The files of `tfmpe run --out DIR` (DESIGN §10).

use std::path::Path;

use tfmpe::io::Table;
use tfmpe::tasks::HierarchicalModel;
use tfmpe::{Error, Result};

pub const SAMPLES: &str = "samples.csv";
pub const OBSERVATION: &str = "observation.csv";
pub const TRUE_PARAMS: &str = "true_params.csv";
pub const REPORT: &str = "report.json";
pub const POSTERIOR_PLOT: &str = "posterior.svg";
pub const LOSS_PLOT: &str = "losses.svg";
pub const CALIBRATION_PLOT: &str = "calibration.svg";
pub const POSTERIOR_DIR: &str = "posterior";
pub const SURROGATE_DIR: &str = "surrogate";

/// Reads a one-row observation CSV whose columns are the task's observation names for some
/// number of sites; returns the values and the site count.
pub fn read_observation(
    path: &Path,
    task: &dyn HierarchicalModel,
    sites: Option<usize>,
) -> Result<(Vec<f64>, usize)> {
    let table = Table::read(path)?;
    let shown = path.display();
    if table.rows.len() != 1 {
        return Err(Error::Invalid(format!(
            "{shown}: an observation file holds exactly one row of values, found {}",
            table.rows.len()
        )));
    }
    let per_site = task.obs_dim();
    let n = table.columns.len();
    if n % per_site != 0 || n == 0 {
        return Err(Error::Invalid(format!(
            "{shown}: {n} columns do not make whole sites of {per_site} observations for task `{}`",
            task.name()
        )));
    }
    let found = n / per_site;
    if let Some(s) = sites.filter(|&s| s != found) {
        return Err(Error::Invalid(format!(
            "{shown}: the file has {found} sites of observations but {s} were asked for (--sites)"
        )));
    }
    let expected = task.observation_names(found);
    if table.columns != expected {
        let first = table.columns.iter().zip(&expected).find(|(a, b)| a != b);
        let (got, want) = first
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .unwrap_or(("?", "?"));
        return Err(Error::Invalid(format!(
            "{shown}: column `{got}` should be `{want}`; the header must be {}",
            expected.join(",")
        )));
    }
    let obs = table.rows.into_iter().next().unwrap_or_default();
    tfmpe::tasks::check_observation(task, &obs, found)
        .map_err(|e| Error::Invalid(format!("{shown}: {e}")))?;
    Ok((obs, found))
}

pub fn write_rows(path: &Path, columns: Vec<String>, rows: Vec<Vec<f64>>) -> Result<()> {
    Table { columns, rows }.write(path)
}

pub fn write_json(path: &Path, value: &serde_json::Value) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|e| Error::Invalid(e.to_string()))?;
    tfmpe::io::atomic_write(path, text.as_bytes())
}
