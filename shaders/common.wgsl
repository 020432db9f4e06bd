// common.wgsl: prepended to every shader (the WGSL twin of kernels/common.cuh).
//
// Binding convention of every entry point (the Rust side in src/backend/wgpu/ relies on it):
//   @group(0) @binding(0) the kernel's parameters, a uniform struct of at most 16 words;
//   @group(0) @binding(1..) its buffers, in the order the Rust glue passes them.
// Pipelines use automatic layouts, which keep only the bindings an entry point uses, so every
// entry point must read its parameters and touch every buffer it is given.
//
// Dispatches are 2-D when they need more than 65 535 workgroups (the WebGPU limit per
// dimension): `group_index` gives the linear workgroup number, and kernels bound-check it.

const WG: u32 = 256u;

fn group_index(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + wid.y * nwg.x;
}

// The global invocation number for a 1-D kernel of workgroup size WG.
fn thread_index(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return group_index(wid, nwg) * WG + lid;
}
