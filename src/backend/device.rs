//! [`Device`]: the handle to one backend that the layers above pass around.
//!
//! The layers above exchange plain [`Buffer`](super::Buffer)s and the parameter structs of the
//! contract; shapes live with the code that owns the data (the tape's nodes, the model's token
//! batches), so there is no tensor type.

use std::fmt;
use std::sync::Arc;

use super::{select, Backend, BackendKind};
use crate::error::Result;

/// A handle to one backend; cheap to clone.
#[derive(Clone)]
pub struct Device {
    backend: Arc<dyn Backend>,
}

impl fmt::Debug for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Device({})", self.backend.name())
    }
}

impl Device {
    /// The CPU backend.
    pub fn cpu() -> Self {
        Device { backend: Arc::new(super::cpu::CpuBackend::new()) }
    }

    /// Opens a backend by kind; returns it with a sentence saying why it was picked.
    pub fn open(kind: BackendKind) -> Result<(Self, String)> {
        let (backend, why) = select(kind)?;
        Ok((Device { backend }, why))
    }

    /// A device on a backend built by hand: the CUDA backend on a driver that only records.
    #[cfg(all(test, feature = "cuda"))]
    pub(crate) fn from_backend(backend: Arc<dyn Backend>) -> Self {
        Device { backend }
    }

    pub fn backend(&self) -> &dyn Backend {
        &*self.backend
    }

    pub fn name(&self) -> &'static str {
        self.backend.name()
    }
}
