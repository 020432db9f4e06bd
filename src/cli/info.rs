//! `tfmpe info`: the backends found on this machine.

use serde_json::json;
use tfmpe::backend::{kind_from_env, probe, BackendKind, CUDA_KERNELS};
use tfmpe::Result;

#[derive(clap::Args)]
pub struct InfoArgs {
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// The backend to open as a check (default: TFMPE_BACKEND, else auto).
    #[arg(long)]
    backend: Option<BackendKind>,
}

pub fn run(args: InfoArgs) -> Result<()> {
    let kind = match args.backend {
        Some(k) => k,
        None => kind_from_env()?,
    };
    let (device, why) = tfmpe::Device::open(kind)?;
    let reports = probe();
    if args.json {
        let out = json!({
            "version": env!("CARGO_PKG_VERSION"),
            "backends": reports,
            "cuda_kernels": CUDA_KERNELS,
            "selected": { "name": device.name(), "device": device.backend().device_name(), "reason": why },
        });
        println!("{out}");
    } else {
        println!("tfmpe {}", env!("CARGO_PKG_VERSION"));
        for r in &reports {
            let state = if r.available { "available" } else { "unavailable" };
            let dev = r.device.as_deref().unwrap_or("-");
            println!("  {:<5} {:<11} {:<24} {}", r.name, state, dev, r.reason);
        }
        println!("  cuda kernels embedded: {}", if CUDA_KERNELS { "yes" } else { "no" });
        println!("selected: {why}");
    }
    Ok(())
}
