//! Recycled device buffers, keyed by element type and length.
//!
//! A training step asks for the same sizes in the same order every time, so once one step has
//! returned its buffers the next finds all it needs here and allocates nothing.

use std::collections::HashMap;

use crate::backend::{Backend, Buffer, DType};
use crate::error::Result;

#[derive(Default)]
pub(crate) struct Pool {
    free: HashMap<(DType, usize), Vec<Buffer>>,
}

impl Pool {
    /// A buffer of `len` elements with unspecified contents.
    pub fn take(&mut self, backend: &dyn Backend, dtype: DType, len: usize) -> Result<Buffer> {
        match self.free.get_mut(&(dtype, len)).and_then(Vec::pop) {
            Some(buf) => Ok(buf),
            None => backend.alloc(dtype, len),
        }
    }

    pub fn f32(&mut self, backend: &dyn Backend, len: usize) -> Result<Buffer> {
        self.take(backend, DType::F32, len)
    }

    pub fn give(&mut self, buf: Buffer) {
        self.free.entry((buf.dtype(), buf.len())).or_default().push(buf);
    }

    /// Frees every pooled buffer (after a change of shapes, say).
    pub fn clear(&mut self) {
        self.free.clear();
    }
}
