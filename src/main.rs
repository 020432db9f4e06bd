//! The `tfmpe` command: parses arguments, picks a backend, and reports.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use serde_json::json;
use tfmpe::backend::{kind_from_env, probe, BackendKind, CUDA_KERNELS};

#[derive(Parser)]
#[command(
    name = "tfmpe",
    version,
    about = "Tokenised flow matching for hierarchical simulation-based inference"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Lists the backends this binary can use on this machine.
    Info {
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
        /// The backend to open as a check (default: TFMPE_BACKEND, else auto).
        #[arg(long)]
        backend: Option<BackendKind>,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> tfmpe::Result<()> {
    match cli.command {
        Command::Info { json, backend } => info(json, backend),
    }
}

fn info(as_json: bool, backend: Option<BackendKind>) -> tfmpe::Result<()> {
    let kind = match backend {
        Some(k) => k,
        None => kind_from_env()?,
    };
    let (device, why) = tfmpe::Device::open(kind)?;
    let reports = probe();
    if as_json {
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
            let state = if r.available {
                "available"
            } else {
                "unavailable"
            };
            let dev = r.device.as_deref().unwrap_or("-");
            println!("  {:<5} {:<11} {:<24} {}", r.name, state, dev, r.reason);
        }
        println!(
            "  cuda kernels embedded: {}",
            if CUDA_KERNELS { "yes" } else { "no" }
        );
        println!("selected: {why}");
    }
    Ok(())
}
