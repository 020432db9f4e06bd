//! The training loop: early stopping, best weights restored, and a clean stop on a
//! non-finite loss that names the step and keeps finite weights; sets of several site counts.

use rand::rngs::StdRng;
use rand::SeedableRng;
use tfmpe::model::tfmpe::TfmpeConfig;
use tfmpe::sbi::network::Network;
use tfmpe::sbi::train::{FixedSets, SetSource, Sets, TrainConfig};
use tfmpe::sbi::{new_network, to_sets, Quiet, Role, Rows};
use tfmpe::tasks::{simulate_dataset, task_by_name};
use tfmpe::Device;

/// A small posterior network for `hier-gaussian-linear` with 2 sites and its data.
fn setup(dev: &Device) -> (Network, FixedSets) {
    let task = task_by_name("hier-gaussian-linear").unwrap();
    let mut rng = StdRng::seed_from_u64(7);
    let (mut cond, mut target) = (Vec::new(), Vec::new());
    for _ in 0..240 {
        let d = simulate_dataset(&*task, 2, &mut rng).unwrap();
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

/// Counts how often training asks for its sets: a fresh-set source draws new sets (and
/// advances its seed streams) on every call, so extra calls would change fixed-seed runs.
struct Counting {
    inner: FixedSets,
    calls: usize,
}

impl SetSource for Counting {
    fn train(&mut self, epoch: usize) -> tfmpe::Result<&[Sets]> {
        self.calls += 1;
        self.inner.train(epoch)
    }

    fn validation(&self) -> &[Sets] {
        self.inner.validation()
    }
}

#[test]
fn training_asks_for_each_epoch_s_sets_once_and_once_to_check_them() {
    let dev = Device::cpu();
    let (mut net, inner) = setup(&dev);
    let mut data = Counting { inner, calls: 0 };
    let cfg = TrainConfig { batch: 20, max_epochs: 3, ..Default::default() };
    net.fit(&dev, &mut data, &cfg, &Quiet).unwrap();
    assert_eq!(data.calls, 1 + 3);
}

/// Two site counts train side by side: every batch holds one count, the validation loss is
/// reported per count, and the overall loss weighs the counts by their sets.
#[test]
fn buckets_of_two_site_counts_train_together_and_validate_apart() {
    let dev = Device::cpu();
    let task = task_by_name("hier-gaussian-linear").unwrap();
    let mut rng = StdRng::seed_from_u64(8);
    let mut rows = Vec::new();
    for sites in [1, 3] {
        let (mut cond, mut target) = (Vec::new(), Vec::new());
        for _ in 0..120 {
            let d = simulate_dataset(&*task, sites, &mut rng).unwrap();
            cond.extend(d.obs);
            target.extend(task.to_unconstrained(&d.params, sites));
        }
        rows.push((sites, cond, target));
    }
    let all: Vec<Rows> = rows.iter().map(|(s, c, t)| Rows::new(*s, c, t, None)).collect();
    let split: Vec<(Rows, Rows)> =
        all.iter().map(|r| r.split(100, r.sites, 1 + r.sites, 0)).collect();
    let train: Vec<Rows> = split.iter().map(|p| p.0).collect();
    let arch = TfmpeConfig { width: 16, layers: 1, heads: 2, n_ff: 1, ..Default::default() };
    let mut net = new_network(&dev, &*task, Role::Posterior, 3, &train, &arch, 3).unwrap();
    assert!(net.config.any_sites);
    let mut data = FixedSets {
        train: split.iter().map(|p| to_sets(&net, p.0).unwrap()).collect(),
        validation: split.iter().map(|p| to_sets(&net, p.1).unwrap()).collect(),
    };
    let cfg = TrainConfig { lr: 1e-3, batch: 20, max_epochs: 2, ..Default::default() };
    let report = net.fit(&dev, &mut data, &cfg, &Quiet).unwrap();
    // 100 sets of each count in batches of 20: 10 steps an epoch.
    assert_eq!(report.steps, 20);
    let by_sites = &report.val_loss_by_sites;
    assert_eq!(by_sites.keys().copied().collect::<Vec<_>>(), vec![1, 3]);
    let mean = (by_sites[&1] + by_sites[&3]) / 2.0;
    assert!((report.best_val_loss - mean).abs() < 1e-6, "{report:?}");
}

#[test]
fn the_cosine_schedule_warms_up_then_decays_to_its_floor() {
    use tfmpe::sbi::train::Schedule;
    let s = Schedule::from_name("cosine").unwrap();
    let (total, f) = (200, |step| s.factor(step, 200));
    // Warm-up over the first 5% (10 steps): 0.1, 0.2, ..., 1.
    assert!((f(0) - 0.1).abs() < 1e-12 && (f(9) - 1.0).abs() < 1e-12);
    assert!((1..10).all(|k| f(k) > f(k - 1)));
    // Then a monotone decay to 1% of the peak, halfway down at the middle of the decay.
    assert!((10..total).all(|k| f(k + 1) <= f(k)));
    assert!((f(total) - 0.01).abs() < 1e-12);
    assert!((f(105) - (0.01 + 0.99 * 0.5)).abs() < 1e-12);
    assert!((0..total).all(|k| Schedule::Constant.factor(k, total) == 1.0));
    assert!(Schedule::from_name("linear").is_err());
}

#[test]
fn presets_and_their_overrides() {
    use tfmpe::sbi::train::{Overrides, Preset, Schedule};
    let fast = Preset::Fast.train();
    // 3 000 steps: 167 epochs of 18 batches, 67 of 45, and never more than max_epochs.
    assert_eq!((fast.epoch_cap(18), fast.epoch_cap(45), fast.epoch_cap(1)), (167, 67, 1000));
    assert_eq!(Preset::Paper.train(), TrainConfig::default());
    assert_eq!(TrainConfig::default().epoch_cap(45), 1000);
    // Epochs alone set the length; the schedule and the peak stay the preset's.
    let o = Overrides { max_epochs: Some(150), patience: Some(30), ..Overrides::default() };
    let t = fast.clone().overridden(&o).unwrap();
    assert_eq!((t.max_epochs, t.max_steps, t.patience, t.lr), (150, None, 30, 1e-3));
    assert!(matches!(t.schedule, Schedule::WarmupCosine { .. }));
    let o = Overrides { max_steps: Some(500), schedule: Some("constant".into()), ..o };
    let t = fast.clone().overridden(&o).unwrap();
    assert_eq!((t.max_epochs, t.max_steps, t.schedule), (150, Some(500), Schedule::Constant));
    let bad = Overrides { schedule: Some("step".into()), ..Overrides::default() };
    assert!(fast.overridden(&bad).is_err());
    assert!(Preset::from_name("slow").is_err());
}
