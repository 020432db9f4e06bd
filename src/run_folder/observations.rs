//! Observation files: one or many observed data sets, in a wide or a long CSV layout.
//!
//! **Wide**, one row per data set: the header is the task's observation names for S sites
//! (`y.0,y.1,…`, or `y.0[0],y.0[1],…` when a site observes a vector), optionally after a
//! `dataset` column. The header fixes S, so every data set of a wide file has the same number of
//! sites. Functional inputs have no columns here, so tasks with inputs must use the long layout.
//!
//! **Long**, one row per observed scalar, recognised by its `site` column: the header is
//! `[dataset,]site,<input names>,<observation variable names>`. Row j of a site holds scalar j of
//! every observation variable together with those scalars' functional inputs; this needs every
//! observation variable of the task to have the same size k, and every site then has exactly k
//! rows, in observation order (file order is kept); a task whose sites may be observed at fewer
//! values (`ragged_observations`) takes 1 to k rows per site. Sites are numbered 0, 1, … without gaps
//! within each data set; data sets may have different site counts.
//!
//! In both layouts `dataset` ids are non-negative integers, data sets come back in id order, and
//! every value must be finite. Line numbers in errors count the header as line 1 and assume that
//! no blank lines sit between rows (the parsed table keeps no line numbers).

mod long;
mod wide;

use std::path::Path;

use crate::error::{Error, Result};
use crate::io::Table;
use crate::tasks::{check_observed, HierarchicalModel, Observed};

const DATASET: &str = "dataset";
const SITE: &str = "site";

/// The data sets of an observation table in either layout (the module documentation describes
/// both); `source` names the file in error messages.
pub fn parse_observations(
    table: &Table, source: &str, task: &dyn HierarchicalModel,
) -> Result<Vec<Observed>> {
    let data = if table.columns.iter().any(|c| c == SITE) {
        long::parse(table, source, task)?
    } else {
        wide::parse(table, source, task)?
    };
    if data.is_empty() {
        return Err(Error::Invalid(format!(
            "{source}: the file has a header but no rows; add the observed values below it"
        )));
    }
    Ok(data)
}

/// Reads an observation file in either layout.
pub fn read_observations(path: &Path, task: &dyn HierarchicalModel) -> Result<Vec<Observed>> {
    parse_observations(&Table::read(path)?, &path.display().to_string(), task)
}

/// The data sets as a table: wide when the task has no functional inputs and every data set has
/// the same number of sites, long otherwise. A `dataset` column leads only when there are several.
pub fn observations_table(task: &dyn HierarchicalModel, data: &[Observed]) -> Result<Table> {
    check_data(task, data)?;
    let same_sites = data.iter().all(|d| d.sites == data[0].sites);
    if task.functional_input_dim() == 0 && same_sites {
        Ok(wide::table(task, data))
    } else {
        long::table(task, data)
    }
}

/// Writes the data sets to `path` in the layout [`observations_table`] picks.
pub fn write_observations(
    path: &Path, task: &dyn HierarchicalModel, data: &[Observed],
) -> Result<()> {
    observations_table(task, data)?.write(path)
}

/// Checks that every data set fits the task, so that what is written parses back unchanged.
fn check_data(task: &dyn HierarchicalModel, data: &[Observed]) -> Result<()> {
    if data.is_empty() {
        return Err(Error::Invalid("no data sets to write; pass at least one".into()));
    }
    for (d, obs) in data.iter().enumerate() {
        let at = |e: String| Error::Invalid(format!("data set {d}: {e}"));
        if obs.sites == 0 {
            return Err(at("it has no sites; every data set needs at least one".into()));
        }
        check_observed(task, obs).map_err(|e| at(e.to_string()))?;
    }
    Ok(())
}

/// The line of the file that holds row `row` of the table (the header is line 1).
fn line(row: usize) -> usize {
    row + 2
}

/// A cell that must be a finite number.
fn finite(table: &Table, source: &str, row: usize, col: usize) -> Result<f64> {
    let v = table.rows[row][col];
    if v.is_finite() {
        return Ok(v);
    }
    Err(Error::Invalid(format!(
        "{source}: line {}, column `{}`: {v} is not a finite number; observations and inputs \
         must be finite",
        line(row),
        table.columns[col]
    )))
}

/// A cell that must be a non-negative integer: a dataset or site id.
fn id(table: &Table, source: &str, row: usize, col: usize) -> Result<usize> {
    let v = table.rows[row][col];
    // Below 2^53 every integer is exact in an f64, so the cast loses nothing.
    if v >= 0.0 && v.fract() == 0.0 && v < 9_007_199_254_740_992.0 {
        return Ok(v as usize);
    }
    Err(Error::Invalid(format!(
        "{source}: line {}, column `{}`: {v} is not an id; ids are whole numbers 0, 1, 2, …",
        line(row),
        table.columns[col]
    )))
}

/// Names the first column where `found` departs from `expected` and shows the whole header.
fn header_error(source: &str, found: &[String], expected: &[String], layout: &str) -> Error {
    let detail = match found.iter().zip(expected).position(|(a, b)| a != b) {
        Some(i) => format!("column {} is `{}` where `{}` belongs", i + 1, found[i], expected[i]),
        None if found.len() > expected.len() => {
            format!("column `{}` is extra", found[expected.len()])
        }
        None => format!("column `{}` is missing", expected[found.len()]),
    };
    Error::Invalid(format!("{source}: {detail}; {layout} `{}`", expected.join(",")))
}

#[cfg(test)]
mod tests;
