//! Malformed input never panics: thousands of generated mutations of valid observation files,
//! checkpoint configs and weights, and of the command line's numbers, each answered by an
//! error with a message (or, for an input that happens to stay valid, a result). A fixed seed
//! makes every run try the same inputs; each test prints how many it tried.

#[path = "common/mod.rs"]
mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use tfmpe::io::Table;
use tfmpe::run_folder::{load_posterior, parse_observations};
use tfmpe::tasks::task_by_name;
use tfmpe::Device;

use common::bin::tfmpe;

/// Pieces a mutation splices in: separators, signs, exponents, special values, a BOM, bytes
/// that are not UTF-8 in text form, huge and negative numbers.
const PIECES: [&str; 16] = [
    ",",
    "\n",
    "\r\n",
    "-",
    ".",
    "e",
    "E308",
    "NaN",
    "inf",
    "\u{feff}",
    "\"",
    "1e400",
    "-0",
    "18446744073709551616",
    "  ",
    "\u{0}",
];

/// One random edit of `text`: delete (one to three characters), insert, duplicate or cut. The
/// position is a byte moved back to a character's start: a checkpoint's config.json is
/// megabytes, and collecting its characters for every edit made the checkpoint test half as
/// slow again (128 s against 82).
fn mutate(text: &str, rng: &mut StdRng) -> String {
    let boundary = |mut i: usize| {
        while !text.is_char_boundary(i) {
            i -= 1;
        }
        i
    };
    let at = boundary(rng.random_range(0..=text.len()));
    let (head, tail) = text.split_at(at);
    match rng.random_range(0..5) {
        0 if !text.is_empty() => {
            let cut: usize = tail.chars().take(rng.random_range(1..4)).map(char::len_utf8).sum();
            format!("{head}{}", &tail[cut..])
        }
        1 => format!("{head}{}{tail}", PIECES[rng.random_range(0..PIECES.len())]),
        2 => format!("{head}{}{tail}", char::from(rng.random_range(0x20u8..0x7f))),
        3 => {
            let line = text.lines().nth(rng.random_range(0..text.lines().count().max(1)));
            format!("{text}{}\n", line.unwrap_or(""))
        }
        _ => head.to_string(),
    }
}

/// `n` inputs, each 1 to 4 edits away from one of `seeds`.
fn inputs(seeds: &[&str], n: usize, seed: u64) -> Vec<String> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let mut t = seeds[rng.random_range(0..seeds.len())].to_string();
            for _ in 0..rng.random_range(1..=4) {
                t = mutate(&t, &mut rng);
            }
            t
        })
        .collect()
}

#[test]
fn observation_files_give_errors_never_panics() {
    let mut tried = 0;
    let cases: [(&str, &[&str]); 2] = [
        ("hier-gaussian-linear", &["y.0,y.1,y.2\n0.5,-1,2\n", "dataset,y.0,y.1\n0,1,2\n1,3,4\n"]),
        (
            "hier-brownian",
            &["site,t,y\n0,0.5,1.2\n0,1.5,-0.3\n1,0.2,0.1\n", "dataset,site,t,y\n0,0,1,2\n"],
        ),
    ];
    for (name, seeds) in cases {
        let task = task_by_name(name).unwrap();
        for text in inputs(seeds, 3000, 1) {
            tried += 1;
            let outcome = catch_unwind(AssertUnwindSafe(|| {
                Table::parse(&text, "obs.csv")
                    .and_then(|t| parse_observations(&t, "obs.csv", &*task))
            }));
            match outcome {
                Err(_) => panic!("{name}: the reader panicked on {text:?}"),
                Ok(Err(e)) => assert!(!e.to_string().is_empty()),
                Ok(Ok(sets)) => {
                    for s in sets {
                        assert!(s.values.iter().all(|v| v.is_finite()), "{text:?} gave {s:?}");
                    }
                }
            }
        }
    }
    eprintln!("observation reader: {tried} malformed inputs, no panic");
}

/// A tiny run's posterior checkpoint, made once.
fn checkpoint() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tfmpe-fuzz-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let d = dir.to_str().unwrap();
    let small = ["--sites", "2", "--budget", "200", "--max-epochs", "1", "--batch-size", "10"];
    let args: Vec<&str> = ["run", "--task", "hier-gaussian-linear", "--out", d, "--no-eval"]
        .into_iter()
        .chain(small)
        .chain(["--samples", "5"])
        .collect();
    tfmpe(&args).succeeds();
    dir
}

#[test]
fn checkpoints_give_errors_never_panics_or_aborts() {
    let run = checkpoint();
    let ckpt = run.join("posterior");
    let config = std::fs::read_to_string(ckpt.join("config.json")).unwrap();
    let weights = std::fs::read(ckpt.join("model.safetensors")).unwrap();
    let dev = Device::cpu();
    let work = run.join("work");
    std::fs::create_dir_all(&work).unwrap();
    // Writes one of the two files (the other stays as last written) and loads the folder.
    let load = |file: &str, bytes: &[u8]| {
        std::fs::write(work.join(file), bytes).unwrap();
        catch_unwind(AssertUnwindSafe(|| load_posterior(&dev, &work).map(|_| ())))
    };
    std::fs::write(work.join("model.safetensors"), &weights).unwrap();
    let valid = load("config.json", config.as_bytes());
    assert!(matches!(valid, Ok(Ok(()))), "the valid checkpoint must load");

    // Sizes edited to absurd values (the allocator would abort on them) and random text edits.
    let mut configs: Vec<String> =
        ["\"width\": 1000000000000", "\"layers\": 4294967296", "\"heads\": 0"]
            .iter()
            .map(|edit| {
                let key = edit.split(':').next().unwrap();
                let re = config.lines().find(|l| l.trim_start().starts_with(key)).unwrap_or("");
                config.replacen(re.trim().trim_end_matches(','), edit, 1)
            })
            .collect();
    configs.extend(inputs(&[&config], 1500, 2));
    let mut tried = 0;
    for cfg in &configs {
        tried += 1;
        if load("config.json", cfg.as_bytes()).is_err() {
            panic!("loading panicked on config.json {cfg}");
        }
    }
    load("config.json", config.as_bytes()).unwrap().unwrap();
    let mut rng = StdRng::seed_from_u64(3);
    for _ in 0..1500 {
        tried += 1;
        let mut w = weights.clone();
        match rng.random_range(0..3) {
            0 => w.truncate(rng.random_range(0..w.len())),
            1 => {
                for _ in 0..rng.random_range(1..8) {
                    // The header (its first bytes) holds the lengths and offsets.
                    let i = rng.random_range(0..w.len().min(400));
                    w[i] = rng.random();
                }
            }
            _ => {
                let i = rng.random_range(0..w.len());
                w[i] ^= 1 << rng.random_range(0..8);
            }
        }
        if load("model.safetensors", &w).is_err() {
            panic!("loading panicked on a mutated model.safetensors");
        }
    }
    eprintln!("checkpoint loader: {tried} malformed inputs, no panic");
    std::fs::remove_dir_all(&run).unwrap();
}

/// Random numbers for every numeric flag of `run`: each ends with an error (exit 1) or a
/// usage error (exit 2), before any work, since the output folder `/` is always refused.
#[test]
fn numeric_arguments_give_errors_never_panics() {
    let mut rng = StdRng::seed_from_u64(4);
    let numbers = [
        "0",
        "1",
        "-1",
        "3",
        "1e13",
        "1e400",
        "NaN",
        "inf",
        "-inf",
        "0.5",
        "18446744073709551615",
        "18446744073709551616",
        "4294967296",
        "",
        "1_000",
        "0x10",
    ];
    let flags = ["--sites", "--budget", "--samples", "--steps", "--max-epochs", "--patience"];
    let floats = ["--lr"];
    let mut tried = 0;
    for _ in 0..150 {
        tried += 1;
        let mut args = vec!["run".to_string(), "--task".into(), "hier-gaussian-linear".into()];
        for f in flags.iter().chain(&floats) {
            args.push(f.to_string());
            args.push(numbers[rng.random_range(0..numbers.len())].to_string());
        }
        args.extend(["--out".to_string(), "/".to_string()]);
        let ran = tfmpe(&args).run();
        let code = ran.status.code();
        assert!(
            matches!(code, Some(1) | Some(2)) && !ran.stderr.contains("panicked"),
            "`{}` ended with {:?}:\n{}",
            ran.command,
            ran.status,
            ran.stderr
        );
    }
    eprintln!("command line: {tried} argument sets, no panic");
}
