//! The calibration figure: the TARP expected-coverage curve against the diagonal that a
//! calibrated posterior follows, then one SBC rank histogram per parameter over the band that
//! uniform ranks stay inside, bin by bin, 99% of the time.

use super::axes::{grid, legend, Axis, Frame, Swatch};
use super::svg::Svg;

/// Panels per row.
const COLS: usize = 4;
/// The two-sided 99% normal quantile, for the per-bin band of a binomial count.
const Z99: f64 = 2.576;

/// One parameter's SBC ranks, as counts in equal bins of the rank range.
#[derive(Clone, Debug, Default)]
pub struct RankHistogram {
    /// The CSV column name, shown as the panel's title.
    pub name: String,
    pub counts: Vec<usize>,
    /// The KS p-value of the ranks, shown in the title.
    pub ks_p: f64,
}

/// The SVG of the TARP panel (`ecp`: (α, ECP(α)) pairs, `tarp_ks_p` in its title) followed by
/// one panel per rank histogram.
pub fn calibration_svg(ecp: &[(f64, f64)], tarp_ks_p: f64, ranks: &[RankHistogram]) -> String {
    let (mut svg, frames) = grid(1 + ranks.len(), COLS);
    legend(
        &mut svg,
        &[
            (Swatch::Line, "val", "TARP coverage"),
            (Swatch::Line, "reference", "calibrated"),
            (Swatch::Box, "swatch", "SBC ranks"),
            (Swatch::Box, "band", "99% band of uniform ranks"),
        ],
    );
    tarp_panel(&mut svg, &frames[0], ecp, tarp_ks_p);
    for (h, frame) in ranks.iter().zip(&frames[1..]) {
        rank_panel(&mut svg, frame, h);
    }
    svg.finish()
}

/// A p-value with two significant digits, in scientific notation when small.
fn p_text(p: f64) -> String {
    if p >= 0.01 {
        format!("{p:.2}")
    } else {
        format!("{p:.1e}")
    }
}

const UNIT: Axis = Axis { lo: 0.0, hi: 1.0, log: false };

fn tarp_panel(svg: &mut Svg, frame: &Frame, ecp: &[(f64, f64)], ks_p: f64) {
    let title = format!("TARP (KS p = {})", p_text(ks_p));
    frame.draw(svg, &title, Some(&UNIT), Some(&UNIT));
    let at = |(a, e): (f64, f64)| (frame.x(&UNIT, a), frame.y(&UNIT, e));
    svg.polyline(&[at((0.0, 0.0)), at((1.0, 1.0))], "reference");
    let curve: Vec<(f64, f64)> =
        ecp.iter().filter(|(a, e)| a.is_finite() && e.is_finite()).map(|&p| at(p)).collect();
    if !curve.is_empty() {
        svg.polyline(&curve, "val");
    }
}

fn rank_panel(svg: &mut Svg, frame: &Frame, h: &RankHistogram) {
    let title = format!("{} (p = {})", h.name, p_text(h.ks_p));
    let (bins, n) = (h.counts.len(), h.counts.iter().sum::<usize>());
    if bins == 0 || n == 0 {
        frame.draw(svg, &title, None, None);
        frame.note(svg, "no ranks");
        return;
    }
    let q = 1.0 / bins as f64;
    let (mean, sd) = (n as f64 * q, (n as f64 * q * (1.0 - q)).sqrt());
    let (band_lo, band_hi) = ((mean - Z99 * sd).max(0.0), mean + Z99 * sd);
    let top = h.counts.iter().map(|&c| c as f64).fold(band_hi, f64::max);
    let y = Axis { lo: 0.0, hi: 1.05 * top, log: false };
    // The x axis is the rank as a fraction of its range, the same for every draw count.
    frame.draw(svg, &title, Some(&UNIT), Some(&y));
    let (lo_px, hi_px) = (frame.y(&y, band_lo), frame.y(&y, band_hi));
    svg.rect(frame.left, hi_px, frame.width, lo_px - hi_px, "band");
    let edge = |k: usize| frame.x(&UNIT, k as f64 * q);
    for (k, &c) in h.counts.iter().enumerate().filter(|(_, &c)| c > 0) {
        frame.bar(svg, edge(k), edge(k + 1), frame.y(&y, c as f64));
    }
}
