//! The subcommands of the `tfmpe` binary.

pub mod bench;
pub mod eval;
pub mod files;
pub mod info;
pub mod plots;
pub mod progress;
pub mod run;
pub mod sample;
