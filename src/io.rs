//! Files: atomic writes (temporary name, then rename) and the small CSV dialect of docs/architecture.md#csv-columns.
//!
//! The CSV files are plain: a header of column names, then rows of numbers, comma-separated,
//! no quoting (names never contain commas).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

fn io_err(path: &Path, source: std::io::Error) -> Error {
    Error::Io { path: path.display().to_string(), source }
}

/// Writes `bytes` to `path` so that a reader never sees a half-written file: the data goes to a
/// temporary file in the same folder, is flushed to disk, and is renamed over `path`.
///
/// Only regular files are replaced so. `-` is standard output; a FIFO, device or socket (say
/// `/dev/stdout`) is written in place, never replaced by a regular file; a symbolic link to a
/// regular file stays a link, and the file it names is replaced.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    if path.as_os_str() == "-" {
        let mut out = std::io::stdout().lock();
        return out.write_all(bytes).and_then(|()| out.flush()).map_err(|e| io_err(path, e));
    }
    match fs::metadata(path) {
        Ok(m) if m.is_dir() => {
            return Err(Error::Invalid(format!(
                "{} is a folder; give a file name to write to",
                path.display()
            )))
        }
        Ok(m) if !m.is_file() => {
            let write = || fs::OpenOptions::new().write(true).open(path)?.write_all(bytes);
            return write().map_err(|e| io_err(path, e));
        }
        Ok(_) if fs::symlink_metadata(path).is_ok_and(|l| l.file_type().is_symlink()) => {
            let target = fs::canonicalize(path).map_err(|e| io_err(path, e))?;
            return replace_regular(&target, bytes);
        }
        _ => {}
    }
    replace_regular(path, bytes)
}

fn replace_regular(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = temp_name(path);
    let write = || -> std::io::Result<()> {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        io_err(path, e)
    })
}

fn temp_name(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

/// Creates a folder (and its parents) if it is missing.
pub fn ensure_dir(path: &Path) -> Result<()> {
    fs::create_dir_all(path).map_err(|e| io_err(path, e))
}

/// A numeric table with named columns.
#[derive(Clone, Debug, PartialEq)]
pub struct Table {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<f64>>,
}

impl Table {
    /// Renders the table; floats use Rust's shortest round-trip form.
    pub fn to_csv(&self) -> String {
        let mut s = self.columns.join(",");
        s.push('\n');
        for row in &self.rows {
            let cells: Vec<String> = row.iter().map(|v| format!("{v}")).collect();
            s.push_str(&cells.join(","));
            s.push('\n');
        }
        s
    }

    /// Parses CSV text; `source` names the file in error messages.
    pub fn parse(text: &str, source: &str) -> Result<Table> {
        // Spreadsheet programs save UTF-8 CSV with a byte-order mark, which would otherwise
        // become part of the first column's name.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
        let (_, header) = lines.next().ok_or_else(|| {
            Error::Invalid(format!(
                "{source}: the file is empty; it needs a header row of column names"
            ))
        })?;
        let columns: Vec<String> = header.split(',').map(|c| c.trim().to_string()).collect();
        if let Some(c) = columns.iter().find(|c| c.parse::<f64>().is_ok()) {
            return Err(Error::Invalid(format!(
                "{source}: the first row must name the columns, but it holds the number `{c}`"
            )));
        }
        let mut rows = Vec::new();
        for (i, line) in lines {
            let cells: Vec<&str> = line.split(',').collect();
            if cells.len() != columns.len() {
                return Err(Error::Invalid(format!(
                    "{source}: line {} has {} values but the header names {} columns",
                    i + 1,
                    cells.len(),
                    columns.len()
                )));
            }
            let row = cells
                .iter()
                .zip(&columns)
                .map(|(cell, col)| {
                    cell.trim().parse::<f64>().map_err(|_| {
                        Error::Invalid(format!(
                            "{source}: line {}, column `{col}`: `{}` is not a number",
                            i + 1,
                            cell.trim()
                        ))
                    })
                })
                .collect::<Result<Vec<f64>>>()?;
            rows.push(row);
        }
        Ok(Table { columns, rows })
    }

    pub fn read(path: &Path) -> Result<Table> {
        let text = fs::read_to_string(path).map_err(|e| io_err(path, e))?;
        Table::parse(&text, &path.display().to_string())
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        atomic_write(path, self.to_csv().as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_round_trip_is_exact() {
        let t = Table {
            columns: vec!["sigma".into(), "mu.0".into()],
            rows: vec![vec![0.1, -3.25e-7], vec![1.0 / 3.0, 12345.678]],
        };
        assert_eq!(Table::parse(&t.to_csv(), "t").unwrap(), t);
    }

    #[test]
    fn csv_errors_name_the_place() {
        let e = Table::parse("a,b\n1,x\n", "obs.csv").unwrap_err().to_string();
        assert!(e.contains("obs.csv") && e.contains("line 2") && e.contains("`b`"), "{e}");
        let e = Table::parse("a,b\n1\n", "obs.csv").unwrap_err().to_string();
        assert!(e.contains("1 values") && e.contains("2 columns"), "{e}");
        let e = Table::parse("1,2\n", "obs.csv").unwrap_err().to_string();
        assert!(e.contains("name the columns"), "{e}");
        assert!(Table::parse("", "obs.csv").is_err());
    }

    #[test]
    fn byte_order_mark_is_not_part_of_the_first_column() {
        let t = Table::parse("\u{feff}y.0,y.1\n1,2\n", "obs.csv").unwrap();
        assert_eq!(t.columns, ["y.0", "y.1"]);
    }

    #[test]
    fn nan_parses_so_callers_can_reject_it_by_name() {
        let t = Table::parse("y.0\nNaN\n", "obs.csv").unwrap();
        assert!(t.rows[0][0].is_nan());
    }

    #[test]
    fn atomic_write_replaces_whole_file() {
        let dir = std::env::temp_dir().join(format!("tfmpe-io-{}", std::process::id()));
        ensure_dir(&dir).unwrap();
        let p = dir.join("x.csv");
        atomic_write(&p, b"first").unwrap();
        atomic_write(&p, b"second").unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), "second");
        let leftovers = fs::read_dir(&dir).unwrap().count();
        assert_eq!(leftovers, 1, "no temporary file is left behind");
        fs::remove_dir_all(&dir).unwrap();
    }
}
