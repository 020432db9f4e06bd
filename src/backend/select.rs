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

/// Switches off Mesa's implicit Vulkan layer `VK_LAYER_MESA_device_select` (by its own
/// variable, `NODEVICE_SELECT=1`) on a machine with no desktop session (`XDG_RUNTIME_DIR`
/// unset). There the layer asks Wayland for the default GPU anyway, and libwayland prints
/// "error: XDG_RUNTIME_DIR is invalid or not set in the environment." for every Vulkan
/// instance: an error line in a run that has none. The layer only orders the adapters, which
/// wgpu's are ranked by here anyway. A variable the user set is left alone.
///
/// It changes the process environment, so call it first thing, before any thread starts
/// (the CLI's `main` and the Python module's import do).
pub fn quiet_headless_vulkan() {
    if std::env::var_os("XDG_RUNTIME_DIR").is_none()
        && std::env::var_os("NODEVICE_SELECT").is_none()
    {
        std::env::set_var("NODEVICE_SELECT", "1");
    }
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
        probe_cuda(),
        wgpu_report(),
    ]
}

/// Opening the device is the only sure probe (a driver too old for the kernels shows only
/// there); it takes well under a second and `info` runs once.
fn probe_cuda() -> BackendReport {
    let (device, reason) = match open_cuda() {
        Ok(b) => (Some(b.device_name()), "an NVIDIA GPU with this binary's kernels".into()),
        Err(Error::BackendUnavailable { reason, .. }) => (None, reason),
        Err(e) => (None, e.to_string()),
    };
    BackendReport { name: "cuda".into(), available: device.is_some(), device, reason }
}

#[cfg(feature = "cuda")]
fn open_cuda() -> Result<Arc<dyn Backend>> {
    Ok(Arc::new(super::cuda::CudaBackend::new()?))
}

#[cfg(not(feature = "cuda"))]
fn open_cuda() -> Result<Arc<dyn Backend>> {
    Err(Error::BackendUnavailable {
        name: "cuda".into(),
        reason: "this binary was built without the `cuda` feature; rebuild with default \
                 features"
            .into(),
    })
}

#[cfg(feature = "wgpu")]
fn wgpu_report() -> BackendReport {
    let adapters = super::wgpu::adapters();
    let (device, reason) = match adapters.first() {
        None => (
            None,
            "no Vulkan, Metal or DX12 adapter found; install a GPU driver (or, for a software \
             device, Mesa's lavapipe: apt-get install mesa-vulkan-drivers libvulkan1)"
                .to_string(),
        ),
        Some((name, false)) => (Some(name.clone()), "a GPU adapter".to_string()),
        Some((name, true)) => (
            Some(name.clone()),
            "only a CPU-type adapter: used when the wgpu backend is asked for, never picked by auto".to_string(),
        ),
    };
    BackendReport { name: "wgpu".into(), available: device.is_some(), device, reason }
}

#[cfg(not(feature = "wgpu"))]
fn wgpu_report() -> BackendReport {
    BackendReport {
        name: "wgpu".into(),
        available: false,
        device: None,
        reason: "this binary was built without the `wgpu` feature; rebuild with default \
                 features"
            .into(),
    }
}

/// Opens wgpu; a CPU-type adapter only when `allow_cpu`.
#[cfg(feature = "wgpu")]
fn open_wgpu(allow_cpu: bool) -> Result<Arc<dyn Backend>> {
    Ok(Arc::new(super::wgpu::WgpuBackend::new(allow_cpu)?))
}

#[cfg(not(feature = "wgpu"))]
fn open_wgpu(_allow_cpu: bool) -> Result<Arc<dyn Backend>> {
    Err(Error::BackendUnavailable { name: "wgpu".into(), reason: wgpu_report().reason })
}

/// Whether this binary embeds compiled CUDA kernels.
#[cfg(feature = "cuda")]
pub const CUDA_KERNELS: bool = super::cuda::KERNELS_BUILT;
#[cfg(not(feature = "cuda"))]
pub const CUDA_KERNELS: bool = false;

/// Opens the backend asked for. Returns it with a sentence saying which one was picked and why.
pub fn select(kind: BackendKind) -> Result<(Arc<dyn Backend>, String)> {
    match kind {
        BackendKind::Cpu => Ok((Arc::new(CpuBackend::new()), "cpu: asked for".into())),
        BackendKind::Wgpu => {
            let b = open_wgpu(true)?;
            let why = format!("wgpu: asked for, on {}", b.device_name());
            Ok((b, why))
        }
        BackendKind::Auto => {
            let cuda = match open_cuda() {
                Ok(b) => {
                    let why = format!("cuda: auto picked the GPU {}", b.device_name());
                    return Ok((b, why));
                }
                Err(Error::BackendUnavailable { reason, .. }) => reason,
                // A setting of ours the user got wrong (TFMPE_MATMUL): say so rather than fall
                // back to a slower backend unnoticed.
                Err(e @ Error::Invalid(_)) => return Err(e),
                Err(e) => e.to_string(),
            };
            match open_wgpu(false) {
                Ok(b) => {
                    let why =
                        format!("wgpu: auto picked the GPU {} (cuda: {})", b.device_name(), cuda);
                    Ok((b, why))
                }
                Err(e) => Ok((
                    Arc::new(CpuBackend::new()),
                    format!(
                        "cpu: auto picked it, no GPU backend is usable (cuda: {}; wgpu: {})",
                        cuda,
                        match e {
                            Error::BackendUnavailable { reason, .. } => reason,
                            other => other.to_string(),
                        }
                    ),
                )),
            }
        }
        BackendKind::Cuda => {
            let b = open_cuda()?;
            let why = format!("cuda: asked for, on {}", b.device_name());
            Ok((b, why))
        }
    }
}

/// Reads `TFMPE_BACKEND`, defaulting to `auto`; a bad value is an error naming the variable.
pub fn kind_from_env() -> Result<BackendKind> {
    match std::env::var("TFMPE_BACKEND") {
        Ok(v) if !v.trim().is_empty() => {
            v.parse().map_err(|e: Error| Error::Invalid(format!("TFMPE_BACKEND: {e}")))
        }
        _ => Ok(BackendKind::Auto),
    }
}
