//! `tfmpe sample`: posterior samples for a new observation from a saved posterior network.

use std::path::PathBuf;

use tfmpe::run_folder::{load_posterior, read_observation, write_parameter_rows};
use tfmpe::sbi::Sampler;
use tfmpe::tasks::{task_by_name, Observed};
use tfmpe::{Device, Result};

use super::progress::Bars;

#[derive(clap::Args)]
pub struct SampleArgs {
    /// The posterior checkpoint folder (`DIR/posterior` of a run, or the run folder itself).
    #[arg(long)]
    pub model: PathBuf,
    /// A one-row CSV with the observation.
    #[arg(long)]
    pub observation: PathBuf,
    #[arg(long, default_value_t = 1000)]
    pub samples: usize,
    #[command(flatten)]
    pub ode: super::SolverArgs,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Samples integrated together (bounds the memory; the samples do not depend on it).
    #[arg(long, default_value_t = Sampler::DEFAULT_CHUNK)]
    pub chunk: usize,
    #[arg(long, env = "TFMPE_BACKEND", default_value = "auto")]
    pub backend: tfmpe::backend::BackendKind,
    /// Output CSV.
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(args: SampleArgs) -> Result<()> {
    let solver = args.ode.solver()?;
    let (device, why) = Device::open(args.backend)?;
    eprintln!("tfmpe: backend {why}");
    let mut net = load_posterior(&device, &args.model)?;
    let task = task_by_name(&net.config.task)?;
    let (values, sites) = read_observation(&args.observation, &*task, Some(net.config.sites))?;
    let obs = Observed { sites, values, inputs: None };
    super::check_samples(args.samples)?;
    let bars = Bars::new();
    let sampler = Sampler::new(&device, solver).with_chunk(args.chunk);
    let samples = sampler.posterior(&mut net, &*task, &obs, args.samples, args.seed, &bars)?;
    bars.finish();
    write_parameter_rows(&args.out, &*task, sites, samples)
}
