use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::*;
use crate::tasks::{simulate_dataset, Bijection, HierGaussian, HierGaussianLinear, Variable};

/// A model with functional inputs, which no built-in task has yet: `inputs` named inputs per
/// observation scalar and the observation variables `obs`.
struct Toy {
    obs: Vec<Variable>,
    inputs: Vec<&'static str>,
}

/// One input `t` per scalar and one observation variable `y` of size 3.
fn curve() -> Toy {
    Toy { obs: vec![Variable::new("y", 3, Bijection::Identity)], inputs: vec!["t"] }
}

impl HierarchicalModel for Toy {
    fn name(&self) -> &str {
        "toy"
    }

    fn global_variables(&self) -> Vec<Variable> {
        vec![Variable::scalar("mu", Bijection::Identity)]
    }

    fn local_variables(&self) -> Vec<Variable> {
        vec![Variable::scalar("theta", Bijection::Identity)]
    }

    fn observation_variables(&self) -> Vec<Variable> {
        self.obs.clone()
    }

    fn functional_input_dim(&self) -> usize {
        self.inputs.len()
    }

    fn functional_input_names(&self) -> Vec<String> {
        self.inputs.iter().map(|n| n.to_string()).collect()
    }

    fn sample_functional_inputs(&self, rng: &mut dyn rand::Rng) -> Option<Vec<f64>> {
        let n = self.obs_dim() * self.inputs.len();
        (n > 0).then(|| (0..n).map(|_| rng.random::<f64>()).collect())
    }

    fn sample_globals(&self, rng: &mut dyn rand::Rng) -> Vec<f64> {
        vec![rng.random::<f64>()]
    }

    fn sample_locals(&self, globals: &[f64], rng: &mut dyn rand::Rng) -> Vec<f64> {
        vec![globals[0] + rng.random::<f64>()]
    }

    fn simulate_site(
        &self, _globals: &[f64], locals: &[f64], _inputs: Option<&[f64]>, rng: &mut dyn rand::Rng,
    ) -> Vec<f64> {
        (0..self.obs_dim()).map(|_| locals[0] + rng.random::<f64>()).collect()
    }
}

fn simulated(task: &dyn HierarchicalModel, sites: &[usize]) -> Vec<Observed> {
    let mut rng = StdRng::seed_from_u64(7);
    sites.iter().map(|&s| simulate_dataset(task, s, &mut rng).unwrap().observed()).collect()
}

fn round_trip(task: &dyn HierarchicalModel, data: &[Observed]) -> Table {
    let table = observations_table(task, data).unwrap();
    // Through the CSV text too, so that the written numbers are the ones read back.
    let text = table.to_csv();
    let parsed = Table::parse(&text, "obs.csv").unwrap();
    assert_eq!(parse_observations(&parsed, "obs.csv", task).unwrap(), data, "{text}");
    table
}

fn parse_err(text: &str, task: &dyn HierarchicalModel) -> String {
    let table = Table::parse(text, "obs.csv").unwrap();
    let e = parse_observations(&table, "obs.csv", task).unwrap_err().to_string();
    assert!(e.contains("obs.csv"), "{e}");
    e
}

#[test]
fn wide_single_round_trip() {
    let data = simulated(&HierGaussian, &[2]);
    let table = round_trip(&HierGaussian, &data);
    assert_eq!(table.columns, HierGaussian.observation_names(2), "no dataset column for one set");
}

#[test]
fn wide_many_round_trip() {
    let data = simulated(&HierGaussianLinear, &[4, 4, 4]);
    let table = round_trip(&HierGaussianLinear, &data);
    assert_eq!(table.columns[0], "dataset");
    assert_eq!(table.rows.len(), 3);
}

#[test]
fn long_single_round_trip() {
    let data = simulated(&curve(), &[3]);
    let table = round_trip(&curve(), &data);
    assert_eq!(table.columns, ["site", "t", "y"]);
    assert_eq!(table.rows.len(), 9);
}

#[test]
fn long_many_round_trip_with_different_site_counts() {
    let data = simulated(&curve(), &[2, 5]);
    let table = round_trip(&curve(), &data);
    assert_eq!(table.columns, ["dataset", "site", "t", "y"]);
    // Without functional inputs, different site counts also need the long layout.
    let data = simulated(&HierGaussian, &[1, 3]);
    assert_eq!(round_trip(&HierGaussian, &data).columns, ["dataset", "site", "y"]);
}

#[test]
fn long_rows_hold_one_value_of_every_variable() {
    let two = Toy {
        obs: vec![
            Variable::new("y", 2, Bijection::Identity),
            Variable::new("z", 2, Bijection::Identity),
        ],
        inputs: vec!["t", "x"],
    };
    let text = "site,t,x,y,z\n0,0.5,1,10,20\n0,0.7,2,11,21\n";
    let data = parse_observations(&Table::parse(text, "obs.csv").unwrap(), "obs.csv", &two);
    let want = Observed {
        sites: 1,
        values: vec![10.0, 11.0, 20.0, 21.0],
        inputs: Some(vec![0.5, 1.0, 0.7, 2.0, 0.5, 1.0, 0.7, 2.0]),
        counts: None,
    };
    assert_eq!(data.unwrap(), std::slice::from_ref(&want));
    round_trip(&two, &[want.clone(), want]);
}

#[test]
fn long_keeps_file_order_within_a_site_and_sorts_data_sets() {
    let text = "dataset,site,t,y\n1,0,0,5\n0,1,0,4\n0,0,0,1\n0,0,0,2\n0,1,0,5\n1,0,0,6\n0,0,0,3\n\
                0,1,0,6\n1,0,0,7\n";
    let data = parse_observations(&Table::parse(text, "obs.csv").unwrap(), "obs.csv", &curve());
    let values: Vec<Vec<f64>> = data.unwrap().into_iter().map(|d| d.values).collect();
    assert_eq!(values, [vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], vec![5.0, 6.0, 7.0]]);
}

#[test]
fn wide_rows_come_back_in_dataset_order() {
    let text = "dataset,y.0,y.1\n2,20,21\n0,0,1\n";
    let t = Table::parse(text, "obs.csv").unwrap();
    let data = parse_observations(&t, "obs.csv", &HierGaussianLinear).unwrap();
    assert_eq!(data[0].values, [0.0, 1.0]);
    assert_eq!(data[1].values, [20.0, 21.0]);
}

#[test]
fn files_round_trip() {
    let dir = std::env::temp_dir().join(format!("tfmpe-observations-{}", std::process::id()));
    crate::io::ensure_dir(&dir).unwrap();
    let path = dir.join("observations.csv");
    let data = simulated(&curve(), &[1, 2]);
    write_observations(&path, &curve(), &data).unwrap();
    assert_eq!(read_observations(&path, &curve()).unwrap(), data);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn wrong_column_names_show_the_expected_header() {
    let e = parse_err("y.0,x.1\n1,2\n", &HierGaussianLinear);
    assert!(e.contains("`x.1` where `y.1` belongs") && e.contains("`y.0,y.1`"), "{e}");
    let e = parse_err("site,time,y\n0,0,1\n", &curve());
    assert!(e.contains("`time` where `t` belongs") && e.contains("`site,t,y`"), "{e}");
    let e = parse_err("site,t\n0,0\n", &curve());
    assert!(e.contains("column `y` is missing"), "{e}");
}

#[test]
fn missing_site_is_named() {
    let e = parse_err("dataset,site,y\n4,0,1\n4,2,1\n", &HierGaussianLinear);
    assert!(e.contains("site 1 of dataset 4 is missing"), "{e}");
}

#[test]
fn wrong_row_count_names_site_dataset_and_counts() {
    let e = parse_err("dataset,site,t,y\n1,0,0,1\n1,0,0,1\n1,0,0,1\n1,1,0,1\n", &curve());
    assert!(
        e.contains("site 1 of dataset 1 has 1 rows; task `toy` observes 3 values per site"),
        "{e}"
    );
}

#[test]
fn ids_must_be_non_negative_integers() {
    let e = parse_err("site,y\n1.5,1\n", &HierGaussianLinear);
    assert!(e.contains("line 2, column `site`: 1.5 is not an id"), "{e}");
    let e = parse_err("dataset,site,y\n0,0,1\n-1,0,1\n", &HierGaussianLinear);
    assert!(e.contains("line 3, column `dataset`: -1 is not an id"), "{e}");
    let e = parse_err("dataset,y.0\n0.5,1\n", &HierGaussianLinear);
    assert!(e.contains("line 2, column `dataset`"), "{e}");
}

#[test]
fn non_finite_values_name_line_and_column() {
    let e = parse_err("site,t,y\n0,0,1\n0,inf,2\n0,0,3\n", &curve());
    assert!(e.contains("line 3, column `t`: inf is not a finite number"), "{e}");
    let e = parse_err("y.0,y.1\n1,NaN\n", &HierGaussianLinear);
    assert!(e.contains("line 2, column `y.1`: NaN"), "{e}");
}

#[test]
fn functional_tasks_cannot_use_the_wide_layout() {
    let e = parse_err("y.0[0],y.0[1],y.0[2]\n1,2,3\n", &curve());
    assert!(e.contains("use the long layout") && e.contains("`site,t,y`"), "{e}");
}

#[test]
fn duplicate_wide_dataset_ids_are_refused() {
    let e = parse_err("dataset,y.0\n3,1\n0,1\n3,2\n", &HierGaussianLinear);
    assert!(e.contains("lines 2 and 4 both hold dataset 3"), "{e}");
}

#[test]
fn variables_of_different_sizes_cannot_be_long() {
    let uneven = Toy {
        obs: vec![
            Variable::new("y", 2, Bijection::Identity),
            Variable::scalar("z", Bijection::Identity),
        ],
        inputs: vec!["t"],
    };
    let e = parse_err("site,t,y,z\n0,0,1,2\n", &uneven);
    assert!(e.contains("differ in size (y has 2, z has 1)"), "{e}");
    let data = [Observed {
        sites: 1,
        values: vec![1.0, 2.0, 3.0],
        inputs: Some(vec![0.0; 3]),
        counts: None,
    }];
    assert!(observations_table(&uneven, &data).is_err());
}

#[test]
fn header_without_rows_is_refused() {
    let e = parse_err("y.0\n", &HierGaussianLinear);
    assert!(e.contains("no rows"), "{e}");
}

#[test]
fn writing_checks_the_data_sets_against_the_task() {
    let bad = [Observed { sites: 2, values: vec![1.0], inputs: None, counts: None }];
    assert!(observations_table(&HierGaussianLinear, &bad).is_err());
    let missing_inputs = [Observed { sites: 1, values: vec![1.0; 3], inputs: None, counts: None }];
    let e = observations_table(&curve(), &missing_inputs).unwrap_err().to_string();
    assert!(e.contains("needs 3 functional-input values"), "{e}");
    assert!(observations_table(&HierGaussianLinear, &[]).is_err());
}

#[test]
fn ragged_sites_are_read_and_written_for_tasks_that_allow_them() {
    let brownian = crate::tasks::task_by_name("hier-brownian").unwrap();
    let mut text = String::from("site,t,y\n");
    for (site, n) in [(0, 3), (1, 5)] {
        for j in 0..n {
            text.push_str(&format!("{site},{},{}\n", 0.1 + j as f64, j as f64 - 1.0));
        }
    }
    let table = Table::parse(&text, "obs.csv").unwrap();
    let data = parse_observations(&table, "obs.csv", &*brownian).unwrap();
    assert_eq!(data[0].counts, Some(vec![3, 5]));
    assert_eq!((data[0].values.len(), data[0].inputs.as_ref().unwrap().len()), (8, 8));
    round_trip(&*brownian, &data);

    let six = format!("{text}1,9,9\n");
    let err = parse_observations(&Table::parse(&six, "obs.csv").unwrap(), "obs.csv", &*brownian)
        .unwrap_err()
        .to_string();
    assert!(err.contains("site 1 has 6 rows") && err.contains("between 1 and 5"), "{err}");
    // A task whose sites always observe every value refuses a site with fewer.
    let gaussian = crate::tasks::task_by_name("hier-gaussian").unwrap();
    let short = "site,y\n0,1\n0,2\n";
    let err = parse_observations(&Table::parse(short, "obs.csv").unwrap(), "obs.csv", &*gaussian)
        .unwrap_err()
        .to_string();
    assert!(err.contains("site 0 has 2 rows") && err.contains("observes 5 values"), "{err}");
}
