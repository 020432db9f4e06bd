//! The driver's launch limits, checked for every launch when it is queued: a geometry the device
//! would refuse becomes an error naming the kernel and the shape, instead of a failed launch at
//! the next edge (which, inside a graph, turns graphs off for the rest of the process).

use cudarc::driver::LaunchConfig;

use crate::error::{Error, Result};

/// Shared memory a block may use, static and dynamic together, unless its kernel opts in.
const DEFAULT_SHARED: u32 = 48 * 1024;
/// Block dimensions and grid dimensions, as every device of compute capability ≥ 3 has them.
const MAX_BLOCK: (u32, u32, u32) = (1024, 1024, 64);
const MAX_GRID: (u32, u32, u32) = ((1 << 31) - 1, 65_535, 65_535);

/// Kernels that take more dynamic shared memory than `DEFAULT_SHARED` leaves beside their static
/// bytes, and the dynamic bytes they opt in to when loaded. `layer_norm_bwd` sizes its dynamic
/// memory to exactly 48 KiB at 768, 1536, 3072 and 6144 columns, and its static flag (from
/// `grid_last_block`) pushes the block past the default. Every target (sm_80 and later) allows
/// at least 99 KiB per block once opted in.
const OPT_IN: &[(&str, u32)] = &[("layer_norm_bwd", DEFAULT_SHARED)];

/// The dynamic shared memory `name` opts in to, if it does.
pub(super) fn opt_in(name: &str) -> Option<u32> {
    OPT_IN.iter().find(|(n, _)| *n == name).map(|&(_, bytes)| bytes)
}

/// What one loaded kernel may be launched with.
#[derive(Clone, Copy, Debug)]
pub(super) struct KernelLimits {
    /// Threads per block, after the kernel's `__launch_bounds__` and register use.
    pub max_threads: u32,
    pub static_shared: u32,
    pub max_dynamic_shared: u32,
}

impl KernelLimits {
    /// The limits of a kernel with `static_shared` bytes of static shared memory that allows
    /// itself `opt_in` bytes of dynamic shared memory, or what the default leaves.
    pub fn new(max_threads: u32, static_shared: u32, opt_in: Option<u32>) -> Self {
        let max_dynamic_shared =
            opt_in.unwrap_or_else(|| DEFAULT_SHARED.saturating_sub(static_shared));
        KernelLimits { max_threads, static_shared, max_dynamic_shared }
    }
}

/// Checks one launch of kernel `name` against its limits.
pub(super) fn check(name: &str, cfg: &LaunchConfig, l: &KernelLimits) -> Result<()> {
    let (g, b) = (cfg.grid_dim, cfg.block_dim);
    let threads = b.0 as u64 * b.1 as u64 * b.2 as u64;
    let over = |v: (u32, u32, u32), max: (u32, u32, u32)| v.0 > max.0 || v.1 > max.1 || v.2 > max.2;
    let problem = if [g.0, g.1, g.2, b.0, b.1, b.2].contains(&0) {
        "an empty grid or block".to_string()
    } else if over(b, MAX_BLOCK) || threads > l.max_threads as u64 {
        format!("{threads} threads per block (this kernel takes at most {})", l.max_threads)
    } else if over(g, MAX_GRID) {
        format!("a grid beyond {MAX_GRID:?} blocks")
    } else if cfg.shared_mem_bytes > l.max_dynamic_shared {
        format!(
            "{} bytes of dynamic shared memory (this kernel has {} static bytes and may add at \
             most {})",
            cfg.shared_mem_bytes, l.static_shared, l.max_dynamic_shared
        )
    } else {
        return Ok(());
    };
    Err(Error::Invalid(format!(
        "cuda: kernel {name} cannot be launched with grid {g:?}, block {b:?}: {problem}; the \
         shape is too large for this kernel"
    )))
}
