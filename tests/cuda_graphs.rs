//! CUDA graphs: a queue seen before runs as one graph, updated where its arguments changed, and
//! gives the same bits as launching kernel by kernel. Skipped without a GPU unless
//! `TFMPE_REQUIRE_CUDA=1` (scripts/gpu-check.sh).

#[path = "common/mod.rs"]
mod common;

use common::bin::scratch;
use tfmpe::backend::cuda::CudaBackend;
use tfmpe::backend::{Backend, DType};

#[test]
fn a_repeated_queue_runs_as_an_updated_graph() {
    let Some(_) = common::cuda() else { return };
    let cuda = CudaBackend::new().unwrap();
    let n = 1001;
    let x = cuda.upload_f32(&vec![1.0; n]).unwrap();
    for round in 0..4u32 {
        // One queue of 1 + 40 kernels (the zeroing, then the sums): the same shape every round,
        // with the coefficients changed, so rounds 2 and 3 replay the graph built in round 1
        // with its nodes updated.
        let mut acc = cuda.alloc(DType::F32, n).unwrap();
        for i in 0..40u32 {
            cuda.axpy((round * 100 + i) as f32, &x, &mut acc).unwrap();
        }
        let want = (40 * round * 100 + 39 * 40 / 2) as f32;
        let got = cuda.download_f32(&acc).unwrap();
        assert!(got.iter().all(|&v| v == want), "round {round}: {:?} != {want}", &got[..4]);
    }
    let s = cuda.graph_stats();
    if cuda.device_name().contains("graphs off") {
        assert_eq!(s.graph_launches, 0, "{s:?}");
    } else {
        assert_eq!((s.graphs_built, s.graph_launches), (1, 3), "{s:?}");
        assert!(s.nodes_updated >= 80, "{s:?}");
    }
}

fn tfmpe(graphs: &str, args: &[&str]) {
    common::bin::tfmpe(args).backend("cuda").env("TFMPE_CUDA_GRAPHS", graphs).succeeds();
}

#[test]
fn training_and_sampling_give_the_same_bits_with_and_without_graphs() {
    let Some(_) = common::cuda() else { return };
    let dir = scratch("cuda-graphs");
    let obs = dir.join("obs.csv");
    std::fs::write(&obs, "y.0,y.1,y.2\n0.3,-1.2,2.0\n").unwrap();
    let mut outputs = Vec::new();
    for graphs in ["1", "0"] {
        let run = dir.join(format!("run-{graphs}"));
        let run = run.to_str().unwrap();
        tfmpe(
            graphs,
            &[
                "run",
                "--task",
                "hier-gaussian-linear",
                "--sites",
                "3",
                "--budget",
                "1000",
                "--max-epochs",
                "3",
                "--lr",
                "1e-3",
                "--seed",
                "1",
                "--obs-seed",
                "3",
                "--no-eval",
                "--out",
                run,
            ],
        );
        let mut files = Vec::new();
        for (solver, steps) in [("euler", "20"), ("rk4", "5"), ("dopri5", "1")] {
            let file = dir.join(format!("{graphs}-{solver}.csv"));
            tfmpe(
                graphs,
                &[
                    "sample",
                    "--model",
                    run,
                    "--observation",
                    obs.to_str().unwrap(),
                    "--samples",
                    "300",
                    "--solver",
                    solver,
                    "--steps",
                    steps,
                    "--seed",
                    "5",
                    "--out",
                    file.to_str().unwrap(),
                ],
            );
            files.push(std::fs::read_to_string(&file).unwrap());
        }
        outputs.push(files);
    }
    for (i, solver) in ["euler", "rk4", "dopri5"].iter().enumerate() {
        assert!(
            outputs[0][i] == outputs[1][i],
            "{solver}: samples differ with and without CUDA graphs"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
