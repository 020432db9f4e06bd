//! The evaluation of a run folder: C2ST of `samples.csv` against the task's exact posterior for
//! `observation.csv`, and on request SBC and TARP of the saved posterior network over data sets
//! from the prior, and L-C2ST of the network at the observation.

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::SeedableRng;

use super::{
    posterior_config, C2st, CoverageSummary, Lc2stSummary, Metrics, RunFolder, SbcSummary,
};
use crate::error::{Error, Result};
use crate::metrics::{
    c2st, expected_coverage, lc2st, sbc, tarp, C2stConfig, Calibration, Coverage, Lc2stConfig, Sbc,
    Tarp,
};
use crate::model::density::Divergence;
use crate::model::ode::Solver;
use crate::sbi::{calibration_draws, Posterior, Progress, Sampler};
use crate::tasks::{HierarchicalModel, Observed};
use crate::Device;

/// Exact-posterior draws a run's samples are compared against (C2ST) and plotted with.
pub const REFERENCE_SAMPLES: usize = 1000;

/// Most exact-posterior draws the C2ST is asked for (it cuts both sets to the smaller).
pub const MAX_REFERENCE_SAMPLES: usize = 100_000;

/// Fewest calibration data sets SBC and TARP accept: their KS p-values from fewer say nothing.
pub const MIN_CALIBRATION: usize = 10;

/// What the evaluation computes.
#[derive(Clone, Debug)]
pub struct EvalConfig {
    /// Exact-posterior draws of the C2ST.
    pub reference_samples: usize,
    /// Data sets simulated from the prior for SBC and TARP (0: skip them).
    pub calibration: usize,
    /// Posterior draws per calibration data set (SBC ranks take the values 0..=this).
    pub calibration_draws: usize,
    /// The ODE solver of the calibration draws.
    pub solver: Solver,
    /// Seeds the calibration data sets and draws.
    pub seed: u64,
    /// L-C2ST of the saved network at the observation (`None`: skip it).
    pub lc2st: Option<Lc2stEval>,
    /// The HPD expected coverage over the calibration data sets (`None`: skip it).
    pub expected_coverage: Option<CoverageEval>,
}

/// What L-C2ST is computed from.
#[derive(Clone, Debug)]
pub struct Lc2stEval {
    /// Data sets simulated from the prior, one posterior draw each (1 000 is usual).
    pub data_sets: usize,
    pub config: Lc2stConfig,
}

impl Default for Lc2stEval {
    fn default() -> Self {
        Lc2stEval { data_sets: 1000, config: Lc2stConfig::default() }
    }
}

impl EvalConfig {
    /// The C2ST only, with [`REFERENCE_SAMPLES`] exact draws; set `calibration` for SBC and
    /// TARP (99 draws per data set).
    pub fn new(solver: Solver, seed: u64) -> EvalConfig {
        EvalConfig {
            reference_samples: REFERENCE_SAMPLES,
            calibration: 0,
            calibration_draws: 99,
            solver,
            seed,
            lc2st: None,
            expected_coverage: None,
        }
    }

    pub fn check(&self) -> Result<()> {
        if self.reference_samples > MAX_REFERENCE_SAMPLES {
            return Err(Error::Invalid(format!(
                "{} reference draws: the C2ST compares as many as samples.csv holds, so more \
                 than {MAX_REFERENCE_SAMPLES} only cost time",
                self.reference_samples
            )));
        }
        if self.calibration > 0 && self.calibration < MIN_CALIBRATION {
            return Err(Error::Invalid(format!(
                "{} calibration data sets cannot test calibration (the KS tests of SBC and TARP \
                 need at least {MIN_CALIBRATION}; 200 is usual)",
                self.calibration
            )));
        }
        if self.expected_coverage.is_some() && self.calibration == 0 {
            return Err(Error::Invalid(
                "the expected coverage is computed over the calibration data sets: give their \
                 number too (--calibration 200 is usual)"
                    .into(),
            ));
        }
        if self.calibration > 0 && self.calibration_draws == 0 {
            return Err(Error::Invalid(
                "`calibration_draws` must be at least 1 (99 is the usual choice)".into(),
            ));
        }
        Ok(())
    }
}

/// `n` draws from the task's exact posterior for `obs`, or `None` when it has none. The seed is
/// fixed, so a run's plot shows the very draws its C2ST compared against.
pub fn exact_reference(
    task: &dyn HierarchicalModel, obs: &Observed, n: usize,
) -> Option<Vec<Vec<f64>>> {
    task.exact_posterior_observed(obs, n, &mut StdRng::seed_from_u64(0xC25))
}

/// C2ST of `samples` against `reference_samples` exact draws for `obs` ([`exact_reference`]),
/// of the whole parameter vector and of the global parameters' columns alone; `Unavailable`
/// where the task has no exact posterior. In natural parameter space, as sbibm does.
///
/// Its classifiers train on the CPU whatever the run's backend: they are MLPs of a few dozen
/// units on two thousand rows, which the CPU fits in a tenth of a second, where a GPU backend
/// pays a kernel launch per small step (lavapipe took half a minute per C2ST).
pub fn exact_c2st(
    task: &dyn HierarchicalModel, obs: &Observed, samples: &[Vec<f64>], reference_samples: usize,
) -> Result<C2st> {
    let Some(reference) = exact_reference(task, obs, reference_samples) else {
        return Ok(C2st::Unavailable {
            c2st: (),
            note: format!("task `{}` has no exact posterior", task.name()),
        });
    };
    let (device, cfg) = (Device::cpu(), C2stConfig::default());
    let globals = task.global_dim();
    let head = |rows: &[Vec<f64>]| -> Vec<Vec<f64>> {
        rows.iter().map(|r| r[..globals].to_vec()).collect()
    };
    Ok(C2st::Measured {
        c2st: c2st(&device, samples, &reference, &cfg)?,
        c2st_globals: Some(c2st(&device, &head(samples), &head(&reference), &cfg)?),
        c2st_reference_samples: reference.len(),
    })
}

impl RunFolder {
    /// Computes the metrics of this folder (it writes `calibration.svg` with SBC and TARP, not
    /// `report.json`: see [`RunFolder::update_metrics`]).
    pub fn evaluate(
        &self, device: &Device, cfg: &EvalConfig, progress: &dyn Progress,
    ) -> Result<Metrics> {
        // The calibration options are checked before the C2ST spends its minute.
        cfg.check()?;
        let config = posterior_config(self.path())?;
        let task = self.task(&config.task)?;
        let obs = self.read_observation(&*task)?;
        let samples = self.read_samples(&*task, obs.sites)?;
        let c2st = Some(exact_c2st(&*task, &obs, &samples, cfg.reference_samples)?);
        let mut metrics = Metrics { c2st, ..Metrics::default() };
        if cfg.calibration > 0 {
            let m = self.calibration(device, cfg, &*task, progress)?;
            metrics.sbc = Some(m.sbc);
            metrics.tarp = Some(m.tarp);
            metrics.expected_coverage = m.expected_coverage;
        }
        if let Some(l) = &cfg.lc2st {
            let mut net = self.load_posterior(device)?;
            let (solver, seed) = (cfg.solver, cfg.seed);
            let summary = lc2st_summary(
                device,
                &mut net,
                task.as_ref(),
                &obs,
                &samples,
                l,
                solver,
                seed,
                progress,
            )?;
            metrics.lc2st = Some(summary);
        }
        Ok(metrics)
    }

    /// SBC and TARP of the saved posterior network over `cfg.calibration` data sets from the
    /// prior; writes `calibration.svg`.
    fn calibration(
        &self, device: &Device, cfg: &EvalConfig, task: &dyn HierarchicalModel,
        progress: &dyn Progress,
    ) -> Result<CalibrationMetrics> {
        let mut net = self.load_posterior(device)?;
        let sites = net.config().sites;
        let names = task.parameter_names(sites);
        let (data_sets, draws) = (cfg.calibration, cfg.calibration_draws);
        let coverage = cfg.expected_coverage.as_ref();
        let m = calibration_metrics(
            device, &mut net, task, data_sets, draws, cfg.solver, cfg.seed, coverage, progress,
        )?;
        self.write_calibration_plot(task, sites, &names, &m.sbc_result, &m.tarp_result)?;
        Ok(m)
    }
}

/// L-C2ST of `net` at an observation: the classifiers learn from `l.data_sets` data sets from
/// the prior with one draw each of the network (one batched solve), and the statistic averages
/// over `samples`, the network's draws at `obs`. Features are natural-space parameters, and
/// the observed values followed by their functional inputs.
#[allow(clippy::too_many_arguments)]
pub fn lc2st_summary(
    device: &Device, net: &mut Posterior, task: &dyn HierarchicalModel, obs: &Observed,
    samples: &[Vec<f64>], l: &Lc2stEval, solver: Solver, seed: u64, progress: &dyn Progress,
) -> Result<Lc2stSummary> {
    {
        if obs.counts.is_some() {
            return Err(Error::Invalid(
                "L-C2ST needs an observation whose sites are all fully observed; this one is \
                 ragged (its sites have different numbers of values)"
                    .into(),
            ));
        }
        if net.config().sites != obs.sites {
            return Err(Error::Invalid(format!(
                "L-C2ST compares data sets of the network's {} sites with the observation's {}; \
                 a --max-sites model is checked at the site count it was run for",
                net.config().sites,
                obs.sites
            )));
        }
        let sampler = Sampler::new(device, solver);
        let cal = calibration_draws(&sampler, net, task, l.data_sets, 1, seed, progress)?;
        let xs: Vec<Vec<f64>> = cal.observations.iter().map(Observed::features).collect();
        let posterior: Vec<Vec<f64>> = cal.draws.into_iter().map(|mut d| d.remove(0)).collect();
        let calibration = Calibration { prior: &cal.truths, xs: &xs, posterior: &posterior };
        let r = lc2st(device, &calibration, samples, &obs.features(), &l.config)?;
        let mut nulls = r.null_statistics.clone();
        nulls.sort_by(f64::total_cmp);
        let q95 = nulls[((0.95 * nulls.len() as f64).ceil() as usize).clamp(1, nulls.len()) - 1];
        Ok(Lc2stSummary {
            statistic: r.statistic,
            p_value: r.p_value,
            reject: r.reject,
            data_sets: l.data_sets,
            posterior_samples: samples.len(),
            null_mean: nulls.iter().sum::<f64>() / nulls.len() as f64,
            null_q95: q95,
            epochs: r.epochs,
            settings: l.config.clone(),
        })
    }
}

/// How the HPD expected coverage takes the posterior's log density.
#[derive(Clone, Debug)]
pub struct CoverageEval {
    /// `auto`, `exact` or `hutchinson` (see [`Divergence::from_name`]).
    pub divergence: String,
    /// Probes of the Hutchinson estimator.
    pub probes: usize,
}

impl Default for CoverageEval {
    fn default() -> Self {
        CoverageEval { divergence: "auto".into(), probes: 8 }
    }
}

/// What [`calibration_metrics`] computes: the summaries for the report, and the SBC and TARP
/// results they come from (for the plot).
pub struct CalibrationMetrics {
    pub sbc: SbcSummary,
    pub tarp: CoverageSummary,
    pub expected_coverage: Option<CoverageSummary>,
    pub sbc_result: Sbc,
    pub tarp_result: Tarp,
}

/// SBC and TARP of `net` over `data_sets` data sets from the prior with `draws` posterior draws
/// each (one batched solve), and with `coverage` the HPD expected coverage from the
/// posterior's log density at each data set's truth and draws.
#[allow(clippy::too_many_arguments)]
pub fn calibration_metrics(
    device: &Device, net: &mut Posterior, task: &dyn HierarchicalModel, data_sets: usize,
    draws: usize, solver: Solver, seed: u64, coverage: Option<&CoverageEval>,
    progress: &dyn Progress,
) -> Result<CalibrationMetrics> {
    let names = task.parameter_names(net.config().sites);
    let sampler = Sampler::new(device, solver);
    let cal = calibration_draws(&sampler, net, task, data_sets, draws, seed, progress)?;
    let s = sbc(&cal.truths, &cal.draws)?;
    let by_name = |f: &dyn Fn(usize) -> f64| -> BTreeMap<String, f64> {
        names.iter().enumerate().map(|(p, n)| (n.clone(), f(p))).collect()
    };
    let worst = (0..names.len()).min_by(|&a, &b| s.ks_p[a].total_cmp(&s.ks_p[b])).unwrap_or(0);
    let sbc_summary = SbcSummary {
        data_sets,
        draws: s.draws,
        ks_p: by_name(&|p| s.ks_p[p]),
        min_ks_p: s.ks_p[worst],
        min_ks_p_parameter: names[worst].clone(),
        rank_histograms: names
            .iter()
            .enumerate()
            .map(|(p, n)| (n.clone(), s.histogram(p, 10)))
            .collect(),
    };
    let summary = |c: &Coverage| CoverageSummary {
        atc: c.atc(),
        data_sets,
        draws: s.draws,
        ecp: (0..=20).map(|k| k as f64 / 20.0).map(|a| [a, c.ecp(a)]).collect(),
        ks_p: c.ks_p,
        ks_statistic: c.ks_statistic,
    };
    let t = tarp(&cal.truths, &cal.draws)?;
    let expected_coverage = match coverage {
        Some(c) => {
            let dim = net.flow_dim(task, net.config().sites);
            let divergence = Divergence::from_name(&c.divergence, dim, c.probes, seed)?;
            // The truth first in each data set's rows, then its draws.
            let rows: Vec<Vec<Vec<f64>>> = cal
                .truths
                .iter()
                .zip(&cal.draws)
                .map(|(t, d)| std::iter::once(t.clone()).chain(d.iter().cloned()).collect())
                .collect();
            let lp =
                sampler.log_probs(net, task, &cal.observations, &rows, divergence, progress)?;
            let (truth, draws): (Vec<f64>, Vec<Vec<f64>>) =
                lp.into_iter().map(|mut v| (v.remove(0), v)).unzip();
            Some(summary(&expected_coverage(&truth, &draws)?))
        }
        None => None,
    };
    Ok(CalibrationMetrics {
        sbc: sbc_summary,
        tarp: summary(&t),
        expected_coverage,
        sbc_result: s,
        tarp_result: t,
    })
}
