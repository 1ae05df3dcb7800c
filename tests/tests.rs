//! Integration tests: one binary, one module per area.

mod capture_readers;
mod cli;
mod decode_tshark;
mod exchanges;
mod generated;
mod manifest;
mod mars;
mod passwords;
mod proto_tcp_tshark;
mod proto_tls_tshark;
mod proto_udp_tshark;
mod schema;
mod shared;
mod snapshots;
mod tds_tshark;
mod tshark;
mod util;
