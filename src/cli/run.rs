//! `tfmpe run`: simulate, train, sample, evaluate, and write the output folder.

use std::path::PathBuf;

use tfmpe::run_folder::{
    read_observation, C2st, EvalConfig, Existing, Observation, RunFolder, RunSpec,
};
use tfmpe::sbi::train::TrainConfig;
use tfmpe::sbi::{Method, RunConfig};
use tfmpe::tasks::custom::model_file;
use tfmpe::tasks::{task_by_name, HierarchicalModel};
use tfmpe::{Device, Result};

use super::progress::Bars;
use super::Lc2stArgs;

#[derive(clap::Args)]
pub struct RunArgs {
    /// Task name (`tfmpe info` lists them).
    #[arg(long, required_unless_present = "model_file", conflicts_with = "model_file")]
    pub task: Option<String>,
    /// Your own model instead of a task: a TOML file naming its variables, their priors and the
    /// simulator, an external program (see the README); kept in --out as model.toml.
    #[arg(long, value_name = "FILE")]
    pub model_file: Option<PathBuf>,
    /// Number of sites S of the observation.
    #[arg(long)]
    pub sites: usize,
    /// LF: train the posterior on sets of every size from 1 to M, so that `tfmpe sample` then
    /// answers an observation of any site count up to M (M ≥ --sites).
    #[arg(long, value_name = "M")]
    pub max_sites: Option<usize>,
    /// Simulation budget, counted in single-site simulator calls.
    #[arg(long)]
    pub budget: usize,
    /// lf (likelihood factorisation: a likelihood surrogate on single sites, then the
    /// posterior on synthetic sets), direct (the posterior on --budget / --sites real data
    /// sets), pf (posterior factorisation: a global network on real sets of 1..S sites,
    /// then a local network per site given the globals) or joint (lf with one network that
    /// is first the surrogate, then also the posterior).
    #[arg(long, default_value = "lf")]
    pub method: Method,
    /// Seed of simulations, initial weights and training noise.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Simulate the observation from the prior with this seed (ignored with --observation).
    #[arg(long, default_value_t = 0)]
    pub obs_seed: u64,
    /// The observation: a CSV in the wide format (one row, columns y.0, y.1, ...) or the long
    /// format (columns site, the task's inputs, y; one row per observed value).
    #[arg(long)]
    pub observation: Option<PathBuf>,
    /// Posterior samples to draw.
    #[arg(long, default_value_t = 1000)]
    pub samples: usize,
    #[command(flatten)]
    pub ode: super::SolverArgs,
    /// Where to compute: auto (a GPU backend when one works, else cpu), cpu, wgpu or cuda.
    #[arg(long, env = "TFMPE_BACKEND", default_value = "auto")]
    pub backend: tfmpe::backend::BackendKind,
    #[command(flatten)]
    pub train: super::TrainArgs,
    #[command(flatten)]
    pub arch: super::ArchArgs,
    /// Training sets per optimiser step (both networks).
    #[arg(long, default_value_t = 100)]
    pub batch_size: usize,
    /// LF: draw fresh synthetic sets every epoch instead of one fixed pool.
    #[arg(long)]
    pub fresh_sets: bool,
    /// LF: training sets in the synthetic pool (default: five per training simulation, up to
    /// 90 000 sites in all, and never fewer than one per simulation: 9 000 sets at --sites 10
    /// and --budget 2000). More cost surrogate samples, never simulator calls, and keep the
    /// posterior from memorising a small pool; the extra sets take prior draws of the globals.
    #[arg(long, value_name = "N")]
    pub synthetic_sets: Option<usize>,
    /// LF: how the surrogate standardises its observations. `marginal` by each observation's
    /// mean and spread over the simulations; `conditional` also by a location
    /// and scale affine in its site's parameters (and its input), leaving the flow the
    /// standardised residual, so that observations far narrower than their spread over the
    /// prior come out as narrow as the simulator makes them (hier-brownian's at small times),
    /// at the cost of the flow's relative error on that residual where the marginal flow is
    /// already accurate. By default conditional where the fitted scale varies over the
    /// simulations by 10% or more and beyond its fit's noise (a noise scale that depends on
    /// the parameters or inputs),
    /// else marginal; report.json's `surrogate_scaling` says which was used.
    #[arg(long, value_name = "HOW")]
    pub surrogate_scaling: Option<tfmpe::sbi::Scaling>,
    /// lf and direct: how the posterior standardises its parameters. `conditional` (the
    /// default): each site's locals by a location and scale that two small networks learn from
    /// the globals and that site's data, and the globals by a location and scale that two
    /// small set networks learn from all the sites' data, leaving the flow the standardised
    /// residuals, so that parameters far narrower than their spread over the prior (a funnel's
    /// neck, a site observed at a small time, a global every site informs) come out as narrow
    /// as the posterior makes them; `marginal` only by their mean and spread over the training
    /// sets.
    #[arg(long, value_name = "HOW")]
    pub posterior_scaling: Option<tfmpe::sbi::Scaling>,
    /// LF: sequential rounds. The budget is split among them; each round after the first
    /// simulates at parameters drawn from the posterior at the observation (truncated at its
    /// 0.1% density quantile, reweighted by prior / posterior), and both networks train further
    /// on all simulations so far. The model must give its prior density.
    #[arg(long, default_value_t = 1, value_name = "R")]
    pub rounds: usize,
    /// LF, a task with functional inputs (hier-brownian): simulated sites observe at the
    /// observation's inputs instead of fresh draws from the task's input distribution.
    #[arg(long)]
    pub observed_inputs: bool,
    /// LF, a function-valued task: synthetic sites keep a random number of their observations,
    /// so the posterior answers data sets whose sites were observed at fewer inputs (a site
    /// observed at 3 of its 5 times).
    #[arg(long)]
    pub ragged: bool,
    /// Skip the evaluation (C2ST against the exact posterior, and calibration).
    #[arg(long)]
    pub no_eval: bool,
    /// Also run SBC and TARP over this many data sets from the prior (see `tfmpe eval`).
    #[arg(long, default_value_t = 0)]
    pub calibration: usize,
    #[command(flatten)]
    pub lc2st: Lc2stArgs,
    /// Output folder: a new or empty one (see --force).
    #[arg(long)]
    pub out: PathBuf,
    /// Also print the report's headline (folder, time, metrics) as one JSON line on stdout.
    #[arg(long)]
    pub json: bool,
    /// Write into a folder that already holds files: the files of an earlier run there are
    /// removed first (its samples, report, checkpoints and plots); other files are kept.
    #[arg(long, conflicts_with = "resume")]
    pub force: bool,
    /// Go on with an interrupted run in --out: its finished networks (saved as each training
    /// phase ends) are loaded instead of trained again, with the same results as a run that was
    /// never interrupted. The settings must be those it was started with.
    #[arg(long)]
    pub resume: bool,
}

pub fn run(args: RunArgs) -> Result<()> {
    let task: Box<dyn HierarchicalModel> = match (&args.model_file, &args.task) {
        (Some(file), _) => Box::new(model_file::load(file)?),
        (None, Some(name)) => task_by_name(name)?,
        (None, None) => unreachable!("clap requires --task or --model-file"),
    };
    let solver = args.ode.solver()?;
    super::check_samples(args.samples)?;
    let mut config = RunConfig::new(args.sites, args.budget);
    config.method = args.method;
    config.max_sites = args.max_sites;
    config.ragged = args.ragged;
    config.seed = args.seed;
    config.fresh_sets = args.fresh_sets;
    config.synthetic_sets = args.synthetic_sets;
    config.surrogate_scaling = args.surrogate_scaling;
    config.posterior_scaling = args.posterior_scaling;
    config.rounds = args.rounds;
    config.architecture = args.arch.apply(&config.architecture)?;
    let base = TrainConfig { batch: args.batch_size, ..config.train.clone() };
    let recipe = args.train.apply(base)?;
    for t in [&mut config.train, &mut config.surrogate_train] {
        *t = recipe.clone();
    }
    // Every setting is checked before the observation is read or any work starts.
    config.check(&*task)?;
    super::check_calibration(args.calibration, 99)?;
    tfmpe::sbi::check_draws(args.samples, task.param_dim(args.sites))?;
    let lc2st = args.lc2st.eval()?;
    if lc2st.is_some() && args.no_eval {
        return Err(tfmpe::Error::Invalid(
            "--lc2st is part of the evaluation; drop --no-eval".into(),
        ));
    }
    let observation = match &args.observation {
        Some(path) => Observation::Given(read_observation(path, &*task, Some(args.sites))?),
        None => Observation::Prior { obs_seed: args.obs_seed },
    };
    // The folder is refused (or an earlier run's files cleared) before any work.
    let existing = match (args.force, args.resume) {
        (true, _) => Existing::Replace,
        (false, true) => Existing::Resume,
        (false, false) => Existing::Refuse,
    };
    RunFolder::new(&args.out).prepare(existing)?;
    let (device, why) = Device::open(args.backend)?;
    eprintln!("tfmpe: backend {why}");

    let evaluation = (!args.no_eval).then(|| EvalConfig {
        calibration: args.calibration,
        lc2st,
        ..EvalConfig::new(solver, args.seed)
    });
    let spec = RunSpec {
        config,
        observation,
        samples: args.samples,
        solver,
        evaluation,
        observed_inputs: args.observed_inputs,
        existing,
        model_file: args.model_file.clone(),
    };
    let bars = Bars::new();
    let folder = RunFolder::new(&args.out);
    let report = folder.run(&device, &why, &*task, &spec, &bars)?;
    bars.finish();
    eprintln!(
        "tfmpe: wrote {} in {:.1} s",
        args.out.display(),
        report.timings_s.get("total").copied().unwrap_or_default()
    );
    // Numbers as report.json writes them (`1.0`, `null` for NaN).
    let json = |v: f64| serde_json::to_string(&v).unwrap_or_default();
    let m = &report.metrics;
    match &m.c2st {
        Some(C2st::Measured { c2st, c2st_globals, .. }) => {
            let globals = c2st_globals.map(|g| format!(" (globals alone: {})", json(g)));
            eprintln!(
                "tfmpe: C2ST against the exact posterior: {}{}",
                json(*c2st),
                globals.unwrap_or_default()
            )
        }
        Some(C2st::Unavailable { .. }) => {
            eprintln!("tfmpe: C2ST against the exact posterior: null")
        }
        None => {}
    }
    if let (Some(s), Some(t)) = (&m.sbc, &m.tarp) {
        eprintln!(
            "tfmpe: SBC lowest rank KS p-value {} ({}); TARP KS p-value {}, ATC {}",
            json(s.min_ks_p),
            s.min_ks_p_parameter,
            json(t.ks_p),
            json(t.atc)
        );
    }
    if args.json {
        let headline = serde_json::json!({
            "out": args.out.display().to_string(),
            "task": report.task,
            "method": report.method,
            "total_s": report.timings_s.get("total"),
            "simulator_calls": report.simulator_calls,
            "c2st": match &m.c2st { Some(C2st::Measured { c2st, .. }) => Some(*c2st), _ => None },
            "c2st_globals": match &m.c2st {
                Some(C2st::Measured { c2st_globals, .. }) => *c2st_globals,
                _ => None,
            },
            "sbc_min_ks_p": m.sbc.as_ref().map(|s| s.min_ks_p),
            "tarp_ks_p": m.tarp.as_ref().map(|t| t.ks_p),
            "lc2st": m.lc2st.as_ref().map(|l| serde_json::json!({
                "statistic": l.statistic, "p_value": l.p_value, "reject": l.reject
            })),
        });
        println!("{headline}");
    }
    if let Some(l) = &m.lc2st {
        eprintln!(
            "tfmpe: L-C2ST statistic {}, p-value {} ({} at α = {})",
            json(l.statistic),
            json(l.p_value),
            if l.reject { "rejected" } else { "not rejected" },
            l.settings.alpha
        );
    }
    // A training that hit a non-finite loss kept its best weights and the run finished, but
    // its results come from a network that stopped early: the command fails, naming it.
    let trainings = [&report.losses.surrogate, &report.losses.posterior];
    if let Some(t) = trainings.into_iter().flatten().find(|t| t.stop_reason == "non_finite_loss") {
        return Err(tfmpe::Error::Invalid(format!(
            "{}; the files in {} come from those weights (report.json says so); try a lower --lr",
            t.stop_message.as_deref().unwrap_or("a training loss became non-finite"),
            args.out.display()
        )));
    }
    Ok(())
}
