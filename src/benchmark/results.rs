//! `results.csv`: one row per task, method, budget, S and observation, appended as each
//! configuration finishes and read back to resume.

use std::io::Write;
use std::path::Path;

use super::BenchMethod;
use crate::error::{Error, Result};
use crate::sbi::Method;

/// One scored observation of one configuration. Figures that were not computed are NaN
/// (written empty); `note` says why a configuration did not run.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub task: String,
    pub method: BenchMethod,
    pub budget: usize,
    pub sites: usize,
    pub observation: usize,
    pub lc2st_statistic: f64,
    pub lc2st_p_value: f64,
    pub lc2st_reject: bool,
    /// Against the exact posterior (NaN where the task has none).
    pub c2st: f64,
    /// Of the configuration's network over data sets from the prior.
    pub sbc_min_ks_p: f64,
    pub tarp_ks_p: f64,
    pub tarp_atc: f64,
    pub simulator_calls: usize,
    pub simulate_s: f64,
    pub surrogate_training_s: f64,
    pub synthetic_sets_s: f64,
    pub posterior_training_s: f64,
    pub sampling_s: f64,
    /// This observation's L-C2ST and C2ST, plus its share of the configuration's SBC, TARP
    /// and L-C2ST training.
    pub evaluation_s: f64,
    pub backend: String,
    pub note: String,
}

impl Default for Row {
    fn default() -> Self {
        Row {
            task: String::new(),
            method: BenchMethod::Amortised(Method::Lf),
            budget: 0,
            sites: 0,
            observation: 0,
            lc2st_statistic: f64::NAN,
            lc2st_p_value: f64::NAN,
            lc2st_reject: false,
            c2st: f64::NAN,
            sbc_min_ks_p: f64::NAN,
            tarp_ks_p: f64::NAN,
            tarp_atc: f64::NAN,
            simulator_calls: 0,
            simulate_s: 0.0,
            surrogate_training_s: 0.0,
            synthetic_sets_s: 0.0,
            posterior_training_s: 0.0,
            sampling_s: 0.0,
            evaluation_s: 0.0,
            backend: String::new(),
            note: String::new(),
        }
    }
}

const HEADER: &str = "task,method,budget,sites,observation,lc2st_statistic,lc2st_p_value,\
lc2st_reject,c2st,sbc_min_ks_p,tarp_ks_p,tarp_atc,simulator_calls,simulate_s,\
surrogate_training_s,synthetic_sets_s,posterior_training_s,sampling_s,evaluation_s,backend,note";

/// A float as CSV: empty for NaN, shortest round-trip digits otherwise.
fn num(v: f64) -> String {
    if v.is_nan() {
        String::new()
    } else {
        format!("{v}")
    }
}

impl Row {
    fn to_csv(&self) -> String {
        let floats = [self.lc2st_statistic, self.lc2st_p_value].map(num).join(",");
        let more = [self.c2st, self.sbc_min_ks_p, self.tarp_ks_p, self.tarp_atc].map(num).join(",");
        let times = [
            self.simulate_s,
            self.surrogate_training_s,
            self.synthetic_sets_s,
            self.posterior_training_s,
            self.sampling_s,
            self.evaluation_s,
        ]
        .map(num)
        .join(",");
        // Notes are free text: commas and line breaks would split the row.
        let note = self.note.replace([',', '\n', '\r'], ";");
        format!(
            "{},{},{},{},{},{floats},{},{more},{},{times},{},{note}",
            self.task,
            self.method.name(),
            self.budget,
            self.sites,
            self.observation,
            self.lc2st_reject,
            self.simulator_calls,
            self.backend,
        )
    }

    fn parse(line: &str, at: &str) -> Result<Row> {
        let f: Vec<&str> = line.split(',').collect();
        let bad =
            |what: &str| Error::Invalid(format!("{at}: {what}; delete the file to start over"));
        if f.len() != HEADER.split(',').count() {
            return Err(bad(&format!(
                "{} fields, expected {}",
                f.len(),
                HEADER.split(',').count()
            )));
        }
        let int = |i: usize| {
            f[i].parse::<usize>().map_err(|_| bad(&format!("`{}` is not a count", f[i])))
        };
        let float = |i: usize| -> Result<f64> {
            if f[i].is_empty() {
                return Ok(f64::NAN);
            }
            f[i].parse::<f64>().map_err(|_| bad(&format!("`{}` is not a number", f[i])))
        };
        Ok(Row {
            task: f[0].to_string(),
            method: f[1].parse().map_err(|_| bad(&format!("unknown method `{}`", f[1])))?,
            budget: int(2)?,
            sites: int(3)?,
            observation: int(4)?,
            lc2st_statistic: float(5)?,
            lc2st_p_value: float(6)?,
            lc2st_reject: f[7] == "true",
            c2st: float(8)?,
            sbc_min_ks_p: float(9)?,
            tarp_ks_p: float(10)?,
            tarp_atc: float(11)?,
            simulator_calls: int(12)?,
            simulate_s: float(13)?,
            surrogate_training_s: float(14)?,
            synthetic_sets_s: float(15)?,
            posterior_training_s: float(16)?,
            sampling_s: float(17)?,
            evaluation_s: float(18)?,
            backend: f[19].to_string(),
            note: f[20].to_string(),
        })
    }
}

/// The rows of an existing `results.csv`, or none when there is no file yet.
pub fn read_results(path: &Path) -> Result<Vec<Row>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(Error::Io { path: path.display().to_string(), source }),
    };
    let mut lines = text.lines();
    if lines.next() != Some(HEADER) {
        return Err(Error::Invalid(format!(
            "{} is not a results file of this version of tfmpe benchmark (its header differs); \
             use another --out or delete it",
            path.display()
        )));
    }
    lines
        .enumerate()
        .filter(|(_, l)| !l.is_empty())
        .map(|(i, l)| Row::parse(l, &format!("{} line {}", path.display(), i + 2)))
        .collect()
}

/// Appends `rows` (writing the header first into a new file) and flushes them to disk.
pub fn append(path: &Path, rows: &[Row]) -> Result<()> {
    let io = |source| Error::Io { path: path.display().to_string(), source };
    let new = !path.exists();
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(io)?;
    let mut text = String::new();
    if new {
        text.push_str(HEADER);
        text.push('\n');
    }
    for r in rows {
        text.push_str(&r.to_csv());
        text.push('\n');
    }
    file.write_all(text.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_read_back_the_same() {
        let dir = std::env::temp_dir().join(format!("tfmpe-results-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("results.csv");
        let a = Row {
            task: "hier-two-moons".into(),
            method: BenchMethod::Amortised(Method::Direct),
            budget: 5000,
            sites: 10,
            observation: 3,
            lc2st_statistic: 3.43e-4,
            lc2st_p_value: 0.27,
            simulator_calls: 5000,
            posterior_training_s: 12.5,
            backend: "cpu".into(),
            ..Row::default()
        };
        let b = Row { note: "not run: too few, really".into(), observation: 4, ..a.clone() };
        append(&path, std::slice::from_ref(&a)).unwrap();
        append(&path, std::slice::from_ref(&b)).unwrap();
        let back = read_results(&path).unwrap();
        assert_eq!(back.len(), 2);
        // NaN ≠ NaN: compare the text.
        assert_eq!(back[0].to_csv(), a.to_csv());
        assert_eq!(back[1].note, "not run: too few; really");
        std::fs::write(&path, "task,other\n").unwrap();
        assert!(read_results(&path).unwrap_err().to_string().contains("header differs"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
