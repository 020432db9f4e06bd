//! What a pipeline run is asked to do: the method and its settings.

use serde::{Deserialize, Serialize};

use super::resume::Checkpoints;
use super::sets::{InputSource, SiteCounts};
use super::train::{Preset, TrainConfig};
use crate::error::{Error, Result};
use crate::model::ode::Solver;
use crate::model::tfmpe::TfmpeConfig;
use crate::tasks::HierarchicalModel;

/// How the posterior network gets its training sets (see the module documentation of
/// [`crate::sbi`]); each has its own file there, and [`crate::sbi::run`] dispatches on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    Lf,
    Direct,
    Pf,
    Joint,
}

impl Method {
    /// The name on the command line and in files.
    pub fn name(self) -> &'static str {
        match self {
            Method::Lf => "lf",
            Method::Direct => "direct",
            Method::Pf => "pf",
            Method::Joint => "joint",
        }
    }
}

impl std::str::FromStr for Method {
    type Err = Error;

    fn from_str(s: &str) -> Result<Method> {
        match s {
            "lf" => Ok(Method::Lf),
            "direct" => Ok(Method::Direct),
            "pf" => Ok(Method::Pf),
            "joint" => Ok(Method::Joint),
            other => Err(Error::Invalid(format!(
                "unknown method `{other}`: use lf, direct, pf or joint"
            ))),
        }
    }
}

/// LF's default pool ([`RunConfig::pool_sets`]): synthetic sets per training simulation, up
/// to this many sites in all.
pub const POOL_SETS_PER_SIMULATION: usize = 5;
pub const POOL_SITES: usize = 90_000;

/// How a network standardises its targets: LF's surrogate its observations
/// ([`super::scaling`]), the posterior its locals ([`super::local_scaling`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scaling {
    /// By each value's mean and standard deviation over the training sets.
    Marginal,
    /// Then by a conditional location and scale learned from what the value depends on.
    Conditional,
}

impl std::str::FromStr for Scaling {
    type Err = Error;

    fn from_str(s: &str) -> Result<Scaling> {
        match s {
            "marginal" => Ok(Scaling::Marginal),
            "conditional" => Ok(Scaling::Conditional),
            other => Err(Error::Invalid(format!(
                "unknown scaling `{other}`: use conditional or marginal"
            ))),
        }
    }
}

/// How a conditional standardisation the run did not name is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScalingChoice {
    /// Keep the fit.
    Always,
    /// Keep it only where its ln s varies over the training rows by at least
    /// [`AUTO_MIN_LOG_SCALE_SPREAD`] (mean standard deviation per value) and by three times
    /// what the fit's noise alone would show (`log_scale_noise` of its report: 0.117 at 180
    /// simulations of hier-gaussian, whose fitted spread there was 0.108): a noise scale that
    /// depends on the parameters or inputs is what the marginal standardisation gets wrong.
    WhereTheScaleVaries,
}

/// The default surrogate's scaling is conditional where the fitted ln s varies by this much
/// over the training sites (10% in s), else marginal. Measured spreads: hier-gaussian-linear
/// 1.09 (its noise is σ), hier-seir 0.65, hier-burgers 0.42, hier-gaussian 0.025 (constant
/// noise: the spread is the fit's own noise). hier-gaussian-linear at S = 10, budget 2 000:
/// conditional gave C2ST 0.5925 and 0.598 at seeds 0 and 1 (marginal 0.5655 and 0.631), and its
/// draws' log densities a Pearson correlation of 0.98 with the exact ones (marginal 0.83 and
/// 0.79: too much mass at small σ, since a marginal surrogate makes narrow sites too wide);
/// hier-gaussian, whose noise is constant, was worse with it (0.723 against 0.5985 at seed 0).
pub const AUTO_MIN_LOG_SCALE_SPREAD: f64 = 0.1;

/// Settings of a pipeline run.
#[derive(Clone, Debug, Serialize)]
pub struct RunConfig {
    /// The site count of the observation.
    pub sites: usize,
    /// LF: train the posterior on sets of every site count from 1 to this one, so that it
    /// answers any of them (`None`: only `sites`). pf: the largest set it simulates (its
    /// networks always answer every site count up to it).
    pub max_sites: Option<usize>,
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
    /// LF: training sets in the synthetic pool (in each epoch's draw, with `fresh_sets`);
    /// `None`: [`RunConfig::pool_sets`]'s default. Sets past the simulations' globals take
    /// prior draws: they cost surrogate samples, never simulator calls.
    #[serde(default)]
    pub synthetic_sets: Option<usize>,
    /// LF: how the surrogate standardises its observations; `None`: conditional where the
    /// observations' fitted scale varies ([`RunConfig::surrogate_scaling_fit`]).
    #[serde(default)]
    pub surrogate_scaling: Option<Scaling>,
    /// lf and direct: how the posterior standardises its locals; `None`: conditional.
    #[serde(default)]
    pub posterior_scaling: Option<Scaling>,
    /// LF: how surrogate samples are integrated.
    pub surrogate_solver: Solver,
    /// LF, a task with functional inputs: where simulated sites take their inputs from.
    #[serde(skip)]
    pub inputs: InputSource,
    /// LF, a task whose sites may be observed at fewer values: synthetic sites keep a random
    /// number of their observations, so the posterior answers ragged data sets.
    pub ragged: bool,
    /// LF: rounds of simulation and training; each after the first simulates at a proposal
    /// drawn from the posterior at `observation` ([`super::proposal`]).
    pub rounds: usize,
    /// The observation a sequential run (`rounds` > 1) draws its proposals at.
    #[serde(skip)]
    pub observation: Option<crate::tasks::Observed>,
    /// Where finished networks are saved as their phase ends, and whether to resume from them.
    #[serde(skip)]
    pub checkpoints: Checkpoints,
}

impl RunConfig {
    /// Whether the surrogate's observations get a conditional standardisation, and how it is
    /// chosen: `Some(conditional)` always, `Some(marginal)` never, `None` (the default) where
    /// the fitted scale varies over the training sites ([`AUTO_MIN_LOG_SCALE_SPREAD`]).
    pub fn surrogate_scaling_fit(&self) -> Option<ScalingChoice> {
        match self.surrogate_scaling {
            Some(Scaling::Marginal) => None,
            Some(Scaling::Conditional) => Some(ScalingChoice::Always),
            None => Some(ScalingChoice::WhereTheScaleVaries),
        }
    }

    /// LF's synthetic training sets for `simulations` training simulations: `--synthetic-sets`,
    /// else [`POOL_SETS_PER_SIMULATION`] per simulation, but no more than [`POOL_SITES`] sites
    /// in all, and never fewer sets than simulations. A pool of few sets is memorised
    /// (hier-gaussian-linear at S = 10, budget 2 000: 1 800 sets gave C2ST 0.6055, 9 000 gave
    /// 0.5765); more cost surrogate samples only, and the cap keeps that cost bounded where
    /// the simulations alone make large sets many (the README's main job keeps its 4 500).
    pub fn pool_sets(&self, simulations: usize) -> usize {
        let sites = self.site_counts().max().max(1);
        let more =
            POOL_SETS_PER_SIMULATION.saturating_mul(simulations).min(POOL_SITES.div_ceil(sites));
        self.synthetic_sets.unwrap_or(simulations.max(more))
    }

    /// The posterior's standardisation of its locals this run uses: conditional by default
    /// (docs/architecture.md, data flow, has the measurements).
    pub fn local_scaling(&self) -> Scaling {
        self.posterior_scaling.unwrap_or(Scaling::Conditional)
    }

    pub fn new(sites: usize, budget: usize) -> RunConfig {
        RunConfig {
            sites,
            max_sites: None,
            budget,
            method: Method::Lf,
            seed: 0,
            val_fraction: 0.1,
            train: Preset::Fast.train(),
            surrogate_train: Preset::Fast.train(),
            architecture: TfmpeConfig::default(),
            fresh_sets: false,
            synthetic_sets: None,
            surrogate_scaling: None,
            posterior_scaling: None,
            surrogate_solver: Solver::Rk4 { steps: 10 },
            inputs: InputSource::Prior,
            ragged: false,
            rounds: 1,
            observation: None,
            checkpoints: Checkpoints::default(),
        }
    }

    /// Refuses settings no pipeline can run with for `task`, before any work: sizes,
    /// hyperparameters, batches against the budget and the validation split, and memory.
    pub fn check(&self, task: &dyn HierarchicalModel) -> Result<()> {
        if self.sites == 0 {
            return Err(Error::Invalid("--sites must be at least 1".into()));
        }
        if self.budget == 0 {
            return Err(Error::Invalid("--budget must be at least 1".into()));
        }
        for t in [&self.train, &self.surrogate_train] {
            t.check()?;
        }
        self.architecture.check()?;
        if self.ragged && self.method != Method::Lf {
            return Err(Error::Invalid(
                "--ragged needs --method lf: it masks observations of synthetic sets".into(),
            ));
        }
        if self.method == Method::Joint && (self.max_sites.is_some() || self.ragged) {
            return Err(Error::Invalid(
                "--method joint trains one network of --sites sites; --max-sites and --ragged \
                 need --method lf"
                    .into(),
            ));
        }
        if self.rounds == 0 {
            return Err(Error::Invalid("--rounds must be at least 1".into()));
        }
        if self.rounds > 1 {
            let other = if self.method != Method::Lf {
                Some(format!("--method {}", self.method.name()))
            } else if self.max_sites.is_some() {
                Some("--max-sites".to_string())
            } else if self.fresh_sets {
                Some("--fresh-sets".to_string())
            } else {
                None
            };
            if let Some(other) = other {
                return Err(Error::Invalid(format!(
                    "--rounds needs --method lf at one site count with a fixed pool of synthetic \
                     sets; drop {other}"
                )));
            }
            let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(0);
            let g = task.sample_globals(&mut rng);
            let site = [g.clone(), task.sample_locals(&g, &mut rng)].concat();
            if task.log_prior(&site, 1).is_none() {
                return Err(super::proposal::no_prior_density(task));
            }
        }
        if self.surrogate_scaling.is_some() && self.method != Method::Lf {
            return Err(Error::Invalid(format!(
                "--surrogate-scaling needs --method lf: --method {} has no separate surrogate",
                self.method.name()
            )));
        }
        if self.posterior_scaling.is_some() && !matches!(self.method, Method::Lf | Method::Direct) {
            return Err(Error::Invalid(format!(
                "--posterior-scaling needs --method lf or direct: --method {} has no posterior \
                 network over all the parameters of a data set",
                self.method.name()
            )));
        }
        if let Some(n) = self.synthetic_sets {
            if !matches!(self.method, Method::Lf | Method::Joint) {
                return Err(Error::Invalid(format!(
                    "--synthetic-sets needs --method lf or joint: --method {} trains on \
                     simulated sets only",
                    self.method.name()
                )));
            }
            if n == 0 {
                return Err(Error::Invalid("--synthetic-sets must be at least 1".into()));
            }
            if n < self.train.batch {
                return Err(Error::Invalid(format!(
                    "--synthetic-sets {n} is fewer than one batch of {}: raise it or lower \
                     --batch-size",
                    self.train.batch
                )));
            }
        }
        if self.fresh_sets && self.method != Method::Lf {
            return Err(Error::Invalid(
                "--fresh-sets needs --method lf: only LF's synthetic sets can be drawn anew".into(),
            ));
        }
        if self.method == Method::Pf && task.global_dim() == 0 {
            return Err(Error::Invalid(format!(
                "--method pf: task `{}` has no global parameters to factorise the posterior by",
                task.name()
            )));
        }
        if let Some(max) = self.max_sites {
            if max < self.sites {
                return Err(Error::Invalid(format!(
                    "--max-sites {max} is below --sites {}; the model must answer the observation's site count",
                    self.sites
                )));
            }
            if self.method == Method::Direct {
                return Err(Error::Invalid(
                    "--max-sites needs --method lf or pf: direct trains on sets of --sites sites"
                        .into(),
                ));
            }
        }
        super::footprint::check(self, task)
    }

    /// The site counts of the posterior's training sets.
    pub fn site_counts(&self) -> SiteCounts {
        match self.max_sites {
            Some(max) => SiteCounts::UpTo(max),
            None => SiteCounts::Fixed(self.sites),
        }
    }

    /// Of `n` simulations, how many are held out for validation: at least one, and at least
    /// one left for training.
    pub(crate) fn validation_count(&self, n: usize) -> usize {
        let n_val = ((n as f64) * self.val_fraction).round() as usize;
        n_val.clamp(1, n.saturating_sub(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The default pool: five sets per simulation up to 90 000 sites, never fewer sets than
    /// simulations; `--synthetic-sets` overrides it.
    #[test]
    fn the_default_pool_grows_with_the_simulations_up_to_a_site_cap() {
        assert_eq!(RunConfig::new(10, 2000).pool_sets(1800), 9000);
        assert_eq!(RunConfig::new(3, 200).pool_sets(180), 900);
        assert_eq!(RunConfig::new(50, 5000).pool_sets(4500), 4500);
        assert_eq!(RunConfig::new(30, 5000).pool_sets(1000), 3000);
        let any_s = RunConfig { max_sites: Some(20), ..RunConfig::new(5, 2000) };
        assert_eq!(any_s.pool_sets(1800), 4500);
        let set = RunConfig { synthetic_sets: Some(700), ..RunConfig::new(10, 2000) };
        assert_eq!(set.pool_sets(1800), 700);
        // A budget too large to run still sizes its pool without overflowing.
        assert_eq!(RunConfig::new(3, usize::MAX).pool_sets(usize::MAX), usize::MAX);
    }

    /// The surrogate's conditional fit is kept where the run asks for it, and by default
    /// only where the scale varies.
    #[test]
    fn the_surrogate_keeps_its_conditional_scaling_where_asked_or_where_the_scale_varies() {
        let cfg = RunConfig::new(10, 2000);
        assert_eq!(cfg.surrogate_scaling_fit(), Some(ScalingChoice::WhereTheScaleVaries));
        let marginal = RunConfig { surrogate_scaling: Some(Scaling::Marginal), ..cfg.clone() };
        assert_eq!(marginal.surrogate_scaling_fit(), None);
        let conditional = RunConfig { surrogate_scaling: Some(Scaling::Conditional), ..cfg };
        assert_eq!(conditional.surrogate_scaling_fit(), Some(ScalingChoice::Always));
    }
}
