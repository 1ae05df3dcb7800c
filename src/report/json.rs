//! The JSON report (`--format json`), schema `tdsscope-report/1`, documented in
//! `docs/report-schema.md`.
//!
//! Wire format: one JSON object. `connections` comes first and is written as each
//! connection ends (so memory stays flat on large captures); `inputs`, `servers`,
//! `exchanges` and `findings` follow once the whole capture is read. Consumers must not rely
//! on key order (JSON objects are unordered); connection order is the order connections
//! ended, which is stable from run to run. Sort by `id` for first-packet order.

use std::io::{self, Write};

use super::model::{Connection, Totals, SCHEMA};
use super::ReportWriter;

pub struct JsonWriter<W: Write> {
    out: W,
    connections: u64,
    started: bool,
}

impl<W: Write> JsonWriter<W> {
    pub fn new(out: W) -> Self {
        JsonWriter {
            out,
            connections: 0,
            started: false,
        }
    }

    fn start(&mut self) -> io::Result<()> {
        if !self.started {
            self.started = true;
            write!(self.out, "{{\"schema\":\"{SCHEMA}\",\"connections\":[")?;
        }
        Ok(())
    }
}

impl<W: Write> ReportWriter for JsonWriter<W> {
    fn connection(&mut self, c: &Connection) -> io::Result<()> {
        self.start()?;
        if self.connections > 0 {
            self.out.write_all(b",")?;
        }
        self.out.write_all(b"\n")?;
        serde_json::to_writer(&mut self.out, c)?;
        self.connections += 1;
        Ok(())
    }

    fn finish(&mut self, totals: &Totals) -> io::Result<()> {
        self.start()?;
        self.out.write_all(b"\n],\n\"inputs\":")?;
        serde_json::to_writer(&mut self.out, &totals.inputs)?;
        self.out.write_all(b",\n\"servers\":")?;
        serde_json::to_writer(&mut self.out, &totals.servers)?;
        self.out.write_all(b",\n\"exchanges\":")?;
        serde_json::to_writer(&mut self.out, &totals.exchanges)?;
        self.out.write_all(b",\n\"findings\":")?;
        serde_json::to_writer(&mut self.out, &totals.findings)?;
        self.out.write_all(b",\n\"summary\":")?;
        serde_json::to_writer(
            &mut self.out,
            &serde_json::json!({
                "connections": totals.connections,
                "outcomes": totals.outcomes,
            }),
        )?;
        self.out.write_all(b"}\n")?;
        self.out.flush()
    }
}

/// The JSON Schema of the report, generated from the Rust types that produce it.
pub fn schema() -> serde_json::Value {
    let schema = schemars::schema_for!(super::model::Report);
    serde_json::to_value(&schema).unwrap_or(serde_json::Value::Null)
}
