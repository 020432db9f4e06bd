//! The wide layout: one row per data set, one column per observation scalar.

use super::{finite, header_error, id, line, DATASET, SITE};
use crate::error::{Error, Result};
use crate::io::Table;
use crate::tasks::{HierarchicalModel, Observed};

pub(super) fn parse(
    table: &Table, source: &str, task: &dyn HierarchicalModel,
) -> Result<Vec<Observed>> {
    if task.functional_input_dim() > 0 {
        let mut long = vec![SITE.to_string()];
        long.extend(task.functional_input_names());
        long.extend(task.observation_variables().into_iter().map(|v| v.name));
        return Err(Error::Invalid(format!(
            "{source}: task `{}` has functional inputs, which the wide layout has no columns for; \
             use the long layout, one row per observed value, with the header `{}`",
            task.name(),
            long.join(",")
        )));
    }
    let with_ids = table.columns.first().is_some_and(|c| c == DATASET);
    let first = usize::from(with_ids);
    let per_site = task.obs_dim();
    let sites = (table.columns.len() - first).div_ceil(per_site).max(1);
    let mut expected = if with_ids { vec![DATASET.to_string()] } else { Vec::new() };
    expected.extend(task.observation_names(sites));
    if table.columns != expected {
        let layout = format!(
            "the wide header of task `{}` with {sites} sites is (the `{DATASET}` column is \
             optional; a long-layout file names a `{SITE}` column)",
            task.name()
        );
        return Err(header_error(source, &table.columns, &expected, &layout));
    }
    let mut data = Vec::with_capacity(table.rows.len());
    for row in 0..table.rows.len() {
        let key = if with_ids { id(table, source, row, 0)? } else { row };
        let values = (first..expected.len())
            .map(|col| finite(table, source, row, col))
            .collect::<Result<Vec<f64>>>()?;
        data.push((key, row, Observed { sites, values, inputs: None, counts: None }));
    }
    data.sort_by_key(|&(key, row, _)| (key, row));
    if let Some(pair) = data.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(Error::Invalid(format!(
            "{source}: lines {} and {} both hold dataset {}; give every data set its own id",
            line(pair[0].1),
            line(pair[1].1),
            pair[0].0
        )));
    }
    Ok(data.into_iter().map(|(_, _, obs)| obs).collect())
}

/// The wide table of data sets that all have the same number of sites.
pub(super) fn table(task: &dyn HierarchicalModel, data: &[Observed]) -> Table {
    let many = data.len() > 1;
    let mut columns = if many { vec![DATASET.to_string()] } else { Vec::new() };
    columns.extend(task.observation_names(data[0].sites));
    let rows = data
        .iter()
        .enumerate()
        .map(|(d, obs)| {
            let mut row = if many { vec![d as f64] } else { Vec::new() };
            row.extend_from_slice(&obs.values);
            row
        })
        .collect();
    Table { columns, rows }
}
