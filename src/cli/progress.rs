//! Progress bars on a terminal; where no terminal is (a batch job's log), one line per tenth
//! of each phase with the elapsed time and an estimate of the rest.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use tfmpe::sbi::Progress;

pub struct Bars {
    on: bool,
    bar: Mutex<Option<(String, ProgressBar)>>,
    /// Without a terminal: the phase being logged, when it started, the tenths printed.
    log: Mutex<Option<(String, Instant, usize)>>,
}

impl Bars {
    pub fn new() -> Bars {
        Bars { on: std::io::stderr().is_terminal(), bar: Mutex::new(None), log: Mutex::new(None) }
    }

    /// One line when the phase `key` passes another tenth of `total`.
    fn log_line(&self, key: &str, total: usize, pos: usize, msg: &str) {
        let mut slot = self.log.lock().unwrap_or_else(|e| e.into_inner());
        if slot.as_ref().is_none_or(|(k, _, _)| k != key) {
            *slot = Some((key.to_string(), Instant::now(), 0));
        }
        let Some((_, start, printed)) = slot.as_mut() else { return };
        let tenth = (pos * 10).checked_div(total).unwrap_or(10).min(10);
        if tenth <= *printed {
            return;
        }
        *printed = tenth;
        let elapsed = start.elapsed().as_secs_f64();
        let rest = elapsed * (total.saturating_sub(pos)) as f64 / pos.max(1) as f64;
        // Early stopping may end a training before its last epoch: the estimate is a bound.
        let bound = if key.ends_with("epochs") { "at most " } else { "" };
        let msg = if msg.is_empty() { String::new() } else { format!(", {msg}") };
        eprintln!(
            "tfmpe: {key} {pos}/{total}{msg}; {elapsed:.0} s elapsed, {bound}{rest:.0} s to go"
        );
    }

    fn update(&self, key: &str, total: usize, pos: usize, msg: String) {
        if !self.on {
            self.log_line(key, total, pos, &msg);
            return;
        }
        let mut slot = self.bar.lock().unwrap_or_else(|e| e.into_inner());
        if slot.as_ref().is_none_or(|(k, _)| k != key) {
            if let Some((_, old)) = slot.take() {
                old.finish_and_clear();
            }
            let bar = ProgressBar::new(total as u64);
            let style = ProgressStyle::with_template(
                "{prefix:>18} [{bar:30}] {pos}/{len} {msg} ({elapsed})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            bar.set_style(style);
            bar.set_prefix(key.to_string());
            *slot = Some((key.to_string(), bar));
        }
        if let Some((_, bar)) = slot.as_ref() {
            bar.set_length(total as u64);
            bar.set_position(pos as u64);
            bar.set_message(msg);
        }
    }

    pub fn finish(&self) {
        if let Some((_, bar)) = self.bar.lock().unwrap_or_else(|e| e.into_inner()).take() {
            bar.finish_and_clear();
        }
    }
}

impl Progress for Bars {
    fn phase(&self, name: &str) {
        self.finish();
        eprintln!("tfmpe: {name}");
    }

    fn epoch(&self, phase: &str, epoch: usize, max_epochs: usize, train_loss: f64, val_loss: f64) {
        self.update(
            &format!("{phase} epochs"),
            max_epochs,
            epoch,
            format!("train {train_loss:.4} val {val_loss:.4}"),
        );
    }

    fn samples(&self, phase: &str, done: usize, total: usize) {
        self.update(&format!("{phase} samples"), total, done, String::new());
    }

    fn warning(&self, message: &str) {
        self.finish();
        eprintln!("tfmpe: warning: {message}");
    }
}
