//! tdsscope: reads network captures and explains, connection by connection, why SQL Server
//! connections fail.
//!
//! The pipeline flows one way: [`capture`] sources → [`decode`] (link/IP/transport) →
//! [`tcp`] tracking and reassembly → protocol parsers → connection facts → diagnosis rules →
//! report renderers.
#![forbid(unsafe_code)]
// Production code never unwraps: what it handles comes from capture files and the network.
// (Test modules, compiled only under cfg(test), may.)
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod analyze;
pub mod capture;
pub mod cli;
pub mod decode;
pub mod diagnose;
pub mod facts;
pub mod limits;
pub mod proto;
pub mod report;
pub mod session;
pub mod tcp;
pub mod time;
