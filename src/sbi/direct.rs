//! The direct pipeline: the posterior network on budget / S real S-site simulations.

use super::network::{to_sets, Role, Rows};
use super::progress::Timer;
use super::seeds::Stream;
use super::train::{FixedSets, TrainReport};
use super::{
    fit_posterior, new_posterior, scale_locals, PipelineReport, Progress, RunConfig, Trained,
};
use crate::error::{Error, Result};
use crate::model::tokens::Layout;
use crate::tasks::{simulate_datasets, Dataset, HierarchicalModel};
use crate::Device;

pub(super) fn run(
    dev: &Device, task: &dyn HierarchicalModel, cfg: &RunConfig, progress: &dyn Progress,
) -> Result<Trained> {
    let mut report = PipelineReport::default();
    let mut timer = Timer::start();
    progress.phase("simulate");
    let n_sets = cfg.budget / cfg.sites;
    let seeds: Vec<u64> =
        (0..n_sets).map(|i| Stream::DirectSets.seed(cfg.seed, i as u64)).collect();
    let sets: Vec<Option<Dataset>> = simulate_datasets(task, cfg.sites, &seeds)?
        .into_iter()
        .map(|d| d.is_finite().then_some(d))
        .collect();
    report.simulator_calls = n_sets * cfg.sites;
    report.dropped_simulations = sets.iter().filter(|s| s.is_none()).count();
    let (mut target, mut cond) = (Vec::new(), Vec::new());
    let mut inputs = (task.functional_input_dim() > 0).then(Vec::new);
    for d in sets.into_iter().flatten() {
        target.extend(task.to_unconstrained(&d.params, cfg.sites));
        cond.extend(task.observations_to_network(&d.obs));
        if let (Some(all), Some(x)) = (inputs.as_mut(), d.inputs) {
            all.extend(x);
        }
    }
    let layout = Layout::posterior(task, cfg.sites);
    let n = target.len() / layout.target.len().max(1);
    if n < 2 {
        return Err(Error::Invalid(format!(
            "direct needs at least 2 finite {}-site simulations but the budget {} gives {n}; raise the simulation budget",
            cfg.sites, cfg.budget
        )));
    }
    let n_val = cfg.validation_count(n);
    let n_train = n - n_val;
    let k = layout.input_tokens() * task.functional_input_dim();
    let all = Rows::new(cfg.sites, &cond, &target, inputs.as_deref());
    let (train, validation) = all.split(n_train, layout.cond.len(), layout.target.len(), k);
    timer.lap("simulate");
    progress.phase("posterior");
    report.training_sets = n_train;
    report.validation_sets = n_val;
    let posterior = match cfg.checkpoints.load(dev, "posterior")? {
        Some((posterior, p_report)) => {
            report.posterior = Some(p_report);
            posterior
        }
        None => {
            let mut posterior = new_posterior(dev, task, cfg, Role::Posterior, &[train])?;
            let scaling = scale_locals(&mut posterior, cfg, &[train], &[validation], progress)?;
            let mut data = FixedSets {
                train: vec![to_sets(&posterior, train)?],
                validation: vec![to_sets(&posterior, validation)?],
            };
            let r = fit_posterior(dev, &mut posterior, &mut data, cfg, progress)?;
            report.posterior = Some(TrainReport { scaling, ..r });
            posterior
        }
    };
    timer.lap("posterior_training");
    report.phases = timer.into_phases();
    Ok(Trained { posterior: posterior.into(), surrogate: None, report })
}
