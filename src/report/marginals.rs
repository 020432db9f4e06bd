//! The posterior figure: a histogram of each parameter's draws, with the true value and the exact
//! posterior drawn over it where they are known.

use super::axes::{grid, legend, Axis, Frame, Swatch};
use super::svg::Svg;

/// Bars per histogram: about 30 draws a bar at the default 1000 samples.
pub const BINS: usize = 30;
/// Panels per row.
const COLS: usize = 4;

/// One parameter's panel.
#[derive(Clone, Debug, Default)]
pub struct Marginal {
    /// The CSV column name, shown as the panel's title.
    pub name: String,
    /// Draws of the learned posterior.
    pub samples: Vec<f64>,
    /// Draws of the exact posterior, drawn as an outline, for tasks that have one.
    pub reference: Option<Vec<f64>>,
    /// The value the observation was simulated with, drawn as a vertical line.
    pub truth: Option<f64>,
}

/// The SVG of one histogram panel per entry of `panels`. Non-finite values are left out (and
/// counted in the title); a panel without finite draws says so.
pub fn posterior_svg(panels: &[Marginal]) -> String {
    let (mut svg, frames) = grid(panels.len(), COLS);
    let mut entries = vec![(Swatch::Box, "swatch", "learned posterior")];
    if panels.iter().any(|m| m.reference.is_some()) {
        entries.push((Swatch::Box, "reference", "exact posterior"));
    }
    if panels.iter().any(|m| m.truth.is_some()) {
        entries.push((Swatch::Line, "truth", "true value"));
    }
    legend(&mut svg, &entries);
    for (m, frame) in panels.iter().zip(&frames) {
        panel(&mut svg, frame, m);
    }
    svg.finish()
}

fn panel(svg: &mut Svg, frame: &Frame, m: &Marginal) {
    let finite = |v: &[f64]| -> Vec<f64> { v.iter().copied().filter(|x| x.is_finite()).collect() };
    let samples = finite(&m.samples);
    let reference = m.reference.as_deref().map(finite).unwrap_or_default();
    let truth = m.truth.filter(|t| t.is_finite());
    let dropped = m.samples.len() - samples.len();
    let title = match dropped {
        0 => m.name.clone(),
        n => format!("{} ({n} non-finite)", m.name),
    };
    // The range spans the central 99% of each set of draws, so that a few outliers cannot squash
    // the histogram, and the truth: a true value far out in the tail is worth seeing.
    let all = central(&samples).into_iter().chain(central(&reference)).chain(truth);
    let Some(x) = Axis::fit(all, false).filter(|_| !samples.is_empty()) else {
        frame.draw(svg, &title, None, None);
        frame.note(svg, "no finite samples");
        return;
    };
    let learned = density(&samples, &x);
    let exact = density(&reference, &x);
    let top = learned.iter().chain(&exact).copied().fold(0.0, f64::max);
    // Densities are not shown on a scale: only their shapes are compared.
    let y = Axis { lo: 0.0, hi: 1.05 * top, log: false };
    frame.draw(svg, &title, Some(&x), None);
    let width = (x.hi - x.lo) / BINS as f64;
    let edge = |k: usize| frame.x(&x, x.lo + k as f64 * width);
    for (k, &d) in learned.iter().enumerate().filter(|(_, &d)| d > 0.0) {
        frame.bar(svg, edge(k), edge(k + 1), frame.y(&y, d));
    }
    if !reference.is_empty() {
        // A step outline: along each bin's top, down to the axis at both ends.
        let mut points = vec![(edge(0), frame.bottom())];
        for (k, &d) in exact.iter().enumerate() {
            points.extend([(edge(k), frame.y(&y, d)), (edge(k + 1), frame.y(&y, d))]);
        }
        points.push((edge(BINS), frame.bottom()));
        svg.polyline(&points, "reference");
    }
    if let Some(t) = truth {
        let px = frame.x(&x, t);
        svg.line(px, frame.top, px, frame.bottom(), "truth");
    }
}

/// The 0.5% and 99.5% quantiles (nearest rank) of finite `values`; none for no values.
fn central(values: &[f64]) -> Vec<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let at = |q: f64| sorted[(q * (sorted.len() - 1) as f64).round() as usize];
    match sorted.len() {
        0 => Vec::new(),
        _ => vec![at(0.005), at(0.995)],
    }
}

/// Bin heights over `BINS` equal bins spanning the axis, as a density so that histograms of
/// different sample counts compare. Draws outside the axis are left out but still count in the
/// total, so a histogram's area is the share of its draws on show.
fn density(values: &[f64], x: &Axis) -> Vec<f64> {
    let mut counts = vec![0.0; BINS];
    if values.is_empty() {
        return counts;
    }
    let width = (x.hi - x.lo) / BINS as f64;
    for v in values.iter().filter(|v| (x.lo..=x.hi).contains(v)) {
        // The top edge belongs to the last bin; `as usize` floors (and saturates).
        counts[(((v - x.lo) / width) as usize).min(BINS - 1)] += 1.0;
    }
    let scale = 1.0 / (values.len() as f64 * width);
    counts.iter_mut().for_each(|c| *c *= scale);
    counts
}
