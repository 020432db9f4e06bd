//! The benchmark's methods: `run`'s four, each trained once per configuration and amortised
//! over its observations, and `sequential`, trained anew for each observation.

use crate::error::{Error, Result};
use crate::sbi::Method;

/// Rounds of a `sequential` configuration: the reference's sequential LF runs two.
pub const SEQUENTIAL_ROUNDS: usize = 2;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BenchMethod {
    /// One of `tfmpe run --method`'s methods.
    Amortised(Method),
    /// LF in [`SEQUENTIAL_ROUNDS`] rounds (`tfmpe run --rounds 2`), the later one simulated at
    /// a proposal drawn at the observation: one network per observation, so no amortised
    /// figures (L-C2ST, SBC, TARP), only C2ST where the posterior is exact.
    Sequential,
}

impl BenchMethod {
    /// The benchmark's default: every method.
    pub const ALL: [BenchMethod; 5] = [
        BenchMethod::Amortised(Method::Lf),
        BenchMethod::Amortised(Method::Direct),
        BenchMethod::Amortised(Method::Pf),
        BenchMethod::Amortised(Method::Joint),
        BenchMethod::Sequential,
    ];

    pub fn name(self) -> &'static str {
        match self {
            BenchMethod::Amortised(m) => m.name(),
            BenchMethod::Sequential => "sequential",
        }
    }
}

impl std::str::FromStr for BenchMethod {
    type Err = Error;

    fn from_str(s: &str) -> Result<BenchMethod> {
        if s == "sequential" {
            return Ok(BenchMethod::Sequential);
        }
        s.parse().map(BenchMethod::Amortised).map_err(|_| {
            Error::Invalid(format!("unknown method `{s}`: use lf, direct, pf, joint or sequential"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for m in BenchMethod::ALL {
            assert_eq!(m.name().parse::<BenchMethod>().unwrap(), m);
        }
        let err = "rounds".parse::<BenchMethod>().unwrap_err().to_string();
        assert!(err.contains("`rounds`") && err.contains("or sequential"), "{err}");
    }
}
