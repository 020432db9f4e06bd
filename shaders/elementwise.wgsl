// elementwise.wgsl: add, scale, axpy, ReLU forward and backward; one thread per element.

struct Params { n: u32, alpha: f32, accumulate: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out3: array<f32>;
// Entries with one input write through binding 2.
@group(0) @binding(2) var<storage, read_write> out2: array<f32>;

@compute @workgroup_size(256)
fn add(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
       @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wid, nwg, lid);
    if (i < p.n) {
        out3[i] = a[i] + b[i];
    }
}

@compute @workgroup_size(256)
fn scale(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wid, nwg, lid);
    if (i < p.n) {
        out2[i] = p.alpha * a[i];
    }
}

// y += alpha · x, with y read and written through binding 2.
@compute @workgroup_size(256)
fn axpy(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wid, nwg, lid);
    if (i < p.n) {
        out2[i] += p.alpha * a[i];
    }
}

// A select rather than max(), so that NaN stays NaN and a diverging run shows in the loss.
@compute @workgroup_size(256)
fn relu_fwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wid, nwg, lid);
    if (i < p.n) {
        let x = a[i];
        out2[i] = select(x, 0.0, x < 0.0);
    }
}

// dx (+)= dy · [y > 0], with y the ReLU's output.
@compute @workgroup_size(256)
fn relu_bwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wid, nwg, lid);
    if (i < p.n) {
        let g = select(0.0, b[i], a[i] > 0.0);
        if (p.accumulate != 0u) {
            out3[i] += g;
        } else {
            out3[i] = g;
        }
    }
}
