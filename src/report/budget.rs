//! The benchmark figure: a metric against the simulation budget, one panel per task, one line
//! per method.

use super::axes::{grid, legend, Axis, Swatch};

/// One panel: its title and, per method, the (budget, value) points.
#[derive(Clone, Debug, Default)]
pub struct BudgetPanel {
    pub title: String,
    pub lines: Vec<(String, Vec<(f64, f64)>)>,
}

/// Line classes, one per method in order (the palette repeats after four).
const CLASSES: [&str; 4] = ["m0", "m1", "m2", "m3"];

/// The SVG of the panels, three per row. Both axes are logarithmic where every value is
/// positive (budgets and L-C2ST statistics span decades).
pub fn budget_svg(panels: &[BudgetPanel]) -> String {
    let (mut svg, frames) = grid(panels.len(), 3);
    let names: Vec<&str> =
        panels.first().map(|p| p.lines.iter().map(|l| l.0.as_str()).collect()).unwrap_or_default();
    let entries: Vec<(Swatch, &str, &str)> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (Swatch::Line, CLASSES[i % CLASSES.len()], *n))
        .collect();
    legend(&mut svg, &entries);
    for (p, frame) in panels.iter().zip(&frames) {
        let points = || p.lines.iter().flat_map(|l| l.1.iter()).filter(|q| q.1.is_finite());
        let x = Axis::fit(points().map(|q| q.0), points().all(|q| q.0 > 0.0));
        let y = Axis::fit(points().map(|q| q.1), points().all(|q| q.1 > 0.0));
        let (Some(x), Some(y)) = (x, y) else {
            frame.draw(&mut svg, &p.title, None, None);
            frame.note(&mut svg, "nothing scored");
            continue;
        };
        frame.draw(&mut svg, &p.title, Some(&x), Some(&y));
        for (i, (_, line)) in p.lines.iter().enumerate() {
            let mut pts: Vec<(f64, f64)> = line
                .iter()
                .filter(|q| q.1.is_finite())
                .map(|&(b, v)| (frame.x(&x, b), frame.y(&y, v)))
                .collect();
            // One budget: a zero-length line, which round caps show as a dot.
            if pts.len() == 1 {
                pts.push(pts[0]);
            }
            if !pts.is_empty() {
                svg.polyline(&pts, CLASSES[i % CLASSES.len()]);
            }
        }
    }
    svg.finish()
}
