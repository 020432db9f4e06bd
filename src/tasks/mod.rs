//! Benchmark and example models: priors, simulators, bijections, exact posteriors.
