//! Tensors: a shape plus a device buffer, and the device they live on.

use std::fmt;
use std::sync::Arc;

use crate::backend::{self, Backend, BackendKind, Buffer, DType};
use crate::error::{Error, Result};

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
        Device {
            backend: Arc::new(backend::cpu::CpuBackend::new()),
        }
    }

    /// Opens a backend by kind; returns it with a sentence saying why it was picked.
    pub fn open(kind: BackendKind) -> Result<(Self, String)> {
        let (backend, why) = backend::select(kind)?;
        Ok((Device { backend }, why))
    }

    pub fn backend(&self) -> &dyn Backend {
        &*self.backend
    }

    pub fn name(&self) -> &'static str {
        self.backend.name()
    }

    pub fn zeros(&self, shape: &[usize]) -> Result<Tensor> {
        let buf = self.backend.alloc(DType::F32, numel(shape))?;
        Ok(Tensor {
            shape: shape.to_vec(),
            buf,
            device: self.clone(),
        })
    }

    pub fn from_f32(&self, data: &[f32], shape: &[usize]) -> Result<Tensor> {
        check_numel(data.len(), shape)?;
        let buf = self.backend.upload_f32(data)?;
        Ok(Tensor {
            shape: shape.to_vec(),
            buf,
            device: self.clone(),
        })
    }

    pub fn from_u32(&self, data: &[u32], shape: &[usize]) -> Result<Tensor> {
        check_numel(data.len(), shape)?;
        let buf = self.backend.upload_u32(data)?;
        Ok(Tensor {
            shape: shape.to_vec(),
            buf,
            device: self.clone(),
        })
    }
}

/// A row-major, contiguous tensor on one device.
pub struct Tensor {
    shape: Vec<usize>,
    buf: Buffer,
    device: Device,
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Tensor({:?}, {:?}, {})",
            self.shape,
            self.dtype(),
            self.device.name()
        )
    }
}

impl Tensor {
    /// Wraps an existing buffer; its length must match the shape.
    pub fn from_buffer(device: &Device, buf: Buffer, shape: &[usize]) -> Result<Self> {
        check_numel(buf.len(), shape)?;
        Ok(Tensor {
            shape: shape.to_vec(),
            buf,
            device: device.clone(),
        })
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn numel(&self) -> usize {
        self.buf.len()
    }

    pub fn dtype(&self) -> DType {
        self.buf.dtype()
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn buffer(&self) -> &Buffer {
        &self.buf
    }

    pub fn buffer_mut(&mut self) -> &mut Buffer {
        &mut self.buf
    }

    pub fn into_buffer(self) -> Buffer {
        self.buf
    }

    /// Same data, new shape with the same number of elements.
    pub fn reshape(mut self, shape: &[usize]) -> Result<Self> {
        check_numel(self.numel(), shape)?;
        self.shape = shape.to_vec();
        Ok(self)
    }

    /// Copies the data to the host (a synchronisation point on GPUs).
    pub fn to_vec_f32(&self) -> Result<Vec<f32>> {
        self.device.backend().download_f32(&self.buf)
    }

    pub fn to_vec_u32(&self) -> Result<Vec<u32>> {
        self.device.backend().download_u32(&self.buf)
    }
}

pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

fn check_numel(len: usize, shape: &[usize]) -> Result<()> {
    if len != numel(shape) {
        return Err(Error::Shape(format!(
            "{len} elements do not fill shape {shape:?} ({} elements)",
            numel(shape)
        )));
    }
    Ok(())
}
