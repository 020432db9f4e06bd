//! The model file: a user model for the command line, in TOML, with an external program as its
//! simulator (format 1 of [`super::command`]). An example, with every key:
//!
//! ```toml
//! format = 1
//! name = "gaussian-linear"
//!
//! [[globals]]
//! name = "sigma"
//! prior = { family = "HalfNormal", scale = 1.0 }
//!
//! [[locals]]
//! name = "mu"
//! size = 1                                          # scalars per site (default 1)
//! prior = { family = "Normal", loc = 0.0, scale = 1.0 }  # loc = "m" would use global m
//!
//! [[observations]]
//! name = "y"
//! size = 1
//! positive = false     # true: the networks see ln y
//!
//! # [inputs]           # optional fixed functional inputs, obs size × names values per site
//! # names = ["t"]
//! # values = [0.5]
//!
//! [simulator]
//! command = ["python3", "simulate.py"]  # runs in `directory` (default: this file's folder)
//! batch = 10000        # most sites per call
//! parallel = 2         # calls at once
//! timeout = 600        # seconds per call
//! ```
//!
//! Prior families and their keys: `Normal`, `LogNormal` (loc, scale); `HalfNormal` (scale);
//! `Uniform` (lo, hi); `TruncatedNormal` (loc, scale, lo, hi, bounds optional); `Exponential`
//! (rate); `Gamma` (shape, rate); `Beta` (alpha, beta).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::command::{CommandSimulator, FORMAT_VERSION};
use super::{CustomModel, CustomVariable, Param, Prior};
use crate::error::{Error, Result};
use crate::tasks::{push_names, Bijection, HierarchicalModel, Variable};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelFile {
    format: u32,
    name: String,
    /// The folder the simulator runs in; written into the copy kept in a run folder.
    directory: Option<PathBuf>,
    globals: Vec<ParameterSpec>,
    locals: Vec<ParameterSpec>,
    observations: Vec<ObservationSpec>,
    inputs: Option<InputSpec>,
    simulator: SimulatorSpec,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ParameterSpec {
    name: String,
    #[serde(default = "one")]
    size: usize,
    prior: PriorSpec,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PriorSpec {
    family: String,
    loc: Option<ParamSpec>,
    scale: Option<ParamSpec>,
    rate: Option<ParamSpec>,
    shape: Option<ParamSpec>,
    alpha: Option<ParamSpec>,
    beta: Option<ParamSpec>,
    lo: Option<f64>,
    hi: Option<f64>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ParamSpec {
    Number(f64),
    Integer(i64),
    Global(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ObservationSpec {
    name: String,
    #[serde(default = "one")]
    size: usize,
    #[serde(default)]
    positive: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InputSpec {
    names: Vec<String>,
    values: Vec<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SimulatorSpec {
    command: Vec<String>,
    #[serde(default = "default_batch")]
    batch: usize,
    #[serde(default = "default_parallel")]
    parallel: usize,
    #[serde(default = "default_timeout")]
    timeout: f64,
}

fn one() -> usize {
    1
}
fn default_batch() -> usize {
    10_000
}
fn default_parallel() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
fn default_timeout() -> f64 {
    600.0
}

/// Reads a model file; the simulator runs in the file's folder unless it says otherwise.
pub fn load(path: &Path) -> Result<CustomModel> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| Error::Io { path: path.display().to_string(), source })?;
    let folder = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    parse(&text, folder).map_err(|e| match e {
        Error::Invalid(m) => Error::Invalid(format!("model file {}: {m}", path.display())),
        other => other,
    })
}

/// The text to keep in a run folder: the model file with its folder written in (as
/// `directory`), so that the copy still finds the simulator.
pub fn portable_copy(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| Error::Io { path: path.display().to_string(), source })?;
    let file: toml::Table = toml::from_str(&text)
        .map_err(|e| Error::Invalid(format!("model file {}: {e}", path.display())))?;
    if file.contains_key("directory") {
        return Ok(text);
    }
    let folder = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let folder = std::fs::canonicalize(folder)
        .map_err(|source| Error::Io { path: folder.display().to_string(), source })?;
    let line = toml::Value::String(folder.display().to_string());
    Ok(format!("directory = {line}\n{text}"))
}

/// Parses a model file's text; `folder` is where a relative simulator runs.
pub fn parse(text: &str, folder: &Path) -> Result<CustomModel> {
    let file: ModelFile = toml::from_str(text).map_err(|e| Error::Invalid(e.to_string()))?;
    if file.format != FORMAT_VERSION {
        return Err(Error::Invalid(format!(
            "format = {} is not known to this tfmpe; it reads format = {FORMAT_VERSION}",
            file.format
        )));
    }
    let parameters = |specs: Vec<ParameterSpec>| -> Result<Vec<CustomVariable>> {
        specs
            .into_iter()
            .map(|p| Ok(CustomVariable::new(p.name.clone(), p.size, p.prior.prior(&p.name)?)))
            .collect()
    };
    let globals = parameters(file.globals)?;
    let locals = parameters(file.locals)?;
    let observations: Vec<Variable> = file
        .observations
        .iter()
        .map(|o| {
            let b = if o.positive { Bijection::Log } else { Bijection::Identity };
            Variable::new(o.name.clone(), o.size, b)
        })
        .collect();
    let sim = &file.simulator;
    if sim.command.is_empty()
        || sim.batch == 0
        || sim.parallel == 0
        || sim.timeout.is_nan()
        || sim.timeout <= 0.0
    {
        return Err(Error::Invalid(
            "[simulator] needs a command (a list such as [\"python3\", \"simulate.py\"]), \
             batch ≥ 1, parallel ≥ 1 and timeout > 0 seconds"
                .into(),
        ));
    }
    let columns = |vars: &[Variable]| {
        let mut names = Vec::new();
        push_names(vars, None, &mut names);
        names
    };
    let param_vars: Vec<Variable> = globals
        .iter()
        .chain(&locals)
        .map(|v| Variable::new(v.name.clone(), v.size, Bijection::Identity))
        .collect();
    let mut input_columns = columns(&param_vars);
    let obs_dim: usize = observations.iter().map(|v| v.size).sum();
    if let Some(inputs) = &file.inputs {
        for name in &inputs.names {
            input_columns.extend((0..obs_dim).map(|j| format!("{name}[{j}]")));
        }
    }
    let simulator = CommandSimulator {
        command: sim.command.clone(),
        directory: file.directory.clone().unwrap_or_else(|| folder.to_path_buf()),
        input_columns,
        output_columns: columns(&observations),
        batch: sim.batch,
        parallel: sim.parallel,
        timeout: Duration::from_secs_f64(sim.timeout),
    };
    let model = CustomModel::new(&file.name, globals, locals, observations, Box::new(simulator))?;
    match file.inputs {
        None => Ok(model),
        Some(i) => {
            // The file lists each input dimension's values in turn; the model wants them
            // interleaved per observation value.
            let k = i.names.len();
            if i.values.len() != obs_dim * k {
                return Err(Error::Invalid(format!(
                    "[inputs] has {} values; {} names for {obs_dim} observation values need {}",
                    i.values.len(),
                    k,
                    obs_dim * k
                )));
            }
            let values = (0..obs_dim)
                .flat_map(|j| (0..k).map(move |d| (j, d)))
                .map(|(j, d)| i.values[d * obs_dim + j])
                .collect();
            model.with_inputs(i.names, values)
        }
    }
}

impl PriorSpec {
    fn prior(&self, variable: &str) -> Result<Prior> {
        let value = |s: &ParamSpec| match s {
            ParamSpec::Number(v) => Param::Value(*v),
            ParamSpec::Integer(v) => Param::Value(*v as f64),
            ParamSpec::Global(g) => Param::Global(g.clone()),
        };
        let named = [
            ("loc", &self.loc),
            ("scale", &self.scale),
            ("rate", &self.rate),
            ("shape", &self.shape),
            ("alpha", &self.alpha),
            ("beta", &self.beta),
        ];
        let bounds = [("lo", self.lo), ("hi", self.hi)];
        let params = named
            .into_iter()
            .filter_map(|(k, s)| s.as_ref().map(|s| (k.to_string(), value(s))))
            .chain(
                bounds.into_iter().filter_map(|(k, b)| b.map(|b| (k.to_string(), Param::Value(b)))),
            )
            .collect();
        Prior::from_named(variable, &self.family, params)
    }
}

/// The task of a run: a built-in task by name, or the model file kept in its folder
/// (`model.toml`) when the name is not built in.
pub fn task_for_run(name: &str, run_folder: &Path) -> Result<Box<dyn HierarchicalModel>> {
    match crate::tasks::task_by_name(name) {
        Ok(task) => Ok(task),
        Err(e) => {
            let copy = run_folder.join(MODEL_FILE);
            if copy.is_file() {
                Ok(Box::new(load(&copy)?))
            } else {
                Err(e)
            }
        }
    }
}

/// The name of the model file's copy in a run folder.
pub const MODEL_FILE: &str = "model.toml";
