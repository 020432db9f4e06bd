//! One test per case and device, in the spirit of candle's `test_device!`.
//!
//! A family file writes each case as `fn case(dev: &Device)` and lists its cases once:
//! `per_device!(case_a, case_b);` generates the modules `cpu`, `wgpu` and `cuda`, each with one
//! `#[test]` per case, so the test paths read `parity::<family>::<device>::<case>` and
//! `cargo test parity::attention::wgpu` runs the attention cases on wgpu only.
//!
//! A device that is absent on this machine passes its tests without running them, as the old
//! loop over `common::devices()` skipped it; with `TFMPE_REQUIRE_WGPU=1` or
//! `TFMPE_REQUIRE_CUDA=1` opening it fails instead (see `common::wgpu` and `common::cuda`).

macro_rules! per_device {
    ($($case:ident),+ $(,)?) => {
        per_device!(@device cpu, Some(tfmpe::Device::cpu()), $($case),+);
        per_device!(@device wgpu, crate::common::wgpu(), $($case),+);
        per_device!(@device cuda, crate::common::cuda(), $($case),+);
    };
    (@device $device:ident, $open:expr, $($case:ident),+) => {
        mod $device {
            $(
                #[test]
                fn $case() {
                    if let Some(dev) = $open {
                        super::$case(&dev);
                    }
                }
            )+
        }
    };
}
