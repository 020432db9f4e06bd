//! Plots of a run as standalone SVG files, written without any plotting dependency.
//!
//! The figures take plain data (draws, loss histories, names) and return the document as a
//! string; the caller decides where it goes. Nothing here depends on the rest of the crate.

mod axes;
mod budget;
mod calibration;
mod losses;
mod marginals;
mod svg;

pub use budget::{budget_svg, BudgetPanel};
pub use calibration::{calibration_svg, RankHistogram};
pub use losses::{losses_svg, LossCurve};
pub use marginals::{posterior_svg, Marginal, BINS};
