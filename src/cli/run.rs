//! `tfmpe run`: simulate, train, sample, evaluate, and write the output folder.

use std::path::PathBuf;
use std::time::Instant;

use rand::rngs::StdRng;
use rand::SeedableRng;
use serde_json::json;
use tfmpe::sbi::{self, Method, RunConfig};
use tfmpe::tasks::{simulate_dataset, task_by_name};
use tfmpe::{Device, Error, Result};

use super::eval::{evaluate, exact_reference, EvalArgs, REFERENCE_SAMPLES};
use super::files::{self, read_observation, write_json, write_rows};
use super::plots;
use super::progress::Bars;
use tfmpe::sbi::Progress;

#[derive(clap::Args)]
pub struct RunArgs {
    /// Task name (hier-gaussian, hier-gaussian-linear, hier-gaussian-linear-uniform).
    #[arg(long)]
    pub task: String,
    /// Number of sites S.
    #[arg(long)]
    pub sites: usize,
    /// Simulation budget, counted in single-site simulator calls.
    #[arg(long)]
    pub budget: usize,
    /// lf (likelihood factorisation) or direct.
    #[arg(long, default_value = "lf")]
    pub method: Method,
    /// Seed of simulations, initial weights and training noise.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Simulate the observation from the prior with this seed (ignored with --observation).
    #[arg(long, default_value_t = 0)]
    pub obs_seed: u64,
    /// A one-row CSV with the observation (columns y.0, y.1, ...).
    #[arg(long)]
    pub observation: Option<PathBuf>,
    /// Posterior samples to draw.
    #[arg(long, default_value_t = 1000)]
    pub samples: usize,
    #[command(flatten)]
    pub ode: super::SolverArgs,
    #[arg(long, env = "TFMPE_BACKEND", default_value = "auto")]
    pub backend: tfmpe::backend::BackendKind,
    /// Cap on the training epochs of each network.
    #[arg(long, default_value_t = 1000)]
    pub max_epochs: usize,
    /// Early-stopping patience in epochs.
    #[arg(long, default_value_t = 100)]
    pub patience: usize,
    #[arg(long, default_value_t = 1e-4)]
    pub lr: f32,
    #[arg(long, default_value_t = 100)]
    pub batch_size: usize,
    /// LF: draw fresh synthetic sets every epoch instead of one fixed pool.
    #[arg(long)]
    pub fresh_sets: bool,
    /// Skip the evaluation (C2ST against the exact posterior, and calibration).
    #[arg(long)]
    pub no_eval: bool,
    /// Also run SBC and TARP over this many data sets from the prior (see `tfmpe eval`).
    #[arg(long, default_value_t = 0)]
    pub calibration: usize,
    /// Output folder.
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(args: RunArgs) -> Result<()> {
    let start = Instant::now();
    let task = task_by_name(&args.task)?;
    let solver = args.ode.solver()?;
    if args.budget == 0 {
        return Err(Error::Invalid("--budget must be at least 1".into()));
    }
    if args.budget < args.batch_size {
        return Err(Error::Invalid(format!(
            "--budget {} is smaller than one batch (--batch-size {}); raise the budget or lower the batch size",
            args.budget, args.batch_size
        )));
    }
    sbi::network::check_samples(args.samples)?;
    // The observation: from a file, or simulated from the prior with --obs-seed.
    let (obs, truth) = match &args.observation {
        Some(path) => (read_observation(path, &*task, Some(args.sites))?.0, None),
        None => {
            let d = simulate_dataset(
                &*task,
                args.sites,
                &mut StdRng::seed_from_u64(args.obs_seed),
            );
            (d.obs, Some(d.params))
        }
    };
    let (device, why) = Device::open(args.backend)?;
    eprintln!("tfmpe: backend {why}");
    tfmpe::io::ensure_dir(&args.out)?;

    let mut cfg = RunConfig::new(args.sites, args.budget);
    cfg.method = args.method;
    cfg.seed = args.seed;
    cfg.fresh_sets = args.fresh_sets;
    for t in [&mut cfg.train, &mut cfg.surrogate_train] {
        t.max_epochs = args.max_epochs;
        t.patience = args.patience;
        t.lr = args.lr;
        t.batch = args.batch_size;
    }
    let bars = Bars::new();
    let mut trained = sbi::run(&device, &*task, &cfg, &bars)?;
    bars.finish();
    for t in [&trained.report.surrogate, &trained.report.posterior]
        .into_iter()
        .flatten()
    {
        if let Some(msg) = &t.stop_message {
            eprintln!("tfmpe: warning: {msg}");
        }
    }
    trained
        .posterior
        .save(&args.out.join(files::POSTERIOR_DIR))?;
    if let Some(s) = &trained.surrogate {
        s.save(&args.out.join(files::SURROGATE_DIR))?;
    }

    bars.phase("sample");
    let t0 = Instant::now();
    let samples = sbi::sample_posterior(
        &device,
        &mut trained.posterior,
        &*task,
        &obs,
        args.samples,
        solver,
        sbi::sub_seed(args.seed, 9, 0),
        1000,
        &bars,
    )?;
    bars.finish();
    let sampling_s = t0.elapsed().as_secs_f64();
    let names = task.parameter_names(args.sites);
    // Plotted first: the CSV writers below take the draws and the observation by value.
    let reference = exact_reference(&*task, &obs, args.sites, REFERENCE_SAMPLES);
    plots::write_posterior(
        &args.out,
        &*task,
        args.sites,
        &names,
        &samples,
        reference.as_deref(),
        truth.as_deref(),
    )?;
    plots::write_losses(&args.out, &trained.report)?;
    write_rows(&args.out.join(files::SAMPLES), names.clone(), samples)?;
    write_rows(
        &args.out.join(files::OBSERVATION),
        task.observation_names(args.sites),
        vec![obs],
    )?;
    if let Some(t) = truth {
        write_rows(&args.out.join(files::TRUE_PARAMS), names, vec![t])?;
    }

    let mut timings = serde_json::Map::new();
    for (phase, s) in &trained.report.phases {
        timings.insert(phase.clone(), json!(s));
    }
    timings.insert("sampling".into(), json!(sampling_s));
    let loss = |r: &Option<sbi::train::TrainReport>| {
        r.as_ref().map(|r| {
            json!({
                "epochs": r.epochs, "steps": r.steps, "best_epoch": r.best_epoch,
                "best_val_loss": r.best_val_loss, "final_train_loss": r.train_losses.last(),
                "stop_reason": r.stop_reason, "stop_message": r.stop_message,
                "seconds": r.seconds, "steps_per_s": r.steps_per_s,
                "train_losses": r.train_losses, "val_losses": r.val_losses,
            })
        })
    };
    let mut report = json!({
        "tfmpe_version": env!("CARGO_PKG_VERSION"),
        "backend": device.name(),
        "backend_reason": why,
        "device": device.backend().device_name(),
        "task": task.name(),
        "sites": args.sites,
        "budget": args.budget,
        "method": args.method,
        "seed": args.seed,
        "observation": if args.observation.is_some() { json!("file") } else { json!({ "obs_seed": args.obs_seed }) },
        "samples": args.samples,
        "solver": solver,
        "fresh_sets": args.fresh_sets,
        "simulator_calls": trained.report.simulator_calls,
        "dropped_simulations": trained.report.dropped_simulations,
        "training_sets": trained.report.training_sets,
        "validation_sets": trained.report.validation_sets,
        "timings_s": timings,
        "losses": { "surrogate": loss(&trained.report.surrogate), "posterior": loss(&trained.report.posterior) },
        "metrics": {},
    });
    write_json(&args.out.join(files::REPORT), &report)?;
    if !args.no_eval {
        bars.phase("evaluate");
        let eval = EvalArgs::for_run(&args.out, args.calibration, args.ode.clone(), args.seed);
        let metrics = evaluate(&device, &eval)?;
        report["metrics"] = metrics;
    }
    report["timings_s"]["total"] = json!(start.elapsed().as_secs_f64());
    write_json(&args.out.join(files::REPORT), &report)?;
    eprintln!(
        "tfmpe: wrote {} in {:.1} s",
        args.out.display(),
        start.elapsed().as_secs_f64()
    );
    let m = &report["metrics"];
    if let Some(c) = m.get("c2st") {
        eprintln!("tfmpe: C2ST against the exact posterior: {c}");
    }
    if let (Some(s), Some(t)) = (m.get("sbc"), m.get("tarp")) {
        eprintln!(
            "tfmpe: SBC lowest rank KS p-value {} ({}); TARP KS p-value {}, ATC {}",
            s["min_ks_p"],
            s["min_ks_p_parameter"].as_str().unwrap_or("?"),
            t["ks_p"],
            t["atc"]
        );
    }
    Ok(())
}
