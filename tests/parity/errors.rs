//! The same bad call gives the same error on every backend.
//!
//! `bad_calls` (in `errors/bad_calls.rs`, where a new kernel adds its rows) is a table of calls
//! of the `Backend` contract that are wrong in exactly one way, each with the `tfmpe::Error`
//! variant the contract requires. Most rows take one well-formed call and spoil one named
//! buffer argument; the variant follows from how (see [`Defect::error`]). The other rows give a
//! bad parameter and name their variant. Per device, every row must return its variant without
//! panicking (and the well-formed call it spoils must succeed, so the row has exactly one
//! defect); across devices, every present backend must return the same variant and the same
//! message. Rows handing a device a buffer of another backend need a second backend present.
//!
//! Entries that take no argument they could get wrong (`name`, `device_name`, `synchronize`,
//! `buffers_allocated`, `upload_f32`, `upload_u32`) have no row.

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};

use tfmpe::backend::{Backend, Buffer, DType};
use tfmpe::{Device, Error, Result};

use crate::common;

mod bad_calls;
use bad_calls::bad_calls;

per_device!(bad_calls_return_the_contract_error);

/// How a row spoils one buffer argument of a well-formed call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Defect {
    /// One element fewer than the call needs.
    Short,
    /// One element more than the call needs.
    Long,
    /// The same length in the other element type (u32 for f32 and the reverse).
    Dtype,
    /// The same length and type, allocated by another backend.
    Foreign,
}

/// The variants a bad call may return.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Want {
    Shape,
    Buffer,
    Invalid,
}

impl Defect {
    /// A wrong length is a shape error; a wrong element type or a buffer of another backend is
    /// a buffer error.
    fn error(self) -> Want {
        match self {
            Defect::Short | Defect::Long => Want::Shape,
            Defect::Dtype | Defect::Foreign => Want::Buffer,
        }
    }
}

impl Want {
    fn matches(self, e: &Error) -> bool {
        matches!(
            (self, e),
            (Want::Shape, Error::Shape(_))
                | (Want::Buffer, Error::Buffer(_))
                | (Want::Invalid, Error::Invalid(_))
        )
    }
}

/// The buffers of one call, made on `dev`, the argument named by `spoil` made wrong.
struct Args<'a> {
    dev: &'a Device,
    /// Where a [`Defect::Foreign`] buffer comes from.
    other: Option<&'a Device>,
    spoil: Option<(&'static str, Defect)>,
    spoiled: Cell<bool>,
}

impl Args<'_> {
    fn be(&self) -> &dyn Backend {
        self.dev.backend()
    }

    fn defect(&self, name: &str) -> Option<Defect> {
        let (arg, defect) = self.spoil.filter(|&(arg, _)| arg == name)?;
        assert!(!self.spoiled.replace(true), "two arguments named {arg}");
        Some(defect)
    }

    fn foreign(&self) -> &dyn Backend {
        self.other.expect("rows of another backend are skipped without one").backend()
    }

    /// The f32 argument `name` of `len` elements (zeros).
    fn f32(&self, name: &str, len: usize) -> Buffer {
        let (be, dtype, len) = match self.defect(name) {
            None => (self.be(), DType::F32, len),
            Some(Defect::Short) => (self.be(), DType::F32, len - 1),
            Some(Defect::Long) => (self.be(), DType::F32, len + 1),
            Some(Defect::Dtype) => (self.be(), DType::U32, len),
            Some(Defect::Foreign) => (self.foreign(), DType::F32, len),
        };
        be.alloc(dtype, len).unwrap()
    }

    /// The u32 argument `name` holding `ids`.
    fn u32(&self, name: &str, ids: &[u32]) -> Buffer {
        match self.defect(name) {
            None => self.be().upload_u32(ids),
            Some(Defect::Short) => self.be().upload_u32(&ids[1..]),
            Some(Defect::Long) => self.be().upload_u32(&[ids, &[0][..]].concat()),
            Some(Defect::Dtype) => self.be().alloc(DType::F32, ids.len()),
            Some(Defect::Foreign) => self.foreign().upload_u32(ids),
        }
        .unwrap()
    }
}

type Call = fn(&Args) -> Result<()>;

/// One bad call: `call` with the argument `spoil` made wrong, or (without `spoil`) a call whose
/// parameters are wrong.
struct Row {
    what: String,
    call: Call,
    spoil: Option<(&'static str, Defect)>,
    want: Want,
}

/// Rows spoiling each of `spoils` in turn in the well-formed `call`.
fn spoil(name: &str, call: Call, spoils: &[(&'static str, Defect)]) -> Vec<Row> {
    spoils
        .iter()
        .map(|&(arg, defect)| Row {
            what: format!("{name}: {arg} {defect:?}"),
            call,
            spoil: Some((arg, defect)),
            want: defect.error(),
        })
        .collect()
}

/// A row whose buffers fit its parameters but whose parameters are wrong.
fn param(what: &str, call: Call, want: Want) -> Vec<Row> {
    vec![Row { what: what.into(), call, spoil: None, want }]
}

/// What a call did.
#[derive(Debug)]
enum Outcome {
    Ok,
    Err(Error),
    Panicked(String),
}

impl Outcome {
    /// The variant and message, with backend names taken out: a buffer of another backend
    /// may be reported as "a wgpu buffer passed to the CPU backend" and the reverse.
    fn key(&self) -> String {
        let text = match self {
            Outcome::Ok => "Ok".to_string(),
            Outcome::Err(e) => format!("{e:?}"),
            Outcome::Panicked(msg) => format!("panicked: {msg}"),
        };
        ["wgpu", "WGPU", "cuda", "CUDA", "Cuda", "cpu", "CPU", "Cpu"]
            .iter()
            .fold(text, |t, name| t.replace(name, "<backend>"))
    }
}

/// The device whose buffers `dev` is handed as [`Defect::Foreign`]: the CPU for a GPU, a GPU
/// for the CPU.
fn other_device(dev: &Device) -> Option<Device> {
    if dev.name() == "cpu" {
        common::wgpu().or_else(common::cuda)
    } else {
        Some(Device::cpu())
    }
}

/// Runs `call` on `dev` with `spoil`, catching a panic. Also says whether `spoil` named an
/// argument of the call.
fn run(
    dev: &Device, other: Option<&Device>, call: Call, spoil: Option<(&'static str, Defect)>,
) -> (Outcome, bool) {
    let args = Args { dev, other, spoil, spoiled: Cell::new(false) };
    let outcome = match catch_unwind(AssertUnwindSafe(|| call(&args))) {
        Ok(Ok(())) => Outcome::Ok,
        Ok(Err(e)) => Outcome::Err(e),
        Err(payload) => Outcome::Panicked(
            payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_default(),
        ),
    };
    (outcome, args.spoiled.get())
}

/// The rows that can run on `dev`: those handing it a buffer of another backend need one.
fn rows_for(other: Option<&Device>) -> impl Iterator<Item = Row> {
    let has_other = other.is_some();
    bad_calls()
        .into_iter()
        .filter(move |r| has_other || r.spoil.is_none_or(|(_, d)| d != Defect::Foreign))
}

fn bad_calls_return_the_contract_error(dev: &Device) {
    let other = other_device(dev);
    let mut wrong = Vec::new();
    let mut count = 0;
    for row in rows_for(other.as_ref()) {
        count += 1;
        if row.spoil.is_some() {
            let (good, _) = run(dev, other.as_ref(), row.call, None);
            assert!(
                matches!(good, Outcome::Ok),
                "{}: the well-formed call fails: {good:?}",
                row.what
            );
        }
        let (got, spoiled) = run(dev, other.as_ref(), row.call, row.spoil);
        assert_eq!(spoiled, row.spoil.is_some(), "{}: no such argument", row.what);
        match &got {
            Outcome::Err(e) if row.want.matches(e) => {}
            _ => wrong.push(format!("{}: want {:?}, got {got:?}", row.what, row.want)),
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {count} bad calls on {} miss the contract's error:\n{}",
        wrong.len(),
        dev.name(),
        wrong.join("\n")
    );
}

/// Tests that compare two backends with each other.
mod across_devices {
    use super::*;

    /// Every row on every present backend: the same variant and message everywhere.
    #[test]
    fn every_backend_returns_the_same_error() {
        let devs = common::devices();
        if devs.len() < 2 {
            return;
        }
        let others: Vec<_> = devs.iter().map(other_device).collect();
        let mut differ = Vec::new();
        for row in bad_calls() {
            let keys: Vec<String> = devs
                .iter()
                .zip(&others)
                .map(|(dev, other)| run(dev, other.as_ref(), row.call, row.spoil).0.key())
                .collect();
            if keys.iter().any(|k| *k != keys[0]) {
                let each = devs.iter().zip(&keys);
                let each: Vec<String> = each.map(|(d, k)| format!("  {}: {k}", d.name())).collect();
                differ.push(format!("{}:\n{}", row.what, each.join("\n")));
            }
        }
        assert!(
            differ.is_empty(),
            "{} bad calls differ between backends:\n{}",
            differ.len(),
            differ.join("\n")
        );
    }
}

/// Index values live in device memory on a GPU, where a kernel cannot return an error (it
/// skips the row). Only the CPU backend holds them on the host, so only there is an id past the
/// table an error; GPUs are left out of this case.
#[test]
fn cpu_rejects_ids_past_the_table() {
    let dev = Device::cpu();
    let be = dev.backend();
    let f32s = |len: usize| be.alloc(DType::F32, len).unwrap();
    // A table of 4 rows of 3; id 4 is one past it.
    let ids = be.upload_u32(&[0, 4]).unwrap();
    let calls = [
        ("gather_rows", be.gather_rows(&f32s(12), &ids, 3, &mut f32s(6))),
        ("scatter_rows", be.scatter_rows(&f32s(6), &ids, 3, &mut f32s(12))),
        ("embedding_fwd", be.embedding_fwd(&f32s(12), &ids, 3, &mut f32s(6))),
        ("embedding_bwd", be.embedding_bwd(&f32s(6), &ids, 3, &mut f32s(12), false)),
    ];
    for (name, got) in calls {
        assert!(matches!(got, Err(Error::Invalid(_))), "{name} with an id past the table: {got:?}");
    }
}
