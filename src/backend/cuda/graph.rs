//! CUDA graphs, built from the launch queue rather than by stream capture.
//!
//! The context queues kernel launches instead of issuing them and hands the queue here at each
//! edge (a host write or read, a wait). A queue whose *shape* (its kernels and their launch
//! geometry, in order) was seen before runs as one graph launch: the graph is built once, as a
//! chain of kernel nodes in queue order, and a later queue of the same shape only re-sets the
//! parameters of the nodes whose arguments changed. A training step changes a few (the AdamW
//! step count, the noise draw, the loss slot); a repeated ODE solve changes none. A shape seen
//! only once runs launch by launch, so one-off work never pays for building a graph.
//!
//! Why: the benchmark network is small, so a training step is a few hundred kernels of a few
//! microseconds each, and issuing them one at a time (a few µs of driver time each) would keep
//! the GPU waiting on the host. Building graphs explicitly, rather than capturing the stream,
//! gives the node of every launch, so an update touches only what changed, and puts no
//! restrictions on what other threads may call meanwhile.
//!
//! The cache logic is generic over [`GraphDriver`] so that it is tested on any machine with a
//! driver that only records what it was asked to run; [`CudaDriver`] is the real one.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::ffi::c_void;
use std::hash::{Hash, Hasher};

use cudarc::driver::{result, sys, DriverError};

use super::context::Arg;
use crate::error::{Error, Result};

/// Queues shorter than this run launch by launch: a graph would save little.
const MIN_GRAPH_LAUNCHES: usize = 16;
/// Built graphs kept; the least recently used goes first.
const MAX_GRAPHS: usize = 16;
/// Shapes remembered after one sighting, waiting for a second.
const MAX_SEEN: usize = 64;

/// One queued kernel launch. `kernel` indexes the context's kernel table.
#[derive(Clone, Debug)]
pub(super) struct Launch {
    pub kernel: usize,
    pub grid: (u32, u32, u32),
    pub block: (u32, u32, u32),
    pub shared: u32,
    pub args: Vec<Arg>,
}

impl Launch {
    /// The same kernel and geometry: the launch can become this node by a parameter update.
    fn same_shape(&self, other: &Launch) -> bool {
        (self.kernel, self.grid, self.block, self.shared, self.args.len())
            == (other.kernel, other.grid, other.block, other.shared, other.args.len())
    }

    /// The same launch, arguments compared bit for bit (0.0 and -0.0 differ, a NaN equals
    /// itself).
    fn same(&self, other: &Launch) -> bool {
        self.same_shape(other)
            && self.args.iter().zip(&other.args).all(|(a, b)| a.bits() == b.bits())
    }
}

fn shape_hash(queue: &[Launch]) -> u64 {
    let mut h = DefaultHasher::new();
    for l in queue {
        (l.kernel, l.grid, l.block, l.shared, l.args.len()).hash(&mut h);
    }
    h.finish()
}

/// What runs the launches: kernel by kernel, or as graphs.
pub(super) trait GraphDriver {
    type Graph;
    /// Issues one launch on the stream.
    fn issue(&mut self, launch: &Launch) -> Result<()>;
    /// Builds an executable graph of `launches`, each depending on the one before.
    fn build(&mut self, launches: &[Launch]) -> Result<Self::Graph>;
    /// Sets the parameters of node `node` (the `node`-th launch of the build) to `launch`'s.
    fn set(&mut self, graph: &mut Self::Graph, node: usize, launch: &Launch) -> Result<()>;
    /// Launches the graph on the stream.
    fn launch(&mut self, graph: &Self::Graph) -> Result<()>;
}

struct Built<G> {
    shape: u64,
    launches: Vec<Launch>,
    graph: G,
    used: u64,
}

/// Counts of what ran, for benchmarks and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GraphStats {
    pub graphs_built: u64,
    pub graph_launches: u64,
    pub nodes_updated: u64,
    pub single_launches: u64,
}

/// The graph cache.
pub(super) struct Graphs<D: GraphDriver> {
    driver: D,
    enabled: bool,
    seen: HashMap<u64, u64>,
    built: Vec<Built<D::Graph>>,
    clock: u64,
    stats: GraphStats,
}

impl<D: GraphDriver> Graphs<D> {
    pub fn new(driver: D, enabled: bool) -> Self {
        Graphs {
            driver,
            enabled,
            seen: HashMap::new(),
            built: Vec::new(),
            clock: 0,
            stats: GraphStats::default(),
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    pub fn stats(&self) -> GraphStats {
        self.stats
    }

    /// Runs `queue` in order, as a graph where its shape allows.
    pub fn run(&mut self, queue: Vec<Launch>) -> Result<()> {
        if !self.enabled || queue.len() < MIN_GRAPH_LAUNCHES {
            return self.issue_each(&queue);
        }
        match self.run_graph(&queue) {
            Ok(true) => Ok(()),
            Ok(false) => self.issue_each(&queue),
            Err(e) => {
                // A graph call failed: nothing of this queue was launched. Drop every graph,
                // run one launch at a time from now on, and say so once.
                eprintln!("tfmpe: cuda graphs turned off after an error ({e}); kernels now run one by one");
                self.enabled = false;
                self.built.clear();
                self.issue_each(&queue)
            }
        }
    }

    /// Launches `queue` as a graph, built now or updated; false when its shape is new.
    fn run_graph(&mut self, queue: &[Launch]) -> Result<bool> {
        self.clock += 1;
        let shape = shape_hash(queue);
        let found = self.built.iter().position(|b| {
            b.shape == shape
                && b.launches.len() == queue.len()
                && b.launches.iter().zip(queue).all(|(a, b)| a.same_shape(b))
        });
        let index = match found {
            Some(i) => {
                let b = &mut self.built[i];
                for (node, (old, new)) in b.launches.iter_mut().zip(queue).enumerate() {
                    if !old.same(new) {
                        // Forget the node's old launch first: a failed update leaves it unknown.
                        old.args.clear();
                        self.driver.set(&mut b.graph, node, new)?;
                        *old = new.clone();
                        self.stats.nodes_updated += 1;
                    }
                }
                i
            }
            None if self.seen.remove(&shape).is_some() => {
                let graph = self.driver.build(queue)?;
                self.stats.graphs_built += 1;
                if self.built.len() == MAX_GRAPHS {
                    let oldest = (0..self.built.len())
                        .min_by_key(|&i| self.built[i].used)
                        .expect("the cache is full");
                    self.built.swap_remove(oldest);
                }
                self.built.push(Built { shape, launches: queue.to_vec(), graph, used: 0 });
                self.built.len() - 1
            }
            None => {
                if self.seen.len() == MAX_SEEN {
                    let oldest = self.seen.iter().min_by_key(|(_, &t)| t).map(|(&s, _)| s);
                    self.seen.retain(|&s, _| Some(s) != oldest);
                }
                self.seen.insert(shape, self.clock);
                return Ok(false);
            }
        };
        let b = &mut self.built[index];
        b.used = self.clock;
        self.driver.launch(&b.graph)?;
        self.stats.graph_launches += 1;
        Ok(true)
    }

    fn issue_each(&mut self, queue: &[Launch]) -> Result<()> {
        for l in queue {
            self.driver.issue(l)?;
        }
        self.stats.single_launches += queue.len() as u64;
        Ok(())
    }
}

/// The kernel parameters of `args`: one pointer to each value, as `cuLaunchKernel` and kernel
/// nodes take them. Valid while `args` is.
fn param_ptrs(args: &[Arg]) -> Vec<*mut c_void> {
    args.iter().map(Arg::as_param).collect()
}

fn cuda(what: &str, r: sys::CUresult) -> Result<()> {
    r.result().map_err(|e: DriverError| Error::Device(format!("cuda: {what}: {e}")))
}

/// The real driver: launches on the context's stream. The context must be current on the
/// calling thread.
pub(super) struct CudaDriver {
    pub stream: sys::CUstream,
    pub functions: Vec<(&'static str, sys::CUfunction)>,
}

// Safety: the handles are used only under the context's lock on `Graphs`, with the context
// bound to the calling thread.
unsafe impl Send for CudaDriver {}

/// A graph, its executable instance and its nodes in launch order.
pub(super) struct CudaGraph {
    graph: sys::CUgraph,
    exec: sys::CUgraphExec,
    nodes: Vec<sys::CUgraphNode>,
}

unsafe impl Send for CudaGraph {}

impl Drop for CudaGraph {
    fn drop(&mut self) {
        // Safety: the handles came from the driver and are destroyed once; an instance still
        // running is freed by the driver when it completes.
        unsafe {
            if !self.exec.is_null() {
                sys::cuGraphExecDestroy(self.exec);
            }
            sys::cuGraphDestroy(self.graph);
        }
    }
}

impl CudaDriver {
    fn node_params(&self, l: &Launch, params: &mut [*mut c_void]) -> sys::CUDA_KERNEL_NODE_PARAMS {
        sys::CUDA_KERNEL_NODE_PARAMS {
            func: self.functions[l.kernel].1,
            gridDimX: l.grid.0,
            gridDimY: l.grid.1,
            gridDimZ: l.grid.2,
            blockDimX: l.block.0,
            blockDimY: l.block.1,
            blockDimZ: l.block.2,
            sharedMemBytes: l.shared,
            kernelParams: params.as_mut_ptr(),
            extra: std::ptr::null_mut(),
            kern: std::ptr::null_mut(),
            ctx: std::ptr::null_mut(),
        }
    }
}

impl GraphDriver for CudaDriver {
    type Graph = CudaGraph;

    fn issue(&mut self, l: &Launch) -> Result<()> {
        let (name, f) = self.functions[l.kernel];
        let mut params = param_ptrs(&l.args);
        // Safety: the arguments follow the kernel's declaration (kernels/README.md).
        unsafe { result::launch_kernel(f, l.grid, l.block, l.shared, self.stream, &mut params) }
            .map_err(|e| Error::Device(format!("cuda: launching {name}: {e}")))
    }

    fn build(&mut self, launches: &[Launch]) -> Result<CudaGraph> {
        let mut g = CudaGraph {
            graph: std::ptr::null_mut(),
            exec: std::ptr::null_mut(),
            nodes: Vec::with_capacity(launches.len()),
        };
        // Safety: every handle passed is one the driver returned above; node parameters are
        // copied by the driver before the call returns.
        unsafe {
            cuda("creating a graph", sys::cuGraphCreate(&mut g.graph, 0))?;
            for l in launches {
                let mut params = param_ptrs(&l.args);
                let np = self.node_params(l, &mut params);
                // A chain: each node depends on the one before, as on the stream.
                let (deps, count) = match g.nodes.last() {
                    Some(prev) => (prev as *const sys::CUgraphNode, 1),
                    None => (std::ptr::null(), 0),
                };
                let mut node = std::ptr::null_mut();
                cuda(
                    &format!("adding a {} node to a graph", self.functions[l.kernel].0),
                    sys::cuGraphAddKernelNode_v2(&mut node, g.graph, deps, count, &np),
                )?;
                g.nodes.push(node);
            }
            cuda(
                &format!("instantiating a graph of {} kernels", launches.len()),
                sys::cuGraphInstantiateWithFlags(&mut g.exec, g.graph, 0),
            )?;
        }
        Ok(g)
    }

    fn set(&mut self, g: &mut CudaGraph, node: usize, l: &Launch) -> Result<()> {
        let mut params = param_ptrs(&l.args);
        let np = self.node_params(l, &mut params);
        // Safety: `node` belongs to the graph `g.exec` was instantiated from.
        cuda(&format!("updating a {} node", self.functions[l.kernel].0), unsafe {
            sys::cuGraphExecKernelNodeSetParams_v2(g.exec, g.nodes[node], &np)
        })
    }

    fn launch(&mut self, g: &CudaGraph) -> Result<()> {
        // Safety: the instance is valid until `g` drops.
        cuda("launching a graph", unsafe { sys::cuGraphLaunch(g.exec, self.stream) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{RngExt, SeedableRng};

    /// Runs nothing: keeps the launches each graph instance would run, and a log of every
    /// launch in the order the stream would see it.
    #[derive(Default)]
    struct Recorder {
        ran: Vec<Launch>,
        fail_build: bool,
    }

    impl GraphDriver for Recorder {
        type Graph = Vec<Launch>;

        fn issue(&mut self, l: &Launch) -> Result<()> {
            self.ran.push(l.clone());
            Ok(())
        }

        fn build(&mut self, launches: &[Launch]) -> Result<Vec<Launch>> {
            if self.fail_build {
                return Err(Error::Device("no graphs here".into()));
            }
            Ok(launches.to_vec())
        }

        fn set(&mut self, g: &mut Vec<Launch>, node: usize, l: &Launch) -> Result<()> {
            assert!(g[node].same_shape(l), "an update must keep the node's kernel and geometry");
            g[node] = l.clone();
            Ok(())
        }

        fn launch(&mut self, g: &Vec<Launch>) -> Result<()> {
            self.ran.extend(g.iter().cloned());
            Ok(())
        }
    }

    fn launch(kernel: usize, grid: u32, args: Vec<Arg>) -> Launch {
        Launch { kernel, grid: (grid, 1, 1), block: (256, 1, 1), shared: 0, args }
    }

    /// A queue of `n` launches whose kernels depend on `shape`; `step` changes a few arguments.
    fn queue(shape: usize, n: usize, step: u32) -> Vec<Launch> {
        (0..n)
            .map(|i| {
                let kernel = (i * 7 + shape) % 11;
                let varying = if i % 5 == 0 { step } else { 0 };
                launch(
                    kernel,
                    1 + (i % 3) as u32,
                    vec![Arg::P(0x1000 + i as u64 * 64), Arg::U(varying), Arg::F(0.5)],
                )
            })
            .collect()
    }

    fn assert_ran(got: &[Launch], want: &[Launch]) {
        assert_eq!(got.len(), want.len());
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(g.same(w), "launch {i}: ran {g:?}, queued {w:?}");
        }
    }

    #[test]
    fn every_queue_runs_exactly_as_queued() {
        // Random interleavings of a few shapes, with changing arguments: whatever mix of single
        // launches, builds, updates and replays the cache picks, the stream sees the queues.
        let mut rng = StdRng::seed_from_u64(5);
        let mut graphs = Graphs::new(Recorder::default(), true);
        let mut want = Vec::new();
        for _ in 0..400 {
            let shape = rng.random_range(0..4usize);
            let n = [3, 20, 40, 64][shape];
            let q = queue(shape, n, rng.random_range(0..3));
            want.extend(q.iter().cloned());
            graphs.run(q).unwrap();
        }
        assert_ran(&graphs.driver.ran, &want);
        let s = graphs.stats();
        assert!(s.graphs_built >= 3 && s.graphs_built <= 4, "{s:?}");
        assert!(s.graph_launches > 250 && s.nodes_updated > 0, "{s:?}");
    }

    #[test]
    fn a_repeated_queue_becomes_one_graph_with_only_changed_nodes_updated() {
        let mut graphs = Graphs::new(Recorder::default(), true);
        graphs.run(queue(1, 40, 0)).unwrap();
        assert_eq!(graphs.stats().single_launches, 40, "a new shape runs launch by launch");
        graphs.run(queue(1, 40, 0)).unwrap();
        graphs.run(queue(1, 40, 0)).unwrap();
        graphs.run(queue(1, 40, 9)).unwrap();
        let s = graphs.stats();
        assert_eq!((s.graphs_built, s.graph_launches), (1, 3), "{s:?}");
        assert_eq!(s.nodes_updated, 8, "launches 0, 5, .., 35 changed: {s:?}");
    }

    #[test]
    fn a_sign_change_of_zero_is_an_update() {
        let mut graphs = Graphs::new(Recorder::default(), true);
        let q = |v: f32| vec![launch(0, 1, vec![Arg::F(v)]); MIN_GRAPH_LAUNCHES];
        for v in [0.0, 0.0, -0.0] {
            graphs.run(q(v)).unwrap();
        }
        assert_ran(&graphs.driver.ran[2 * MIN_GRAPH_LAUNCHES..], &q(-0.0));
    }

    #[test]
    fn short_queues_and_disabled_graphs_run_launch_by_launch() {
        let mut graphs = Graphs::new(Recorder::default(), false);
        for _ in 0..3 {
            graphs.run(queue(2, 40, 0)).unwrap();
        }
        let mut short = Graphs::new(Recorder::default(), true);
        for _ in 0..3 {
            short.run(queue(2, MIN_GRAPH_LAUNCHES - 1, 0)).unwrap();
        }
        for g in [graphs.stats(), short.stats()] {
            assert_eq!((g.graphs_built, g.graph_launches), (0, 0), "{g:?}");
        }
    }

    #[test]
    fn a_failing_graph_call_turns_graphs_off_and_still_runs_the_queue() {
        let mut graphs = Graphs::new(Recorder { fail_build: true, ..Default::default() }, true);
        let mut want = Vec::new();
        for _ in 0..3 {
            let q = queue(3, 30, 1);
            want.extend(q.iter().cloned());
            graphs.run(q).unwrap();
        }
        assert!(!graphs.enabled());
        assert_ran(&graphs.driver.ran, &want);
    }

    #[test]
    fn the_cache_keeps_the_most_recent_graphs() {
        let mut graphs = Graphs::new(Recorder::default(), true);
        let mut want = Vec::new();
        for round in 0..3 {
            for shape in 0..MAX_GRAPHS + 4 {
                let q = queue(shape, 20 + shape, round);
                want.extend(q.iter().cloned());
                graphs.run(q).unwrap();
            }
        }
        assert!(graphs.built.len() <= MAX_GRAPHS);
        assert_ran(&graphs.driver.ran, &want);
    }
}
