//! `table.md` in the paper's form and `benchmark.svg`, both from the rows of `results.csv`.

use std::collections::BTreeSet;
use std::fmt::Write;

use super::BenchMethod;
use super::{BenchmarkConfig, Row};
use crate::report::{budget_svg, BudgetPanel};

/// Mean and the half-width 1.96·sd/√n of the finite values (NaN mean when there are none;
/// a zero half-width for one value).
fn mean_ci(values: &[f64]) -> (f64, f64, usize) {
    let v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    let n = v.len();
    if n == 0 {
        return (f64::NAN, f64::NAN, 0);
    }
    let mean = v.iter().sum::<f64>() / n as f64;
    if n == 1 {
        return (mean, 0.0, 1);
    }
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    (mean, 1.96 * var.sqrt() / (n as f64).sqrt(), n)
}

/// `metric` of the rows of one configuration (task, method, S, budget), one per observation.
fn values(
    rows: &[Row], (task, m, sites, budget): (&str, BenchMethod, usize, usize),
    metric: fn(&Row) -> f64,
) -> Vec<f64> {
    rows.iter()
        .filter(|r| r.task == task && r.method == m && r.sites == sites && r.budget == budget)
        .map(metric)
        .collect()
}

/// The distinct values of a column, in order.
fn distinct<T: Ord + Clone>(rows: &[Row], f: impl Fn(&Row) -> T) -> Vec<T> {
    rows.iter().map(f).collect::<BTreeSet<_>>().into_iter().collect()
}

/// Tasks in the order of the configuration, then any others found in the file.
fn tasks(rows: &[Row], cfg: &BenchmarkConfig) -> Vec<String> {
    let mut order: Vec<String> =
        cfg.tasks.iter().filter(|t| rows.iter().any(|r| &r.task == *t)).cloned().collect();
    for t in distinct(rows, |r| r.task.clone()) {
        if !order.contains(&t) {
            order.push(t);
        }
    }
    order
}

fn methods(rows: &[Row]) -> Vec<BenchMethod> {
    let mut m: Vec<BenchMethod> = Vec::new();
    for r in rows {
        if !m.contains(&r.method) {
            m.push(r.method);
        }
    }
    m
}

/// One table per (S, budget) and metric: methods as rows, tasks as columns, each cell the mean
/// ± 1.96·sd/√n over observations; the best (lowest) mean of each column in bold.
pub fn table_markdown(rows: &[Row], cfg: &BenchmarkConfig) -> String {
    let mut md = String::from("# tfmpe benchmark\n\n");
    let _ = writeln!(
        md,
        "Each cell: mean ± 1.96·sd/√n over the observations (n in brackets where fewer than \
         all scored); the lowest mean of each column in bold. L-C2ST from {} data sets and {} \
         null classifiers; {} posterior samples per observation; backend {}.\n",
        cfg.lc2st_data_sets,
        cfg.lc2st.null_trials,
        cfg.samples,
        distinct(rows, |r| r.backend.clone()).join(", ")
    );
    let (tasks, methods) = (tasks(rows, cfg), methods(rows));
    type Metric = (&'static str, fn(&Row) -> f64);
    let metrics: [Metric; 3] = [
        ("L-C2ST statistic", |r| r.lc2st_statistic),
        ("L-C2ST rejections at α (share of observations)", |r| {
            if r.lc2st_p_value.is_finite() {
                f64::from(u8::from(r.lc2st_reject))
            } else {
                f64::NAN
            }
        }),
        ("C2ST against the exact posterior", |r| r.c2st),
    ];
    for sites in distinct(rows, |r| r.sites) {
        for budget in distinct(rows, |r| r.budget) {
            for (name, metric) in metrics {
                let cell = |task: &str, m: BenchMethod| {
                    let v = values(rows, (task, m, sites, budget), metric);
                    (mean_ci(&v), v.len())
                };
                let shown: Vec<&String> =
                    tasks.iter().filter(|t| methods.iter().any(|&m| cell(t, m).0 .2 > 0)).collect();
                if shown.is_empty() {
                    continue;
                }
                let _ = writeln!(md, "## {name}, S = {sites}, budget {budget}\n");
                let _ = writeln!(
                    md,
                    "| method | {} |",
                    shown.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(" | ")
                );
                let _ = writeln!(md, "|---|{}", "---|".repeat(shown.len()));
                for &m in &methods {
                    let cells: Vec<String> = shown
                        .iter()
                        .map(|t| {
                            let ((mean, ci, n), all) = cell(t, m);
                            if n == 0 {
                                return "—".into();
                            }
                            let best = methods
                                .iter()
                                .map(|&o| cell(t, o).0 .0)
                                .filter(|v| v.is_finite())
                                .fold(f64::INFINITY, f64::min);
                            let text = format!("{} ± {}", sig(mean), sig(ci));
                            let text = if n < all { format!("{text} ({n})") } else { text };
                            if mean == best && methods.len() > 1 {
                                format!("**{text}**")
                            } else {
                                text
                            }
                        })
                        .collect();
                    let _ = writeln!(md, "| {} | {} |", m.name(), cells.join(" | "));
                }
                md.push('\n');
            }
        }
    }
    let notes: BTreeSet<String> = rows
        .iter()
        .filter(|r| !r.note.is_empty())
        .map(|r| {
            format!(
                "- {} {} budget {} S {}: {}",
                r.task,
                r.method.name(),
                r.budget,
                r.sites,
                r.note
            )
        })
        .collect();
    if !notes.is_empty() {
        md.push_str("## Notes\n\n");
        for n in notes {
            md.push_str(&n);
            md.push('\n');
        }
    }
    md
}

/// Three significant digits, in scientific notation below 0.01.
fn sig(v: f64) -> String {
    if v != 0.0 && v.abs() < 0.01 {
        format!("{v:.2e}")
    } else {
        format!("{v:.3}")
    }
}

/// The mean L-C2ST statistic against the budget: one panel per task and S, one line per method.
pub fn budget_plot(rows: &[Row]) -> String {
    let methods = methods(rows);
    let mut panels = Vec::new();
    for task in distinct(rows, |r| r.task.clone()) {
        for sites in distinct(rows, |r| r.sites) {
            let lines = methods
                .iter()
                .map(|&m| {
                    let points = distinct(rows, |r| r.budget)
                        .into_iter()
                        .filter_map(|b| {
                            let v = values(rows, (&task, m, sites, b), |r| r.lc2st_statistic);
                            let (mean, _, n) = mean_ci(&v);
                            (n > 0).then_some((b as f64, mean))
                        })
                        .collect();
                    (m.name().to_string(), points)
                })
                .collect();
            panels.push(BudgetPanel { title: format!("{task}, S = {sites}"), lines });
        }
    }
    budget_svg(&panels)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sbi::Method;

    fn row(task: &str, method: BenchMethod, k: usize, stat: f64) -> Row {
        Row {
            task: task.into(),
            method,
            budget: 1000,
            sites: 10,
            observation: k,
            lc2st_statistic: stat,
            lc2st_p_value: 0.5,
            ..Row::default()
        }
    }

    #[test]
    fn cells_hold_mean_and_interval_and_the_best_is_bold() {
        let rows = vec![
            row("a", BenchMethod::Amortised(Method::Lf), 0, 1.0),
            row("a", BenchMethod::Amortised(Method::Lf), 1, 3.0),
            row("a", BenchMethod::Amortised(Method::Direct), 0, 5.0),
            row("a", BenchMethod::Amortised(Method::Direct), 1, 5.0),
        ];
        let md = table_markdown(&rows, &BenchmarkConfig::default());
        // Mean 2, sd √2, half-width 1.96·√2/√2 = 1.96.
        assert!(md.contains("| lf | **2.000 ± 1.960** |"), "{md}");
        assert!(md.contains("| direct | 5.000 ± 0.000 |"), "{md}");
        assert!(md.contains("## L-C2ST statistic, S = 10, budget 1000"));
        // No exact posterior anywhere: no C2ST table.
        assert!(!md.contains("## C2ST"), "{md}");
        let svg = budget_plot(&rows);
        assert!(svg.contains(">a, S = 10</text>"), "{svg}");
    }
}
