//! The text report: one line per TCP connection as it ends, its findings beneath it, then the
//! inputs and a summary of outcomes and capture-level findings.

use std::io::{self, Write};

use super::model::{Connection, Finding, Severity, Totals};
use super::ReportWriter;

pub struct TextWriter<W: Write> {
    out: W,
    header_done: bool,
}

impl<W: Write> TextWriter<W> {
    pub fn new(out: W) -> Self {
        TextWriter {
            out,
            header_done: false,
        }
    }

    fn header(&mut self) -> io::Result<()> {
        if !self.header_done {
            self.header_done = true;
            writeln!(
                self.out,
                "{:>6}  {:<47} {:<27} {:>10} {:>7} {:>12} {:>12}  ended",
                "conn",
                "client -> server",
                "start (UTC)",
                "duration",
                "frames",
                "bytes c->s",
                "bytes s->c"
            )?;
        }
        Ok(())
    }
}

fn severity_tag(s: Severity) -> &'static str {
    match s {
        Severity::Error => "ERROR",
        Severity::Warning => "WARN ",
        Severity::Info => "info ",
    }
}

fn write_finding(out: &mut impl Write, f: &Finding, indent: &str) -> io::Result<()> {
    writeln!(
        out,
        "{indent}{} {}: {}",
        severity_tag(f.severity),
        f.code,
        f.summary
    )?;
    for e in &f.evidence {
        writeln!(
            out,
            "{indent}      frame {} (input {}) at {}: {}",
            e.frame, e.input, e.time, e.note
        )?;
    }
    Ok(())
}

/// "2006-03-01T10:08:22.123456789Z" → "2006-03-01 10:08:22.123456" (µs are enough on a line).
fn short_time(rfc3339: &str) -> String {
    let t = rfc3339.replace('T', " ");
    let t = t.trim_end_matches('Z');
    match t.find('.') {
        Some(dot) => t.chars().take(dot + 7).collect(),
        None => t.to_string(),
    }
}

impl<W: Write> ReportWriter for TextWriter<W> {
    fn connection(&mut self, c: &Connection) -> io::Result<()> {
        self.header()?;
        let ended = match (c.ended_by.how, c.ended_by.by) {
            ("fin", Some(by)) => format!("FIN by {by}"),
            ("half_close", Some(by)) => format!("FIN by {by} only"),
            ("rst", Some(by)) => format!("RST by {by}"),
            ("evicted", _) => "evicted (limit)".to_string(),
            _ => "still open".to_string(),
        };
        writeln!(
            self.out,
            "{:>6}  {:<47} {:<27} {:>9.3}s {:>7} {:>12} {:>12}  {} [{}]",
            format!("#{}", c.id),
            format!("{} -> {}", c.client, c.server),
            short_time(&c.start),
            c.duration_s,
            c.stats.frames,
            c.stats.bytes_to_server,
            c.stats.bytes_to_client,
            ended,
            c.outcome
        )?;
        for f in &c.findings {
            write_finding(&mut self.out, f, "          ")?;
        }
        Ok(())
    }

    fn finish(&mut self, totals: &Totals) -> io::Result<()> {
        if totals.connections == 0 {
            writeln!(self.out, "No TCP connections in the capture.")?;
        }
        writeln!(self.out)?;
        writeln!(self.out, "Inputs:")?;
        for (i, input) in totals.inputs.iter().enumerate() {
            let span = match (&input.first_time, &input.last_time) {
                (Some(a), Some(b)) => format!("{} .. {}", short_time(a), short_time(b)),
                _ => "no frames".to_string(),
            };
            writeln!(
                self.out,
                "  [{i}] {} ({}{}): {} frames, {}",
                input.path,
                input.format.unwrap_or("unreadable"),
                if input.compressed { ", gzip" } else { "" },
                input.frames,
                span
            )?;
            if let Some(err) = &input.error {
                writeln!(self.out, "      stopped early: {err}")?;
            }
        }
        if !totals.findings.is_empty() {
            writeln!(self.out)?;
            writeln!(self.out, "Capture findings:")?;
            for f in &totals.findings {
                write_finding(&mut self.out, f, "  ")?;
            }
        }
        writeln!(self.out)?;
        let outcomes: Vec<String> = totals
            .outcomes
            .iter()
            .map(|(k, v)| format!("{v} {k}"))
            .collect();
        writeln!(
            self.out,
            "{} TCP connection{}: {}",
            totals.connections,
            if totals.connections == 1 { "" } else { "s" },
            if outcomes.is_empty() {
                "none".to_string()
            } else {
                outcomes.join(", ")
            }
        )?;
        self.out.flush()
    }
}
