//! The tape's tests: every op's backward rule against central finite differences (in f64 on
//! the CPU), the nn layers and the whole model, the tape's modes, and its errors on bad input.
//!
//! How a check works: the op's output `y` is reduced to a scalar by a fixed random linear
//! functional `L = Σ r_i y_i` (itself a `linear` op, so the root is an ordinary one-element
//! node), or the op is used as it is when it is a loss. `backward` gives dL/dθ for every
//! variable leaf and parameter θ; the reference is `(L(θ + ε) - L(θ - ε)) / 2ε`, with the two
//! losses evaluated on the device in f32 and the quotient formed in f64.
//!
//! Tolerance `|analytic - numeric| <= ATOL + RTOL · |numeric|`, from the error of the
//! quotient. Rounding: L is a sum of O(10-100) f32 terms of size O(1), so each evaluation
//! carries an error of about 1e-6; divided by 2ε = 2e-2 that is ~5e-5 in the quotient.
//! Truncation: ε²/6 · |L'''| ≈ 2e-5 · |L'''|, with |L'''| at most O(10) for the smooth ops here
//! (inputs are kept at unit scale) and exactly 0 for the linear ones. Measured, the worst error
//! of any check is below 7e-5. ATOL = 2e-4 covers that with margin; RTOL = 1e-3 covers the
//! largest gradients, where the relative error of the reference dominates. A rule off by 1 %
//! already fails; a wrong rule (a missing term, a transposed operand, a lost accumulation) is
//! off by O(1) and fails by orders of magnitude.

#[path = "../common/mod.rs"]
mod common;
mod errors;
mod model;
mod modes;
mod nn;
mod ops;

use rand::rngs::StdRng;
use tfmpe::tape::{ParamStore, Tape, Var};
use tfmpe::{Device, Result};

const EPS: f32 = 1e-2;
const ATOL: f64 = 2e-4;
const RTOL: f64 = 1e-3;

/// A differentiable input of a check: a [`Tape::variable`] leaf.
pub struct Input {
    pub data: Vec<f32>,
    pub shape: Vec<usize>,
}

impl Input {
    pub fn new(data: Vec<f32>, shape: &[usize]) -> Self {
        Input { data, shape: shape.to_vec() }
    }

    /// Standard normal values.
    pub fn normal(rng: &mut StdRng, shape: &[usize]) -> Self {
        Input::new(common::normal(rng, shape.iter().product()), shape)
    }
}

pub fn cpu_tape() -> Tape {
    Tape::new(ParamStore::new(&Device::cpu()))
}

/// Records the graph of a check and reduces it to a scalar.
struct Graph<F> {
    build: F,
    /// The weights `r` of the linear functional, drawn once the output size is known.
    functional: Vec<f32>,
}

impl<F: Fn(&mut Tape, &[Var]) -> Result<Var>> Graph<F> {
    fn record(&mut self, tape: &mut Tape, inputs: &[Input]) -> Result<(Var, Vec<Var>)> {
        tape.reset();
        let vars =
            inputs.iter().map(|i| tape.variable(&i.data, &i.shape)).collect::<Result<Vec<_>>>()?;
        let y = (self.build)(tape, &vars)?;
        let n: usize = tape.shape(y)?.iter().product();
        if n == 1 {
            return Ok((y, vars));
        }
        if self.functional.is_empty() {
            self.functional = common::normal(&mut common::rng(n as u64), n);
        }
        let flat = tape.reshape(y, &[1, n])?;
        let r = tape.input(&self.functional, &[n, 1])?;
        Ok((tape.linear(flat, r, None)?, vars))
    }

    fn loss(&mut self, tape: &mut Tape, inputs: &[Input]) -> f64 {
        let (loss, _) = self.record(tape, inputs).unwrap();
        tape.to_vec(loss).unwrap()[0] as f64
    }
}

/// `(f(x + ε) - f(x - ε)) / 2ε`.
fn central(x: f32, mut f: impl FnMut(f32) -> f64) -> f64 {
    (f(x + EPS) - f(x - EPS)) / (2.0 * EPS as f64)
}

/// Checks the gradient of every input and every parameter of `tape`'s store for the graph
/// that `build` records from the inputs' variables.
pub fn gradcheck(
    name: &str, tape: &mut Tape, inputs: &[Input], build: impl Fn(&mut Tape, &[Var]) -> Result<Var>,
) {
    let mut graph = Graph { build, functional: Vec::new() };
    let (loss, vars) =
        graph.record(tape, inputs).unwrap_or_else(|e| panic!("{name}: forward: {e}"));
    tape.backward(loss).unwrap_or_else(|e| panic!("{name}: backward: {e}"));
    let device = tape.device().clone();
    let down = |b| device.backend().download_f32(b).unwrap();
    let mut checks = Vec::new();
    for (k, (&v, input)) in vars.iter().zip(inputs).enumerate() {
        let grad = tape.grad(v).unwrap().map_or(vec![0.0; input.data.len()], down);
        checks.push((format!("input {k}"), grad));
    }
    let params: Vec<(String, Vec<f32>)> =
        tape.params().iter().map(|p| (p.name.to_string(), down(p.value))).collect();
    for p in tape.params().iter() {
        let grad = down(tape.params().grad(p.id).unwrap());
        checks.push((format!("parameter {}", p.name), grad));
    }

    let mut work: Vec<Input> =
        inputs.iter().map(|i| Input::new(i.data.clone(), &i.shape)).collect();
    let mut numeric = Vec::new();
    for (k, input) in inputs.iter().enumerate() {
        let g = (0..input.data.len())
            .map(|e| {
                let d = central(input.data[e], |x| {
                    work[k].data[e] = x;
                    graph.loss(tape, &work)
                });
                work[k].data[e] = input.data[e];
                d
            })
            .collect();
        numeric.push(g);
    }
    for (pname, value) in &params {
        let mut v = value.clone();
        let g = (0..value.len())
            .map(|e| {
                let d = central(value[e], |x| {
                    v[e] = x;
                    tape.params_mut().load(pname, &v).unwrap();
                    graph.loss(tape, &work)
                });
                v[e] = value[e];
                d
            })
            .collect::<Vec<_>>();
        tape.params_mut().load(pname, value).unwrap();
        numeric.push(g);
    }
    for ((label, analytic), numeric) in checks.iter().zip(&numeric) {
        let worst = analytic
            .iter()
            .zip(numeric)
            .map(|(&a, &n)| (a as f64 - n).abs() / (ATOL + RTOL * n.abs()))
            .fold(0.0, f64::max);
        eprintln!("{name}: d/d {label}: worst error {worst:.3} of the tolerance");
        common::assert_close(&format!("{name}: d/d {label}"), analytic, numeric, ATOL, RTOL);
    }
}
