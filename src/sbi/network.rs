//! A trained (or training) flow-matching network with its token layout and standardisation:
//! the posterior network, and LF's likelihood surrogate. Built for a task and role, trains,
//! samples in chunks, saves and loads.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::config::{ScalingChoice, AUTO_MIN_LOG_SCALE_SPREAD};
use super::local_scaling::{LocalScaling, SiteShape};
use super::scaling::{ConditionalScaling, ScalingReport};
use super::seeds::Stream;
use super::train::{train, SetSource, Sets, TrainConfig, TrainReport};
use super::Progress;
use crate::backend::{Buffer, DType, Precision};
use crate::error::{Error, Result};
use crate::model::checkpoint;
use crate::model::density::{log_density, Divergence};
use crate::model::flow::{Conditions, Field, SIGMA_MIN};
use crate::model::ode::{solve, OdeStats, OdeWorkspace, Solver};
use crate::model::standardize::Standardizer;
use crate::model::tfmpe::{DeviceTokens, Tfmpe, TfmpeConfig};
use crate::model::tokens::{n_labels, Layout, Token, TokenBatch};
use crate::tape::{ParamStore, Tape};
use crate::tasks::HierarchicalModel;
use crate::Device;

/// Everything saved beside the weights.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NetworkConfig {
    /// `posterior` or `surrogate`.
    pub role: String,
    pub task: String,
    /// The site count of the layout; with `any_sites`, the largest site count it answers.
    pub sites: usize,
    /// A posterior trained on sets of every size 1..=`sites` (`run --max-sites`).
    #[serde(default)]
    pub any_sites: bool,
    pub architecture: TfmpeConfig,
    pub layout: Layout,
    pub standardizer: Standardizer,
    /// Column names of the condition and target values, in token order.
    pub cond_names: Vec<String>,
    pub target_names: Vec<String>,
    /// Bijections of the parameters (natural → unconstrained), in parameter order.
    pub bijections: Vec<crate::tasks::Bijection>,
    /// Bijections of the functional inputs, one per input dimension (empty: identity).
    #[serde(default)]
    pub input_bijections: Vec<crate::tasks::Bijection>,
    /// The probability path: t = 0 is noise, t = 1 is data; x_t = (1 − (1−σ)t)·x0 + t·x1.
    pub time_convention: String,
    pub sigma_min: f32,
    /// A surrogate's conditional standardisation of its targets ([`super::scaling`]); `None`:
    /// the targets are standardised marginally only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scaling: Option<ConditionalScaling>,
    /// A posterior's conditional standardisation of its locals ([`super::local_scaling`]);
    /// `None`: the locals are standardised marginally only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_scaling: Option<LocalScaling>,
}

impl NetworkConfig {
    /// The layout for sets of `sites` sites: the network's own, or for a posterior that
    /// answers any site count up to its own, the first `sites` sites of it (layouts are
    /// site-major, so they are prefixes of the largest one).
    pub fn layout_for(&self, sites: usize) -> Result<Layout> {
        let (own, layout) = (self.sites, &self.layout);
        if sites == own {
            return Ok(layout.clone());
        }
        if !self.any_sites || sites == 0 || sites > own {
            let answers = if self.any_sites {
                format!("any site count from 1 to {own}")
            } else {
                format!("{own} sites only; train with --max-sites to answer other site counts")
            };
            return Err(Error::Invalid(format!(
                "the data set has {sites} sites but this {} network answers {answers}",
                self.role
            )));
        }
        let globals = layout.target.iter().filter(|t| t.group == 0).count();
        let per_site = |n: usize| n / own * sites;
        Ok(Layout {
            cond: layout.cond[..per_site(layout.cond.len())].to_vec(),
            target: layout.target[..globals + per_site(layout.target.len() - globals)].to_vec(),
        })
    }

    /// Functional inputs (natural, `input_dim` per input token) through their bijections,
    /// then standardised.
    pub fn standardize_inputs(&self, values: &[f64]) -> Result<Vec<f32>> {
        self.standardizer.apply_inputs(&map_inputs(&self.input_bijections, values))
    }

    /// Standardised sets of this network from unstandardised rows.
    pub fn sets(&self, rows: Rows) -> Result<Sets> {
        let layout = self.layout_for(rows.sites)?;
        let standardize = |tokens: &[Token], values: &[f64]| -> Result<Vec<f32>> {
            let mut out = Vec::with_capacity(values.len());
            for row in values.chunks(tokens.len().max(1)) {
                out.extend(self.standardizer.apply(tokens, row)?);
            }
            Ok(out)
        };
        let mut sets = Sets {
            sites: rows.sites,
            cond: standardize(&layout.cond, rows.cond)?,
            target: standardize(&layout.target, rows.target)?,
            inputs: match rows.inputs {
                Some(v) if self.architecture.input_dim > 0 => self.standardize_inputs(v)?,
                _ => Vec::new(),
            },
            mask: rows.mask.map(<[f32]>::to_vec).unwrap_or_default(),
            layout,
        };
        if let Some(scaling) = &self.local_scaling {
            let mut target = std::mem::take(&mut sets.target);
            scaling.whiten(CondRows::of(&sets), &mut target)?;
            sets.target = target;
        }
        Ok(sets)
    }

    /// The sizes of one site of this posterior's layout.
    fn site_shape(&self) -> SiteShape {
        let (layout, sites) = (&self.layout, self.sites.max(1));
        let globals = layout.target.iter().filter(|t| t.group == 0).count();
        SiteShape {
            globals,
            locals: (layout.target.len() - globals) / sites,
            observations: layout.cond.len() / sites,
            input_dim: self.architecture.input_dim,
        }
    }
}

/// Chunks are whole Philox blocks of samples, so the common case (one run, sample index a
/// multiple of 4) fills the state directly.
const CHUNK_ALIGN: usize = 4;

/// Noise for `rows` consecutive sample rows: the `i`-th row of the run takes the normal numbers
/// of sample index `i` under `seed`, whatever rows come before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NoiseRun {
    pub seed: u64,
    pub rows: usize,
}

/// Fills `x` (rows `start .. start + len` of `m` values each) with each row's noise.
fn fill_noise(
    dev: &Device, x: &mut Buffer, runs: &[NoiseRun], start: usize, len: usize, m: usize,
) -> Result<()> {
    let backend = dev.backend();
    let mut run_start = 0;
    for run in runs {
        let (lo, hi) = (start.max(run_start), (start + len).min(run_start + run.rows));
        run_start += run.rows;
        if lo >= hi {
            continue;
        }
        // Normal number j of a run is word j % 4 of Philox block j / 4.
        let first = (lo - (run_start - run.rows)) * m;
        let (block, skip) = (first / 4, first % 4);
        if skip == 0 && hi - lo == len {
            return backend.normal_fill(x, run.seed, block as u64);
        }
        let mut tmp = backend.alloc(DType::F32, skip + (hi - lo) * m)?;
        backend.normal_fill(&mut tmp, run.seed, block as u64)?;
        backend.copy(&tmp, skip, x, (lo - start) * m, (hi - lo) * m)?;
    }
    Ok(())
}

/// What rows of a batch are conditioned on, laid out as a [`Layout`]: `conds` is
/// `[rows · n_cond]` standardised, `inputs` (for a model with functional inputs)
/// `[rows · input_tokens · input_dim]` standardised, `masks` (for ragged data sets)
/// `[rows · tokens]` key masks.
#[derive(Clone, Copy)]
pub struct CondRows<'a> {
    pub conds: &'a [f32],
    pub inputs: Option<&'a [f32]>,
    pub masks: Option<&'a [f32]>,
    /// Condition values per row.
    pub n_cond: usize,
}

impl<'a> CondRows<'a> {
    /// The conditions of standardised sets.
    pub fn of(sets: &'a Sets) -> CondRows<'a> {
        CondRows {
            conds: &sets.cond,
            inputs: (!sets.inputs.is_empty()).then_some(&sets.inputs[..]),
            masks: (!sets.mask.is_empty()).then_some(&sets.mask[..]),
            n_cond: sets.layout.cond.len(),
        }
    }

    fn rows(&self) -> usize {
        self.conds.len() / self.n_cond.max(1)
    }
}

/// One chunk of rows, `start .. start + len`, with its tokens and conditions on the device.
struct ChunkView<'a> {
    start: usize,
    len: usize,
    tokens: &'a DeviceTokens,
    data: &'a ChunkData,
}

/// One chunk's conditions on the device: rows `start .. start + len` of the condition values,
/// functional inputs and key masks of a batch of rows laid out as `layout`.
struct ChunkData {
    cond: Buffer,
    inputs: Option<Buffer>,
    mask: Option<Buffer>,
}

impl ChunkData {
    fn upload(dev: &Device, rows: CondRows, start: usize, len: usize) -> Result<ChunkData> {
        let backend = dev.backend();
        let n = rows.rows();
        let slice = |v: &[f32]| {
            let per_row = v.len() / n.max(1);
            backend.upload_f32(&v[start * per_row..(start + len) * per_row])
        };
        Ok(ChunkData {
            cond: slice(rows.conds)?,
            inputs: rows.inputs.map(slice).transpose()?,
            mask: rows.masks.map(slice).transpose()?,
        })
    }

    fn conditions<'a>(&'a self, tokens: &'a DeviceTokens) -> Conditions<'a> {
        Conditions {
            tokens,
            cond: &self.cond,
            inputs: self.inputs.as_ref(),
            key_mask: self.mask.as_ref(),
        }
    }
}

pub struct Network {
    pub config: NetworkConfig,
    pub model: Tfmpe,
    pub tape: Tape,
}

impl Network {
    /// A freshly initialised network.
    pub fn new(dev: &Device, config: NetworkConfig, seed: u64) -> Result<Network> {
        let mut params = ParamStore::new(dev);
        let model = Tfmpe::new(&mut params, config.architecture.clone(), seed)?;
        Ok(Network { config, model, tape: Tape::new(params) })
    }

    /// Fits a conditional standardisation of this surrogate's targets ([`super::scaling`]) on
    /// standardised single-site sets; where `choice` keeps it, keeps it, moves both sets'
    /// targets into its units and returns its report (`None`: the sets stay marginal).
    pub fn fit_scaling(
        &mut self, train: &mut Sets, validation: &mut Sets, choice: ScalingChoice,
    ) -> Result<Option<ScalingReport>> {
        let (n_cond, input_dim) =
            (self.config.layout.cond.len(), self.config.architecture.input_dim);
        let (scaling, report) = ConditionalScaling::fit(train, validation, n_cond, input_dim)?;
        let noise = report.log_scale_noise.unwrap_or(0.0);
        let varies = report.log_scale_spread >= f64::max(AUTO_MIN_LOG_SCALE_SPREAD, 3.0 * noise);
        if choice == ScalingChoice::WhereTheScaleVaries && !varies {
            // A later round's refit may drop what an earlier one kept: the sets stay marginal.
            self.config.scaling = None;
            return Ok(None);
        }
        scaling.whiten(train)?;
        scaling.whiten(validation)?;
        self.config.scaling = Some(scaling);
        Ok(Some(report))
    }

    /// Fits a conditional standardisation of this posterior's locals
    /// ([`super::local_scaling`]) on its (marginally standardised) training and validation
    /// sets, and keeps it: sets made from now on carry the locals in its units.
    pub fn fit_local_scaling(
        &mut self, train: &[Sets], validation: &[Sets], seed: u64,
    ) -> Result<ScalingReport> {
        if self.config.local_scaling.is_some() {
            return Err(Error::Invalid("the posterior's locals are already scaled".into()));
        }
        let shape = self.config.site_shape();
        let (scaling, report) = LocalScaling::fit(shape, train, validation, seed)?;
        self.config.local_scaling = Some(scaling);
        Ok(report)
    }

    /// Natural-space targets from the flow's samples `z` (`[rows · n_target]`) for rows of
    /// standardised `conds` and `inputs`: the conditional standardisation undone (if any),
    /// then the marginal one.
    pub fn targets_from_flow(
        &self, conds: &[f32], inputs: Option<&[f32]>, mut z: Vec<f32>,
    ) -> Result<Vec<f64>> {
        if let Some(scaling) = &self.config.scaling {
            scaling.unwhiten(conds, inputs, &mut z)?;
        }
        self.unstandardize(&z, false)
    }

    pub fn layout(&self) -> &Layout {
        &self.config.layout
    }

    /// See [`NetworkConfig::layout_for`].
    pub fn layout_for(&self, sites: usize) -> Result<Layout> {
        self.config.layout_for(sites)
    }

    /// Runs `f` on this network seen as the likelihood surrogate: a joint network
    /// ([`Role::Joint`]) lends its weights to the surrogate's one-site layout for the call and
    /// gets its own layout back after it; any other network is passed as it is.
    pub fn as_surrogate<T>(
        &mut self, task: &dyn HierarchicalModel, f: impl FnOnce(&mut Network) -> Result<T>,
    ) -> Result<T> {
        if self.config.role != Role::Joint.name() {
            return f(self);
        }
        let surrogate = Layout::surrogate(task).with_target_labels(n_labels(task) as u32);
        let layout = std::mem::replace(&mut self.config.layout, surrogate);
        let sites = std::mem::replace(&mut self.config.sites, 1);
        let out = f(self);
        self.config.layout = layout;
        self.config.sites = sites;
        out
    }

    /// Trains on standardised sets of this network's layout.
    pub fn fit(
        &mut self, dev: &Device, data: &mut dyn SetSource, cfg: &TrainConfig,
        progress: &dyn Progress,
    ) -> Result<TrainReport> {
        let phase = self.config.role.clone();
        train(dev, &self.model, &mut self.tape, data, cfg, &phase, progress)
    }

    /// Standardises rows of condition values (one set per row, token order).
    pub fn standardize(&self, rows: &[f64], cond: bool) -> Result<Vec<f32>> {
        let tokens = self.tokens(cond);
        let mut out = Vec::with_capacity(rows.len());
        for row in rows.chunks(tokens.len()) {
            out.extend(self.config.standardizer.apply(tokens, row)?);
        }
        Ok(out)
    }

    /// Undoes [`Network::standardize`].
    pub fn unstandardize(&self, rows: &[f32], cond: bool) -> Result<Vec<f64>> {
        let tokens = self.tokens(cond);
        let mut out = Vec::with_capacity(rows.len());
        for row in rows.chunks(tokens.len()) {
            out.extend(self.config.standardizer.invert(tokens, row)?);
        }
        Ok(out)
    }

    fn tokens(&self, cond: bool) -> &[Token] {
        if cond {
            &self.config.layout.cond
        } else {
            &self.config.layout.target
        }
    }

    /// Standardises functional inputs (natural space, `input_dim` per input token).
    pub fn standardize_inputs(&self, values: &[f64]) -> Result<Vec<f32>> {
        self.config.standardize_inputs(values)
    }

    /// Draws one target sample per condition row by integrating the flow from noise, `chunk`
    /// samples at a time. Rows follow `layout` (the network's own, or a posterior layout for
    /// another site count): `conds` is `[rows · n_cond]` standardised, `inputs` (for a model
    /// with functional inputs) `[rows · input_tokens · input_dim]` standardised, `masks` (for
    /// ragged data sets) `[rows · tokens]` key masks. The noise of each row comes from its
    /// [`NoiseRun`], so a row's value depends neither on the chunking nor on the rows of other
    /// runs. The linear layers multiply in `precision` (see [`Tape::set_precision`]).
    #[allow(clippy::too_many_arguments)]
    pub fn sample(
        &mut self, dev: &Device, layout: &Layout, conds: &[f32], inputs: Option<&[f32]>,
        masks: Option<&[f32]>, runs: &[NoiseRun], solver: Solver, chunk: usize,
        precision: Precision, progress: &dyn Progress,
    ) -> Result<(Vec<f32>, OdeStats)> {
        let (c, m) = (layout.cond.len(), layout.target.len());
        if c == 0 {
            return Err(Error::Invalid("sampling needs condition tokens".into()));
        }
        let n = conds.len() / c;
        if runs.iter().map(|r| r.rows).sum::<usize>() != n {
            return Err(Error::Shape(format!("noise runs do not cover the {n} sample rows")));
        }
        let rows = CondRows { conds, inputs, masks, n_cond: c };
        let mut out = Vec::with_capacity(n * m);
        let mut stats = OdeStats::default();
        self.tape.set_precision(precision)?;
        self.tape.reset();
        self.tape.set_inference(true)?;
        let result = self.chunked(dev, layout, rows, chunk, m, progress, |model, tape, on, ws| {
            let (start, len) = (on.start, on.len);
            let mut x = dev.backend().alloc(DType::F32, len * m)?;
            fill_noise(dev, &mut x, runs, start, len, m)?;
            let on = on.data.conditions(on.tokens);
            let mut field = Field { model, tape, on };
            let s = solve(dev, &mut field, solver, &mut x, ws)?;
            stats.evals += s.evals;
            stats.iterations += s.iterations;
            out.extend(dev.backend().download_f32(&x)?);
            Ok(())
        });
        self.tape.reset();
        self.tape.set_inference(false)?;
        self.tape.set_precision(Precision::F32)?;
        result.map(|()| (out, stats))
    }

    /// The log density of standardised target rows `z` (`[rows · m]`) under the flow, in the
    /// network's standardised space ([`crate::model::density`]); the other arguments are as
    /// for [`Network::sample`]. The rows come in data sets of `set_rows` rows: Hutchinson's
    /// probe k of a data set's row i is the i-th row of normal numbers of the probe's own seed
    /// (from the divergence's seed), as the start noise of sampling is, so a row's log density
    /// depends neither on the chunking nor on the other data sets of the call.
    #[allow(clippy::too_many_arguments)]
    pub fn log_density(
        &mut self, dev: &Device, layout: &Layout, conds: &[f32], inputs: Option<&[f32]>,
        masks: Option<&[f32]>, z: &[f32], set_rows: usize, solver: Solver, divergence: Divergence,
        chunk: usize, progress: &dyn Progress,
    ) -> Result<Vec<f64>> {
        let (c, m) = (layout.cond.len(), layout.target.len());
        if c == 0 {
            return Err(Error::Invalid("a log density needs condition tokens".into()));
        }
        let n = conds.len() / c;
        if z.len() != n * m {
            return Err(Error::Shape(format!(
                "{} target values for {n} rows of {m} parameters",
                z.len()
            )));
        }
        if set_rows == 0 || !n.is_multiple_of(set_rows) {
            return Err(Error::Shape(format!("{n} rows are not data sets of {set_rows} rows")));
        }
        let rows = CondRows { conds, inputs, masks, n_cond: c };
        let mut out = Vec::with_capacity(n);
        let probe_seed = match divergence {
            Divergence::Hutchinson { seed, .. } => seed,
            Divergence::Exact => 0,
        };
        self.tape.reset();
        let result =
            self.chunked(dev, layout, rows, chunk, m + 1, progress, |model, tape, on, ws| {
                let (start, len) = (on.start, on.len);
                let rows = dev.backend().upload_f32(&z[start * m..(start + len) * m])?;
                let cond = on.data.conditions(on.tokens);
                let mut fill = |k: usize, probe: &mut Buffer| {
                    let seed = Stream::HutchinsonProbes.seed(probe_seed, k as u64);
                    let runs = vec![NoiseRun { seed, rows: set_rows }; n / set_rows];
                    fill_noise(dev, probe, &runs, start, len, m)
                };
                let (lp, _) =
                    log_density(dev, model, tape, cond, &rows, solver, divergence, &mut fill, ws)?;
                out.extend(lp);
                Ok(())
            });
        self.tape.reset();
        result.map(|()| out)
    }

    /// Runs `step` on the rows of `rows` in chunks of about `chunk` (whole Philox blocks), with
    /// each chunk's tokens and conditions on the device and an ODE workspace of `per_sample`
    /// values per row, reporting progress after each.
    #[allow(clippy::too_many_arguments)]
    fn chunked(
        &mut self, dev: &Device, layout: &Layout, rows: CondRows, chunk: usize, per_sample: usize,
        progress: &dyn Progress,
        mut step: impl FnMut(&Tfmpe, &mut Tape, ChunkView, &mut OdeWorkspace) -> Result<()>,
    ) -> Result<()> {
        let n = rows.conds.len() / layout.cond.len().max(1);
        let chunk = chunk.max(CHUNK_ALIGN) / CHUNK_ALIGN * CHUNK_ALIGN;
        let mut cached: Option<(usize, DeviceTokens, OdeWorkspace)> = None;
        for start in (0..n).step_by(chunk) {
            let len = chunk.min(n - start);
            if cached.as_ref().is_none_or(|(l, _, _)| *l != len) {
                let tb = TokenBatch::repeat(layout, len)?;
                self.config.architecture.check_ids(&tb)?;
                let tokens = DeviceTokens::upload(dev, &tb)?;
                cached = Some((len, tokens, OdeWorkspace::new(dev, len, per_sample)?));
            }
            let (_, tokens, ws) = cached.as_mut().expect("filled above");
            let data = ChunkData::upload(dev, rows, start, len)?;
            let view = ChunkView { start, len, tokens, data: &data };
            step(&self.model, &mut self.tape, view, ws)?;
            progress.samples(&self.config.role, start + len, n);
        }
        Ok(())
    }

    pub fn save(&self, dir: &Path) -> Result<()> {
        checkpoint::save(dir, &self.config, self.tape.params())
    }

    pub fn load(dev: &Device, dir: &Path) -> Result<Network> {
        let config: NetworkConfig = checkpoint::load_config(dir)?;
        let mut net = Network::new(dev, config, 0)?;
        checkpoint::load_params(dir, net.tape.params_mut())?;
        Ok(net)
    }
}

/// Refuses sample counts that cannot be produced.
pub fn check_samples(n: usize) -> Result<()> {
    if n == 0 {
        return Err(Error::Invalid("the number of samples must be at least 1".into()));
    }
    Ok(())
}

/// Which network of a pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Conditions: observations of S sites; targets: all parameters.
    Posterior,
    /// LF's likelihood surrogate. Conditions: globals and one site's locals (unconstrained);
    /// targets: that site's observation.
    Surrogate,
    /// PF's global network. Conditions: observations of S sites; targets: the globals.
    Global,
    /// PF's local network. Conditions: the globals (unconstrained) and one site's observation;
    /// targets: that site's locals.
    Local,
    /// `--method joint`: one network that is first LF's surrogate, then also the posterior.
    /// Its own layout is the posterior's; [`Network::as_surrogate`] lends it the surrogate's.
    /// Target labels are shifted past the model's labels ([`Layout::with_target_labels`]).
    Joint,
}

impl Role {
    /// The role's name in `config.json`, progress lines and checkpoint folders.
    pub fn name(self) -> &'static str {
        match self {
            Role::Posterior => "posterior",
            Role::Surrogate => "surrogate",
            Role::Global => "global",
            Role::Local => "local",
            Role::Joint => "joint",
        }
    }
}

/// Unstandardised training rows of sets of `sites` sites (1 for the surrogate), one set per
/// row in token order: conditions, targets and (for a model with functional inputs) the inputs
/// of the input tokens.
#[derive(Clone, Copy, Debug)]
pub struct Rows<'a> {
    pub sites: usize,
    pub cond: &'a [f64],
    pub target: &'a [f64],
    pub inputs: Option<&'a [f64]>,
    /// Key masks of ragged sets, `[sets · tokens]` (1 = present); `None`: every token present.
    pub mask: Option<&'a [f32]>,
}

impl<'a> Rows<'a> {
    pub fn new(
        sites: usize, cond: &'a [f64], target: &'a [f64], inputs: Option<&'a [f64]>,
    ) -> Self {
        Rows { sites, cond, target, inputs, mask: None }
    }

    /// The first `n` sets and the rest, for sets of `c` condition, `t` target and `k` input
    /// values each.
    pub fn split(self, n: usize, c: usize, t: usize, k: usize) -> (Rows<'a>, Rows<'a>) {
        let (c0, c1) = self.cond.split_at(n * c);
        let (t0, t1) = self.target.split_at(n * t);
        let (i0, i1) = match self.inputs {
            Some(v) => {
                let (a, b) = v.split_at(n * k);
                (Some(a), Some(b))
            }
            None => (None, None),
        };
        let (m0, m1) = match self.mask {
            Some(v) => {
                let (a, b) = v.split_at(n * (c + t));
                (Some(a), Some(b))
            }
            None => (None, None),
        };
        (
            Rows { mask: m0, ..Rows::new(self.sites, c0, t0, i0) },
            Rows { mask: m1, ..Rows::new(self.sites, c1, t1, i1) },
        )
    }
}

/// A freshly initialised network of `role` for `task`, its embedding tables sized for its
/// layout and its standardisation fitted on the given training rows (one [`Rows`] per site
/// count). A posterior whose rows have several site counts answers any count up to the
/// largest, `sites`.
pub fn new_network(
    dev: &Device, task: &dyn HierarchicalModel, role: Role, sites: usize, rows: &[Rows],
    architecture: &TfmpeConfig, seed: u64,
) -> Result<Network> {
    let (g, params) = (task.global_dim(), task.parameter_names(sites));
    let (layout, cond_names, target_names) = match role {
        Role::Posterior => (Layout::posterior(task, sites), task.observation_names(sites), params),
        Role::Surrogate => {
            (Layout::surrogate(task), task.parameter_names(1), task.observation_names(1))
        }
        Role::Global => (
            Layout::global_posterior(task, sites),
            task.observation_names(sites),
            params[..g].to_vec(),
        ),
        Role::Local => {
            let site = task.parameter_names(1);
            let cond = site[..g].iter().cloned().chain(task.observation_names(1)).collect();
            (Layout::local_posterior(task), cond, site[g..].to_vec())
        }
        Role::Joint => (
            Layout::posterior(task, sites).with_target_labels(n_labels(task) as u32),
            task.observation_names(sites),
            params,
        ),
    };
    let (_, pos, group) = layout.max_ids();
    let labels = if role == Role::Joint { 2 * n_labels(task) } else { n_labels(task) };
    let architecture = TfmpeConfig {
        n_labels: labels,
        max_positions: pos as usize + 1,
        max_groups: group as usize + 1,
        input_dim: task.functional_input_dim(),
        ..architecture.clone()
    };
    let (any_sites, mut standardizer) = if role == Role::Joint {
        (false, joint_standardizer(task, rows)?)
    } else {
        (rows.iter().any(|r| r.sites != sites), fit_standardizer(&layout, sites, rows)?)
    };
    if architecture.input_dim > 0 {
        let inputs: Option<Vec<f64>> =
            rows.iter().map(|r| r.inputs).collect::<Option<Vec<_>>>().map(|v| v.concat());
        let inputs = inputs.ok_or_else(|| {
            Error::Invalid(format!("task `{}` needs functional inputs to train", task.name()))
        })?;
        let mapped = map_inputs(&task.functional_input_bijections(), &inputs);
        standardizer = standardizer.with_inputs(architecture.input_dim, &mapped)?;
    }
    let config = NetworkConfig {
        role: role.name().to_string(),
        task: task.name().to_string(),
        sites,
        any_sites,
        architecture,
        standardizer,
        layout,
        cond_names,
        target_names,
        bijections: task.parameter_bijections(sites),
        input_bijections: task.functional_input_bijections(),
        time_convention: "t = 0 is noise, t = 1 is data".into(),
        sigma_min: SIGMA_MIN,
        scaling: None,
        local_scaling: None,
    };
    Network::new(dev, config, seed)
}

/// The joint network's standardisation, from the surrogate's single-site rows: each row as
/// the surrogate sees it (parameters conditions, observation targets) and as a one-site
/// posterior does (the reverse), so every token of either layout has its statistics.
fn joint_standardizer(task: &dyn HierarchicalModel, rows: &[Rows]) -> Result<Standardizer> {
    let offset = n_labels(task) as u32;
    let surrogate = Layout::surrogate(task).with_target_labels(offset);
    let posterior = Layout::posterior(task, 1).with_target_labels(offset);
    let reversed: Vec<Rows> =
        rows.iter().map(|r| Rows::new(1, r.target, r.cond, r.inputs)).collect();
    let (mut tokens, mut values) = standardizer_rows(&surrogate, 1, rows);
    let (t, v) = standardizer_rows(&posterior, 1, &reversed);
    tokens.extend(t);
    values.extend(v);
    Standardizer::fit_sets(tokens.iter().zip(&values).map(|(t, v)| (t.as_slice(), v.as_slice())))
}

/// Fits a standardiser over the cond and target rows of every site count; `layout` is the
/// layout of `sites` sites, of which every other count's layout is a prefix.
fn fit_standardizer(layout: &Layout, sites: usize, rows: &[Rows]) -> Result<Standardizer> {
    let (tokens, values) = standardizer_rows(layout, sites, rows);
    Standardizer::fit_sets(tokens.iter().zip(&values).map(|(t, v)| (t.as_slice(), v.as_slice())))
}

/// Every set of `rows` as its tokens (the prefix of `layout` for its site count) and values.
type TokenRows = (Vec<Vec<Token>>, Vec<Vec<f64>>);

fn standardizer_rows(layout: &Layout, sites: usize, rows: &[Rows]) -> TokenRows {
    let mut tokens = Vec::new();
    let mut values = Vec::new();
    for r in rows {
        let globals = layout.target.iter().filter(|t| t.group == 0).count();
        let c = layout.cond.len() / sites * r.sites;
        let m = globals + (layout.target.len() - globals) / sites * r.sites;
        let set_tokens: Vec<_> =
            layout.cond[..c].iter().chain(&layout.target[..m]).copied().collect();
        for i in 0..r.target.len() / m.max(1) {
            tokens.push(set_tokens.clone());
            values.push(
                r.cond[i * c..(i + 1) * c]
                    .iter()
                    .chain(&r.target[i * m..(i + 1) * m])
                    .copied()
                    .collect::<Vec<f64>>(),
            );
        }
    }
    (tokens, values)
}

/// Inputs mapped by their dimension's bijection (none given: unchanged).
fn map_inputs(bijections: &[crate::tasks::Bijection], values: &[f64]) -> Vec<f64> {
    if bijections.is_empty() {
        return values.to_vec();
    }
    values.iter().zip(bijections.iter().cycle()).map(|(&v, b)| b.forward(v)).collect()
}

/// Standardised sets for `net` from unstandardised rows.
pub fn to_sets(net: &Network, rows: Rows) -> Result<Sets> {
    net.config.sets(rows)
}
