//! Integration tests: one binary, one module per area.

mod capture_readers;
mod cli;
mod decode_tshark;
mod generated;
mod proto_tls_tshark;
mod tshark;
mod util;
