//! The training figure: training and validation loss per epoch of each network, with the epoch
//! whose weights were kept marked.

use super::axes::{grid, legend, Axis, Frame, Swatch};
use super::svg::Svg;

/// One network's loss history.
#[derive(Clone, Debug, Default)]
pub struct LossCurve {
    /// The network (`surrogate`, `posterior`), shown in the panel's title.
    pub name: String,
    /// Mean training loss of each epoch.
    pub train: Vec<f64>,
    /// Validation loss of each epoch.
    pub val: Vec<f64>,
    /// The epoch (from 1) whose weights were kept; 0 when none validated.
    pub best_epoch: usize,
}

/// The SVG of one panel per network, side by side. The loss axis is logarithmic when every
/// finite loss is positive (flow-matching losses fall over decades); non-finite losses break the
/// curve.
pub fn losses_svg(curves: &[LossCurve]) -> String {
    let (mut svg, frames) = grid(curves.len(), curves.len());
    legend(
        &mut svg,
        &[
            (Swatch::Line, "train", "training"),
            (Swatch::Line, "val", "validation"),
            (Swatch::Dot, "best", "kept weights"),
        ],
    );
    for (c, frame) in curves.iter().zip(&frames) {
        panel(&mut svg, frame, c);
    }
    svg.finish()
}

fn panel(svg: &mut Svg, frame: &Frame, c: &LossCurve) {
    let finite: Vec<f64> =
        c.train.iter().chain(&c.val).copied().filter(|v| v.is_finite()).collect();
    let log = finite.iter().all(|&v| v > 0.0);
    let epochs = c.train.len().max(c.val.len());
    let title = match c.best_epoch {
        0 => c.name.clone(),
        best => format!("{}: best epoch {best} of {epochs}", c.name),
    };
    let Some(y) = Axis::fit(finite, log) else {
        frame.draw(svg, &title, None, None);
        frame.note(svg, "no finite losses");
        return;
    };
    let x = Axis::fit([1.0, epochs as f64], false).expect("epochs are finite");
    frame.draw(svg, &title, Some(&x), Some(&y));
    for (values, class) in [(&c.train, "train"), (&c.val, "val")] {
        let points: Vec<Option<(f64, f64)>> = values
            .iter()
            .enumerate()
            .map(|(i, &v)| v.is_finite().then(|| (frame.x(&x, (i + 1) as f64), frame.y(&y, v))))
            .collect();
        for run in points.split(Option::is_none).filter(|r| !r.is_empty()) {
            let mut run: Vec<(f64, f64)> = run.iter().flatten().copied().collect();
            // A lone point is drawn as a zero-length line, which round caps show as a dot.
            if run.len() == 1 {
                run.push(run[0]);
            }
            svg.polyline(&run, class);
        }
    }
    let best = c.best_epoch.checked_sub(1).and_then(|i| c.val.get(i));
    if let Some(&v) = best.filter(|v| v.is_finite()) {
        svg.circle(frame.x(&x, c.best_epoch as f64), frame.y(&y, v), 3.5, "best");
    }
}
