//! Trainable parameters: named device buffers and their gradients.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};

use super::numel;
use crate::backend::Device;
use crate::backend::{Buffer, DType};
use crate::error::{Error, Result};

/// Gives every store its own number, so a [`ParamId`] cannot be used with another store.
static NEXT_STORE: AtomicU32 = AtomicU32::new(1);

/// A handle to one parameter of one [`ParamStore`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ParamId {
    store: u32,
    index: u32,
}

impl ParamId {
    /// Position in registration order.
    pub fn index(self) -> usize {
        self.index as usize
    }
}

/// One registered parameter, as seen by [`ParamStore::iter`].
pub struct ParamView<'a> {
    pub id: ParamId,
    pub name: &'a str,
    pub shape: &'a [usize],
    pub value: &'a Buffer,
}

/// The parameters of a model, in registration order, with stable names (such as
/// `encoder.0.attn.qkv.weight`) under which checkpoints save and load them.
///
/// Each parameter has a value buffer and a gradient buffer of the same length; a backward pass
/// writes the gradients, an optimiser reads them.
pub struct ParamStore {
    device: Device,
    uid: u32,
    names: Vec<String>,
    shapes: Vec<Vec<usize>>,
    by_name: HashMap<String, usize>,
    pub(crate) values: Vec<Buffer>,
    pub(crate) grads: Vec<Buffer>,
}

impl ParamStore {
    pub fn new(device: &Device) -> Self {
        ParamStore {
            device: device.clone(),
            uid: NEXT_STORE.fetch_add(1, Ordering::Relaxed),
            names: Vec::new(),
            shapes: Vec::new(),
            by_name: HashMap::new(),
            values: Vec::new(),
            grads: Vec::new(),
        }
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Registers a parameter with its initial values; names must be unique.
    pub fn add(&mut self, name: &str, shape: &[usize], data: &[f32]) -> Result<ParamId> {
        if self.by_name.contains_key(name) {
            return Err(Error::Invalid(format!("parameter `{name}` is registered twice")));
        }
        if data.len() != numel(shape) {
            return Err(Error::Shape(format!(
                "parameter `{name}`: {} values for shape {shape:?}",
                data.len()
            )));
        }
        let backend = self.device.backend();
        let index = self.names.len();
        self.values.push(backend.upload_f32(data)?);
        self.grads.push(backend.alloc(DType::F32, data.len())?);
        self.names.push(name.to_string());
        self.shapes.push(shape.to_vec());
        self.by_name.insert(name.to_string(), index);
        Ok(self.id_at(index))
    }

    /// Number of parameters (tensors, not elements).
    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Total number of scalar parameters.
    pub fn num_elements(&self) -> usize {
        self.values.iter().map(Buffer::len).sum()
    }

    pub fn id(&self, name: &str) -> Option<ParamId> {
        self.by_name.get(name).map(|&i| self.id_at(i))
    }

    pub fn name(&self, id: ParamId) -> Result<&str> {
        Ok(&self.names[self.check(id)?])
    }

    pub fn shape(&self, id: ParamId) -> Result<&[usize]> {
        Ok(&self.shapes[self.check(id)?])
    }

    pub fn value(&self, id: ParamId) -> Result<&Buffer> {
        Ok(&self.values[self.check(id)?])
    }

    /// The gradient left by the last backward pass (zeros before the first).
    pub fn grad(&self, id: ParamId) -> Result<&Buffer> {
        Ok(&self.grads[self.check(id)?])
    }

    /// Every parameter in registration order.
    pub fn iter(&self) -> impl Iterator<Item = ParamView<'_>> + '_ {
        (0..self.len()).map(|i| ParamView {
            id: self.id_at(i),
            name: &self.names[i],
            shape: &self.shapes[i],
            value: &self.values[i],
        })
    }

    /// Overwrites the value of the parameter called `name` (loading a checkpoint).
    pub fn load(&mut self, name: &str, data: &[f32]) -> Result<()> {
        let i = *self
            .by_name
            .get(name)
            .ok_or_else(|| Error::Invalid(format!("no parameter called `{name}` in this model")))?;
        if data.len() != self.values[i].len() {
            return Err(Error::Shape(format!(
                "parameter `{name}` has shape {:?} ({} values), got {} values",
                self.shapes[i],
                self.values[i].len(),
                data.len()
            )));
        }
        self.device.backend().write_f32(&mut self.values[i], data)
    }

    /// Copies a parameter's values to the host.
    pub fn to_vec(&self, id: ParamId) -> Result<Vec<f32>> {
        self.device.backend().download_f32(self.value(id)?)
    }

    /// Mutable access to a value and the gradient beside it, for optimisers.
    pub(crate) fn value_and_grad(&mut self, index: usize) -> (&mut Buffer, &Buffer) {
        (&mut self.values[index], &self.grads[index])
    }

    pub(crate) fn uid(&self) -> u32 {
        self.uid
    }

    /// The index of `id`, or an error if it belongs to another store.
    pub(crate) fn check(&self, id: ParamId) -> Result<usize> {
        if id.store != self.uid || id.index() >= self.len() {
            return Err(Error::Invalid(format!(
                "parameter id {} belongs to another parameter store",
                id.index
            )));
        }
        Ok(id.index())
    }

    fn id_at(&self, index: usize) -> ParamId {
        ParamId { store: self.uid, index: index as u32 }
    }
}
