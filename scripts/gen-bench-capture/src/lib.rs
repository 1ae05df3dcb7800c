//! gen-bench-capture: a deterministic generator of large classic pcap files full of concurrent
//! TDS (SQL Server) connections, for benchmarking tdsscope. See docs/benchmark.md.
#![forbid(unsafe_code)]

pub mod rng;
pub mod sim;
pub mod tds;
pub mod wire;

pub use sim::{Config, Generator, Stats};
