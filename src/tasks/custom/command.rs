//! An external program as a batch simulator, so that simulators in R, Julia, C++ or a shell
//! script work without bindings. The exchange (format 1) is plain CSV:
//!
//! - the program starts in the model file's folder with the environment variables
//!   `TFMPE_FORMAT=1`, `TFMPE_ROWS` (the number of sites) and `TFMPE_SEED` (a seed for its
//!   random numbers, different for every call);
//! - its standard input is a header line of column names, the globals, then the locals, then
//!   the functional inputs (`sigma,mu`, or `x[0],x[1]` for a vector variable, `t[0],t[1]`
//!   for the inputs of observation values 0 and 1), followed by one line per site;
//! - it writes to standard output a header line of the observation names (`y`, or `y[0],y[1]`)
//!   and then exactly one line per site, in the order of the input; `nan` and `inf` are
//!   allowed (such sites are dropped and counted);
//! - it exits with status 0. Anything else is an error that quotes the end of its standard
//!   error.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::super::batch::{BatchSimulator, SiteBatch};
use crate::error::{Error, Result};

/// The version of the exchange format, passed as `TFMPE_FORMAT`.
pub const FORMAT_VERSION: u32 = 1;

/// An external program run on batches of sites; see the module documentation.
#[derive(Clone, Debug)]
pub struct CommandSimulator {
    /// The program and its arguments.
    pub command: Vec<String>,
    /// The folder the program runs in.
    pub directory: PathBuf,
    /// Input column names (globals, locals, inputs) and output column names.
    pub input_columns: Vec<String>,
    pub output_columns: Vec<String>,
    /// Most sites per call.
    pub batch: usize,
    /// Calls run at once.
    pub parallel: usize,
    /// Longest a call may run.
    pub timeout: Duration,
}

impl CommandSimulator {
    /// One call on `rows` consecutive sites given as CSV lines.
    fn call(&self, lines: &[String], seed: u64) -> Result<Vec<f64>> {
        let program = &self.command[0];
        let mut child = Command::new(program)
            .args(&self.command[1..])
            .current_dir(&self.directory)
            .env("TFMPE_FORMAT", FORMAT_VERSION.to_string())
            .env("TFMPE_ROWS", lines.len().to_string())
            .env("TFMPE_SEED", seed.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                Error::Simulator(format!(
                    "cannot start `{}` in {}: {e}",
                    self.command.join(" "),
                    self.directory.display()
                ))
            })?;
        let mut input = self.input_columns.join(",");
        input.push('\n');
        for l in lines {
            input.push_str(l);
            input.push('\n');
        }
        // Writing, reading and waiting run side by side so that neither pipe can fill up.
        let mut stdin = child.stdin.take();
        let writer = thread::spawn(move || {
            // A program that exits without reading its input is reported by its status below.
            let _ = stdin.as_mut().map(|s| s.write_all(input.as_bytes()));
        });
        let out = drain(child.stdout.take());
        let err = drain(child.stderr.take());
        let start = Instant::now();
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Ok(status),
                Ok(None) if start.elapsed() > self.timeout => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break Err(format!("timed out after {:?} and was stopped", self.timeout));
                }
                Ok(None) => thread::sleep(Duration::from_millis(5)),
                Err(e) => break Err(format!("could not be waited for: {e}")),
            }
        };
        let _ = writer.join();
        let stdout = out.join().unwrap_or_default();
        let stderr = err.join().unwrap_or_default();
        let describe = |what: String| {
            let tail: String = {
                let text = String::from_utf8_lossy(&stderr);
                let lines: Vec<&str> = text.lines().collect();
                lines[lines.len().saturating_sub(20)..].join("\n")
            };
            Error::Simulator(format!(
                "`{}` {what}{}",
                self.command.join(" "),
                if tail.is_empty() {
                    String::new()
                } else {
                    format!("; its standard error ends:\n{tail}")
                }
            ))
        };
        match status {
            Err(why) => return Err(describe(why)),
            Ok(s) if !s.success() => return Err(describe(format!("failed ({s})"))),
            Ok(_) => {}
        }
        self.parse(&String::from_utf8_lossy(&stdout), lines.len()).map_err(describe)
    }

    /// The program's output: the header, then `rows` lines of observation values.
    fn parse(&self, text: &str, rows: usize) -> std::result::Result<Vec<f64>, String> {
        let mut lines = text.lines().filter(|l| !l.trim().is_empty());
        let header: Vec<&str> = lines.next().unwrap_or("").split(',').map(str::trim).collect();
        if header != self.output_columns {
            return Err(format!(
                "wrote the header `{}`; format {FORMAT_VERSION} needs `{}` first",
                header.join(","),
                self.output_columns.join(",")
            ));
        }
        let width = self.output_columns.len();
        let mut values = Vec::with_capacity(rows * width);
        let mut count = 0;
        for (i, line) in lines.enumerate() {
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            if fields.len() != width {
                return Err(format!(
                    "wrote {} values on output line {} but there are {width} observation columns",
                    fields.len(),
                    i + 2
                ));
            }
            for f in fields {
                values.push(f.parse::<f64>().map_err(|_| {
                    format!("wrote `{f}` on output line {}, which is not a number", i + 2)
                })?);
            }
            count += 1;
        }
        if count != rows {
            return Err(format!("wrote {count} rows for {rows} sites; it must write one per site"));
        }
        Ok(values)
    }
}

fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_end(&mut buf);
        }
        buf
    })
}

impl BatchSimulator for CommandSimulator {
    fn simulate(&self, batch: &SiteBatch, seed: u64) -> Result<Vec<f64>> {
        let (gd, ld) =
            (batch.globals.len() / batch.rows.max(1), batch.locals.len() / batch.rows.max(1));
        let kd = batch.inputs.map_or(0, |x| x.len() / batch.rows.max(1));
        let lines: Vec<String> = (0..batch.rows)
            .map(|r| {
                let row = batch.globals[r * gd..(r + 1) * gd]
                    .iter()
                    .chain(&batch.locals[r * ld..(r + 1) * ld])
                    .chain(batch.inputs.map_or(&[][..], |x| &x[r * kd..(r + 1) * kd]));
                row.map(|v| v.to_string()).collect::<Vec<_>>().join(",")
            })
            .collect();
        // `parallel` programs at once, each on a contiguous share of the rows.
        let share = batch.rows.div_ceil(self.parallel.max(1)).max(1);
        let parts: Vec<Result<Vec<f64>>> = thread::scope(|s| {
            let handles: Vec<_> = lines
                .chunks(share)
                .enumerate()
                .map(|(k, part)| {
                    let seed = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(k as u64);
                    s.spawn(move || self.call(part, seed))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| Err(Error::Simulator("a call panicked".into())))
                })
                .collect()
        });
        let mut out = Vec::with_capacity(batch.rows * self.output_columns.len());
        for p in parts {
            out.extend(p?);
        }
        Ok(out)
    }

    fn max_rows(&self) -> usize {
        self.batch * self.parallel.max(1)
    }
}
