//! Embedding tables and Fourier features: the token inputs of the model.

use rand::Rng;

use super::init::standard_normal;
use crate::error::Result;
use crate::tape::{ParamId, ParamStore, Tape, Var};

/// A lookup table `[vocab, dim]` (`{name}.weight`), initialised with standard normals.
#[derive(Clone, Debug)]
pub struct Embedding {
    pub table: ParamId,
    pub vocab: usize,
    pub dim: usize,
}

impl Embedding {
    pub fn new<R: Rng + ?Sized>(
        store: &mut ParamStore, name: &str, vocab: usize, dim: usize, rng: &mut R,
    ) -> Result<Self> {
        let table = store.add(
            &format!("{name}.weight"),
            &[vocab, dim],
            &standard_normal(rng, vocab * dim),
        )?;
        Ok(Embedding { table, vocab, dim })
    }

    /// Rows for the u32 `ids`; gives `ids.shape + [dim]`.
    pub fn forward(&self, tape: &mut Tape, ids: Var) -> Result<Var> {
        let table = tape.param(self.table)?;
        tape.embedding(table, ids)
    }
}

/// Fourier features `[sin 2πxF, cos 2πxF]` of functional inputs with trainable frequencies
/// `F: [in_dim, half]` (`{name}.freqs`), initialised with standard normals.
#[derive(Clone, Debug)]
pub struct FourierFeatures {
    pub freqs: ParamId,
    pub in_dim: usize,
    pub half: usize,
}

impl FourierFeatures {
    pub fn new<R: Rng + ?Sized>(
        store: &mut ParamStore, name: &str, in_dim: usize, half: usize, rng: &mut R,
    ) -> Result<Self> {
        let freqs = store.add(
            &format!("{name}.freqs"),
            &[in_dim, half],
            &standard_normal(rng, in_dim * half),
        )?;
        Ok(FourierFeatures { freqs, in_dim, half })
    }

    /// `x: [.., in_dim]` gives `[.., 2·half]`.
    pub fn forward(&self, tape: &mut Tape, x: Var) -> Result<Var> {
        let freqs = tape.param(self.freqs)?;
        tape.fourier(x, freqs)
    }
}
