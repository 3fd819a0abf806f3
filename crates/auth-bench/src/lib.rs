//! What the benchmark binaries share: the bare handler that is their performance ceiling.

pub mod bare;
