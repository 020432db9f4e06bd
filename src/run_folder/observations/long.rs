//! The long layout: one row per observed scalar of every observation variable, with its site and
//! functional inputs.

use std::collections::BTreeMap;

use super::{finite, header_error, id, DATASET, SITE};
use crate::error::{Error, Result};
use crate::io::Table;
use crate::tasks::{HierarchicalModel, Observed};

pub(super) fn parse(
    table: &Table, source: &str, task: &dyn HierarchicalModel,
) -> Result<Vec<Observed>> {
    let k = rows_per_site(task).map_err(|e| Error::Invalid(format!("{source}: {e}")))?;
    let with_ids = table.columns.first().is_some_and(|c| c == DATASET);
    let expected = header(task, with_ids);
    if table.columns != expected {
        let layout = format!(
            "the long header of task `{}` is (the `{DATASET}` column is optional)",
            task.name()
        );
        return Err(header_error(source, &table.columns, &expected, &layout));
    }
    let site_col = usize::from(with_ids);
    // dataset id → site id → the site's rows in file order.
    let mut sets: BTreeMap<usize, BTreeMap<usize, Vec<usize>>> = BTreeMap::new();
    for row in 0..table.rows.len() {
        let set = if with_ids { id(table, source, row, 0)? } else { 0 };
        let site = id(table, source, row, site_col)?;
        for col in site_col + 1..expected.len() {
            finite(table, source, row, col)?;
        }
        sets.entry(set).or_default().entry(site).or_default().push(row);
    }
    let shape = Shape { k, first_input: site_col + 1, inputs: task.functional_input_dim() };
    sets.into_iter()
        .map(|(set, sites)| {
            let name = |site: usize| match with_ids {
                true => format!("site {site} of dataset {set}"),
                false => format!("site {site}"),
            };
            check_sites(&sites, k, &name, task)
                .map_err(|e| Error::Invalid(format!("{source}: {e}")))?;
            Ok(shape.assemble(table, &sites))
        })
        .collect()
}

/// The long table of the data sets (each already checked against the task).
pub(super) fn table(task: &dyn HierarchicalModel, data: &[Observed]) -> Result<Table> {
    let k = rows_per_site(task)?;
    let many = data.len() > 1;
    let (per_site, per_scalar) = (task.obs_dim(), task.functional_input_dim());
    let vars = per_site / k;
    let mut rows = Vec::new();
    for (d, obs) in data.iter().enumerate() {
        // Where each site's scalars start: ragged sites (one variable) hold fewer than k.
        let counts = obs.site_counts(per_site);
        let starts: Vec<usize> =
            counts.iter().scan(0, |at, &n| Some(std::mem::replace(at, *at + n))).collect();
        for site in 0..obs.sites {
            for j in 0..counts[site] / vars {
                // Scalar j of variable v sits at v·k + j within its site.
                let scalar = |v: usize| starts[site] + v * k + j;
                let inputs_of = |v: usize| match &obs.inputs {
                    Some(all) => &all[scalar(v) * per_scalar..(scalar(v) + 1) * per_scalar],
                    None => &[][..],
                };
                if (1..vars).any(|v| inputs_of(v) != inputs_of(0)) {
                    return Err(Error::Invalid(format!(
                        "data set {d}, site {site}: value {j} of the observation variables has \
                         different functional inputs per variable, which one long-layout row \
                         cannot hold; give the variables' j-th values the same inputs"
                    )));
                }
                let mut row = if many { vec![d as f64] } else { Vec::new() };
                row.push(site as f64);
                row.extend_from_slice(inputs_of(0));
                row.extend((0..vars).map(|v| obs.values[scalar(v)]));
                rows.push(row);
            }
        }
    }
    Ok(Table { columns: header(task, many), rows })
}

/// `[dataset,]site,<input names>,<observation variable names>`.
fn header(task: &dyn HierarchicalModel, with_ids: bool) -> Vec<String> {
    let mut columns = if with_ids { vec![DATASET.to_string()] } else { Vec::new() };
    columns.push(SITE.to_string());
    columns.extend(task.functional_input_names());
    columns.extend(task.observation_variables().into_iter().map(|v| v.name));
    columns
}

/// The common size k of the task's observation variables: the rows each site has.
fn rows_per_site(task: &dyn HierarchicalModel) -> Result<usize> {
    let vars = task.observation_variables();
    let k = vars.first().map_or(0, |v| v.size);
    if k > 0 && vars.iter().all(|v| v.size == k) {
        return Ok(k);
    }
    let sizes: Vec<String> = vars.iter().map(|v| format!("{} has {}", v.name, v.size)).collect();
    Err(Error::Invalid(format!(
        "task `{}` cannot use the long observation layout, whose rows hold one value of every \
         observation variable, because its variables differ in size ({}); use the wide layout",
        task.name(),
        sizes.join(", ")
    )))
}

/// Sites must be 0, 1, … without gaps, each with exactly `k` rows (1 to `k` for a task whose
/// sites may be observed at fewer values).
fn check_sites(
    sites: &BTreeMap<usize, Vec<usize>>, k: usize, name: &dyn Fn(usize) -> String,
    task: &dyn HierarchicalModel,
) -> std::result::Result<(), String> {
    for (expected, (&site, rows)) in sites.iter().enumerate() {
        if site != expected {
            return Err(format!(
                "{} is missing; number the sites 0, 1, 2, … without gaps",
                name(expected)
            ));
        }
        if task.ragged_observations() && (1..=k).contains(&rows.len()) {
            continue;
        }
        if rows.len() != k {
            let each = if task.obs_dim() > k { " of each observation variable" } else { "" };
            if task.ragged_observations() {
                return Err(format!(
                    "{} has {} rows; task `{}` observes between 1 and {k} values per site",
                    name(site),
                    rows.len(),
                    task.name()
                ));
            }
            return Err(format!(
                "{} has {} rows; task `{}` observes {k} values{each} per site",
                name(site),
                rows.len(),
                task.name()
            ));
        }
    }
    Ok(())
}

/// Where a long table's columns are, for turning a data set's rows into an [`Observed`].
struct Shape {
    k: usize,
    first_input: usize,
    inputs: usize,
}

impl Shape {
    /// One data set from its checked sites: values site-major, each variable's k values in
    /// turn; inputs repeated for every variable that shares a row.
    fn assemble(&self, table: &Table, sites: &BTreeMap<usize, Vec<usize>>) -> Observed {
        let first_value = self.first_input + self.inputs;
        let vars = table.columns.len() - first_value;
        let mut values = Vec::with_capacity(sites.len() * vars * self.k);
        let mut inputs = Vec::with_capacity(values.capacity() * self.inputs);
        for rows in sites.values() {
            for v in 0..vars {
                for &row in rows {
                    let cells = &table.rows[row];
                    values.push(cells[first_value + v]);
                    inputs.extend_from_slice(&cells[self.first_input..first_value]);
                }
            }
        }
        let counts: Vec<usize> = sites.values().map(|rows| rows.len() * vars).collect();
        let ragged = counts.iter().any(|&n| n != vars * self.k);
        Observed {
            sites: sites.len(),
            values,
            inputs: (self.inputs > 0).then_some(inputs),
            counts: ragged.then_some(counts),
        }
    }
}
