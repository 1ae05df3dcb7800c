//! Integration tests: one binary, one module per area.

mod cli;
mod decode_tshark;
mod tshark;
mod util;
