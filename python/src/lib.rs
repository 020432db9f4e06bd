//! The Python bindings: a thin layer over the tfmpe crate. Arrays cross as flat float64 numpy
//! arrays with their shapes; the Python package (`tfmpe/__init__.py`) names, reshapes and
//! checks them, and wraps the user's simulator and prior functions in callables of flat arrays.
//! The GIL is released while the engine trains and samples; the user's functions take it back
//! for each batch.

use std::path::PathBuf;
use std::sync::Arc;

use numpy::{PyArray1, PyReadonlyArray1};
use pyo3::create_exception;
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;

use tfmpe::backend::{BackendKind, Precision};
use tfmpe::model::density::Divergence;
use tfmpe::model::ode::Solver;
use tfmpe::model::tfmpe::{ArchOverrides, TfmpeConfig};
use tfmpe::run_folder::{
    calibration_metrics, exact_c2st, lc2st_summary, load_posterior, C2st, CoverageEval, Lc2stEval,
};
use tfmpe::sbi::train::{Overrides, Preset, TrainConfig};
use tfmpe::sbi::{Method, Posterior, Progress, RunConfig, Sampler, Trained};
use tfmpe::tasks::custom::CustomVariable;
use tfmpe::tasks::{
    simulate_datasets, task_by_name, BatchSimulator, Bijection, CustomModel, HierarchicalModel,
    Observed, Param, ParamFunction, Prior, SiteBatch, Variable,
};
use tfmpe::{Device, Error};

create_exception!(
    _tfmpe,
    SimulatorError,
    PyRuntimeError,
    "The user's simulator failed or returned the wrong shape."
);

fn to_py(e: Error) -> PyErr {
    match e {
        Error::Simulator(m) => SimulatorError::new_err(m),
        Error::Invalid(_) | Error::Shape(_) => PyValueError::new_err(e.to_string()),
        other => PyRuntimeError::new_err(other.to_string()),
    }
}

fn flat<'py>(py: Python<'py>, v: &[f64]) -> Bound<'py, PyArray1<f64>> {
    PyArray1::from_slice(py, v)
}

/// The user's simulator: a Python callable `(rows, seed, globals, locals, inputs) -> y`, all
/// flat float64 arrays (`inputs` is None for a model without them).
struct PySimulator {
    call: Py<PyAny>,
    batch: usize,
}

impl BatchSimulator for PySimulator {
    fn simulate(&self, b: &SiteBatch, seed: u64) -> tfmpe::Result<Vec<f64>> {
        Python::attach(|py| -> PyResult<Vec<f64>> {
            let inputs = b.inputs.map(|x| flat(py, x));
            let out = self
                .call
                .call1(py, (b.rows, seed, flat(py, b.globals), flat(py, b.locals), inputs))?;
            let arr: PyReadonlyArray1<f64> = out.extract(py)?;
            Ok(arr.as_slice()?.to_vec())
        })
        .map_err(|e| Error::Simulator(e.to_string()))
    }

    fn max_rows(&self) -> usize {
        self.batch
    }
}

/// A prior parameter from a Python callable `(rows, globals) -> values`, flat arrays.
struct PyParam(Py<PyAny>);

impl ParamFunction for PyParam {
    fn eval(&self, globals: &[f64], rows: usize) -> tfmpe::Result<Vec<f64>> {
        Python::attach(|py| -> PyResult<Vec<f64>> {
            let out = self.0.call1(py, (rows, flat(py, globals)))?;
            let arr: PyReadonlyArray1<f64> = out.extract(py)?;
            Ok(arr.as_slice()?.to_vec())
        })
        .map_err(|e| Error::Invalid(format!("a prior function raised {e}")))
    }
}

/// A model for the engine: a built-in task or a user model.
#[pyclass(name = "_Model", frozen)]
struct PyModel {
    model: Arc<dyn HierarchicalModel>,
}

fn param(value: &Bound<'_, PyAny>) -> PyResult<Param> {
    if let Ok(v) = value.extract::<f64>() {
        Ok(Param::Value(v))
    } else if let Ok(name) = value.extract::<String>() {
        Ok(Param::Global(name))
    } else {
        Ok(Param::Function(Arc::new(PyParam(value.clone().unbind()))))
    }
}

/// A prior from its family and its parameters as (key, value) pairs.
fn prior(variable: &str, family: &str, params: &[(String, Bound<'_, PyAny>)]) -> PyResult<Prior> {
    let params = params.iter().map(|(k, v)| Ok((k.clone(), param(v)?))).collect::<PyResult<_>>()?;
    Prior::from_named(variable, family, params).map_err(to_py)
}

/// Parameters, observations and inputs (None without them) of simulated data sets, flat.
type Simulated<'py> =
    (Bound<'py, PyArray1<f64>>, Bound<'py, PyArray1<f64>>, Option<Bound<'py, PyArray1<f64>>>);

type VariableSpec<'py> = (String, usize, String, Vec<(String, Bound<'py, PyAny>)>);

#[pymethods]
impl PyModel {
    /// A built-in task by name.
    #[staticmethod]
    fn task(name: &str) -> PyResult<PyModel> {
        Ok(PyModel { model: Arc::from(task_by_name(name).map_err(to_py)?) })
    }

    /// A user model: variables as (name, size, family, [(key, value)]), observations as
    /// (name, size, positive), the simulator callable, its batch size, optional inputs.
    #[staticmethod]
    #[pyo3(signature = (name, globals, locals, observations, simulate, batch, input_names=None, inputs=None))]
    #[allow(clippy::too_many_arguments)]
    fn custom(
        name: &str, globals: Vec<VariableSpec<'_>>, locals: Vec<VariableSpec<'_>>,
        observations: Vec<(String, usize, bool)>, simulate: Py<PyAny>, batch: usize,
        input_names: Option<Vec<String>>, inputs: Option<Vec<f64>>,
    ) -> PyResult<PyModel> {
        let vars = |specs: Vec<VariableSpec<'_>>| -> PyResult<Vec<CustomVariable>> {
            specs
                .into_iter()
                .map(|(n, size, family, params)| {
                    Ok(CustomVariable::new(n.clone(), size, prior(&n, &family, &params)?))
                })
                .collect()
        };
        let obs = observations
            .into_iter()
            .map(|(n, size, positive)| {
                Variable::new(n, size, if positive { Bijection::Log } else { Bijection::Identity })
            })
            .collect();
        let sim = Box::new(PySimulator { call: simulate, batch: batch.max(1) });
        let mut model =
            CustomModel::new(name, vars(globals)?, vars(locals)?, obs, sim).map_err(to_py)?;
        if let (Some(names), Some(values)) = (input_names, inputs) {
            model = model.with_inputs(names, values).map_err(to_py)?;
        }
        Ok(PyModel { model: Arc::new(model) })
    }

    #[getter]
    fn name(&self) -> String {
        self.model.name().to_string()
    }

    #[getter]
    fn obs_dim(&self) -> usize {
        self.model.obs_dim()
    }

    #[getter]
    fn input_dim(&self) -> usize {
        self.model.functional_input_dim()
    }

    fn parameter_names(&self, sites: usize) -> Vec<String> {
        self.model.parameter_names(sites)
    }

    fn observation_names(&self, sites: usize) -> Vec<String> {
        self.model.observation_names(sites)
    }

    /// `n` data sets from the prior and the simulator: (parameters, observations, inputs),
    /// flat, data set k from seed `seed + k`.
    fn simulate<'py>(
        &self, py: Python<'py>, sites: usize, n: usize, seed: u64,
    ) -> PyResult<Simulated<'py>> {
        let seeds: Vec<u64> = (0..n as u64).map(|k| seed.wrapping_add(k)).collect();
        let model = self.model.clone();
        let sets = py.detach(|| simulate_datasets(&*model, sites, &seeds)).map_err(to_py)?;
        let params: Vec<f64> = sets.iter().flat_map(|d| d.params.iter().copied()).collect();
        let obs: Vec<f64> = sets.iter().flat_map(|d| d.obs.iter().copied()).collect();
        let inputs = (self.model.functional_input_dim() > 0).then(|| {
            let x: Vec<f64> =
                sets.iter().flat_map(|d| d.inputs.iter().flatten().copied()).collect();
            flat(py, &x)
        });
        Ok((flat(py, &params), flat(py, &obs), inputs))
    }

    /// `n` draws from the exact posterior (flat), or None when the model has none.
    #[pyo3(signature = (obs, sites, n, seed, inputs=None))]
    fn exact_posterior<'py>(
        &self, py: Python<'py>, obs: Vec<f64>, sites: usize, n: usize, seed: u64,
        inputs: Option<Vec<f64>>,
    ) -> PyResult<Option<Bound<'py, PyArray1<f64>>>> {
        let o = observed(&*self.model, obs, sites, inputs)?;
        let draws = self.model.exact_posterior_observed(&o, n, &mut seeded(seed));
        Ok(draws.map(|d| flat(py, &d.concat())))
    }
}

fn seeded(seed: u64) -> rand::rngs::StdRng {
    use rand::SeedableRng;
    rand::rngs::StdRng::seed_from_u64(seed)
}

fn observed(
    model: &dyn HierarchicalModel, values: Vec<f64>, sites: usize, inputs: Option<Vec<f64>>,
) -> PyResult<Observed> {
    let inputs = inputs
        .or_else(|| model.sample_functional_inputs(&mut seeded(0)).map(|one| one.repeat(sites)));
    let o = Observed { sites, values, inputs, counts: None };
    tfmpe::tasks::check_observed(model, &o).map_err(to_py)?;
    Ok(o)
}

/// Progress of long phases, handed to a Python callable `(kind, phase, done, total, train,
/// val)`; the Python side draws the bar.
struct PyProgress(Option<Py<PyAny>>);

impl PyProgress {
    fn send(&self, kind: &str, phase: &str, done: usize, total: usize, train: f64, val: f64) {
        if let Some(cb) = &self.0 {
            Python::attach(|py| {
                // A failing progress callback must not stop the training.
                let _ = cb.call1(py, (kind, phase, done, total, train, val));
            });
        }
    }
}

impl Progress for PyProgress {
    fn phase(&self, name: &str) {
        self.send("phase", name, 0, 0, f64::NAN, f64::NAN);
    }
    fn epoch(&self, phase: &str, epoch: usize, max: usize, train: f64, val: f64) {
        self.send("epoch", phase, epoch, max, train, val);
    }
    fn samples(&self, phase: &str, done: usize, total: usize) {
        self.send("samples", phase, done, total, f64::NAN, f64::NAN);
    }
    fn warning(&self, message: &str) {
        self.send("warning", message, 0, 0, f64::NAN, f64::NAN);
    }
}

/// A trained (or loaded) posterior with its model and device.
#[pyclass(name = "_Posterior", unsendable)]
struct PyPosterior {
    trained: Trained,
    model: Arc<dyn HierarchicalModel>,
    device: Device,
    backend: String,
}

fn solver(name: &str, steps: usize) -> PyResult<Solver> {
    if steps == 0 || steps > tfmpe::model::ode::MAX_STEPS {
        return Err(PyValueError::new_err(format!(
            "steps must be between 1 and {}, got {steps}",
            tfmpe::model::ode::MAX_STEPS
        )));
    }
    Solver::from_name(name, steps).map_err(to_py)
}

fn open(backend: &str) -> PyResult<(Device, String)> {
    let kind: BackendKind = backend.parse().map_err(to_py)?;
    Device::open(kind).map_err(to_py)
}

/// The training recipe from `tfmpe.fit`'s options: a preset with its parts overridden.
#[derive(FromPyObject)]
struct Recipe {
    #[pyo3(item)]
    preset: String,
    #[pyo3(item)]
    max_epochs: Option<usize>,
    #[pyo3(item)]
    max_steps: Option<usize>,
    #[pyo3(item)]
    patience: Option<usize>,
    #[pyo3(item)]
    lr: Option<f32>,
    #[pyo3(item)]
    schedule: Option<String>,
}

impl Recipe {
    fn train(self, batch: usize) -> PyResult<TrainConfig> {
        let preset = Preset::from_name(&self.preset).map_err(to_py)?;
        let overrides = Overrides {
            max_epochs: self.max_epochs,
            max_steps: self.max_steps,
            patience: self.patience,
            lr: self.lr,
            schedule: self.schedule,
        };
        TrainConfig { batch, ..preset.train() }.overridden(&overrides).map_err(to_py)
    }
}

/// The network sizes of `tfmpe.fit` (`None`: the default).
#[derive(FromPyObject)]
struct Arch {
    #[pyo3(item)]
    width: Option<usize>,
    #[pyo3(item)]
    layers: Option<usize>,
    #[pyo3(item)]
    heads: Option<usize>,
    #[pyo3(item)]
    group_dim: Option<usize>,
    #[pyo3(item)]
    fourier_dim: Option<usize>,
}

impl Arch {
    fn config(self, base: &TfmpeConfig) -> PyResult<TfmpeConfig> {
        let overrides = ArchOverrides {
            width: self.width,
            layers: self.layers,
            heads: self.heads,
            group_dim: self.group_dim,
            fourier_dim: self.fourier_dim,
        };
        base.overridden(&overrides).map_err(to_py)
    }
}

/// Trains the posterior of `model` (see `tfmpe.fit`).
#[pyfunction]
#[pyo3(signature = (model, sites, budget, method, seed, train, arch, batch_size, backend, max_sites=None, progress=None, rounds=1, observation=None, synthetic_sets=None, fresh_sets=false, ragged=false, surrogate_scaling=None, posterior_scaling=None))]
#[allow(clippy::too_many_arguments)]
fn fit(
    py: Python<'_>, model: &PyModel, sites: usize, budget: usize, method: &str, seed: u64,
    train: Recipe, arch: Arch, batch_size: usize, backend: &str, max_sites: Option<usize>,
    progress: Option<Py<PyAny>>, rounds: usize, observation: Option<Vec<f64>>,
    synthetic_sets: Option<usize>, fresh_sets: bool, ragged: bool, surrogate_scaling: Option<&str>,
    posterior_scaling: Option<&str>,
) -> PyResult<PyPosterior> {
    let mut cfg = RunConfig::new(sites, budget);
    cfg.method = method.parse::<Method>().map_err(to_py)?;
    cfg.seed = seed;
    cfg.max_sites = max_sites;
    cfg.rounds = rounds;
    cfg.synthetic_sets = synthetic_sets;
    cfg.fresh_sets = fresh_sets;
    cfg.ragged = ragged;
    cfg.surrogate_scaling = surrogate_scaling.map(str::parse).transpose().map_err(to_py)?;
    cfg.posterior_scaling = posterior_scaling.map(str::parse).transpose().map_err(to_py)?;
    cfg.observation =
        observation.map(|values| observed(&*model.model, values, sites, None)).transpose()?;
    cfg.architecture = arch.config(&cfg.architecture)?;
    let recipe = train.train(batch_size)?;
    cfg.train = recipe.clone();
    cfg.surrogate_train = recipe;
    let (device, why) = open(backend)?;
    let task = model.model.clone();
    let progress = PyProgress(progress);
    let trained = py
        .detach(|| {
            let trained = tfmpe::sbi::run(&device, &*task, &cfg, &progress)?;
            task.deferred_error()?;
            Ok(trained)
        })
        .map_err(to_py)?;
    Ok(PyPosterior { trained, model: model.model.clone(), device, backend: why })
}

/// Loads a posterior saved by `save` or by `tfmpe run` (its folder or its `posterior/`).
#[pyfunction]
#[pyo3(signature = (path, model, backend="auto"))]
fn load(path: PathBuf, model: &PyModel, backend: &str) -> PyResult<PyPosterior> {
    let (device, why) = open(backend)?;
    let posterior = load_posterior(&device, &path).map_err(to_py)?;
    if posterior.config().task != model.model.name() {
        return Err(PyValueError::new_err(format!(
            "{} holds a posterior of `{}`, not of the model `{}`",
            path.display(),
            posterior.config().task,
            model.model.name()
        )));
    }
    let trained = Trained { posterior, surrogate: None, report: Default::default() };
    Ok(PyPosterior { trained, model: model.model.clone(), device, backend: why })
}

impl PyPosterior {
    fn net(&mut self) -> &mut Posterior {
        &mut self.trained.posterior
    }
}

#[pymethods]
impl PyPosterior {
    #[getter]
    fn sites(&self) -> usize {
        self.trained.posterior.config().sites
    }

    #[getter]
    fn backend(&self) -> String {
        self.backend.clone()
    }

    /// Draws for each of `k` data sets of `sites` sites (flat values, and inputs or None), in
    /// one batched solve; flat, data set by data set.
    #[pyo3(signature = (values, k, sites, n, seed, solver_name, steps, inputs=None, progress=None, precision="f32"))]
    #[allow(clippy::too_many_arguments)]
    fn sample_many<'py>(
        &mut self, py: Python<'py>, values: Vec<f64>, k: usize, sites: usize, n: usize, seed: u64,
        solver_name: &str, steps: usize, inputs: Option<Vec<f64>>, progress: Option<Py<PyAny>>,
        precision: &str,
    ) -> PyResult<Bound<'py, PyArray1<f64>>> {
        let solver = solver(solver_name, steps)?;
        let precision = Precision::from_name(precision).map_err(to_py)?;
        tfmpe::sbi::check_draws(n.saturating_mul(k), self.model.param_dim(sites)).map_err(to_py)?;
        let per = values.len() / k.max(1);
        let per_x = inputs.as_ref().map(|x| x.len() / k.max(1));
        let data = (0..k)
            .map(|i| {
                let x = inputs.as_ref().zip(per_x).map(|(x, m)| x[i * m..(i + 1) * m].to_vec());
                observed(&*self.model, values[i * per..(i + 1) * per].to_vec(), sites, x)
            })
            .collect::<PyResult<Vec<_>>>()?;
        let progress = PyProgress(progress);
        let (device, model) = (self.device.clone(), self.model.clone());
        let net = self.net();
        let sets = py
            .detach(|| {
                Sampler::new(&device, solver)
                    .with_precision(precision)?
                    .posteriors(net, &*model, &data, n, seed, &progress)
            })
            .map_err(to_py)?;
        let all: Vec<f64> = sets.into_iter().flatten().flatten().collect();
        Ok(flat(py, &all))
    }

    /// Saves the networks (`posterior/`, `surrogate/`) as a run folder holds them.
    fn save(&self, path: PathBuf) -> PyResult<()> {
        self.trained.save(&path).map_err(to_py)
    }

    /// The training report (phases' wall times, losses, simulator calls) as JSON.
    fn report(&self) -> PyResult<String> {
        serde_json::to_string(&self.trained.report)
            .map_err(|e| PyRuntimeError::new_err(e.to_string()))
    }

    /// C2ST of `samples` (flat) against `n` exact draws, of all parameters and of the globals
    /// alone, or None without an exact posterior.
    #[pyo3(signature = (values, sites, samples, n, inputs=None))]
    fn c2st(
        &self, py: Python<'_>, values: Vec<f64>, sites: usize, samples: Vec<f64>, n: usize,
        inputs: Option<Vec<f64>>,
    ) -> PyResult<Option<(f64, f64)>> {
        let obs = observed(&*self.model, values, sites, inputs)?;
        let dim = self.model.param_dim(sites);
        let rows: Vec<Vec<f64>> = samples.chunks(dim).map(<[f64]>::to_vec).collect();
        let measured = py.detach(|| exact_c2st(&*self.model, &obs, &rows, n));
        Ok(match measured.map_err(to_py)? {
            C2st::Measured { c2st, c2st_globals, .. } => {
                Some((c2st, c2st_globals.unwrap_or(f64::NAN)))
            }
            C2st::Unavailable { .. } => None,
        })
    }

    /// SBC and TARP over `data_sets` prior data sets with `draws` draws each, and with
    /// `divergence` the HPD expected coverage, as JSON.
    #[pyo3(signature = (data_sets, draws, seed, solver_name, steps, divergence=None, probes=8))]
    #[allow(clippy::too_many_arguments)]
    fn calibration(
        &mut self, py: Python<'_>, data_sets: usize, draws: usize, seed: u64, solver_name: &str,
        steps: usize, divergence: Option<String>, probes: usize,
    ) -> PyResult<String> {
        let solver = solver(solver_name, steps)?;
        if data_sets < tfmpe::run_folder::MIN_CALIBRATION || draws < 1 {
            return Err(PyValueError::new_err(format!(
                "calibration needs at least {} data sets and 1 draw each",
                tfmpe::run_folder::MIN_CALIBRATION
            )));
        }
        let coverage = divergence.map(|divergence| CoverageEval { divergence, probes });
        let (device, model) = (self.device.clone(), self.model.clone());
        let net = self.net();
        let m = py
            .detach(|| {
                calibration_metrics(
                    &device,
                    net,
                    &*model,
                    data_sets,
                    draws,
                    solver,
                    seed,
                    coverage.as_ref(),
                    &tfmpe::sbi::Quiet,
                )
            })
            .map_err(to_py)?;
        let json = serde_json::json!({
            "sbc": m.sbc,
            "tarp": m.tarp,
            "expected_coverage": m.expected_coverage,
        });
        Ok(json.to_string())
    }

    /// The log density at `params` (flat, `n` vectors) for one data set of `sites` sites.
    #[pyo3(signature = (values, sites, params, seed, solver_name, steps, divergence, probes, inputs=None, progress=None))]
    #[allow(clippy::too_many_arguments)]
    fn log_prob<'py>(
        &mut self, py: Python<'py>, values: Vec<f64>, sites: usize, params: Vec<f64>, seed: u64,
        solver_name: &str, steps: usize, divergence: &str, probes: usize, inputs: Option<Vec<f64>>,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<Bound<'py, PyArray1<f64>>> {
        let solver = solver(solver_name, steps)?;
        let obs = observed(&*self.model, values, sites, inputs)?;
        let dim = self.model.param_dim(sites);
        let flow_dim = self.trained.posterior.flow_dim(&*self.model, sites);
        let divergence =
            Divergence::from_name(divergence, flow_dim, probes, seed).map_err(to_py)?;
        let rows: Vec<Vec<f64>> = params.chunks(dim).map(<[f64]>::to_vec).collect();
        let progress = PyProgress(progress);
        let (device, model) = (self.device.clone(), self.model.clone());
        let net = self.net();
        let lp = py
            .detach(|| {
                let sampler = Sampler::new(&device, solver);
                sampler.log_prob(net, &*model, &obs, &rows, divergence, &progress)
            })
            .map_err(to_py)?;
        Ok(flat(py, &lp))
    }

    /// L-C2ST at an observation given the network's draws there (flat), as JSON.
    #[pyo3(signature = (values, sites, samples, data_sets, nulls, alpha, seed, solver_name, steps, inputs=None))]
    #[allow(clippy::too_many_arguments)]
    fn lc2st(
        &mut self, py: Python<'_>, values: Vec<f64>, sites: usize, samples: Vec<f64>,
        data_sets: usize, nulls: usize, alpha: f64, seed: u64, solver_name: &str, steps: usize,
        inputs: Option<Vec<f64>>,
    ) -> PyResult<String> {
        let solver = solver(solver_name, steps)?;
        let obs = observed(&*self.model, values, sites, inputs)?;
        let dim = self.model.param_dim(sites);
        let rows: Vec<Vec<f64>> = samples.chunks(dim).map(<[f64]>::to_vec).collect();
        let mut l = Lc2stEval { data_sets, ..Lc2stEval::default() };
        l.config.null_trials = nulls;
        l.config.alpha = alpha;
        let (device, model) = (self.device.clone(), self.model.clone());
        let net = self.net();
        let summary = py
            .detach(|| {
                lc2st_summary(
                    &device,
                    net,
                    &*model,
                    &obs,
                    &rows,
                    &l,
                    solver,
                    seed,
                    &tfmpe::sbi::Quiet,
                )
            })
            .map_err(to_py)?;
        serde_json::to_string(&summary).map_err(|e| PyRuntimeError::new_err(e.to_string()))
    }
}

/// C2ST between two sets of draws (flat, `dim` columns): 0.5 when a classifier cannot tell
/// them apart, 1 when it always can.
#[pyfunction]
fn c2st(py: Python<'_>, a: Vec<f64>, b: Vec<f64>, dim: usize, backend: &str) -> PyResult<f64> {
    let (device, _) = open(backend)?;
    let (a, b): (Vec<&[f64]>, Vec<&[f64]>) =
        (a.chunks(dim.max(1)).collect(), b.chunks(dim.max(1)).collect());
    let cfg = tfmpe::metrics::C2stConfig::default();
    py.detach(|| tfmpe::metrics::c2st(&device, &a, &b, &cfg)).map_err(to_py)
}

/// The names of the built-in tasks.
#[pyfunction]
fn task_names() -> Vec<String> {
    tfmpe::tasks::tasks().iter().map(|t| t.name().to_string()).collect()
}

#[pymodule]
fn _tfmpe(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // At import, before the engine starts a thread: it sets an environment variable.
    tfmpe::backend::quiet_headless_vulkan();
    m.add_class::<PyModel>()?;
    m.add_class::<PyPosterior>()?;
    m.add_function(wrap_pyfunction!(fit, m)?)?;
    m.add_function(wrap_pyfunction!(load, m)?)?;
    m.add_function(wrap_pyfunction!(task_names, m)?)?;
    m.add_function(wrap_pyfunction!(c2st, m)?)?;
    m.add("SimulatorError", m.py().get_type::<SimulatorError>())?;
    Ok(())
}
