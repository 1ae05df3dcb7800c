//! Integration tests: one binary, one module per area.

mod cli;
mod tshark;
mod util;
