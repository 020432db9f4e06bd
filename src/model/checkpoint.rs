//! Checkpoints: a folder with `model.safetensors` (the weights, by parameter name) and
//! `config.json` (everything needed to rebuild the model and use it: architecture, token
//! layout, names, standardisation, bijections, time convention, crate version). Both files are
//! written atomically; loading checks the format, the version and every tensor's name and shape.

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::io::{atomic_write, ensure_dir};
use crate::tape::ParamStore;

pub const WEIGHTS_FILE: &str = "model.safetensors";
pub const CONFIG_FILE: &str = "config.json";
const FORMAT: &str = "tfmpe-checkpoint";

fn invalid(dir: &Path, what: String) -> Error {
    Error::Invalid(format!("checkpoint {}: {what}", dir.display()))
}

/// Writes `params` and `config` into `dir` (created if missing).
pub fn save<C: Serialize>(dir: &Path, config: &C, params: &ParamStore) -> Result<()> {
    ensure_dir(dir)?;
    let backend = params.device().backend();
    let mut data = Vec::with_capacity(params.len());
    for p in params.iter() {
        let bytes: Vec<u8> =
            backend.download_f32(p.value)?.iter().flat_map(|v| v.to_le_bytes()).collect();
        data.push((p.name.to_string(), p.shape.to_vec(), bytes));
    }
    let views = data
        .iter()
        .map(|(name, shape, bytes)| {
            TensorView::new(Dtype::F32, shape.clone(), bytes)
                .map(|v| (name.clone(), v))
                .map_err(|e| Error::Invalid(format!("parameter `{name}`: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let meta = HashMap::from([("format".to_string(), FORMAT.to_string())]);
    let weights =
        safetensors::serialize(views, Some(meta)).map_err(|e| invalid(dir, e.to_string()))?;
    let config = serde_json::json!({
        "format": FORMAT,
        "crate_version": env!("CARGO_PKG_VERSION"),
        "model": config,
    });
    let text = serde_json::to_string_pretty(&config).map_err(|e| invalid(dir, e.to_string()))?;
    // Weights first: a config.json is only there once its weights are complete.
    atomic_write(&dir.join(WEIGHTS_FILE), &weights)?;
    atomic_write(&dir.join(CONFIG_FILE), text.as_bytes())
}

/// Reads the model configuration saved by [`save`].
pub fn load_config<C: DeserializeOwned>(dir: &Path) -> Result<C> {
    let path = dir.join(CONFIG_FILE);
    let text = fs::read_to_string(&path).map_err(|e| {
        invalid(
            dir,
            format!("cannot read {CONFIG_FILE} ({e}); is this a folder written by `tfmpe run`?"),
        )
    })?;
    let mut value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| invalid(dir, format!("{CONFIG_FILE} is not valid JSON ({e})")))?;
    if value.get("format").and_then(|f| f.as_str()) != Some(FORMAT) {
        return Err(invalid(dir, format!("{CONFIG_FILE} is not a tfmpe checkpoint")));
    }
    let version = value.get("crate_version").and_then(|v| v.as_str()).unwrap_or("unknown");
    if !compatible(version, env!("CARGO_PKG_VERSION")) {
        return Err(invalid(
            dir,
            format!(
                "written by tfmpe {version}, which this tfmpe {} cannot read; retrain, or use tfmpe {version}",
                env!("CARGO_PKG_VERSION")
            ),
        ));
    }
    serde_json::from_value(value["model"].take()).map_err(|e| {
        invalid(dir, format!("{CONFIG_FILE} does not describe a model this version knows ({e})"))
    })
}

/// Same major version, and for 0.x the same minor version (semver's compatibility rule).
fn compatible(saved: &str, ours: &str) -> bool {
    let key = |v: &str| {
        let mut it = v.split('.').map(|p| p.parse::<u64>().ok());
        match (it.next().flatten(), it.next().flatten()) {
            (Some(0), Some(minor)) => Some((0, minor)),
            (Some(major), _) => Some((major, 0)),
            _ => None,
        }
    };
    key(saved).is_some() && key(saved) == key(ours)
}

/// Loads the weights saved by [`save`] into a freshly built model's `params`: every parameter
/// must be present with its shape, and the file must hold nothing else.
pub fn load_params(dir: &Path, params: &mut ParamStore) -> Result<()> {
    let path = dir.join(WEIGHTS_FILE);
    let bytes =
        fs::read(&path).map_err(|e| invalid(dir, format!("cannot read {WEIGHTS_FILE} ({e})")))?;
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| invalid(dir, format!("{WEIGHTS_FILE} is corrupt or truncated ({e})")))?;
    let names: Vec<(String, Vec<usize>)> =
        params.iter().map(|p| (p.name.to_string(), p.shape.to_vec())).collect();
    if st.len() != names.len() {
        return Err(invalid(
            dir,
            format!(
                "{WEIGHTS_FILE} holds {} tensors but the model has {} parameters",
                st.len(),
                names.len()
            ),
        ));
    }
    for (name, shape) in names {
        let view = st.tensor(&name).map_err(|_| {
            invalid(
                dir,
                format!("{WEIGHTS_FILE} has no tensor `{name}`; it belongs to another model"),
            )
        })?;
        if view.dtype() != Dtype::F32 || view.shape() != shape.as_slice() {
            return Err(invalid(
                dir,
                format!(
                    "tensor `{name}` is {:?} {:?}, the model needs F32 {shape:?}",
                    view.dtype(),
                    view.shape()
                ),
            ));
        }
        let data: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        params.load(&name, &data)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Device;
    use serde::Deserialize;

    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct Cfg {
        width: usize,
    }

    fn store(dev: &Device, scale: f32) -> ParamStore {
        let mut p = ParamStore::new(dev);
        p.add("a.weight", &[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0].map(|v| v * scale)).unwrap();
        p.add("a.bias", &[3], &[0.5, -0.5, 0.25]).unwrap();
        p
    }

    fn temp_dir(tag: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("tfmpe-ckpt-{tag}-{}", std::process::id()))
    }

    #[test]
    fn round_trip_restores_every_value() {
        let dev = Device::cpu();
        let dir = temp_dir("rt");
        save(&dir, &Cfg { width: 7 }, &store(&dev, 1.0)).unwrap();
        let mut fresh = store(&dev, 0.0);
        load_params(&dir, &mut fresh).unwrap();
        let id = fresh.id("a.weight").unwrap();
        assert_eq!(fresh.to_vec(id).unwrap(), vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(load_config::<Cfg>(&dir).unwrap(), Cfg { width: 7 });
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn damaged_or_foreign_files_are_clear_errors() {
        let dev = Device::cpu();
        let dir = temp_dir("bad");
        save(&dir, &Cfg { width: 7 }, &store(&dev, 1.0)).unwrap();
        let w = dir.join(WEIGHTS_FILE);
        let bytes = fs::read(&w).unwrap();
        fs::write(&w, &bytes[..bytes.len() - 5]).unwrap();
        let e = load_params(&dir, &mut store(&dev, 0.0)).unwrap_err().to_string();
        assert!(e.contains("corrupt or truncated"), "{e}");

        fs::write(&w, &bytes).unwrap();
        let mut other = ParamStore::new(&dev);
        other.add("b.weight", &[2, 3], &[0.0; 6]).unwrap();
        other.add("a.bias", &[3], &[0.0; 3]).unwrap();
        let e = load_params(&dir, &mut other).unwrap_err().to_string();
        assert!(e.contains("no tensor `b.weight`"), "{e}");

        let mut shaped = ParamStore::new(&dev);
        shaped.add("a.weight", &[3, 2], &[0.0; 6]).unwrap();
        shaped.add("a.bias", &[3], &[0.0; 3]).unwrap();
        let e = load_params(&dir, &mut shaped).unwrap_err().to_string();
        assert!(e.contains("needs F32 [3, 2]"), "{e}");

        let c = dir.join(CONFIG_FILE);
        let text = fs::read_to_string(&c).unwrap();
        fs::write(&c, text.replace(env!("CARGO_PKG_VERSION"), "99.0.0")).unwrap();
        let e = load_config::<Cfg>(&dir).unwrap_err().to_string();
        assert!(e.contains("written by tfmpe 99.0.0"), "{e}");
        fs::write(&c, "{").unwrap();
        assert!(load_config::<Cfg>(&dir).unwrap_err().to_string().contains("not valid JSON"));
        fs::remove_dir_all(&dir).unwrap();
        assert!(load_config::<Cfg>(&dir).unwrap_err().to_string().contains("cannot read"));
    }

    #[test]
    fn versions_follow_semver_compatibility() {
        assert!(compatible("0.1.0", "0.1.7"));
        assert!(!compatible("0.1.0", "0.2.0"));
        assert!(compatible("1.2.0", "1.9.1"));
        assert!(!compatible("garbage", "0.1.0"));
    }
}
