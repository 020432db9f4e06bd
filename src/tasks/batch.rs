//! Simulators that run on whole batches of sites: a user's Python function or an external
//! program pays a cost per call, so the pipelines hand it every site of a phase at once (in
//! chunks of [`BatchSimulator::max_rows`]) instead of one call per site.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;

use super::{Dataset, HierarchicalModel};
use crate::error::{Error, Result};

/// Sites to simulate, one row each: the globals and locals in natural space, and the functional
/// inputs when the model has them.
#[derive(Clone, Copy, Debug)]
pub struct SiteBatch<'a> {
    pub rows: usize,
    /// `rows × global_dim`.
    pub globals: &'a [f64],
    /// `rows × local_dim`.
    pub locals: &'a [f64],
    /// `rows × obs_dim × functional_input_dim`.
    pub inputs: Option<&'a [f64]>,
}

/// A simulator called on batches of sites.
pub trait BatchSimulator: Send + Sync {
    /// `batch.rows × obs_dim` observation values, row-major, from a simulator seeded with
    /// `seed`. Non-finite values are allowed: the pipelines drop and count such rows.
    fn simulate(&self, batch: &SiteBatch, seed: u64) -> Result<Vec<f64>>;

    /// The most rows one call takes.
    fn max_rows(&self) -> usize {
        10_000
    }
}

/// Runs `sim` on `batch`, split into calls of at most `max_rows` rows (chunk k seeded with
/// `seed + k`), and checks the length of what it returns.
pub fn simulate_batch(
    model: &dyn HierarchicalModel, sim: &dyn BatchSimulator, batch: &SiteBatch, seed: u64,
) -> Result<Vec<f64>> {
    let (gd, ld, od) = (model.global_dim(), model.local_dim(), model.obs_dim());
    let kd = od * model.functional_input_dim();
    let step = sim.max_rows().max(1);
    let mut out = Vec::with_capacity(batch.rows * od);
    for (k, start) in (0..batch.rows).step_by(step).enumerate() {
        let rows = step.min(batch.rows - start);
        let chunk = SiteBatch {
            rows,
            globals: &batch.globals[start * gd..(start + rows) * gd],
            locals: &batch.locals[start * ld..(start + rows) * ld],
            inputs: batch.inputs.map(|x| &x[start * kd..(start + rows) * kd]),
        };
        let y = sim.simulate(&chunk, seed.wrapping_add(k as u64))?;
        if y.len() != rows * od {
            return Err(Error::Simulator(format!(
                "the simulator of `{}` returned {} values for {rows} sites; it must return {rows} × {od} = {} (one row of {od} per site)",
                model.name(),
                y.len(),
                rows * od
            )));
        }
        out.extend(y);
    }
    Ok(out)
}

/// The locals and functional inputs of `rows` sites given their globals (`rows × global_dim`),
/// row-major; the locals in one [`HierarchicalModel::sample_locals_batch`] call.
pub(super) fn draw_rows(
    model: &dyn HierarchicalModel, globals: &[f64], rows: usize, rng: &mut dyn Rng,
) -> (Vec<f64>, Option<Vec<f64>>) {
    let locals = model.sample_locals_batch(globals, rows, rng);
    let inputs = (model.functional_input_dim() > 0).then(|| {
        (0..rows).flat_map(|_| model.sample_functional_inputs(rng).unwrap_or_default()).collect()
    });
    (locals, inputs)
}

/// One data set of `sites` sites through a batch simulator: the priors drawn from `rng`, one
/// call for all its sites.
pub(super) fn simulate_dataset_batched(
    model: &dyn HierarchicalModel, sim: &dyn BatchSimulator, sites: usize, rng: &mut dyn Rng,
) -> Result<Dataset> {
    let globals = model.sample_globals(rng);
    let g = globals.repeat(sites);
    let (locals, inputs) = draw_rows(model, &g, sites, rng);
    // A prior that failed is reported before its NaNs reach the simulator.
    model.deferred_error()?;
    let batch = SiteBatch { rows: sites, globals: &g, locals: &locals, inputs: inputs.as_deref() };
    let obs = simulate_batch(model, sim, &batch, rng.next_u64())?;
    let mut params = globals;
    params.extend(locals);
    Ok(Dataset { sites, params, obs, inputs })
}

/// Data sets of `sites` sites, data set i from the generator seeded with `seeds[i]`: in
/// parallel through [`super::simulate_dataset`] for a model simulated site by site, and with
/// one batched simulator call for all their sites otherwise.
pub fn simulate_datasets(
    model: &dyn HierarchicalModel, sites: usize, seeds: &[u64],
) -> Result<Vec<Dataset>> {
    let Some(sim) = model.batch_simulator() else {
        return seeds
            .par_iter()
            .map(|&s| super::simulate_dataset(model, sites, &mut StdRng::seed_from_u64(s)))
            .collect();
    };
    // Each data set's globals come from its own seed; its locals, inputs and noise from one
    // generator seeded by the first, in one call each.
    let globals: Vec<Vec<f64>> =
        seeds.iter().map(|&s| model.sample_globals(&mut StdRng::seed_from_u64(s))).collect();
    let rows = seeds.len() * sites;
    let g: Vec<f64> = globals.iter().flat_map(|g| g.repeat(sites)).collect();
    let mut rng = StdRng::seed_from_u64(seeds.first().map_or(0, |s| s.wrapping_add(1)));
    let (locals, inputs) = draw_rows(model, &g, rows, &mut rng);
    model.deferred_error()?;
    let batch = SiteBatch { rows, globals: &g, locals: &locals, inputs: inputs.as_deref() };
    let obs = simulate_batch(model, sim, &batch, rng.next_u64())?;
    let (ld, od) = (model.local_dim() * sites, model.obs_dim() * sites);
    let kd = od * model.functional_input_dim();
    Ok(globals
        .into_iter()
        .enumerate()
        .map(|(i, mut params)| {
            params.extend_from_slice(&locals[i * ld..(i + 1) * ld]);
            Dataset {
                sites,
                params,
                obs: obs[i * od..(i + 1) * od].to_vec(),
                inputs: inputs.as_ref().map(|x| x[i * kd..(i + 1) * kd].to_vec()),
            }
        })
        .collect())
}
