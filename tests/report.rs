//! The run's plots from synthetic data: well-formed SVG whose bars, lines and titles match the
//! input, and degenerate input (equal, non-finite or no values) still gives a valid document.

use std::collections::HashMap;

use tfmpe::report::{
    calibration_svg, losses_svg, posterior_svg, LossCurve, Marginal, RankHistogram, BINS,
};

/// Checks that tags nest and close, the root is `<svg>`, and every coordinate is a finite number.
fn assert_well_formed(svg: &str) {
    assert!(svg.starts_with("<svg ") && svg.trim_end().ends_with("</svg>"));
    let mut open = Vec::new();
    let mut rest = svg;
    while let Some(i) = rest.find('<') {
        let j = i + rest[i..].find('>').expect("an unclosed tag");
        let tag = &rest[i + 1..j];
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(open.pop(), Some(name), "mismatched closing tag");
        } else if !tag.ends_with('/') {
            open.push(tag.split_whitespace().next().unwrap());
        }
        rest = &rest[j + 1..];
    }
    assert!(open.is_empty(), "unclosed elements: {open:?}");
    for name in ["rect", "line", "circle", "text", "polyline"] {
        for e in elements(svg, name) {
            for (k, v) in &e {
                if ["x", "y", "width", "height", "x1", "x2", "y1", "y2", "cx", "cy", "r"]
                    .contains(&k.as_str())
                    || (k == "points")
                {
                    for n in v.split([' ', ',']).filter(|s| !s.is_empty()) {
                        let n: f64 = n.parse().unwrap_or_else(|_| panic!("{k}=\"{v}\""));
                        assert!(n.is_finite(), "{k}=\"{v}\"");
                    }
                }
            }
        }
    }
}

/// The attributes of every `<name .../>` element outside the legend.
fn elements(svg: &str, name: &str) -> Vec<HashMap<String, String>> {
    let body = match (svg.find("<g class=\"legend\">"), svg.find("</g>")) {
        (Some(a), Some(b)) => format!("{}{}", &svg[..a], &svg[b..]),
        _ => svg.to_string(),
    };
    let open = format!("<{name} ");
    body.split(&open)
        .skip(1)
        .map(|e| {
            let e = &e[..e.find('>').unwrap()];
            e.split('"')
                .collect::<Vec<_>>()
                .chunks_exact(2)
                .map(|kv| (kv[0].trim().trim_end_matches('=').to_string(), kv[1].into()))
                .collect()
        })
        .collect()
}

fn with_class(svg: &str, name: &str, class: &str) -> Vec<HashMap<String, String>> {
    elements(svg, name).into_iter().filter(|e| e.get("class").is_some_and(|c| c == class)).collect()
}

fn num(e: &HashMap<String, String>, key: &str) -> f64 {
    e[key].parse().unwrap()
}

fn points(e: &HashMap<String, String>) -> Vec<(f64, f64)> {
    e["points"]
        .split(' ')
        .map(|p| {
            let (x, y) = p.split_once(',').unwrap();
            (x.parse().unwrap(), y.parse().unwrap())
        })
        .collect()
}

/// `n` evenly spread values over [lo, hi]: every histogram bin gets some.
fn even(n: usize, lo: f64, hi: f64) -> Vec<f64> {
    (0..n).map(|i| lo + (hi - lo) * i as f64 / (n - 1) as f64).collect()
}

#[test]
fn one_panel_per_parameter_with_titles_truth_and_reference() {
    let panels = vec![
        Marginal {
            name: "sigma".into(),
            samples: even(300, 0.5, 2.0),
            reference: Some(even(200, 0.5, 2.0)),
            truth: Some(1.0),
        },
        Marginal {
            name: "mu.0".into(),
            samples: even(300, -1.0, 1.0),
            reference: Some(even(200, -1.0, 1.0)),
            truth: Some(0.2),
        },
        Marginal {
            name: "theta.1[2]".into(),
            samples: even(300, 3.0, 4.0),
            reference: None,
            truth: None,
        },
    ];
    let svg = posterior_svg(&panels);
    assert_well_formed(&svg);
    assert_eq!(with_class(&svg, "rect", "bar").len(), 3 * BINS);
    assert_eq!(with_class(&svg, "rect", "frame").len(), 3);
    assert_eq!(with_class(&svg, "line", "truth").len(), 2);
    assert_eq!(with_class(&svg, "polyline", "reference").len(), 2);
    for title in ["sigma", "mu.0", "theta.1[2]"] {
        assert!(svg.contains(&format!(">{title}</text>")), "title {title}");
    }
    assert!(svg.contains(">exact posterior<") && svg.contains(">true value<"));
}

#[test]
fn the_true_value_line_sits_at_its_place_on_the_axis() {
    // Draws spread over [0, 100] and a truth at 25: a quarter of the way along the bars. The
    // ends are repeated so that the central 99% the axis shows is all of [0, 100].
    let mut draws = even(101, 0.0, 100.0);
    draws.extend([0.0, 100.0].repeat(10));
    let svg = posterior_svg(&[Marginal {
        name: "a".into(),
        samples: draws,
        reference: None,
        truth: Some(25.0),
    }]);
    let bars = with_class(&svg, "rect", "bar");
    let left = bars.iter().map(|b| num(b, "x")).fold(f64::INFINITY, f64::min);
    let right =
        bars.iter().map(|b| num(b, "x") + num(b, "width")).fold(f64::NEG_INFINITY, f64::max);
    let truth = &with_class(&svg, "line", "truth")[0];
    let expected = left + 0.25 * (right - left);
    assert!((num(truth, "x1") - expected).abs() < 0.2, "{truth:?} vs {expected}");
    assert_eq!(num(truth, "x1"), num(truth, "x2"), "a vertical line");

    // A truth far beyond the draws widens the axis rather than leaving the panel.
    let svg = posterior_svg(&[Marginal {
        name: "a".into(),
        samples: even(101, 0.0, 100.0),
        reference: None,
        truth: Some(300.0),
    }]);
    let frame = &with_class(&svg, "rect", "frame")[0];
    let truth = &with_class(&svg, "line", "truth")[0];
    let frame_right = num(frame, "x") + num(frame, "width");
    assert!((num(truth, "x1") - frame_right).abs() < 0.2);
    // The draws fill the first third: bins of 10 up to the one that holds 100.
    for b in with_class(&svg, "rect", "bar") {
        let end = num(&b, "x") + num(&b, "width");
        assert!(end < num(frame, "x") + 0.37 * num(frame, "width") + 0.2);
    }
}

#[test]
fn degenerate_draws_give_a_valid_figure() {
    let panels = vec![
        Marginal {
            name: "equal".into(),
            samples: vec![5.0; 100],
            reference: Some(vec![5.0; 100]),
            truth: Some(5.0),
        },
        Marginal {
            name: "empty".into(),
            samples: vec![],
            reference: Some(vec![]),
            truth: Some(f64::NAN),
        },
        Marginal {
            name: "nan".into(),
            samples: vec![f64::NAN, 1.0, f64::INFINITY, 2.0],
            reference: None,
            truth: None,
        },
        Marginal {
            name: "all-nan".into(),
            samples: vec![f64::NAN; 10],
            reference: None,
            truth: Some(1.0),
        },
        Marginal { name: "zero".into(), samples: vec![0.0; 3], reference: None, truth: None },
    ];
    let svg = posterior_svg(&panels);
    assert_well_formed(&svg);
    // One bar for the equal draws, two for the finite pair, one for the zeros.
    assert_eq!(with_class(&svg, "rect", "bar").len(), 4);
    assert_eq!(with_class(&svg, "rect", "frame").len(), 5);
    assert!(svg.contains(">nan (2 non-finite)</text>"));
    assert_eq!(svg.matches(">no finite samples<").count(), 2);
    assert_well_formed(&posterior_svg(&[]));
}

#[test]
fn loss_curves_are_logarithmic_when_positive_and_mark_the_best_epoch() {
    let curves = vec![
        LossCurve {
            name: "surrogate".into(),
            train: vec![20.0, 2.0, 0.2, 0.02],
            val: vec![10.0, 1.0, 0.1, 1.0],
            best_epoch: 3,
        },
        LossCurve {
            name: "posterior".into(),
            train: vec![3.0, 1.0, -1.0],
            val: vec![4.0, 2.0, 0.0],
            best_epoch: 3,
        },
    ];
    let svg = losses_svg(&curves);
    assert_well_formed(&svg);
    assert!(svg.contains(">surrogate: best epoch 3 of 4</text>"));
    assert!(svg.contains(">posterior: best epoch 3 of 3</text>"));
    let val = with_class(&svg, "polyline", "val");
    assert_eq!(val.len(), 2);
    assert_eq!(with_class(&svg, "polyline", "train").len(), 2);
    // Log axis: each tenfold drop is the same height.
    let p = points(&val[0]);
    assert!(((p[1].1 - p[0].1) - (p[2].1 - p[1].1)).abs() < 0.2, "{p:?}");
    // Linear axis (a loss is not positive): equal differences are equal heights.
    let q = points(&val[1]);
    assert!(((q[1].1 - q[0].1) - (q[2].1 - q[1].1)).abs() < 0.2, "{q:?}");
    // Epochs are evenly spaced, and the marker sits on the best epoch's validation loss.
    assert!(((p[1].0 - p[0].0) - (p[3].0 - p[2].0)).abs() < 0.2);
    let best = with_class(&svg, "circle", "best");
    assert_eq!(best.len(), 2);
    assert!(
        (num(&best[0], "cx") - p[2].0).abs() < 0.11 && (num(&best[0], "cy") - p[2].1).abs() < 0.11
    );
}

#[test]
fn degenerate_losses_give_a_valid_figure() {
    let curves = vec![
        LossCurve { name: "none".into(), ..Default::default() },
        LossCurve { name: "one".into(), train: vec![0.5], val: vec![0.7], best_epoch: 1 },
        LossCurve {
            name: "gap".into(),
            train: vec![1.0, 0.5, f64::NAN, 0.3, 0.2],
            val: vec![f64::NAN; 5],
            best_epoch: 0,
        },
    ];
    let svg = losses_svg(&curves);
    assert_well_formed(&svg);
    assert!(svg.contains(">no finite losses<"));
    // The gap splits the training curve in two; a lone epoch is still drawn.
    assert_eq!(with_class(&svg, "polyline", "train").len(), 3);
    assert_eq!(with_class(&svg, "polyline", "val").len(), 1);
    assert_eq!(with_class(&svg, "circle", "best").len(), 1);
    assert_well_formed(&losses_svg(&[]));
}

#[test]
fn calibration_figure_has_the_tarp_curve_on_its_diagonal_and_a_rank_histogram_per_parameter() {
    // A calibrated curve (on the diagonal) with a bend, and two histograms of 100 ranks.
    let ecp = [(0.0, 0.0), (0.5, 0.4), (1.0, 1.0)];
    let ranks = vec![
        RankHistogram { name: "sigma".into(), counts: vec![10; 10], ks_p: 0.93 },
        RankHistogram {
            name: "mu.0".into(),
            counts: vec![40, 5, 0, 0, 0, 0, 0, 0, 5, 50],
            ks_p: 3.2e-12,
        },
        RankHistogram { name: "mu.1".into(), counts: vec![0; 10], ks_p: 1.0 },
    ];
    let svg = calibration_svg(&ecp, 0.41, &ranks);
    assert_well_formed(&svg);
    assert_eq!(with_class(&svg, "rect", "frame").len(), 4);
    for title in ["TARP (KS p = 0.41)", "sigma (p = 0.93)", "mu.0 (p = 3.2e-12)"] {
        assert!(svg.contains(&format!(">{title}</text>")), "title {title}");
    }
    assert!(svg.contains(">no ranks</text>"));
    // The diagonal runs from the TARP panel's bottom-left corner to its top-right corner, and
    // the curve's middle point lies below it (ECP 0.4 at α 0.5).
    let frame = &with_class(&svg, "rect", "frame")[0];
    let (left, top) = (num(frame, "x"), num(frame, "y"));
    let (right, bottom) = (left + num(frame, "width"), top + num(frame, "height"));
    let diagonal = points(&with_class(&svg, "polyline", "reference")[0]);
    assert_eq!(diagonal, vec![(left, bottom), (right, top)]);
    let curve = points(&with_class(&svg, "polyline", "val")[0]);
    assert_eq!(curve.len(), 3);
    assert!(curve[1].1 > (top + bottom) / 2.0, "{curve:?}");
    // Bars for the non-empty bins only; one band per histogram with ranks, centred on the
    // expected count of 10 a bin: sigma's bars all reach into it.
    assert_eq!(with_class(&svg, "rect", "bar").len(), 10 + 4);
    let bands = with_class(&svg, "rect", "band");
    assert_eq!(bands.len(), 2);
    let (band_top, band_bottom) =
        (num(&bands[0], "y"), num(&bands[0], "y") + num(&bands[0], "height"));
    for bar in &with_class(&svg, "rect", "bar")[..10] {
        assert!((band_top..=band_bottom).contains(&num(bar, "y")), "{bar:?}");
    }
}
