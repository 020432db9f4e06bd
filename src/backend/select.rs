//! Backend selection: `--backend auto|cpu|wgpu|cuda`, `TFMPE_BACKEND`, or a library call.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::Serialize;

use super::cpu::CpuBackend;
use super::Backend;
use crate::error::{Error, Result};

/// Which backend the user asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum BackendKind {
    /// CUDA if a driver, a GPU and compiled kernels are present; else a real (non-CPU) wgpu
    /// adapter; else the CPU.
    #[default]
    Auto,
    Cpu,
    Wgpu,
    Cuda,
}

impl FromStr for BackendKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(BackendKind::Auto),
            "cpu" => Ok(BackendKind::Cpu),
            "wgpu" => Ok(BackendKind::Wgpu),
            "cuda" => Ok(BackendKind::Cuda),
            other => Err(Error::Invalid(format!(
                "unknown backend `{other}`: use one of auto, cpu, wgpu, cuda"
            ))),
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackendKind::Auto => "auto",
            BackendKind::Cpu => "cpu",
            BackendKind::Wgpu => "wgpu",
            BackendKind::Cuda => "cuda",
        })
    }
}

/// What probing found for one backend.
#[derive(Clone, Debug, Serialize)]
pub struct BackendReport {
    pub name: String,
    pub available: bool,
    pub device: Option<String>,
    pub reason: String,
}

/// Probes every backend without touching a device API that could panic.
pub fn probe() -> Vec<BackendReport> {
    let cpu = CpuBackend::new();
    vec![
        BackendReport {
            name: "cpu".into(),
            available: true,
            device: Some(cpu.device_name()),
            reason: "always available".into(),
        },
        BackendReport {
            name: "cuda".into(),
            available: false,
            device: None,
            reason: "this build has no CUDA backend yet (it arrives with the CUDA issue); use --backend cpu".into(),
        },
        BackendReport {
            name: "wgpu".into(),
            available: false,
            device: None,
            reason: "this build has no wgpu backend yet (it arrives with the wgpu issue); use --backend cpu".into(),
        },
    ]
}

/// Whether this binary embeds compiled CUDA kernels.
pub const CUDA_KERNELS: bool = false;

/// Opens the backend asked for. Returns it with a sentence saying which one was picked and why.
pub fn select(kind: BackendKind) -> Result<(Arc<dyn Backend>, String)> {
    let reports = probe();
    let find = |name: &str| reports.iter().find(|r| r.name == name).cloned();
    match kind {
        BackendKind::Cpu => Ok((Arc::new(CpuBackend::new()), "cpu: asked for".into())),
        BackendKind::Auto => {
            let why = ["cuda", "wgpu"]
                .iter()
                .filter_map(|n| find(n))
                .map(|r| format!("{}: {}", r.name, r.reason))
                .collect::<Vec<_>>()
                .join("; ");
            Ok((
                Arc::new(CpuBackend::new()),
                format!("cpu: auto picked it, no GPU backend is usable ({why})"),
            ))
        }
        BackendKind::Wgpu | BackendKind::Cuda => {
            let r = find(&kind.to_string()).expect("probe lists every backend");
            Err(Error::BackendUnavailable {
                name: r.name,
                reason: r.reason,
            })
        }
    }
}

/// Reads `TFMPE_BACKEND`, defaulting to `auto`; a bad value is an error naming the variable.
pub fn kind_from_env() -> Result<BackendKind> {
    match std::env::var("TFMPE_BACKEND") {
        Ok(v) if !v.trim().is_empty() => v
            .parse()
            .map_err(|e: Error| Error::Invalid(format!("TFMPE_BACKEND: {e}"))),
        _ => Ok(BackendKind::Auto),
    }
}
