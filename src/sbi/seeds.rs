//! Named seed streams. Every random draw of a pipeline run takes its seed from one stream of the
//! run's seed, so no two uses share a random sequence and a fixed seed reproduces a run.
//!
//! The stream ids are part of the reproducibility contract: changing one changes the draws of
//! every fixed-seed run. The ids of the original streams are kept as they were; a new stream
//! takes an id no other stream uses (the tests check that).

/// One use of randomness. [`Stream::seed`] derives its seed from a base seed and an index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// LF's single-site simulations; index: the simulation.
    SingleSites,
    /// The initial weights of LF's likelihood surrogate.
    SurrogateInit,
    /// The training noise and batch order of the surrogate.
    SurrogateTraining,
    /// The base seed of LF's synthetic sets, from which the `Synthetic*` streams draw.
    SyntheticSets,
    /// The initial weights of the posterior network.
    PosteriorInit,
    /// The training noise and batch order of the posterior network.
    PosteriorTraining,
    /// The direct method's S-site simulations; index: the simulated set.
    DirectSets,
    /// The data sets simulated from the prior for SBC and TARP.
    CalibrationSets,
    /// The ODE start noise of the posterior draws for SBC and TARP.
    CalibrationDraws,
    /// The ODE start noise of the run's posterior samples (`samples.csv`).
    PosteriorSamples,
    /// Synthetic sets, draw `draw` (from [`Stream::SyntheticSets`]'s seed): the locals of
    /// each set; index: the set.
    SyntheticLocals { draw: u64 },
    /// Synthetic sets, draw `draw`: the ODE start noise of the surrogate's observations.
    SyntheticNoise { draw: u64 },
    /// Fresh synthetic sets, draw `draw`: the globals from the prior; index: the set.
    SyntheticGlobals { draw: u64 },
    /// Synthetic sets, draw `draw`: the functional inputs of each set's sites drawn from the
    /// task's input distribution; index: the set.
    SyntheticInputs { draw: u64 },
    /// Ragged synthetic sets, draw `draw`: how many observations each site keeps; index: the
    /// set.
    SyntheticCounts { draw: u64 },
    /// Hutchinson's probes of a log density, from the caller's seed; index: the probe.
    HutchinsonProbes,
    /// pf: the site counts of the simulated data sets.
    FactorisedCounts,
    /// pf: the simulated data sets; index: the set.
    FactorisedSets,
    /// pf: the initial weights of the local network.
    LocalInit,
    /// pf: the training noise and batch order of the local network.
    LocalTraining,
    /// pf: the ODE start noise of a data set's locals, from the caller's seed.
    LocalDraws,
    /// `--rounds`: the single-site simulations of a round after the first; index: the round.
    RoundSites,
    /// `--rounds`: the ODE start noise of the posterior draws that estimate the proposal;
    /// index: the round.
    ProposalDraws,
    /// `--rounds`: Hutchinson's probes of those draws' log densities; index: the round.
    ProposalProbes,
    /// `--rounds`: the resampling of those draws; index: the round.
    ProposalResample,
    /// `--rounds`: the prior draws of globals that stand in for a later round's simulations in
    /// the synthetic sets; index: the round.
    RoundPriorGlobals,
    /// `--synthetic-sets`: the prior draws of globals of the synthetic sets past the
    /// simulations' (index 0).
    PoolPriorGlobals,
    /// `--posterior-scaling conditional`: the initial weights and batch order of the networks
    /// of the locals' location (index 0) and log scale (index 1).
    PosteriorScaling,
}

/// Where the ids of the per-draw streams move once the legacy offsets would run into the next
/// stream's (after 990 draws of locals, 4000 of surrogate noise): each gets its own range there.
const OVERFLOW_RANGE: u64 = 1 << 40;

impl Stream {
    /// The number that tells this stream apart from all the others.
    pub fn id(self) -> u64 {
        match self {
            Stream::CalibrationDraws => 0,
            Stream::SingleSites => 1,
            Stream::SurrogateInit => 2,
            Stream::SurrogateTraining => 3,
            Stream::SyntheticSets => 4,
            Stream::PosteriorInit => 5,
            Stream::PosteriorTraining => 6,
            Stream::DirectSets => 7,
            Stream::CalibrationSets => 8,
            Stream::PosteriorSamples => 9,
            Stream::SyntheticLocals { draw } => per_draw(10, 1000, 1, draw),
            Stream::SyntheticNoise { draw } => per_draw(1000, 5000, 2, draw),
            Stream::SyntheticGlobals { draw } => per_draw(5000, OVERFLOW_RANGE, 3, draw),
            // Newer than the numbering above: its own range from the start.
            Stream::SyntheticInputs { draw } => 4 * OVERFLOW_RANGE + draw,
            Stream::SyntheticCounts { draw } => 5 * OVERFLOW_RANGE + draw,
            Stream::HutchinsonProbes => 6 * OVERFLOW_RANGE,
            Stream::FactorisedCounts => 6 * OVERFLOW_RANGE + 1,
            Stream::FactorisedSets => 6 * OVERFLOW_RANGE + 2,
            Stream::LocalInit => 6 * OVERFLOW_RANGE + 3,
            Stream::LocalTraining => 6 * OVERFLOW_RANGE + 4,
            // 6 · OVERFLOW_RANGE + 5 drew the globals of the local network's training rows,
            // which now take the true ones; the number stays unused so no seed moves.
            Stream::LocalDraws => 6 * OVERFLOW_RANGE + 6,
            Stream::RoundSites => 6 * OVERFLOW_RANGE + 7,
            Stream::ProposalDraws => 6 * OVERFLOW_RANGE + 8,
            Stream::ProposalProbes => 6 * OVERFLOW_RANGE + 9,
            Stream::ProposalResample => 6 * OVERFLOW_RANGE + 10,
            Stream::RoundPriorGlobals => 6 * OVERFLOW_RANGE + 11,
            Stream::PoolPriorGlobals => 6 * OVERFLOW_RANGE + 12,
            Stream::PosteriorScaling => 6 * OVERFLOW_RANGE + 13,
        }
    }

    /// The seed of item `index` of this stream under `base`: a SplitMix64-style mix of the
    /// three, so nearby bases, streams and indices give unrelated seeds.
    pub fn seed(self, base: u64, index: u64) -> u64 {
        let mut z = base
            ^ self.id().wrapping_mul(0xD1B5_4A32_D192_ED03)
            ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// `start + draw` while that stays below `end` (the original numbering), else a slot in the
/// stream's own overflow range.
fn per_draw(start: u64, end: u64, range: u64, draw: u64) -> u64 {
    if draw < end - start {
        start + draw
    } else {
        range * OVERFLOW_RANGE + draw
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    const FIXED: [Stream; 23] = [
        Stream::PosteriorScaling,
        Stream::PoolPriorGlobals,
        Stream::RoundSites,
        Stream::ProposalDraws,
        Stream::ProposalProbes,
        Stream::ProposalResample,
        Stream::RoundPriorGlobals,
        Stream::HutchinsonProbes,
        Stream::FactorisedCounts,
        Stream::FactorisedSets,
        Stream::LocalInit,
        Stream::LocalTraining,
        Stream::LocalDraws,
        Stream::SingleSites,
        Stream::SurrogateInit,
        Stream::SurrogateTraining,
        Stream::SyntheticSets,
        Stream::PosteriorInit,
        Stream::PosteriorTraining,
        Stream::DirectSets,
        Stream::CalibrationSets,
        Stream::CalibrationDraws,
        Stream::PosteriorSamples,
    ];

    /// Every stream a run can use, with the per-draw ones past their overflow points (990,
    /// 4000, and the last draw numbered the original way for the globals).
    fn all_streams() -> Vec<Stream> {
        let mut all = FIXED.to_vec();
        let last_global = OVERFLOW_RANGE - 5001;
        for draw in (0..6000).chain([last_global, last_global + 1]) {
            all.push(Stream::SyntheticLocals { draw });
            all.push(Stream::SyntheticNoise { draw });
            all.push(Stream::SyntheticGlobals { draw });
            all.push(Stream::SyntheticInputs { draw });
            all.push(Stream::SyntheticCounts { draw });
        }
        all
    }

    #[test]
    fn no_two_streams_share_an_id() {
        let all = all_streams();
        let ids: HashSet<u64> = all.iter().map(|s| s.id()).collect();
        assert_eq!(ids.len(), all.len());
    }

    #[test]
    fn no_two_streams_derive_the_same_seed() {
        let mut seen = HashSet::new();
        for base in [0, 3, u64::MAX] {
            for stream in FIXED {
                for index in 0..1000 {
                    assert!(seen.insert((base, stream.seed(base, index))), "{stream:?} {index}");
                }
            }
            for draw in [0, 1, 989, 990, 3999, 4000, 10_000] {
                for stream in [
                    Stream::SyntheticLocals { draw },
                    Stream::SyntheticNoise { draw },
                    Stream::SyntheticGlobals { draw },
                    Stream::SyntheticInputs { draw },
                    Stream::SyntheticCounts { draw },
                ] {
                    for index in 0..100 {
                        assert!(seen.insert((base, stream.seed(base, index))), "{stream:?}");
                    }
                }
            }
        }
    }

    /// The ids fixed-seed runs were made with; changing one changes their samples.
    #[test]
    fn the_original_streams_keep_their_ids() {
        let original = [
            (Stream::SingleSites, 1),
            (Stream::SurrogateInit, 2),
            (Stream::SurrogateTraining, 3),
            (Stream::SyntheticSets, 4),
            (Stream::PosteriorInit, 5),
            (Stream::PosteriorTraining, 6),
            (Stream::DirectSets, 7),
            (Stream::PosteriorSamples, 9),
        ];
        for (stream, id) in original {
            assert_eq!(stream.id(), id, "{stream:?}");
        }
        assert_eq!(Stream::SyntheticLocals { draw: 989 }.id(), 999);
        assert_eq!(Stream::SyntheticNoise { draw: 3999 }.id(), 4999);
        assert_eq!(Stream::SyntheticGlobals { draw: 7 }.id(), 5007);
        assert_eq!(Stream::DirectSets.seed(4, 0), 0x080F_5562_9BB5_5AF8);
    }
}
