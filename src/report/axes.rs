//! Axes and layout: a data range mapped onto a panel, tick positions at round numbers, a grid of
//! panels under a legend band.

use super::svg::Svg;

/// One panel's cell in the grid, in pixels, and the margins around its plotting area.
const CELL_W: f64 = 260.0;
const CELL_H: f64 = 190.0;
const MARGIN_LEFT: f64 = 55.0;
const MARGIN_RIGHT: f64 = 12.0;
const MARGIN_TOP: f64 = 24.0;
const MARGIN_BOTTOM: f64 = 28.0;
/// The band above the panels that holds the legend.
const LEGEND_H: f64 = 26.0;

/// The data interval one axis shows. A log axis keeps `lo` and `hi` in log10 units.
#[derive(Clone, Copy, Debug)]
pub struct Axis {
    pub lo: f64,
    pub hi: f64,
    pub log: bool,
}

impl Axis {
    /// The range of the finite `values` (through log10 when `log`), or `None` when there is
    /// nothing finite to show. A single value is padded so that it sits mid-axis instead of
    /// making a zero-width range.
    pub fn fit(values: impl IntoIterator<Item = f64>, log: bool) -> Option<Axis> {
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for v in values {
            let v = if log { v.log10() } else { v };
            if v.is_finite() {
                lo = lo.min(v);
                hi = hi.max(v);
            }
        }
        if lo > hi || !(hi - lo).is_finite() {
            return None;
        }
        if hi - lo <= 1e-9 * (lo.abs() + hi.abs()) {
            let pad = if lo == 0.0 { 0.5 } else { 0.1 * lo.abs() };
            (lo, hi) = (lo - pad, hi + pad);
        }
        Some(Axis { lo, hi, log })
    }

    /// Where `v` falls along the axis: 0 at `lo`, 1 at `hi`.
    pub fn frac(&self, v: f64) -> f64 {
        let v = if self.log { v.log10() } else { v };
        (v - self.lo) / (self.hi - self.lo)
    }

    /// About `n` ticks at 1, 2 or 5 times a power of ten (of log10 units on a log axis), each
    /// with a label that shows as many decimals as the spacing needs.
    pub fn ticks(&self, n: usize) -> Vec<(f64, String)> {
        let raw = (self.hi - self.lo) / n as f64;
        if !(raw > 0.0 && raw.is_finite()) {
            return Vec::new();
        }
        let magnitude = 10f64.powf(raw.log10().floor());
        let step = [1.0, 2.0, 5.0, 10.0]
            .into_iter()
            .map(|m| m * magnitude)
            .find(|&s| s >= raw)
            .unwrap_or(10.0 * magnitude);
        let (first, last) = ((self.lo / step).ceil() as i64, (self.hi / step).floor() as i64);
        (first..=last)
            .map(|k| {
                let t = k as f64 * step;
                if self.log {
                    let v = 10f64.powf(t);
                    // Decades need the value's own precision; finer steps a fraction of it.
                    (v, label(v, v * step.min(1.0)))
                } else {
                    (t, label(t, step))
                }
            })
            .collect()
    }
}

fn label(v: f64, step: f64) -> String {
    if v != 0.0 && !(1e-3..1e5).contains(&v.abs()) {
        return format!("{v:.1e}");
    }
    let decimals = (-step.log10().floor()).clamp(0.0, 6.0) as usize;
    format!("{v:.decimals$}")
}

/// The plotting area of one panel, in pixels.
#[derive(Clone, Copy, Debug)]
pub struct Frame {
    pub left: f64,
    pub top: f64,
    pub width: f64,
    pub height: f64,
}

impl Frame {
    pub fn x(&self, axis: &Axis, v: f64) -> f64 {
        self.left + axis.frac(v) * self.width
    }

    pub fn y(&self, axis: &Axis, v: f64) -> f64 {
        self.top + (1.0 - axis.frac(v)) * self.height
    }

    pub fn bottom(&self) -> f64 {
        self.top + self.height
    }

    /// The title above the panel, its box, and ticks on the axes that are given.
    pub fn draw(&self, svg: &mut Svg, title: &str, x: Option<&Axis>, y: Option<&Axis>) {
        svg.text(self.left + self.width / 2.0, self.top - 8.0, "middle", "title", title);
        svg.rect(self.left, self.top, self.width, self.height, "frame");
        if let Some(x) = x {
            for (v, text) in x.ticks(4) {
                let px = self.x(x, v);
                svg.line(px, self.bottom(), px, self.bottom() + 4.0, "tick");
                svg.text(px, self.bottom() + 15.0, "middle", "", &text);
            }
        }
        if let Some(y) = y {
            for (v, text) in y.ticks(4) {
                let py = self.y(y, v);
                svg.line(self.left - 4.0, py, self.left, py, "tick");
                svg.text(self.left - 6.0, py + 4.0, "end", "", &text);
            }
        }
    }

    /// A histogram bar over [x0, x1] (pixels) from the axis up to the height `py` (pixels).
    pub fn bar(&self, svg: &mut Svg, x0: f64, x1: f64, py: f64) {
        svg.rect(x0, py, x1 - x0, self.bottom() - py, "bar");
    }

    /// A message in the middle of an empty panel.
    pub fn note(&self, svg: &mut Svg, text: &str) {
        let (x, y) = (self.left + self.width / 2.0, self.top + self.height / 2.0);
        svg.text(x, y, "middle", "note", text);
    }
}

/// A document for `n` panels in rows of `cols`, below the legend band, and each panel's area.
pub fn grid(n: usize, cols: usize) -> (Svg, Vec<Frame>) {
    let cols = cols.clamp(1, n.max(1));
    let rows = n.div_ceil(cols).max(1);
    let svg = Svg::new(cols as f64 * CELL_W, LEGEND_H + rows as f64 * CELL_H);
    let frames = (0..n)
        .map(|i| Frame {
            left: (i % cols) as f64 * CELL_W + MARGIN_LEFT,
            top: LEGEND_H + (i / cols) as f64 * CELL_H + MARGIN_TOP,
            width: CELL_W - MARGIN_LEFT - MARGIN_RIGHT,
            height: CELL_H - MARGIN_TOP - MARGIN_BOTTOM,
        })
        .collect();
    (svg, frames)
}

/// How a legend entry shows its class.
pub enum Swatch {
    Box,
    Line,
    Dot,
}

/// One row of legend entries (swatch, class, label) in the band above the panels, grouped as
/// `legend` so that readers can tell its swatches from the data.
pub fn legend(svg: &mut Svg, entries: &[(Swatch, &str, &str)]) {
    svg.open("legend");
    let (mut x, y) = (MARGIN_LEFT, LEGEND_H / 2.0 + 2.0);
    for (swatch, class, label) in entries {
        match swatch {
            Swatch::Box => svg.rect(x, y - 5.0, 16.0, 10.0, class),
            Swatch::Line => svg.line(x, y, x + 16.0, y, class),
            Swatch::Dot => svg.circle(x + 8.0, y, 3.5, class),
        }
        svg.text(x + 22.0, y + 4.0, "start", "", label);
        // A rough text width at 11 px sans-serif: labels never overlap and never need measuring.
        x += 36.0 + 6.5 * label.len() as f64;
    }
    svg.widen(x);
    svg.close();
}
