//! The crate's error type: every user-facing failure names the input and the fix.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    /// Shapes or lengths that do not fit together.
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// A buffer of the wrong element type, or from another backend.
    #[error("wrong buffer: {0}")]
    Buffer(String),
    /// An argument outside its valid range (an index past a table, a zero size, ...).
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// A backend that was asked for but is not available here.
    #[error("backend `{name}` is not available: {reason}")]
    BackendUnavailable { name: String, reason: String },
    /// A user's simulator (a Python function, an external program) that failed or returned
    /// the wrong shape.
    #[error("simulator failed: {0}")]
    Simulator(String),
    /// A device-side failure (driver, out of memory, lost device).
    #[error("device error: {0}")]
    Device(String),
    #[error("I/O error on {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T> = std::result::Result<T, Error>;
