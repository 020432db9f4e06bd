//! Benchmark and example models: priors, simulators, bijections, exact posteriors.
//!
//! A hierarchical model has shared globals θ_g, exchangeable per-site locals η_s and a per-site
//! observation y_s that depends only on (θ_g, η_s). Users describe their simulator by implementing
//! [`HierarchicalModel`]; the benchmark tasks (docs/architecture.md#tasks) implement it too.
//!
//! Layouts, used everywhere in the crate:
//! - a parameter vector is `[globals, site 0 locals, site 1 locals, ...]`;
//! - an observation vector is `[site 0 observation, site 1 observation, ...]` (site-major);
//! - functional inputs, when a model has them, follow the observation layout with
//!   [`HierarchicalModel::functional_input_dim`] values per observation scalar.
//!
//! Values are in natural space unless a name says "unconstrained".

mod batch;
mod burgers;
pub mod custom;
mod dopri;
mod grid;
mod hier_brownian;
mod hier_burgers;
mod hier_gaussian;
mod hier_gaussian_linear;
mod hier_gaussian_linear_uniform;
mod hier_gaussian_mixture;
mod hier_lotka_volterra;
mod hier_seir;
mod hier_sir;
mod hier_slcp;
mod hier_two_moons;
#[cfg(test)]
mod rk4;
pub mod special;
mod truncated_normal;

pub use batch::{simulate_batch, simulate_datasets, BatchSimulator, SiteBatch};
pub use custom::{CustomModel, Param, ParamFunction, Prior};
pub use hier_brownian::HierBrownian;
pub use hier_burgers::HierBurgers;
pub use hier_gaussian::HierGaussian;
pub use hier_gaussian_linear::HierGaussianLinear;
pub use hier_gaussian_linear_uniform::HierGaussianLinearUniform;
pub use hier_gaussian_mixture::HierGaussianMixture;
pub use hier_lotka_volterra::HierLotkaVolterra;
pub use hier_seir::HierSeir;
pub use hier_sir::HierSir;
pub use hier_slcp::HierSlcp;
pub use hier_two_moons::HierTwoMoons;

use crate::error::{Error, Result};
use crate::model::tokens::VariableSizes;
use rand::{Rng, RngExt};
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};

/// A map from a parameter's support to the real line; networks are trained on the unconstrained
/// side, samples are reported on the natural side.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Bijection {
    /// Support ℝ.
    Identity,
    /// Support (0, ∞): u = ln x.
    Log,
    /// Support (lo, hi): u = logit((x − lo) / (hi − lo)).
    LogitAffine { lo: f64, hi: f64 },
    /// Support (lo, ∞): u = ln(x − lo).
    LogAbove { lo: f64 },
    /// Support (−∞, hi): u = ln(hi − x).
    LogBelow { hi: f64 },
}

impl Bijection {
    /// Natural → unconstrained.
    pub fn forward(self, x: f64) -> f64 {
        match self {
            Bijection::Identity => x,
            Bijection::Log => x.ln(),
            // ln(x − lo) − ln(hi − x) keeps full precision near both ends, where
            // logit((x − lo)/(hi − lo)) would round 1 − z to zero.
            Bijection::LogitAffine { lo, hi } => (x - lo).ln() - (hi - x).ln(),
            Bijection::LogAbove { lo } => (x - lo).ln(),
            Bijection::LogBelow { hi } => (hi - x).ln(),
        }
    }

    /// Unconstrained → natural.
    pub fn inverse(self, u: f64) -> f64 {
        match self {
            Bijection::Identity => u,
            Bijection::Log => u.exp(),
            // Measured from the nearer end so that large |u| lands close to, not on, the bound.
            Bijection::LogitAffine { lo, hi } => {
                if u >= 0.0 {
                    hi - (hi - lo) / (1.0 + u.exp())
                } else {
                    lo + (hi - lo) / (1.0 + (-u).exp())
                }
            }
            Bijection::LogAbove { lo } => lo + u.exp(),
            Bijection::LogBelow { hi } => hi - u.exp(),
        }
    }

    /// The support (natural side) as an open interval.
    pub fn support(self) -> (f64, f64) {
        match self {
            Bijection::Identity => (f64::NEG_INFINITY, f64::INFINITY),
            Bijection::Log => (0.0, f64::INFINITY),
            Bijection::LogitAffine { lo, hi } => (lo, hi),
            Bijection::LogAbove { lo } => (lo, f64::INFINITY),
            Bijection::LogBelow { hi } => (f64::NEG_INFINITY, hi),
        }
    }

    /// ln |du/dx| at natural x: add it to an unconstrained log-density to get the natural one.
    pub fn forward_log_det(self, x: f64) -> f64 {
        match self {
            Bijection::Identity => 0.0,
            Bijection::Log => -x.ln(),
            Bijection::LogitAffine { lo, hi } => (hi - lo).ln() - (x - lo).ln() - (hi - x).ln(),
            Bijection::LogAbove { lo } => -(x - lo).ln(),
            Bijection::LogBelow { hi } => -(hi - x).ln(),
        }
    }
}

/// One named variable: a block of `size` scalars (a vector when `size > 1`) sharing a bijection.
/// For observation variables the bijection maps observations to the space the networks see
/// (Log for positive observations such as dequantised counts).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Variable {
    pub name: String,
    pub size: usize,
    pub bijection: Bijection,
}

impl Variable {
    pub fn new(name: impl Into<String>, size: usize, bijection: Bijection) -> Self {
        Variable { name: name.into(), size, bijection }
    }

    /// A one-scalar variable.
    pub fn scalar(name: impl Into<String>, bijection: Bijection) -> Self {
        Self::new(name, 1, bijection)
    }
}

/// A simulator with shared globals, exchangeable per-site locals and per-site observations.
///
/// Implementations describe their variables and draw from the prior and the simulator one site
/// at a time; everything else (layouts, names, transforms, whole data sets) is derived here.
/// Random draws take `&mut dyn Rng` so that the trait stays object-safe (`Box<dyn
/// HierarchicalModel>` is what [`task_by_name`] returns); pass any `&mut StdRng` and it coerces.
pub trait HierarchicalModel: Send + Sync {
    /// The name used on the command line (`hier-gaussian-linear`).
    fn name(&self) -> &str;

    /// The global variables θ_g, in parameter-vector order.
    fn global_variables(&self) -> Vec<Variable>;

    /// The variables of one site's locals η_s, in parameter-vector order.
    fn local_variables(&self) -> Vec<Variable>;

    /// The variables of one site's observation y_s, in observation-vector order.
    fn observation_variables(&self) -> Vec<Variable>;

    /// Number of functional-input values attached to each observation scalar (for example its
    /// observation time); 0 when the model has none.
    fn functional_input_dim(&self) -> usize {
        0
    }

    /// Whether a site may be observed at fewer than `obs_dim` values: the task observes a
    /// function at inputs, its one observation variable's values are exchangeable given their
    /// inputs, and a site observed at 3 of its 5 times is as meaningful as one observed at all
    /// 5. Such data sets are "ragged" ([`Observed::counts`]).
    fn ragged_observations(&self) -> bool {
        false
    }

    /// Names of the functional-input values (`t`, `x`), `functional_input_dim` of them: the
    /// input columns of the long observation format.
    fn functional_input_names(&self) -> Vec<String> {
        (0..self.functional_input_dim()).map(|i| format!("input{i}")).collect()
    }

    /// The bijection of each functional-input value, mapping it to the space the networks see
    /// (`Log` for a positive input such as an observation time, so that the small values,
    /// where the observation is most precise, are spread out rather than crowded together).
    fn functional_input_bijections(&self) -> Vec<Bijection> {
        vec![Bijection::Identity; self.functional_input_dim()]
    }

    /// Draws one site's functional inputs (`obs_dim × functional_input_dim` values, in
    /// observation order: observation scalar 0's inputs, then scalar 1's), or `None` when the
    /// model has none. Inputs do not depend on the parameters; each call is a fresh draw from
    /// the task's input distribution (models with fixed inputs ignore `rng`).
    fn sample_functional_inputs(&self, _rng: &mut dyn Rng) -> Option<Vec<f64>> {
        None
    }

    /// One draw of the globals from their prior (`global_dim` values).
    fn sample_globals(&self, rng: &mut dyn Rng) -> Vec<f64>;

    /// One site's locals drawn from their prior given the globals (`local_dim` values).
    fn sample_locals(&self, globals: &[f64], rng: &mut dyn Rng) -> Vec<f64>;

    /// One site's observation (`obs_dim` values) given the globals, the site's locals and the
    /// site's functional inputs (`None` for models without them). It may return non-finite
    /// values (a diverging ODE, say); callers drop and count such simulations.
    fn simulate_site(
        &self, globals: &[f64], locals: &[f64], inputs: Option<&[f64]>, rng: &mut dyn Rng,
    ) -> Vec<f64>;

    /// The locals of `rows` sites given their globals (`rows × global_dim` → `rows ×
    /// local_dim`), for the batched paths of models with a [`BatchSimulator`]. The default
    /// draws row by row.
    fn sample_locals_batch(&self, globals: &[f64], rows: usize, rng: &mut dyn Rng) -> Vec<f64> {
        let gd = self.global_dim();
        (0..rows).flat_map(|r| self.sample_locals(&globals[r * gd..(r + 1) * gd], rng)).collect()
    }

    /// ln p(θ) under the prior of a natural-space parameter vector of `sites` sites (−∞
    /// outside the support), or `None` when the model cannot evaluate its prior density.
    /// `run --rounds` weighs its proposal draws by it.
    fn log_prior(&self, _params: &[f64], _sites: usize) -> Option<f64> {
        None
    }

    /// A simulator that runs on whole batches of sites, when the model has one (a user's
    /// Python function or external program): the pipelines then call it once per phase instead
    /// of [`HierarchicalModel::simulate_site`] once per site.
    fn batch_simulator(&self) -> Option<&dyn BatchSimulator> {
        None
    }

    /// An error met inside a method that cannot return one (a user's prior function that raised
    /// while locals were drawn); the pipelines check it after each phase that draws.
    fn deferred_error(&self) -> Result<()> {
        Ok(())
    }

    /// `n` independent draws from the exact posterior p(θ_g, η_1:S | y_1:S), each a full parameter
    /// vector in natural space, or `None` when the model has no exact posterior (or cannot
    /// evaluate it for this observation). `obs` holds `sites × obs_dim` finite values, site-major
    /// (check user input with [`check_observation`] first); `inputs` follows the same layout.
    fn exact_posterior(
        &self, _obs: &[f64], _inputs: Option<&[f64]>, _sites: usize, _n: usize, _rng: &mut dyn Rng,
    ) -> Option<Vec<Vec<f64>>> {
        None
    }

    /// ln p(θ | y) of the exact posterior at each natural-space parameter vector of `params`, or
    /// `None` when the model has no closed-form density. Same arguments as
    /// [`HierarchicalModel::exact_posterior`].
    fn exact_log_posterior(
        &self, _obs: &[f64], _inputs: Option<&[f64]>, _sites: usize, _params: &[Vec<f64>],
    ) -> Option<Vec<f64>> {
        None
    }

    /// [`HierarchicalModel::exact_posterior`] for an observed data set, which may be ragged
    /// ([`Observed::counts`]); a task whose exact posterior handles ragged sites overrides it.
    fn exact_posterior_observed(
        &self, obs: &Observed, n: usize, rng: &mut dyn Rng,
    ) -> Option<Vec<Vec<f64>>> {
        if obs.counts.is_some() {
            return None;
        }
        self.exact_posterior(&obs.values, obs.inputs.as_deref(), obs.sites, n, rng)
    }

    /// Number of global scalars.
    fn global_dim(&self) -> usize {
        total_size(&self.global_variables())
    }

    /// Number of local scalars per site.
    fn local_dim(&self) -> usize {
        total_size(&self.local_variables())
    }

    /// Number of observation scalars per site.
    fn obs_dim(&self) -> usize {
        total_size(&self.observation_variables())
    }

    /// Length of the parameter vector for `sites` sites.
    fn param_dim(&self, sites: usize) -> usize {
        self.global_dim() + sites * self.local_dim()
    }

    /// CSV column names of the parameter vector (docs/architecture.md#csv-columns): `sigma`, `loc[1]`, `mu.3`,
    /// `theta.3[1]`; globals first, then site 0's locals, site 1's, and so on.
    fn parameter_names(&self, sites: usize) -> Vec<String> {
        let mut names = Vec::with_capacity(self.param_dim(sites));
        push_names(&self.global_variables(), None, &mut names);
        let locals = self.local_variables();
        for site in 0..sites {
            push_names(&locals, Some(site), &mut names);
        }
        names
    }

    /// CSV column names of the observation vector: `y.0`, `y.1`, ... or `y.0[2]` when a site
    /// observes a vector.
    fn observation_names(&self, sites: usize) -> Vec<String> {
        let vars = self.observation_variables();
        let mut names = Vec::with_capacity(sites * self.obs_dim());
        for site in 0..sites {
            push_names(&vars, Some(site), &mut names);
        }
        names
    }

    /// The bijection of every scalar of the parameter vector for `sites` sites. Batch code calls
    /// this once and maps rows with it.
    fn parameter_bijections(&self, sites: usize) -> Vec<Bijection> {
        let per_scalar = |vars: Vec<Variable>| -> Vec<Bijection> {
            vars.iter().flat_map(|v| std::iter::repeat_n(v.bijection, v.size)).collect()
        };
        let mut all = per_scalar(self.global_variables());
        let locals = per_scalar(self.local_variables());
        for _ in 0..sites {
            all.extend_from_slice(&locals);
        }
        all
    }

    /// Observations (natural, site-major, any whole number of sites) mapped by the observation
    /// variables' bijections to the space the networks see.
    fn observations_to_network(&self, obs: &[f64]) -> Vec<f64> {
        let per_site: Vec<Bijection> = self
            .observation_variables()
            .iter()
            .flat_map(|v| std::iter::repeat_n(v.bijection, v.size))
            .collect();
        obs.iter().zip(per_site.iter().cycle()).map(|(&y, b)| b.forward(y)).collect()
    }

    /// A natural-space parameter vector mapped to unconstrained space.
    ///
    /// # Panics
    /// When `params.len() != param_dim(sites)`.
    fn to_unconstrained(&self, params: &[f64], sites: usize) -> Vec<f64> {
        map_params(&self.parameter_bijections(sites), params, Bijection::forward)
    }

    /// An unconstrained parameter vector mapped back to natural space.
    ///
    /// # Panics
    /// When `unconstrained.len() != param_dim(sites)`.
    fn to_natural(&self, unconstrained: &[f64], sites: usize) -> Vec<f64> {
        map_params(&self.parameter_bijections(sites), unconstrained, Bijection::inverse)
    }

    /// ln |det ∂u/∂x| of the whole natural → unconstrained map at a natural-space vector:
    /// log p_natural(x) = log p_unconstrained(u(x)) + this.
    ///
    /// # Panics
    /// When `params.len() != param_dim(sites)`.
    fn unconstrained_log_det(&self, params: &[f64], sites: usize) -> f64 {
        let bijections = self.parameter_bijections(sites);
        assert_eq!(params.len(), bijections.len(), "parameter vector length for {sites} sites");
        bijections.iter().zip(params).map(|(b, &x)| b.forward_log_det(x)).sum()
    }
}

/// The token layouts of the model layer are built from these sizes.
impl<M: HierarchicalModel + ?Sized> VariableSizes for M {
    fn global_sizes(&self) -> Vec<usize> {
        sizes(&self.global_variables())
    }

    fn local_sizes(&self) -> Vec<usize> {
        sizes(&self.local_variables())
    }

    fn observation_sizes(&self) -> Vec<usize> {
        sizes(&self.observation_variables())
    }

    fn input_dim(&self) -> usize {
        self.functional_input_dim()
    }
}

fn sizes(vars: &[Variable]) -> Vec<usize> {
    vars.iter().map(|v| v.size).collect()
}

fn total_size(vars: &[Variable]) -> usize {
    vars.iter().map(|v| v.size).sum()
}

pub(crate) fn push_names(vars: &[Variable], site: Option<usize>, names: &mut Vec<String>) {
    for var in vars {
        let base = match site {
            Some(s) => format!("{}.{s}", var.name),
            None => var.name.clone(),
        };
        if var.size == 1 {
            names.push(base);
        } else {
            names.extend((0..var.size).map(|j| format!("{base}[{j}]")));
        }
    }
}

fn map_params(bijections: &[Bijection], values: &[f64], f: fn(Bijection, f64) -> f64) -> Vec<f64> {
    assert_eq!(values.len(), bijections.len(), "parameter vector length");
    bijections.iter().zip(values).map(|(&b, &v)| f(b, v)).collect()
}

/// Every built-in task, in the order `tfmpe` lists them.
pub fn tasks() -> Vec<Box<dyn HierarchicalModel>> {
    vec![
        Box::new(HierGaussian),
        Box::new(HierGaussianLinear),
        Box::new(HierGaussianLinearUniform),
        Box::new(HierBrownian),
        Box::new(HierSeir),
        Box::new(HierBurgers),
        Box::new(HierGaussianMixture),
        Box::new(HierTwoMoons),
        Box::new(HierSlcp),
        Box::new(HierSir),
        Box::new(HierLotkaVolterra),
    ]
}

/// The built-in task with this command-line name.
pub fn task_by_name(name: &str) -> Result<Box<dyn HierarchicalModel>> {
    let all = tasks();
    let known: Vec<String> = all.iter().map(|t| t.name().to_string()).collect();
    all.into_iter().find(|t| t.name() == name).ok_or_else(|| {
        Error::Invalid(format!("unknown task `{name}`; known tasks: {}", known.join(", ")))
    })
}

/// Checks a user-supplied observation for `sites` sites: the right number of values, all finite.
pub fn check_observation(model: &dyn HierarchicalModel, obs: &[f64], sites: usize) -> Result<()> {
    let per_site = model.obs_dim();
    if obs.len() != sites * per_site {
        return Err(Error::Shape(format!(
            "task `{}` with {sites} sites needs {} observation values ({per_site} per site), got {}",
            model.name(),
            sites * per_site,
            obs.len()
        )));
    }
    if let Some(i) = obs.iter().position(|v| !v.is_finite()) {
        let column = &model.observation_names(sites)[i];
        return Err(Error::Invalid(format!(
            "observation `{column}` is {}; observations must be finite numbers",
            obs[i]
        )));
    }
    Ok(())
}

/// One observed data set: what a posterior conditions on.
#[derive(Clone, Debug, PartialEq)]
pub struct Observed {
    pub sites: usize,
    /// `sites × obs_dim` values, site-major, natural space.
    pub values: Vec<f64>,
    /// The functional inputs, `functional_input_dim` values per observation scalar in the same
    /// order (`None` for models without them).
    pub inputs: Option<Vec<f64>>,
    /// Observed values per site when some site has fewer than `obs_dim` (a ragged data set of a
    /// task with [`HierarchicalModel::ragged_observations`]): site s holds the first
    /// `counts[s]` observation scalars, and `values` is their concatenation. `None`: every site
    /// holds `obs_dim`.
    pub counts: Option<Vec<usize>>,
}

impl Observed {
    /// The data set as one flat vector, as classifiers on (θ, x) take it (L-C2ST): the observed
    /// values, then their functional inputs.
    pub fn features(&self) -> Vec<f64> {
        self.values.iter().chain(self.inputs.iter().flatten()).copied().collect()
    }

    /// Observed values of each site.
    pub fn site_counts(&self, obs_dim: usize) -> Vec<usize> {
        self.counts.clone().unwrap_or_else(|| vec![obs_dim; self.sites])
    }

    /// The values and inputs with every site filled up to `obs_dim` scalars by zeros (for a
    /// ragged data set; the networks mask the filled places out).
    pub fn padded(&self, obs_dim: usize, input_dim: usize) -> (Vec<f64>, Option<Vec<f64>>) {
        let Some(counts) = &self.counts else {
            return (self.values.clone(), self.inputs.clone());
        };
        let mut values = Vec::with_capacity(self.sites * obs_dim);
        let mut inputs = self.inputs.as_ref().map(|_| Vec::with_capacity(values.capacity()));
        let mut at = 0;
        for &n in counts {
            values.extend_from_slice(&self.values[at..at + n]);
            values.resize(values.len() + obs_dim - n, 0.0);
            if let (Some(out), Some(all)) = (inputs.as_mut(), &self.inputs) {
                out.extend_from_slice(&all[at * input_dim..(at + n) * input_dim]);
                out.resize(out.len() + (obs_dim - n) * input_dim, 0.0);
            }
            at += n;
        }
        (values, inputs)
    }
}

/// Checks an observed data set: its site counts (ragged only for a task that allows it, each
/// between 1 and `obs_dim`), its values (finite, as many as the counts say) and its inputs.
pub fn check_observed(model: &dyn HierarchicalModel, obs: &Observed) -> Result<()> {
    let per_site = model.obs_dim();
    if let Some(counts) = &obs.counts {
        if !model.ragged_observations() {
            return Err(Error::Invalid(format!(
                "task `{}` observes {per_site} values at every site; it cannot take sites with fewer",
                model.name()
            )));
        }
        if counts.len() != obs.sites {
            return Err(Error::Shape(format!(
                "{} observation counts for {} sites",
                counts.len(),
                obs.sites
            )));
        }
        if let Some((s, n)) = counts.iter().enumerate().find(|(_, &n)| n == 0 || n > per_site) {
            return Err(Error::Invalid(format!(
                "site {s} has {n} observations; task `{}` observes between 1 and {per_site} per site",
                model.name()
            )));
        }
        let total: usize = counts.iter().sum();
        if obs.values.len() != total {
            return Err(Error::Shape(format!(
                "{} observation values for site counts that add up to {total}",
                obs.values.len()
            )));
        }
        if let Some(i) = obs.values.iter().position(|v| !v.is_finite()) {
            return Err(Error::Invalid(format!(
                "observation value {i} is {}; observations must be finite numbers",
                obs.values[i]
            )));
        }
    } else {
        check_observation(model, &obs.values, obs.sites)?;
    }
    let n = model.functional_input_dim();
    match &obs.inputs {
        None if n == 0 => Ok(()),
        Some(inputs) if n > 0 && inputs.len() == obs.values.len() * n => {
            match inputs.iter().position(|v| !v.is_finite()) {
                Some(i) => Err(Error::Invalid(format!(
                    "functional input {i} is {}; inputs must be finite numbers",
                    inputs[i]
                ))),
                None => Ok(()),
            }
        }
        inputs => Err(Error::Shape(format!(
            "task `{}` needs {} functional-input values ({n} per observation value), got {}",
            model.name(),
            obs.values.len() * n,
            inputs.as_ref().map_or(0, Vec::len)
        ))),
    }
}

/// One simulated data set of `sites` sites, drawn from the prior and the simulator.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    pub sites: usize,
    /// `param_dim(sites)` values, natural space.
    pub params: Vec<f64>,
    /// `sites × obs_dim` values, site-major.
    pub obs: Vec<f64>,
    /// The functional inputs the simulator used (`None` for models without them).
    pub inputs: Option<Vec<f64>>,
}

impl Dataset {
    /// Whether every simulated observation is finite; callers drop data sets that are not.
    pub fn is_finite(&self) -> bool {
        self.obs.iter().all(|v| v.is_finite())
    }

    /// The data set as an observation (without its parameters).
    pub fn observed(&self) -> Observed {
        Observed {
            sites: self.sites,
            values: self.obs.clone(),
            inputs: self.inputs.clone(),
            counts: None,
        }
    }
}

/// Draws the globals, then `sites` sets of locals, functional inputs and site observations.
/// A model with a [`BatchSimulator`] simulates all the sites in one call, whose failure is the
/// error returned.
///
/// # Panics
/// When the model returns vectors of other lengths than its variables declare (a bug in the
/// model, reported with the model's name).
pub fn simulate_dataset(
    model: &dyn HierarchicalModel, sites: usize, rng: &mut dyn Rng,
) -> Result<Dataset> {
    if let Some(sim) = model.batch_simulator() {
        return batch::simulate_dataset_batched(model, sim, sites, rng);
    }
    let name = model.name();
    let (local_dim, obs_dim) = (model.local_dim(), model.obs_dim());
    let globals = model.sample_globals(rng);
    assert_eq!(globals.len(), model.global_dim(), "`{name}`: sample_globals length");
    let mut params = Vec::with_capacity(model.param_dim(sites));
    params.extend_from_slice(&globals);
    let mut obs = Vec::with_capacity(sites * obs_dim);
    let mut inputs = (model.functional_input_dim() > 0).then(Vec::new);
    for _ in 0..sites {
        let locals = model.sample_locals(&globals, rng);
        assert_eq!(locals.len(), local_dim, "`{name}`: sample_locals length");
        let site_inputs = model.sample_functional_inputs(rng);
        assert_eq!(
            site_inputs.as_ref().map_or(0, Vec::len),
            obs_dim * model.functional_input_dim(),
            "`{name}`: sample_functional_inputs length"
        );
        let y = model.simulate_site(&globals, &locals, site_inputs.as_deref(), rng);
        assert_eq!(y.len(), obs_dim, "`{name}`: simulate_site length");
        params.extend(locals);
        obs.extend(y);
        if let (Some(all), Some(site)) = (inputs.as_mut(), site_inputs) {
            all.extend(site);
        }
    }
    Ok(Dataset { sites, params, obs, inputs })
}

/// One standard normal draw; the tasks' priors and simulators are built from it.
fn std_normal(rng: &mut dyn Rng) -> f64 {
    rng.sample(StandardNormal)
}

/// One uniform draw on [0, 1).
fn uniform01(rng: &mut dyn Rng) -> f64 {
    rng.random::<f64>()
}
