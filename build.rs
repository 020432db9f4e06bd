//! Build script: validates every WGSL shader with naga, so a shader error is a build error with
//! file, line and message, and lists the shaders for the wgpu backend to embed.
//!
//! Each `shaders/NAME.wgsl` is compiled with `shaders/common.wgsl` prepended (the WGSL twin of
//! `kernels/common.cuh`); diagnostics are reported against the file they came from.
//!
//! With the `cuda` feature it also compiles every `kernels/*.cu` into a fatbin with `nvcc`, when
//! one is found, and embeds them (see [`cuda_kernels`]).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    cuda_kernels(&root);
    let dir = root.join("shaders");
    println!("cargo:rerun-if-changed={}", dir.display());
    let common = read(&dir.join("common.wgsl"));
    let mut stems: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "wgsl"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .filter(|s| s != "common")
        .collect();
    stems.sort();

    let mut failures = Vec::new();
    for stem in &stems {
        let path = dir.join(format!("{stem}.wgsl"));
        println!("cargo:rerun-if-changed={}", path.display());
        let body = read(&path);
        if let Err(msg) = validate(&common, &body, &path) {
            failures.push(msg);
        }
    }
    if !failures.is_empty() {
        for f in &failures {
            eprintln!("{f}");
        }
        panic!("{} WGSL shader(s) failed validation (see above)", failures.len());
    }

    // `SHADERS`: (stem, source with the common prelude) for every shader.
    let mut out =
        String::from("/// Every WGSL shader: (file stem, source with `common.wgsl` prepended).\n");
    out.push_str("pub(super) const SHADERS: &[(&str, &str)] = &[\n");
    for stem in &stems {
        let _ = writeln!(
            out,
            "    ({stem:?}, concat!(include_str!({:?}), include_str!({:?}))),",
            dir.join("common.wgsl").display().to_string(),
            dir.join(format!("{stem}.wgsl")).display().to_string()
        );
    }
    out.push_str("];\n");
    let dest = Path::new(&std::env::var("OUT_DIR").unwrap()).join("shaders.rs");
    std::fs::write(&dest, out).unwrap();
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Parses and validates `common + body`; an error names the shader file and the line in it.
fn validate(common: &str, body: &str, path: &Path) -> Result<(), String> {
    let source = format!("{common}{body}");
    let prelude_lines = common.lines().count();
    let name = path.display().to_string();
    let module = naga::front::wgsl::parse_str(&source).map_err(|e| {
        let line = e.location(&source).map(|l| l.line_number as usize);
        locate(&name, prelude_lines, line, &e.emit_to_string(&source))
    })?;
    let mut validator = naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::all(),
    );
    validator.validate(&module).map_err(|e| {
        let line = e.spans().next().map(|(span, _)| span.location(&source).line_number as usize);
        locate(&name, prelude_lines, line, &e.emit_to_string(&source))
    })?;
    Ok(())
}

/// Maps a line of the combined source back to `common.wgsl` or the shader itself.
fn locate(name: &str, prelude: usize, line: Option<usize>, msg: &str) -> String {
    match line {
        Some(l) if l > prelude => format!("{name}:{}: {msg}", l - prelude),
        Some(l) => format!("shaders/common.wgsl:{l} (included by {name}): {msg}"),
        None => format!("{name}: {msg}"),
    }
}

/// Compiles `kernels/*.cu` into `OUT_DIR/<stem>.fatbin` (SASS for each target architecture plus
/// PTX for the newest, so newer GPUs can JIT it), writes `cuda_kernels.rs` that embeds them, and
/// sets `cfg(tfmpe_cuda_kernels)`. Without nvcc the crate still builds; the CUDA backend then
/// reports that it was built without kernels. A kernel that fails to compile is a build error.
fn cuda_kernels(root: &Path) {
    println!("cargo::rustc-check-cfg=cfg(tfmpe_cuda_kernels)");
    if std::env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    let dir = root.join("kernels");
    println!("cargo:rerun-if-changed={}", dir.display());
    for var in ["NVCC", "CUDA_HOME", "CUDA_PATH", "TFMPE_CUDA_ARCHES"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    let Some(nvcc) = find_nvcc() else {
        println!(
            "cargo:warning=CUDA kernels were not built: no nvcc found (NVCC, PATH, CUDA_HOME, \
             CUDA_PATH, or pip's nvidia-cuda-nvcc). Install one with `python3 -m pip install \
             nvidia-cuda-nvcc==13.0.88 nvidia-nvvm==13.0.88 nvidia-cuda-crt==13.0.88` and rebuild \
             (set NVCC=/path/to/nvcc if it is not found by itself)"
        );
        return;
    };
    let arches = std::env::var("TFMPE_CUDA_ARCHES").unwrap_or_else(|_| "80 86 89 90".into());
    let arches: Vec<&str> = arches.split([' ', ',']).filter(|a| !a.is_empty()).collect();
    assert!(
        !arches.is_empty()
            && arches.iter().all(|a| a.chars().next().is_some_and(|c| c.is_ascii_digit())
                && a.chars().all(|c| c.is_ascii_alphanumeric())),
        "TFMPE_CUDA_ARCHES must list architectures such as \"80 90\""
    );
    let mut gencode = Vec::new();
    for (i, a) in arches.iter().enumerate() {
        gencode.push("-gencode".to_string());
        gencode.push(if i + 1 == arches.len() {
            format!("arch=compute_{a},code=[sm_{a},compute_{a}]")
        } else {
            format!("arch=compute_{a},code=sm_{a}")
        });
    }

    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let mut stems: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "cu"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    stems.sort();

    // One nvcc per file, as many at once as cargo gives this script jobs.
    let jobs: usize =
        std::env::var("NUM_JOBS").ok().and_then(|j| j.parse().ok()).unwrap_or(2).max(1);
    let mut failures = Vec::new();
    for chunk in stems.chunks(jobs) {
        let running: Vec<_> = chunk
            .iter()
            .map(|stem| {
                let child = Command::new(&nvcc)
                    .args(["-fatbin", "-std=c++17", "-O3"])
                    .args(&gencode)
                    .arg(format!("-I{}", dir.display()))
                    .arg("-o")
                    .arg(out.join(format!("{stem}.fatbin")))
                    .arg(dir.join(format!("{stem}.cu")))
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap_or_else(|e| panic!("cannot run {}: {e}", nvcc.display()));
                (stem, child)
            })
            .collect();
        for (stem, child) in running {
            let done = child.wait_with_output().unwrap();
            if !done.status.success() {
                failures.push(format!(
                    "kernels/{stem}.cu:\n{}{}",
                    String::from_utf8_lossy(&done.stdout),
                    String::from_utf8_lossy(&done.stderr)
                ));
            }
        }
    }
    if !failures.is_empty() {
        for f in &failures {
            eprintln!("{f}");
        }
        panic!(
            "{} CUDA kernel file(s) failed to compile with {} (see above)",
            failures.len(),
            nvcc.display()
        );
    }

    let mut src = String::from("/// Every CUDA kernel file as a fatbin: (file stem, bytes).\n");
    src.push_str("pub(super) const MODULES: &[(&str, &[u8])] = &[\n");
    for stem in &stems {
        let path = out.join(format!("{stem}.fatbin"));
        let _ = writeln!(src, "    ({stem:?}, include_bytes!({:?})),", path.display().to_string());
    }
    src.push_str("];\n");
    std::fs::write(out.join("cuda_kernels.rs"), src).unwrap();
    println!("cargo:rustc-cfg=tfmpe_cuda_kernels");
}

/// nvcc from `NVCC`, `PATH`, `CUDA_HOME`/`CUDA_PATH`, or Python's `nvidia-cuda-nvcc` package
/// (never installed from here: scripts/cuda-kernels.sh does that).
fn find_nvcc() -> Option<PathBuf> {
    let runs =
        |p: &Path| Command::new(p).arg("--version").output().is_ok_and(|o| o.status.success());
    if let Some(nvcc) = std::env::var_os("NVCC") {
        let nvcc = PathBuf::from(nvcc);
        if runs(&nvcc) {
            return Some(nvcc);
        }
        println!("cargo:warning=NVCC={} does not run", nvcc.display());
        return None;
    }
    if runs(Path::new("nvcc")) {
        return Some("nvcc".into());
    }
    for var in ["CUDA_HOME", "CUDA_PATH"] {
        if let Some(home) = std::env::var_os(var) {
            let nvcc = PathBuf::from(home).join("bin").join("nvcc");
            if runs(&nvcc) {
                return Some(nvcc);
            }
        }
    }
    // The pip package puts nvcc under site-packages/nvidia/cu13/bin (cuda_nvcc/bin before 13).
    let script = "import os, nvidia\n\
        for root in nvidia.__path__:\n\
        \x20   for sub in ('cu13', 'cuda_nvcc'):\n\
        \x20       p = os.path.join(root, sub, 'bin', 'nvcc')\n\
        \x20       if os.access(p, os.X_OK): print(p); raise SystemExit\n";
    let found = Command::new("python3").args(["-c", script]).output().ok()?;
    let path = String::from_utf8_lossy(&found.stdout).trim().to_string();
    let nvcc = PathBuf::from(path);
    (!nvcc.as_os_str().is_empty() && runs(&nvcc)).then_some(nvcc)
}
