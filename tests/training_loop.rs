//! The training loop: early stopping, best weights restored, and a clean stop on a
//! non-finite loss that names the step and keeps finite weights.

use rand::rngs::StdRng;
use rand::SeedableRng;
use tfmpe::model::tfmpe::TfmpeConfig;
use tfmpe::sbi::network::Network;
use tfmpe::sbi::train::{FixedSets, TrainConfig};
use tfmpe::sbi::{new_network, to_sets, Quiet, Role, Rows};
use tfmpe::tasks::{simulate_dataset, task_by_name};
use tfmpe::Device;

/// A small posterior network for `hier-gaussian-linear` with 2 sites and its data.
fn setup(dev: &Device) -> (Network, FixedSets) {
    let task = task_by_name("hier-gaussian-linear").unwrap();
    let mut rng = StdRng::seed_from_u64(7);
    let (mut cond, mut target) = (Vec::new(), Vec::new());
    for _ in 0..240 {
        let d = simulate_dataset(&*task, 2, &mut rng);
        cond.extend(d.obs);
        target.extend(task.to_unconstrained(&d.params, 2));
    }
    let arch = TfmpeConfig { width: 16, layers: 1, heads: 2, n_ff: 1, ..Default::default() };
    let (train, validation) = Rows::new(2, &cond, &target, None).split(200, 2, 3, 0);
    let net = new_network(dev, &*task, Role::Posterior, 2, &[train], &arch, 3).unwrap();
    let data = FixedSets {
        train: vec![to_sets(&net, train).unwrap()],
        validation: vec![to_sets(&net, validation).unwrap()],
    };
    (net, data)
}

fn all_finite(net: &Network) -> bool {
    let p = net.tape.params();
    p.iter().all(|v| p.to_vec(v.id).unwrap().iter().all(|x| x.is_finite()))
}

#[test]
fn a_non_finite_loss_stops_training_and_keeps_finite_weights() {
    let dev = Device::cpu();
    let (mut net, mut data) = setup(&dev);
    // A learning rate of 1e35 throws the weights to ~1e35 in one step; the next loss overflows.
    let cfg = TrainConfig { lr: 1e35, batch: 20, max_epochs: 5, ..Default::default() };
    let report = net.fit(&dev, &mut data, &cfg, &Quiet).unwrap();
    assert_eq!(report.stop_reason, "non_finite_loss");
    let msg = report.stop_message.expect("a message");
    assert!(msg.contains("at step 2 (epoch 1)"), "{msg}");
    assert!(all_finite(&net), "the kept weights must be finite");
}

#[test]
fn early_stopping_waits_for_patience_and_restores_the_best_epoch() {
    let dev = Device::cpu();
    let (mut net, mut data) = setup(&dev);
    // The first epoch improves on nothing-yet; after it no change can beat a min-delta of 10,
    // so training stops `patience` epochs later.
    let cfg = TrainConfig {
        lr: 1e-3,
        batch: 20,
        max_epochs: 50,
        patience: 3,
        min_delta: 10.0,
        ..Default::default()
    };
    let report = net.fit(&dev, &mut data, &cfg, &Quiet).unwrap();
    assert_eq!(report.stop_reason, "early_stopping");
    assert_eq!(report.epochs, 4);
    let best = report.val_losses.iter().cloned().fold(f64::INFINITY, f64::min);
    assert_eq!(report.best_val_loss, best);
    assert_eq!(report.val_losses[report.best_epoch - 1], best);
    // 200 training sets in batches of 20: 10 steps an epoch.
    assert_eq!(report.steps, 40);
}

#[test]
fn too_few_sets_for_a_batch_is_an_error() {
    let dev = Device::cpu();
    let (mut net, mut data) = setup(&dev);
    let cfg = TrainConfig { batch: 500, ..Default::default() };
    let err = net.fit(&dev, &mut data, &cfg, &Quiet).unwrap_err().to_string();
    assert!(err.contains("fewer than one batch"), "{err}");
}
