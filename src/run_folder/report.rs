//! `report.json`: what a run did (settings, counts, timings, losses) and how good its posterior
//! is (metrics). Outside tools parse this file, so its keys, nesting and number formats are a
//! contract: keys are sorted (the fields are declared in that order too), and a value that is
//! absent today stays absent (not null).
//!
//! JSON has no NaN or infinity (serde_json writes them as null), so the floats that a diverged
//! training or a degenerate posterior can make non-finite read null back as NaN.

use std::collections::BTreeMap;

use serde::de::{DeserializeOwned, Deserializer};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::metrics::Lc2stConfig;
use crate::model::ode::Solver;
use crate::sbi::train::TrainReport;
use crate::sbi::{Method, Scaling, ScalingReport};

/// Everything `report.json` holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The backend's name (`cpu`, `wgpu`, `cuda`).
    pub backend: String,
    /// Why that backend was chosen.
    pub backend_reason: String,
    /// Single-site simulator calls asked for.
    pub budget: usize,
    /// The device's own name.
    pub device: String,
    pub dropped_simulations: usize,
    pub fresh_sets: bool,
    /// lf and joint: the training sets of the synthetic pool (`--synthetic-sets`, or its
    /// default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synthetic_sets: Option<usize>,
    pub losses: Losses,
    /// With `--max-sites`: the largest site count the posterior answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_sites: Option<usize>,
    pub method: Method,
    /// Filled by the evaluation; empty when it was skipped.
    pub metrics: Metrics,
    pub observation: ObservationSource,
    /// With `--observed-inputs`: simulated sites observed at the observation's inputs.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub observed_inputs: bool,
    /// With `--ragged`: the posterior trained on sites observed at fewer values.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ragged: bool,
    /// With `--rounds`: each round's simulations, where their parameters came from and the
    /// effective sample size of the proposal's importance weights.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rounds: Vec<crate::sbi::RoundReport>,
    /// Posterior samples drawn into `samples.csv`.
    pub samples: usize,
    pub seed: u64,
    pub simulator_calls: usize,
    pub sites: usize,
    /// The solver of the posterior samples.
    pub solver: Solver,
    /// lf: how the surrogate standardised its observations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub surrogate_scaling: Option<Scaling>,
    /// lf and direct: how the posterior standardised its locals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub posterior_scaling: Option<Scaling>,
    pub task: String,
    pub tfmpe_version: String,
    /// Wall seconds per phase (`simulate`, ..., `sampling`, `total`).
    pub timings_s: BTreeMap<String, f64>,
    pub training_sets: usize,
    pub validation_sets: usize,
}

/// The training of each network of the run (`null` for a network the method does not have).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Losses {
    /// The posterior network (pf: the global network).
    pub posterior: Option<Training>,
    pub surrogate: Option<Training>,
    /// pf's local network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<Training>,
}

/// One network's training, from [`TrainReport`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Training {
    pub best_epoch: usize,
    #[serde(deserialize_with = "nan_if_null")]
    pub best_val_loss: f64,
    pub epochs: usize,
    /// The last epoch's mean training loss; `None` when no epoch finished.
    pub final_train_loss: Option<f64>,
    /// The surrogate's conditional standardisation, fitted before its flow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scaling: Option<ScalingReport>,
    pub seconds: f64,
    pub steps: usize,
    pub steps_per_s: f64,
    pub stop_message: Option<String>,
    pub stop_reason: String,
    #[serde(deserialize_with = "nan_if_null")]
    pub train_losses: Vec<f64>,
    #[serde(deserialize_with = "nan_if_null")]
    pub val_losses: Vec<f64>,
    /// With sets of several site counts: the validation loss per count at the best epoch.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub val_loss_by_sites: BTreeMap<usize, f64>,
}

impl From<&TrainReport> for Training {
    fn from(r: &TrainReport) -> Training {
        Training {
            best_epoch: r.best_epoch,
            best_val_loss: r.best_val_loss,
            epochs: r.epochs,
            final_train_loss: r.train_losses.last().copied(),
            scaling: r.scaling.clone(),
            seconds: r.seconds,
            steps: r.steps,
            steps_per_s: r.steps_per_s,
            stop_message: r.stop_message.clone(),
            stop_reason: r.stop_reason.clone(),
            train_losses: r.train_losses.clone(),
            val_losses: r.val_losses.clone(),
            val_loss_by_sites: r.val_loss_by_sites.clone(),
        }
    }
}

/// Where the observation came from: given by the caller (written `"file"`: the command line
/// reads it from one), or simulated from the prior (`{"obs_seed": n}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "ObservationJson", into = "ObservationJson")]
pub enum ObservationSource {
    Given,
    Prior { obs_seed: u64 },
}

#[derive(Clone, Copy, Serialize, Deserialize)]
#[serde(untagged)]
enum ObservationJson {
    Prior { obs_seed: u64 },
    Word(ObservationWord),
}

#[derive(Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum ObservationWord {
    File,
}

impl From<ObservationJson> for ObservationSource {
    fn from(j: ObservationJson) -> Self {
        match j {
            ObservationJson::Prior { obs_seed } => ObservationSource::Prior { obs_seed },
            ObservationJson::Word(ObservationWord::File) => ObservationSource::Given,
        }
    }
}

impl From<ObservationSource> for ObservationJson {
    fn from(s: ObservationSource) -> Self {
        match s {
            ObservationSource::Prior { obs_seed } => ObservationJson::Prior { obs_seed },
            ObservationSource::Given => ObservationJson::Word(ObservationWord::File),
        }
    }
}

/// The evaluation's figures; each part is absent when it was not computed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Its keys (`c2st`, and `c2st_reference_samples` or `note`) sit in this object itself.
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub c2st: Option<C2st>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sbc: Option<SbcSummary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tarp: Option<CoverageSummary>,
    /// The coverage of highest-posterior-density regions, from the log density.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_coverage: Option<CoverageSummary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lc2st: Option<Lc2stSummary>,
}

/// C2ST of the run's samples against the exact posterior.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum C2st {
    /// The classifier's accuracy against `c2st_reference_samples` exact draws (0.5: the two
    /// sample sets cannot be told apart).
    Measured {
        #[serde(deserialize_with = "nan_if_null")]
        c2st: f64,
        /// The same test on the global parameters' columns alone. The joint C2ST of many
        /// sites can look fine while the globals, which every site informs, are off: this
        /// says so. Absent in reports written before it existed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        c2st_globals: Option<f64>,
        c2st_reference_samples: usize,
    },
    /// The task has no exact posterior: `c2st` is written as null and `note` says why.
    Unavailable { c2st: (), note: String },
}

/// Simulation-based calibration: per-parameter KS tests of the ranks of the truths among the
/// posterior draws, keyed by parameter name.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SbcSummary {
    pub data_sets: usize,
    /// Posterior draws per data set (ranks take the values 0..=draws).
    pub draws: usize,
    #[serde(deserialize_with = "nan_if_null")]
    pub ks_p: BTreeMap<String, f64>,
    #[serde(deserialize_with = "nan_if_null")]
    pub min_ks_p: f64,
    pub min_ks_p_parameter: String,
    /// Ten-bin rank histograms.
    pub rank_histograms: BTreeMap<String, Vec<usize>>,
}

/// A coverage test's summary: TARP's, or the HPD expected coverage's (`metrics::Coverage`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CoverageSummary {
    #[serde(deserialize_with = "nan_if_null")]
    pub atc: f64,
    pub data_sets: usize,
    pub draws: usize,
    /// `[credibility level, expected coverage]` at levels 0, 0.05, ..., 1.
    #[serde(deserialize_with = "nan_if_null")]
    pub ecp: Vec<[f64; 2]>,
    #[serde(deserialize_with = "nan_if_null")]
    pub ks_p: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub ks_statistic: f64,
}

/// L-C2ST of the saved posterior network at the run's observation (see `metrics::lc2st`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Lc2stSummary {
    #[serde(deserialize_with = "nan_if_null")]
    pub statistic: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub p_value: f64,
    pub reject: bool,
    /// Data sets from the prior, with one posterior draw each, that trained the classifiers.
    pub data_sets: usize,
    /// Posterior samples at the observation (`samples.csv`) the statistic averages over.
    pub posterior_samples: usize,
    /// Mean and 95% quantile of the null statistics.
    #[serde(deserialize_with = "nan_if_null")]
    pub null_mean: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub null_q95: f64,
    /// Epochs until the last classifier stopped.
    pub epochs: usize,
    pub settings: Lc2stConfig,
}

impl Report {
    /// The text of `report.json`.
    pub fn to_json_pretty(&self) -> Result<String> {
        to_json(self, serde_json::to_string_pretty)
    }
}

impl Metrics {
    /// The metrics on one line, as `tfmpe eval` prints them.
    pub fn to_json(&self) -> Result<String> {
        to_json(self, serde_json::to_string)
    }
}

/// Written through a `serde_json::Value`, as the file always was: that sorts every object's
/// keys and widens f32 settings (the solver's tolerances) to the f64 digits it always had.
fn to_json<T: Serialize>(
    value: &T, print: fn(&serde_json::Value) -> serde_json::Result<String>,
) -> Result<String> {
    let invalid = |e: serde_json::Error| Error::Invalid(format!("report.json: {e}"));
    print(&serde_json::to_value(value).map_err(invalid)?).map_err(invalid)
}

/// A float (or a container of floats) whose nulls read back as NaN.
trait NanIfNull: Sized {
    type Json: DeserializeOwned;
    fn restore(json: Self::Json) -> Self;
}

impl NanIfNull for f64 {
    type Json = Option<f64>;
    fn restore(json: Option<f64>) -> f64 {
        json.unwrap_or(f64::NAN)
    }
}

impl<T: NanIfNull> NanIfNull for Vec<T> {
    type Json = Vec<T::Json>;
    fn restore(json: Self::Json) -> Self {
        json.into_iter().map(T::restore).collect()
    }
}

impl<T: NanIfNull> NanIfNull for [T; 2] {
    type Json = [T::Json; 2];
    fn restore(json: Self::Json) -> Self {
        json.map(T::restore)
    }
}

impl<T: NanIfNull> NanIfNull for BTreeMap<String, T> {
    type Json = BTreeMap<String, T::Json>;
    fn restore(json: Self::Json) -> Self {
        json.into_iter().map(|(k, v)| (k, T::restore(v))).collect()
    }
}

fn nan_if_null<'de, D: Deserializer<'de>, T: NanIfNull>(d: D) -> std::result::Result<T, D::Error> {
    T::Json::deserialize(d).map(T::restore)
}
