//! The command line as a user meets it: bad input gives a clear error (exit code 1, a message
//! naming the input and the fix), never a panic; `info` and `sample` honour their contracts.

#[path = "common/mod.rs"]
mod common;

use std::path::PathBuf;

use common::bin::tfmpe;

fn temp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tfmpe-cli-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs and expects a clean failure (an error message, no panic) whose message contains every `needle`.
fn fails_with(args: &[&str], needles: &[&str]) {
    tfmpe(args).fails_with(needles);
}

#[test]
fn unknown_task_lists_the_known_ones() {
    let out = temp("task");
    let o = out.to_str().unwrap();
    fails_with(
        &["run", "--task", "nope", "--sites", "3", "--budget", "1000", "--out", o],
        &["unknown task `nope`", "hier-gaussian-linear"],
    );
}

#[test]
fn bad_observation_files_are_named() {
    let dir = temp("obs");
    let o = dir.to_str().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    };
    let base = [
        "run",
        "--task",
        "hier-gaussian-linear",
        "--sites",
        "3",
        "--budget",
        "1000",
        "--out",
        o,
        "--observation",
    ];
    fn with<'a>(base: &[&'a str], f: &'a str) -> Vec<&'a str> {
        base.iter().copied().chain([f]).collect()
    }
    let nan = write("nan.csv", "y.0,y.1,y.2\n0.5,NaN,1\n");
    fails_with(&with(&base, &nan), &["`y.1`", "finite"]);
    let text = write("text.csv", "y.0,y.1,y.2\n0.5,abc,1\n");
    fails_with(&with(&base, &text), &["text.csv", "line 2", "`abc` is not a number"]);
    let short = write("short.csv", "y.0,y.1,y.2\n0.5,1\n");
    fails_with(&with(&base, &short), &["2 values", "3 columns"]);
    let names = write("names.csv", "a,b,c\n1,2,3\n");
    fails_with(&with(&base, &names), &["column 1 is `a` where `y.0` belongs", "y.0,y.1,y.2"]);
    let sites = write("sites.csv", "y.0,y.1\n1,2\n");
    fails_with(&with(&base, &sites), &["2 sites", "--sites is 3"]);
    let two = write("two.csv", "dataset,y.0,y.1,y.2\n0,1,2,3\n1,1,2,3\n");
    fails_with(&with(&base, &two), &["exactly one data set, found 2", "tfmpe sample"]);
    fails_with(&with(&base, "/nonexistent/obs.csv"), &["/nonexistent/obs.csv"]);
}

#[test]
fn budget_smaller_than_a_batch_is_refused() {
    let out = temp("budget");
    let o = out.to_str().unwrap();
    fails_with(
        &["run", "--task", "hier-gaussian-linear", "--sites", "3", "--budget", "50", "--out", o],
        &["--budget 50", "batch"],
    );
}

/// Settings no run can use are refused before any simulation, each naming its flag and the
/// fix, never with a panic or an allocator abort, and no output folder is created.
#[test]
fn impossible_run_settings_are_refused_before_any_work() {
    let out = temp("settings").join("never");
    let o = out.to_str().unwrap();
    let run = |extra: &[&str]| -> Vec<String> {
        let mut args: Vec<String> = ["run", "--task", "hier-gaussian-linear", "--out", o]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let huge = "18446744073709551615";
    let cases: &[(&[&str], &[&str])] = &[
        (&["--sites", huge, "--budget", "1000"], &["too large", "--sites"]),
        (&["--sites", "4294967296", "--budget", "1000"], &["--sites"]),
        (&["--sites", "3", "--budget", huge], &["--budget"]),
        (&["--sites", "3", "--budget", "10000000000000"], &["memory", "--budget"]),
        (&["--sites", "0", "--budget", "1000"], &["--sites must be at least 1"]),
        (&["--sites", "3", "--budget", "1000", "--lr", "NaN"], &["--lr NaN", "finite positive"]),
        (&["--sites", "3", "--budget", "1000", "--lr", "inf"], &["--lr inf"]),
        (&["--sites", "3", "--budget", "1000", "--max-epochs", "0"], &["--max-epochs"]),
        (&["--sites", "3", "--budget", "1000", "--batch-size", "0"], &["--batch-size"]),
        // 110 simulations leave 99 for training after the validation split: no batch of 100.
        (&["--sites", "3", "--budget", "110"], &["99 of them for training", "--batch-size"]),
        // direct: 1000 / 50 = 20 data sets, fewer than a batch.
        (
            &["--sites", "50", "--budget", "1000", "--method", "direct"],
            &["20 data sets", "fewer than one batch"],
        ),
        (&["--sites", "3", "--budget", "1000", "--lc2st", "--no-eval"], &["--lc2st", "--no-eval"]),
        (
            &["--sites", "3", "--budget", "1000", "--samples", "100000000000"],
            &["draw fewer samples"],
        ),
        (
            &["--sites", "3", "--budget", "1000", "--steps", "4000000000"],
            &["more than any flow needs"],
        ),
        (
            &["--sites", "3", "--budget", "1000", "--lc2st", "--lc2st-data-sets", "5"],
            &["at least 20"],
        ),
        (
            &["--sites", "3", "--budget", "1000", "--lc2st", "--lc2st-nulls", "0"],
            &["--lc2st-nulls"],
        ),
        (&["--sites", "3", "--budget", "1000", "--heads", "5"], &["width 64", "5 heads"]),
        (&["--sites", "3", "--budget", "1000", "--width", "0"], &["--width must be at least 1"]),
        (&["--sites", "3", "--budget", "1000", "--fourier-dim", "7"], &["--fourier-dim 7"]),
        (&["--sites", "3", "--budget", "1000", "--width", "1000000"], &["smaller sizes"]),
        (
            &["--sites", "3", "--budget", "1000", "--method", "joint", "--max-sites", "5"],
            &["--method joint", "--max-sites"],
        ),
        (
            &["--sites", "3", "--budget", "1000", "--method", "sequential"],
            &["lf, direct, pf or joint"],
        ),
        (&["--sites", "3", "--budget", "1000", "--rounds", "0"], &["--rounds must be at least 1"]),
        (
            &["--sites", "3", "--budget", "1000", "--rounds", "2", "--method", "pf"],
            &["--rounds needs --method lf", "drop --method pf"],
        ),
        // 1000 simulations in 2 rounds: 500 in the first, 450 for training, fewer than a batch
        // of 1000.
        (
            &["--sites", "3", "--budget", "1000", "--rounds", "2", "--batch-size", "1000"],
            &["in the first round", "fewer than one batch"],
        ),
        (
            &["--sites", "3", "--budget", "1000", "--method", "pf", "--fresh-sets"],
            &["--fresh-sets needs --method lf"],
        ),
        (
            &["--sites", "3", "--budget", "1000", "--method", "direct", "--max-sites", "5"],
            &["--max-sites needs --method lf or pf"],
        ),
        (
            &["--sites", "3", "--budget", "1000", "--method", "pf", "--synthetic-sets", "9"],
            &["--synthetic-sets needs --method lf or joint", "--method pf"],
        ),
        (
            &["--sites", "3", "--budget", "1000", "--synthetic-sets", "0"],
            &["--synthetic-sets must be at least 1"],
        ),
        (
            &["--sites", "3", "--budget", "1000", "--synthetic-sets", "50"],
            &["--synthetic-sets 50 is fewer than one batch of 100", "--batch-size"],
        ),
        (&["--sites", "3", "--budget", "1000", "--synthetic-sets", "100000000000000"], &["memory"]),
        (
            &[
                "--sites",
                "3",
                "--budget",
                "1000",
                "--method",
                "joint",
                "--surrogate-scaling",
                "marginal",
            ],
            &["--surrogate-scaling needs --method lf", "--method joint"],
        ),
        (
            &["--sites", "3", "--budget", "1000", "--surrogate-scaling", "affine"],
            &["unknown scaling `affine`", "conditional or marginal"],
        ),
        (
            &[
                "--sites",
                "3",
                "--budget",
                "1000",
                "--method",
                "pf",
                "--posterior-scaling",
                "conditional",
            ],
            &["--posterior-scaling needs --method lf or direct", "--method pf"],
        ),
    ];
    for (extra, needles) in cases {
        let args = run(extra);
        fails_with(&args.iter().map(String::as_str).collect::<Vec<_>>(), needles);
        assert!(!out.exists(), "{extra:?} created the output folder");
    } // A model without a prior density cannot weigh a proposal.
    let args = ["run", "--task", "hier-two-moons", "--sites", "3", "--budget", "1000"];
    fails_with(
        &[&args[..], &["--rounds", "2", "--out", o]].concat(),
        &["hier-two-moons", "density"],
    );
    assert!(!out.exists());
}

#[test]
fn unavailable_backends_say_what_is_missing() {
    fails_with(&["info", "--backend", "tpu"], &["unknown backend `tpu`"]);
    let out = tfmpe(&["info"]).backend("quantum").run();
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
}

/// A machine with no desktop session (no `XDG_RUNTIME_DIR`, as on a server or in CI) gets no
/// error line from probing Vulkan: Mesa's device-select layer, where it is installed, would
/// have libwayland print one per instance.
#[test]
fn info_without_a_desktop_session_prints_no_wayland_error() {
    let out = tfmpe(&["info"]).without("XDG_RUNTIME_DIR").without("NODEVICE_SELECT").succeeds();
    assert!(!out.stderr.contains("XDG_RUNTIME_DIR"), "{}:\n{}", out.command, out.stderr);
}

#[test]
fn info_json_lists_every_backend() {
    let v = tfmpe(&["info", "--json"]).succeeds().json();
    let names: Vec<&str> =
        v["backends"].as_array().unwrap().iter().map(|b| b["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["cpu", "cuda", "wgpu"]);
    assert_eq!(v["backends"][0]["available"], true);
    assert!(v["cuda_kernels"].is_boolean());
}

/// Without a usable CUDA device (here: no NVIDIA driver), asking for CUDA is a clean error
/// that repeats the reason `info --json` gives, and nothing panics. On a GPU machine the same
/// command must open it.
#[test]
fn cuda_without_a_device_says_why() {
    let v = tfmpe(&["info", "--json", "--backend", "cpu"]).succeeds().json();
    let cuda = &v["backends"][1];
    assert_eq!(cuda["name"], "cuda");
    if cuda["available"] == true {
        tfmpe(&["info", "--backend", "cuda"]).succeeds();
        return;
    }
    assert!(
        std::env::var("TFMPE_REQUIRE_CUDA").map_or(true, |v| v != "1"),
        "TFMPE_REQUIRE_CUDA=1 but cuda is unavailable: {cuda}"
    );
    let reason = cuda["reason"].as_str().unwrap();
    assert!(
        ["libcuda", "no CUDA device", "without CUDA kernels", "without the `cuda` feature"]
            .iter()
            .any(|r| reason.contains(r)),
        "unclear reason: {reason}"
    );
    assert!(cuda["device"].is_null());
    let dir = temp("cuda");
    fails_with(
        &[
            "run",
            "--task",
            "hier-gaussian-linear",
            "--sites",
            "2",
            "--budget",
            "200",
            "--backend",
            "cuda",
            "--out",
            dir.to_str().unwrap(),
        ],
        &["backend `cuda` is not available", reason],
    );
    fails_with(&["info", "--backend", "cuda"], &[reason]);
}

#[test]
fn sample_refuses_a_folder_without_a_checkpoint() {
    let dir = temp("nockpt");
    let obs = dir.join("obs.csv");
    std::fs::write(&obs, "y.0\n1\n").unwrap();
    let out = dir.join("s.csv");
    fails_with(
        &[
            "sample",
            "--model",
            dir.to_str().unwrap(),
            "--observation",
            obs.to_str().unwrap(),
            "--samples",
            "10",
            "--out",
            out.to_str().unwrap(),
        ],
        &["config.json"],
    );
}

/// `bench --json` prints one JSON object whose rate is positive and finite (docs/architecture.md#bench-json), for
/// each workload, here on tiny shapes.
#[test]
fn bench_prints_one_json_object_per_workload() {
    let json = |args: &[&str]| tfmpe(args).succeeds().json();
    let rate = |o: &serde_json::Value, key: &str| {
        let v = o[key].as_f64().unwrap_or_else(|| panic!("no `{key}` in {o}"));
        assert!(v.is_finite() && v > 0.0, "{key} = {v} in {o}");
        v
    };
    let cpu = ["--backend", "cpu", "--json", "--repeats", "1"];
    let w1 = json(
        &[
            &["bench", "train-step", "--sites", "3", "--batch", "4"][..],
            &["--steps-per-repeat", "2"],
            &cpu,
        ]
        .concat(),
    );
    assert_eq!((w1["workload"].as_str(), w1["backend"].as_str()), (Some("W1"), Some("cpu")));
    rate(&w1, "steps_per_s");
    let w2 = json(
        &[&["bench", "sample", "--sites", "3", "--n", "7", "--steps", "3"][..], &cpu].concat(),
    );
    assert_eq!(w2["workload"], "W2");
    rate(&w2, "samples_per_s");
    let bf16 = ["bench", "sample", "--sites", "3", "--n", "7", "--steps", "3", "--precision"];
    let w2 = json(&[&bf16[..], &["bf16"], &cpu].concat());
    assert_eq!((w2["workload"].as_str(), w2["precision"].as_str()), (Some("W2"), Some("bf16")));
    rate(&w2, "samples_per_s");
    fails_with(&[&bf16[..], &["fp8"], &cpu].concat(), &["unknown precision `fp8`", "bf16"]);

    let args = ["--tokens", "33", "--batch", "2", "--heads", "3", "--head-dim", "5"];
    let small = ["--iters", "2", "--copy-mib", "1"];
    let att = json(&[&["bench", "attention"][..], &args, &small, &cpu].concat());
    assert_eq!(att["workload"], "attention-fwd");
    let (per_s, gb, gflop, copy) = (
        rate(&att, "fwd_per_s"),
        rate(&att, "gb_per_s"),
        rate(&att, "gflop_per_s"),
        rate(&att, "copy_gb_per_s"),
    );
    // Q, K, V read and O written (2·33·15 floats each) plus the log-sum-exp (2·3·33 floats);
    // 4·N²·head_dim FLOP per batch element and head.
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b;
    assert!(close(gb, per_s * 4.0 * (4.0 * 990.0 + 198.0) / 1e9), "{att}");
    assert!(close(gflop, per_s * 4.0 * 6.0 * 33.0 * 33.0 * 5.0 / 1e9), "{att}");
    assert!(close(rate(&att, "fraction_of_copy"), gb / copy), "{att}");

    fails_with(
        &[&["bench", "attention", "--tokens", "0"][..], &cpu].concat(),
        &["--tokens 0", "at least 1"],
    );
}

#[test]
fn bad_calibration_options_are_named_before_any_work() {
    let dir = temp("eval");
    let o = dir.to_str().unwrap();
    fails_with(
        &["eval", "--out", o, "--calibration", "20", "--calibration-draws", "0"],
        &["--calibration-draws must be at least 1"],
    );
    fails_with(
        &["eval", "--out", o, "--calibration", "20", "--solver", "rk5"],
        &["unknown solver `rk5`", "rk4"],
    );
}

/// A run never overwrites a folder silently: a non-empty one is refused; `--force` removes the
/// earlier run's files (a stale `true_params.csv` too) and keeps any other file; the root is
/// refused. `sample` writes `-` to stdout, through a symbolic link without replacing it, and
/// into a FIFO in place.
#[test]
fn outputs_are_never_overwritten_or_replaced_silently() {
    let dir = temp("durable");
    let run_dir = dir.join("run");
    let o = run_dir.to_str().unwrap();
    let small = ["--sites", "3", "--budget", "200", "--max-epochs", "1", "--batch-size", "10"];
    let run = |extra: &[&str]| -> Vec<String> {
        let mut a: Vec<&str> = vec!["run", "--task", "hier-gaussian-linear", "--out", o];
        a.extend(small);
        a.extend(["--samples", "20", "--no-eval"]);
        a.extend(extra);
        a.iter().map(|s| s.to_string()).collect()
    };
    // Without a terminal, progress comes as lines with times; --json prints the headline.
    let first = tfmpe(&run(&["--json"])).succeeds();
    assert!(run_dir.join("true_params.csv").is_file());
    let headline: serde_json::Value = serde_json::from_str(first.stdout.trim()).unwrap();
    assert_eq!(headline["out"], o);
    assert!(headline["total_s"].as_f64().is_some_and(|t| t > 0.0), "{headline}");
    assert!(first.stderr.contains("posterior epochs 1/1") && first.stderr.contains("s to go"));
    fails_with(
        &run(&[]).iter().map(String::as_str).collect::<Vec<_>>(),
        &["already holds", "--force"],
    );

    std::fs::write(run_dir.join("notes.txt"), "mine").unwrap();
    let obs = dir.join("obs.csv");
    std::fs::write(&obs, "y.0,y.1,y.2\n0.1,0.2,0.3\n").unwrap();
    tfmpe(&run(&["--force", "--observation", obs.to_str().unwrap()])).succeeds();
    assert!(!run_dir.join("true_params.csv").exists(), "a stale true_params.csv was kept");
    assert_eq!(std::fs::read_to_string(run_dir.join("notes.txt")).unwrap(), "mine");
    assert!(run_dir.join("samples.csv").is_file());

    let mut root: Vec<&str> = vec!["run", "--task", "hier-gaussian-linear", "--out", "/"];
    root.extend(small);
    fails_with(&root, &["root of the file system"]);

    let sample = |out: &str| {
        let o = obs.to_str().unwrap();
        tfmpe(&["sample", "--model", run_dir.to_str().unwrap(), "--observation", o]).args(&[
            "--samples",
            "5",
            "--solver",
            "euler",
            "--steps",
            "2",
            "--out",
            out,
        ])
    };
    sample("-").args(&["--chunk", "0"]).fails_with(&["--chunk must be at least 1"]);
    // The log density: bad parameter files and settings are named; outside the support, −inf.
    let params = dir.join("params.csv");
    std::fs::write(&params, "sigma,mu.0,mu.1\n0.5,0,0\n").unwrap();
    let log_prob = |extra: &[&str]| {
        let (m, o) = (run_dir.to_str().unwrap(), obs.to_str().unwrap());
        tfmpe(&["log-prob", "--model", m, "--observation", o, "--params"])
            .args(&[params.to_str().unwrap(), "--steps", "2", "--out", "-"])
            .args(extra)
    };
    log_prob(&[]).fails_with(&["params.csv", "no column `mu.2`", "sigma,mu.0,mu.1,mu.2"]);
    std::fs::write(&params, "mu.2,sigma,mu.0,mu.1,extra\n0,0.5,0,0,7\n0,-1,0,0,7\n").unwrap();
    log_prob(&["--divergence", "nope"]).fails_with(&["unknown divergence `nope`"]);
    log_prob(&["--divergence", "hutchinson", "--probes", "0"]).fails_with(&["at least 1 probe"]);
    let out = log_prob(&[]).succeeds().stdout;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "sigma,mu.0,mu.1,mu.2,log_prob", "{out}");
    assert!(lines[1].starts_with("0.5,0,0,0,") && lines[2].ends_with(",-inf"), "{out}");
    tfmpe(&["eval", "--out", o, "--expected-coverage"])
        .fails_with(&["expected coverage", "--calibration"]);
    let stdout = sample("-").succeeds().stdout;
    assert!(
        stdout.starts_with("sigma,mu.0,mu.1,mu.2\n") && stdout.lines().count() == 6,
        "{stdout}"
    );

    let (target, link) = (dir.join("target.csv"), dir.join("link.csv"));
    std::fs::write(&target, "old").unwrap();
    std::os::unix::fs::symlink(&target, &link).unwrap();
    sample(link.to_str().unwrap()).succeeds();
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    assert!(std::fs::read_to_string(&target).unwrap().starts_with("sigma,"));

    let fifo = dir.join("fifo");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    if made.is_ok_and(|s| s.success()) {
        let path = fifo.clone();
        let reader = std::thread::spawn(move || std::fs::read_to_string(path).unwrap());
        sample(fifo.to_str().unwrap()).succeeds();
        assert!(reader.join().unwrap().starts_with("sigma,"));
        use std::os::unix::fs::FileTypeExt;
        assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo(), "the FIFO was replaced");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn calibration_from_too_few_data_sets_is_refused() {
    let dir = temp("fewcal");
    let o = dir.to_str().unwrap();
    fails_with(&["eval", "--out", o, "--calibration", "1"], &["--calibration 1", "at least 10"]);
    fails_with(&["eval", "--out", o, "--reference-samples", "100000000"], &["--reference-samples"]);
    let run = ["run", "--task", "hier-gaussian-linear", "--sites", "3", "--budget", "1000"];
    let mut args: Vec<&str> = run.to_vec();
    args.extend(["--calibration", "3", "--out", o]);
    fails_with(&args, &["--calibration 3"]);
}

/// Every option of every command says what it is in `-h` (more than its default).
#[test]
fn every_option_has_a_description() {
    let commands: [&[&str]; 8] = [
        &["run"],
        &["sample"],
        &["eval"],
        &["benchmark"],
        &["info"],
        &["bench", "train-step"],
        &["bench", "sample"],
        &["bench", "attention"],
    ];
    let mut missing = Vec::new();
    for cmd in commands {
        let help = tfmpe(&[cmd, &["-h"]].concat()).succeeds().stdout;
        // An option's text follows it on its line, or on the next lines when clap puts it
        // there (wide help): everything up to the next option.
        let mut options: Vec<(String, String)> = Vec::new();
        for line in help.lines().map(str::trim_start) {
            if line.starts_with('-') {
                let (flag, text) = line.split_once("  ").unwrap_or((line, ""));
                options.push((flag.to_string(), text.to_string()));
            } else if let Some(last) = options.last_mut() {
                last.1.push(' ');
                last.1.push_str(line);
            }
        }
        for (flag, text) in options {
            // Drop the annotations clap adds: [default: …], [env: …], [possible values: …].
            let mut plain = String::new();
            let mut depth = 0;
            for c in text.chars() {
                match c {
                    '[' => depth += 1,
                    ']' => depth -= 1,
                    _ if depth == 0 => plain.push(c),
                    _ => {}
                }
            }
            if plain.trim().is_empty() {
                missing.push(format!("{}: {flag}", cmd.join(" ")));
            }
        }
    }
    assert!(missing.is_empty(), "options without a description:\n{}", missing.join("\n"));
}

/// A training whose loss becomes non-finite keeps its best weights and the run writes its
/// files, but the command fails and names the step, so a batch job does not take the results
/// for a converged run.
#[test]
fn a_non_finite_training_loss_fails_the_run() {
    let dir = temp("nonfinite").join("run");
    let o = dir.to_str().unwrap();
    let args = ["run", "--task", "hier-gaussian-linear", "--sites", "3", "--budget", "200"];
    let more = ["--batch-size", "10", "--max-epochs", "3", "--lr", "1e30", "--no-eval", "--out", o];
    let all: Vec<&str> = args.iter().chain(&more).copied().collect();
    fails_with(&all, &["training loss became", "at step", "lower --lr"]);
    let report = std::fs::read_to_string(dir.join("report.json")).unwrap();
    assert!(report.contains("non_finite_loss"), "{report}");
}

/// A run killed after its posterior's first epochs (its surrogate saved, the posterior's epoch
/// state written), then resumed, trains on from the last completed epoch and writes the same
/// losses and samples as a run never interrupted; resuming with other settings is refused.
#[test]
fn a_killed_run_resumes_to_the_same_results() {
    let dir = temp("resume");
    let args = |out: &std::path::Path, extra: &[&str]| -> Vec<String> {
        let base = ["run", "--task", "hier-gaussian-linear", "--sites", "3", "--budget", "1000"];
        // One synthetic set per training simulation: the default pool trains five times as
        // long, and the test runs the whole run twice.
        let more = ["--max-epochs", "30", "--lr", "1e-3", "--samples", "200", "--no-eval"];
        let pool = ["--synthetic-sets", "900"];
        let out = ["--out", out.to_str().unwrap()];
        let all = base.iter().chain(&more).chain(&pool).chain(&out).chain(extra);
        all.map(|s| s.to_string()).collect()
    };
    let (a, b) = (dir.join("a"), dir.join("b"));
    tfmpe(&args(&a, &[])).succeeds();

    let mut child = tfmpe(&args(&b, &[])).spawn();
    let saved = b.join("posterior").join("epoch.safetensors");
    let start = std::time::Instant::now();
    while !saved.exists() && start.elapsed().as_secs() < 120 {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    child.kill().ok();
    child.wait().unwrap();
    let mid = saved.exists() && !b.join("posterior").join("training.json").exists();
    eprintln!("killed while the posterior trained, after an epoch: {mid}");
    let resumed = tfmpe(&args(&b, &["--resume"])).succeeds();
    if mid {
        assert!(resumed.stderr.contains("posterior: resumed after epoch"), "{}", resumed.stderr);
    }
    let read = |d: &std::path::Path, f: &str| std::fs::read_to_string(d.join(f)).unwrap();
    assert_eq!(read(&a, "samples.csv"), read(&b, "samples.csv"), "the resumed samples differ");
    let losses = |d: &std::path::Path| {
        let r: serde_json::Value = serde_json::from_str(&read(d, "report.json")).unwrap();
        r["losses"]["posterior"]["val_losses"].clone()
    };
    assert_eq!(losses(&a), losses(&b), "the resumed training's losses differ");
    assert!(!saved.exists(), "the epoch state outlived its finished network");

    fails_with(
        &args(&b, &["--resume", "--seed", "9"]).iter().map(String::as_str).collect::<Vec<_>>(),
        &["other settings", "config.seed"],
    );
    fails_with(
        &args(&dir.join("new"), &["--resume"]).iter().map(String::as_str).collect::<Vec<_>>(),
        &["no run to resume"],
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn model_file_mistakes_fail_cleanly_before_any_work() {
    let dir = temp("model-file");
    let o = dir.join("out");
    let o = o.to_str().unwrap();
    let run = |file: &str| -> Vec<String> {
        ["run", "--model-file", file, "--sites", "3", "--budget", "200", "--out", o]
            .iter()
            .map(|s| s.to_string())
            .collect()
    };
    let missing = dir.join("missing.toml");
    let args = run(missing.to_str().unwrap());
    tfmpe(&args).fails_with(&["missing.toml"]);
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "format = 1\nname = \"m\"\nglobals = 3\n").unwrap();
    tfmpe(&run(bad.to_str().unwrap())).fails_with(&["bad.toml", "globals"]);
    // A simulator that fails stops the run with its standard error quoted.
    let failing = dir.join("failing.toml");
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/model-file/gaussian-linear.toml"
    ))
    .unwrap()
    .replace(
        "command = [\"python3\", \"simulate.py\"]",
        "command = [\"sh\", \"-c\", \"echo 'no licence for the solver' >&2; exit 2\"]",
    );
    std::fs::write(&failing, text).unwrap();
    tfmpe(&run(failing.to_str().unwrap()))
        .fails_with(&["simulator failed", "no licence for the solver"]);
    // --task and --model-file name the model twice.
    let both = ["run", "--task", "hier-gaussian", "--model-file", "x.toml", "--sites", "3"];
    tfmpe(&both).fails_with(&["--model-file"]);
}

/// The network sizes given to `run` reach both networks and their checkpoints, and `sample`
/// rebuilds the network from them.
#[test]
fn network_sizes_reach_both_checkpoints() {
    let dir = temp("arch").join("run");
    let o = dir.to_str().unwrap();
    let args = ["run", "--task", "hier-gaussian-linear", "--sites", "3", "--budget", "200"];
    let sizes = ["--width", "24", "--layers", "1", "--heads", "3", "--group-dim", "5"];
    let more = ["--batch-size", "20", "--max-epochs", "1", "--no-eval", "--samples", "10"];
    let all: Vec<&str> =
        args.iter().chain(&sizes).chain(&more).chain(&["--out", o]).copied().collect();
    tfmpe(&all).succeeds();
    for net in ["posterior", "surrogate"] {
        let text = std::fs::read_to_string(dir.join(net).join("config.json")).unwrap();
        let config: serde_json::Value = serde_json::from_str(&text).unwrap();
        let arch = &config["model"]["architecture"];
        for (key, want) in [("width", 24), ("layers", 1), ("heads", 3), ("group_dim", 5)] {
            assert_eq!(arch[key], want, "{net} {key}: {arch}");
        }
    }
    let obs = dir.join("observation.csv");
    let drawn = dir.join("again.csv");
    tfmpe(&["sample", "--model", o, "--observation", obs.to_str().unwrap()])
        .args(&["--samples", "10", "--out", drawn.to_str().unwrap()])
        .succeeds();
}

/// `--synthetic-sets` sizes LF's pool without simulating more: 400 sets in batches of 20 are
/// 20 posterior steps an epoch from 200 simulations (180 for training, 9 steps by default).
#[test]
fn synthetic_sets_size_the_posterior_s_pool() {
    let dir = temp("pool").join("run");
    let o = dir.to_str().unwrap();
    let args = ["run", "--task", "hier-gaussian-linear", "--sites", "3", "--budget", "200"];
    let more = ["--batch-size", "20", "--max-epochs", "1", "--no-eval", "--samples", "10"];
    let all: Vec<&str> = args.iter().chain(&more).copied().collect();
    // By default five sets per training simulation (180 of them here).
    for (pool, steps, sets) in [(None, 45, 900), (Some("400"), 20, 400)] {
        let extra = pool.map(|n| vec!["--synthetic-sets", n]).unwrap_or_default();
        tfmpe(&[&all[..], &extra[..], &["--force", "--out", o]].concat()).succeeds();
        let text = std::fs::read_to_string(dir.join("report.json")).unwrap();
        let report: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(report["simulator_calls"], 200);
        assert_eq!(report["losses"]["posterior"]["steps"], steps, "{pool:?}");
        assert_eq!(report["synthetic_sets"].as_u64(), Some(sets));
    }
}

/// LF's surrogate standardises conditionally by default where the observations' scale varies
/// with the parameters (hier-gaussian-linear's σ, hier-brownian's times), marginally where it
/// is constant (hier-gaussian) or when told, and report.json says which, with the fit of the conditional location and
/// scale; pf has no surrogate and no such key.
#[test]
fn the_surrogate_scaling_is_reported() {
    let dir = temp("scaling").join("run");
    let o = dir.to_str().unwrap();
    let args = ["run", "--sites", "3", "--budget", "200"];
    let more = ["--max-epochs", "1", "--no-eval", "--samples", "10", "--force", "--out", o];
    let all: Vec<&str> = args.iter().chain(&more).copied().collect();
    let gl = ["--task", "hier-gaussian-linear"];
    for (extra, scaling) in [
        (&gl[..], Some("conditional")),
        (&["--task", "hier-gaussian"][..], Some("marginal")),
        (&[&gl[..], &["--surrogate-scaling", "marginal"]].concat()[..], Some("marginal")),
        (&["--task", "hier-brownian"][..], Some("conditional")),
        (&[&gl[..], &["--method", "pf"]].concat()[..], None),
    ] {
        tfmpe(&[&all[..], extra].concat()).succeeds();
        let text = std::fs::read_to_string(dir.join("report.json")).unwrap();
        let report: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(report["surrogate_scaling"].as_str(), scaling, "{extra:?}");
        let fit = &report["losses"]["surrogate"]["scaling"];
        assert_eq!(fit.is_object(), scaling == Some("conditional"), "{extra:?}: {fit}");
        if scaling == Some("conditional") {
            // The fit's accuracy is src/sbi/scaling.rs's test; 20 validation simulations
            // score it here.
            for key in ["location_val_mse", "log_scale_val_mse"] {
                let v = fit[key].as_f64().unwrap();
                assert!(v.is_finite() && v > 0.0, "{fit}");
            }
        }
        // The surrogate's checkpoint keeps the fit it samples with.
        let config = std::fs::read_to_string(dir.join("surrogate/config.json")).unwrap_or_default();
        assert_eq!(config.contains("\"log_scale\""), scaling == Some("conditional"), "{extra:?}");
    }
}

/// The posterior standardises its locals conditionally unless told otherwise, and report.json
/// says which; a conditionally scaled posterior keeps its scaling in its checkpoint, and
/// `sample` (with `--log-prob`) reads it back.
#[test]
fn the_posterior_scaling_is_reported_and_sampled_with() {
    let dir = temp("posterior-scaling");
    let run_dir = dir.join("run");
    let o = run_dir.to_str().unwrap();
    let args = ["run", "--task", "hier-gaussian-linear", "--sites", "3"];
    let more = ["--max-epochs", "1", "--no-eval", "--samples", "10", "--force", "--out", o];
    let all: Vec<&str> = args.iter().chain(&more).copied().collect();
    let marginal = ["--posterior-scaling", "marginal"];
    for (extra, scaling) in [
        (&["--budget", "200"][..], Some("conditional")),
        (&["--budget", "200", marginal[0], marginal[1]][..], Some("marginal")),
        // direct trains on budget / 3 sets: one batch of 100 needs 900 simulations.
        (&["--budget", "900", "--method", "direct"][..], Some("conditional")),
        (&["--budget", "200", "--method", "pf"][..], None),
    ] {
        tfmpe(&[&all[..], extra].concat()).succeeds();
        let text = std::fs::read_to_string(run_dir.join("report.json")).unwrap();
        let report: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(report["posterior_scaling"].as_str(), scaling, "{extra:?}");
        let fit = &report["losses"]["posterior"]["scaling"];
        let scaled = scaling == Some("conditional");
        assert_eq!(fit.is_object(), scaled, "{extra:?}: {fit}");
        let config = std::fs::read_to_string(run_dir.join("posterior/config.json")).unwrap();
        assert_eq!(config.contains("\"local_scaling\""), scaled, "{extra:?}");
        if scaled {
            let out = dir.join("draws.csv");
            let (obs, model) = (run_dir.join("observation.csv"), run_dir.to_str().unwrap());
            tfmpe(&[
                "sample",
                "--model",
                model,
                "--observation",
                obs.to_str().unwrap(),
                "--samples",
                "20",
                "--log-prob",
                "--out",
                out.to_str().unwrap(),
            ])
            .succeeds();
            let text = std::fs::read_to_string(&out).unwrap();
            let rows: Vec<&str> = text.lines().collect();
            assert_eq!(rows.len(), 21, "{text}");
            assert!(rows[0].ends_with("log_prob"), "{}", rows[0]);
            for row in &rows[1..] {
                let lp: f64 = row.rsplit(',').next().unwrap().parse().unwrap();
                assert!(lp.is_finite(), "{row}");
            }
        }
    }
}
