//! Build script: validates every WGSL shader with naga, so a shader error is a build error with
//! file, line and message, and lists the shaders for the wgpu backend to embed.
//!
//! Each `shaders/NAME.wgsl` is compiled with `shaders/common.wgsl` prepended (the WGSL twin of
//! `kernels/common.cuh`); diagnostics are reported against the file they came from.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
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
        panic!(
            "{} WGSL shader(s) failed validation (see above)",
            failures.len()
        );
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
        let line = e
            .spans()
            .next()
            .map(|(span, _)| span.location(&source).line_number as usize);
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
