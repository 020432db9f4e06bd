//! `tfmpe sample`: posterior samples for a new observation from a saved posterior network.

use std::path::PathBuf;

use tfmpe::run_folder::{
    load_posterior, read_observations, write_dataset_rows, write_parameter_rows, RunFolder,
};
use tfmpe::sbi::Sampler;
use tfmpe::{Device, Error, Result};

use super::progress::Bars;

#[derive(clap::Args)]
pub struct SampleArgs {
    /// The posterior checkpoint folder (`DIR/posterior` of a run, or the run folder itself).
    #[arg(long)]
    pub model: PathBuf,
    /// The observed data sets: a CSV in the wide format (one row per data set, columns y.0,
    /// y.1, ...) or the long format (columns dataset, site, the task's inputs, y; one row per
    /// observed value). Every data set is sampled in one batched solve.
    #[arg(long)]
    pub observation: PathBuf,
    /// Posterior draws per data set.
    #[arg(long, default_value_t = 1000)]
    pub samples: usize,
    #[command(flatten)]
    pub ode: super::SolverArgs,
    /// Seeds the draws' start noise (each data set's draws equal a call for it alone).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Samples integrated together (bounds the memory; the samples do not depend on it).
    #[arg(long, default_value_t = Sampler::DEFAULT_CHUNK)]
    pub chunk: usize,
    /// Where to compute: auto (a GPU backend when one works, else cpu), cpu, wgpu or cuda.
    #[arg(long, env = "TFMPE_BACKEND", default_value = "auto")]
    pub backend: tfmpe::backend::BackendKind,
    /// Output CSV: one row per draw with the parameter columns, led by a `dataset` column when
    /// the file holds several data sets. `-` writes to standard output.
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(args: SampleArgs) -> Result<()> {
    let solver = args.ode.solver()?;
    super::check_samples(args.samples)?;
    if args.chunk == 0 {
        return Err(Error::Invalid("--chunk must be at least 1 (the default is 1000)".into()));
    }
    let (device, why) = Device::open(args.backend)?;
    eprintln!("tfmpe: backend {why}");
    let mut net = load_posterior(&device, &args.model)?;
    // The run folder holds a model file's copy when the run was of one.
    let run = if args.model.join("posterior").is_dir() {
        args.model.clone()
    } else {
        args.model.parent().map(PathBuf::from).unwrap_or_default()
    };
    let task = RunFolder::new(&run).task(&net.config.task)?;
    let data = read_observations(&args.observation, &*task)?;
    let sites = data[0].sites;
    if let Some(other) = data.iter().find(|d| d.sites != sites) {
        return Err(Error::Invalid(format!(
            "{}: data sets of {sites} and {} sites; sample each site count in its own call",
            args.observation.display(),
            other.sites
        )));
    }
    let bars = Bars::new();
    let sampler = Sampler::new(&device, solver).with_chunk(args.chunk);
    let mut sets = sampler.posteriors(&mut net, &*task, &data, args.samples, args.seed, &bars)?;
    bars.finish();
    if sets.len() == 1 {
        write_parameter_rows(&args.out, &*task, sites, sets.pop().unwrap_or_default())?;
    } else {
        write_dataset_rows(&args.out, &*task, sites, sets)?;
    }
    let to = if args.out.as_os_str() == "-" {
        "standard output".to_string()
    } else {
        args.out.display().to_string()
    };
    eprintln!(
        "tfmpe: wrote {} draws for each of {} data sets ({sites} sites) to {to}",
        args.samples,
        data.len(),
    );
    Ok(())
}
