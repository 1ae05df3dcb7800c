//! Command-line flags (what the user typed) turned into [`Options`](crate::analyze::Options)
//! (what we run).

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::analyze::Options;
use crate::diagnose::Settings;
use crate::limits::Limits;
use crate::session::ServerHint;

const EXAMPLES: &str = "\
Examples:
  tdsscope analyze trace.pcapng
      Report every TCP connection in the capture and what went wrong on it.
  tdsscope analyze --format json client.pcap > report.json
      The same report as JSON (schema: docs/report-schema.md).
  tdsscope analyze trace_00001.pcap trace_00002.pcap trace_00003.pcap
      Several files of one rolling capture (dumpcap -b), read as one capture in time order.
  tdsscope analyze capture.cap.gz
      Network Monitor 2.x and gzip-compressed captures are recognised by their content.

Exit status: 0 no error finding, 1 at least one error finding, 2 an input could not be read
or the command line was wrong.";

#[derive(Debug, Parser)]
#[command(
    name = "tdsscope",
    version,
    about = "Explains, connection by connection, why SQL Server connections in a network capture fail",
    after_help = EXAMPLES
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Analyse capture files (pcap, pcapng, Network Monitor 2.x; gzip-compressed too).
    #[command(after_help = EXAMPLES)]
    Analyze(AnalyzeArgs),
    /// Print the JSON Schema of the `--format json` report (docs/report.schema.json).
    Schema,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// A report for people: one line per connection, findings beneath.
    Text,
    /// The JSON report (schema tdsscope-report/1).
    Json,
}

#[derive(Debug, clap::Args)]
pub struct AnalyzeArgs {
    /// Capture files; several files are read as one capture, in order of their first timestamp.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,

    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,

    /// No progress bar.
    #[arg(short, long)]
    pub quiet: bool,

    /// Show each connection's milestones (handshake, PRELOGIN, TLS, LOGIN7, LOGINACK or
    /// ERROR, requests, ATTENTION, FIN/RST) with frame numbers and times.
    #[arg(short, long)]
    pub verbose: bool,

    /// Most TCP connections tracked at once; past this the least recently active one is
    /// reported early.
    #[arg(long, value_name = "N", default_value_t = Limits::default().max_connections)]
    pub max_connections: usize,

    /// Out-of-order bytes buffered per connection direction (MiB) before the hole is declared
    /// a gap.
    #[arg(long, value_name = "MIB", default_value_t = Limits::default().stream_buffer_bytes >> 20)]
    pub stream_buffer_mib: usize,

    /// Out-of-order bytes buffered across all connections (MiB).
    #[arg(long, value_name = "MIB", default_value_t = Limits::default().total_buffer_bytes >> 20)]
    pub total_buffer_mib: usize,

    /// A SQL Server the capture may not show as one (TDS inside TLS only, no login seen):
    /// IP or IP:PORT; repeatable.
    #[arg(long = "server", value_name = "IP[:PORT]")]
    pub servers: Vec<ServerHint>,

    /// Seconds without application data after which a reset connection counts as killed
    /// while idle (idle.killed).
    #[arg(long, value_name = "SECONDS", default_value_t = 5.0)]
    pub idle_threshold: f64,

    /// Seconds from SYN to LOGINACK above which a login is reported as slow (login.slow).
    #[arg(long, value_name = "SECONDS", default_value_t = 2.0)]
    pub slow_login: f64,
}

impl AnalyzeArgs {
    pub fn options(&self) -> Options {
        let limits = Limits {
            max_connections: self.max_connections.max(1),
            stream_buffer_bytes: self.stream_buffer_mib.saturating_mul(1 << 20),
            total_buffer_bytes: self.total_buffer_mib.saturating_mul(1 << 20),
            ..Limits::default()
        };
        let secs_to_ns = |s: f64| (s.max(0.0) * 1e9) as i64;
        let settings = Settings {
            idle_threshold_ns: secs_to_ns(self.idle_threshold),
            slow_login_ns: secs_to_ns(self.slow_login),
        };
        Options {
            limits,
            settings,
            verbose: self.verbose,
            hints: self.servers.clone(),
        }
    }
}
