//! User models built from parts: variables with priors from the vocabulary of [`prior`], an
//! observation shape, optional fixed functional inputs, and a [`BatchSimulator`] (a Python
//! function, or an external program named in a model file).

mod command;
pub mod model_file;
mod prior;

pub use command::{CommandSimulator, FORMAT_VERSION};
pub use prior::{Param, ParamFunction, Prior};

use std::sync::Mutex;

use rand::Rng;

use super::batch::{BatchSimulator, SiteBatch};
use super::{HierarchicalModel, Variable};
use crate::error::{Error, Result};

/// A parameter variable of a user model: `size` scalars drawn independently from `prior`.
#[derive(Clone, Debug)]
pub struct CustomVariable {
    pub name: String,
    pub size: usize,
    pub prior: Prior,
}

impl CustomVariable {
    pub fn new(name: impl Into<String>, size: usize, prior: Prior) -> Self {
        CustomVariable { name: name.into(), size, prior }
    }

    fn variable(&self) -> Variable {
        Variable::new(self.name.clone(), self.size, self.prior.bijection())
    }
}

/// A hierarchical model described by its parts; see the module documentation.
///
/// ```
/// use tfmpe::tasks::custom::CustomVariable;
/// use tfmpe::tasks::{simulate_datasets, BatchSimulator, Bijection, CustomModel, HierarchicalModel, Param, Prior, SiteBatch, Variable};
///
/// /// y = μ_s + σ·(a fixed offset per row), for the example.
/// struct Shifted;
/// impl BatchSimulator for Shifted {
///     fn simulate(&self, b: &SiteBatch, _seed: u64) -> tfmpe::Result<Vec<f64>> {
///         Ok((0..b.rows).map(|r| b.locals[r] + b.globals[r] * 0.5).collect())
///     }
/// }
///
/// let model = CustomModel::new(
///     "shifted",
///     vec![CustomVariable::new("sigma", 1, Prior::HalfNormal { scale: Param::Value(1.0) })],
///     vec![CustomVariable::new("mu", 1, Prior::Normal { loc: Param::Value(0.0), scale: Param::Global("sigma".into()) })],
///     vec![Variable::scalar("y", Bijection::Identity)],
///     Box::new(Shifted),
/// )?;
/// assert_eq!(model.parameter_names(2), ["sigma", "mu.0", "mu.1"]);
/// // Three data sets of four sites: one simulator call of twelve rows.
/// let sets = simulate_datasets(&model, 4, &[1, 2, 3])?;
/// assert_eq!(sets[0].obs.len(), 4);
/// # Ok::<(), tfmpe::Error>(())
/// ```
pub struct CustomModel {
    name: String,
    globals: Vec<CustomVariable>,
    locals: Vec<CustomVariable>,
    observations: Vec<Variable>,
    /// Names of the functional inputs and one site's values (`obs_dim × input_dim`), the same
    /// at every site.
    inputs: Option<(Vec<String>, Vec<f64>)>,
    simulator: Box<dyn BatchSimulator>,
    /// The first error met where none can be returned (see [`HierarchicalModel::deferred_error`]).
    failure: Mutex<Option<Error>>,
}

impl CustomModel {
    /// A model named `name` (letters, digits, `-` and `_`). Checks the names (distinct, usable
    /// as CSV columns), the sizes and the priors: a global's prior takes constants only; a
    /// local's may name a scalar global or be a function of the globals.
    pub fn new(
        name: &str, globals: Vec<CustomVariable>, locals: Vec<CustomVariable>,
        observations: Vec<Variable>, simulator: Box<dyn BatchSimulator>,
    ) -> Result<CustomModel> {
        check_name("model", name)?;
        if globals.is_empty() || locals.is_empty() || observations.is_empty() {
            return Err(Error::Invalid(format!(
                "model `{name}` needs at least one global, one local and one observation variable \
                 (it has {}, {} and {})",
                globals.len(),
                locals.len(),
                observations.len()
            )));
        }
        let mut seen: Vec<&str> = Vec::new();
        let all_names = globals
            .iter()
            .map(|v| (&v.name, v.size))
            .chain(locals.iter().map(|v| (&v.name, v.size)))
            .chain(observations.iter().map(|v| (&v.name, v.size)));
        for (var, size) in all_names {
            check_name("variable", var)?;
            if seen.contains(&var.as_str()) {
                return Err(Error::Invalid(format!(
                    "model `{name}`: two variables are named `{var}`; names must be distinct"
                )));
            }
            if size == 0 {
                return Err(Error::Invalid(format!(
                    "variable `{var}` has size 0; sizes start at 1"
                )));
            }
            seen.push(var);
        }
        for v in &globals {
            v.prior.check(&v.name, None)?;
        }
        let scalars: Vec<String> =
            globals.iter().filter(|v| v.size == 1).map(|v| v.name.clone()).collect();
        for v in &locals {
            v.prior.check(&v.name, Some(&scalars))?;
        }
        Ok(CustomModel {
            name: name.to_string(),
            globals,
            locals,
            observations,
            inputs: None,
            simulator,
            failure: Mutex::new(None),
        })
    }

    /// Functional inputs: `names` (one per input dimension) and one site's values, `obs_dim ×
    /// names.len()` finite numbers in observation order; every site observes at these inputs.
    pub fn with_inputs(mut self, names: Vec<String>, values: Vec<f64>) -> Result<CustomModel> {
        for n in &names {
            check_name("input", n)?;
        }
        let expected = self.obs_dim() * names.len();
        if names.is_empty() || values.len() != expected {
            return Err(Error::Shape(format!(
                "model `{}`: {} input values for {} observation values with {} inputs each; give {expected}",
                self.name,
                values.len(),
                self.obs_dim(),
                names.len()
            )));
        }
        if let Some(v) = values.iter().find(|v| !v.is_finite()) {
            return Err(Error::Invalid(format!(
                "model `{}`: input value {v} is not finite",
                self.name
            )));
        }
        self.inputs = Some((names, values));
        Ok(self)
    }

    /// The parameter variables with their priors: globals, then locals.
    pub fn priors(&self) -> (&[CustomVariable], &[CustomVariable]) {
        (&self.globals, &self.locals)
    }

    /// Records the first deferred error and returns `n` NaNs in place of the values.
    fn defer(&self, e: Error, n: usize) -> Vec<f64> {
        let mut failure = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        failure.get_or_insert(e);
        vec![f64::NAN; n]
    }

    /// `rows × Σ size` draws of `vars`, row-major, each variable's scalars together.
    fn draw(
        &self, vars: &[CustomVariable], globals: &[f64], rows: usize, rng: &mut dyn Rng,
    ) -> Result<Vec<f64>> {
        let index = |g: &str| self.global_column(g);
        let width: usize = vars.iter().map(|v| v.size).sum();
        let mut out = vec![0.0; rows * width];
        let mut at = 0;
        for v in vars {
            let draws = v.prior.sample(&v.name, globals, rows, v.size, &index, rng)?;
            for r in 0..rows {
                out[r * width + at..r * width + at + v.size]
                    .copy_from_slice(&draws[r * v.size..(r + 1) * v.size]);
            }
            at += v.size;
        }
        Ok(out)
    }

    /// The column of a scalar global in the globals vector (checked at construction).
    fn global_column(&self, name: &str) -> usize {
        let mut at = 0;
        for v in &self.globals {
            if v.name == name {
                return at;
            }
            at += v.size;
        }
        unreachable!("global `{name}` was checked when the model was built")
    }
}

/// Names go into CSV headers and the command line: letters, digits, `_` and `-`, not empty.
fn check_name(what: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && !name.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "{what} name `{name}`: use letters, digits, `_` and `-` (not first), as in `sigma_1`"
        )))
    }
}

impl HierarchicalModel for CustomModel {
    fn name(&self) -> &str {
        &self.name
    }

    fn global_variables(&self) -> Vec<Variable> {
        self.globals.iter().map(CustomVariable::variable).collect()
    }

    fn local_variables(&self) -> Vec<Variable> {
        self.locals.iter().map(CustomVariable::variable).collect()
    }

    fn observation_variables(&self) -> Vec<Variable> {
        self.observations.clone()
    }

    fn functional_input_dim(&self) -> usize {
        self.inputs.as_ref().map_or(0, |(names, _)| names.len())
    }

    fn functional_input_names(&self) -> Vec<String> {
        self.inputs.as_ref().map_or_else(Vec::new, |(names, _)| names.clone())
    }

    fn sample_functional_inputs(&self, _rng: &mut dyn Rng) -> Option<Vec<f64>> {
        self.inputs.as_ref().map(|(_, values)| values.clone())
    }

    fn sample_globals(&self, rng: &mut dyn Rng) -> Vec<f64> {
        self.draw(&self.globals, &[], 1, rng).unwrap_or_else(|e| self.defer(e, self.global_dim()))
    }

    fn sample_locals(&self, globals: &[f64], rng: &mut dyn Rng) -> Vec<f64> {
        self.sample_locals_batch(globals, 1, rng)
    }

    /// The globals' priors, then each site's locals' priors given the globals; a prior
    /// parameter that resolves to an invalid value makes the density −∞.
    fn log_prior(&self, params: &[f64], sites: usize) -> Option<f64> {
        let (g, l) = (self.global_dim(), self.local_dim());
        let index = |name: &str| self.global_column(name);
        let (globals, locals) = params.split_at(g);
        let mut total = 0.0;
        let mut at = 0;
        for v in &self.globals {
            let values = &globals[at..at + v.size];
            total += v.prior.log_density(&v.name, &[], 1, values, &index).ok()?[0];
            at += v.size;
        }
        let rows = globals.repeat(sites);
        let mut at = 0;
        for v in &self.locals {
            let values: Vec<f64> =
                (0..sites).flat_map(|s| locals[s * l + at..s * l + at + v.size].to_vec()).collect();
            let per_site = v.prior.log_density(&v.name, &rows, sites, &values, &index);
            match per_site {
                Ok(d) => total += d.iter().sum::<f64>(),
                // A parameter of the prior out of its range here (a negative scale).
                Err(Error::Invalid(_)) => return Some(f64::NEG_INFINITY),
                Err(_) => return None,
            }
            at += v.size;
        }
        Some(total)
    }

    fn sample_locals_batch(&self, globals: &[f64], rows: usize, rng: &mut dyn Rng) -> Vec<f64> {
        self.draw(&self.locals, globals, rows, rng)
            .unwrap_or_else(|e| self.defer(e, rows * self.local_dim()))
    }

    fn simulate_site(
        &self, globals: &[f64], locals: &[f64], inputs: Option<&[f64]>, rng: &mut dyn Rng,
    ) -> Vec<f64> {
        let batch = SiteBatch { rows: 1, globals, locals, inputs };
        super::batch::simulate_batch(self, &*self.simulator, &batch, rng.next_u64())
            .unwrap_or_else(|e| self.defer(e, self.obs_dim()))
    }

    fn batch_simulator(&self) -> Option<&dyn BatchSimulator> {
        Some(&*self.simulator)
    }

    fn deferred_error(&self) -> Result<()> {
        let mut failure = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        failure.take().map_or(Ok(()), Err)
    }
}
