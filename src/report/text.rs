//! The text report, for a DBA reading a terminal: a header (inputs, time span, SQL Servers
//! found), then the connections with problems grouped by server, each with its findings,
//! evidence frames and next steps; then the healthy connections as counts and a compact table;
//! then capture-wide findings and a summary of outcomes and codes.
//!
//! Connections arrive as they end; the ones with problems are held until the end so that they
//! can be grouped (up to [`MAX_HELD`]; beyond, they are counted and the JSON report has them).

use std::collections::{BTreeMap, HashSet};
use std::io::{self, Write};

use anstyle::{AnsiColor, Style};

use super::model::{Connection, ExchangeRequest, Finding, Severity, Totals};
use super::ReportWriter;
use crate::diagnose::Code;

/// Problem connections held for grouping. 10,000 of them is ~30 MB; a capture with more is
/// better read as JSON, which streams.
const MAX_HELD: usize = 10_000;
/// Connection ids printed under a capture-level finding; the JSON report has them all.
const IDS_LISTED: usize = 40;

/// Rows of the healthy-connections table.
const HEALTHY_ROWS: usize = 40;

/// How to render: colours and the width to wrap text at.
#[derive(Clone, Copy, Debug)]
pub struct TextStyle {
    pub color: bool,
    pub width: usize,
}

impl Default for TextStyle {
    fn default() -> Self {
        TextStyle {
            color: false,
            width: 100,
        }
    }
}

/// A finding's next steps, as the report model holds them.
type NextSteps = Vec<std::borrow::Cow<'static, str>>;

pub struct TextWriter<W: Write> {
    out: W,
    style: TextStyle,
    /// Problem connections, by server, in the order they ended.
    problems: BTreeMap<String, Vec<Connection>>,
    held: usize,
    not_held: u64,
    /// Healthy connections per server, and the first few as table rows.
    healthy: BTreeMap<String, u64>,
    healthy_rows: Vec<Connection>,
    healthy_other: u64,
    /// Finding codes over all connections.
    codes: BTreeMap<&'static str, (Severity, u64)>,
    /// Next steps already printed, by code, with the connection they were printed for: a
    /// repeat says "as for #N" instead of the same paragraphs again.
    steps_shown: BTreeMap<&'static str, Vec<(NextSteps, u32)>>,
}

impl<W: Write> TextWriter<W> {
    pub fn new(out: W) -> Self {
        TextWriter::with_style(out, TextStyle::default())
    }

    pub fn with_style(out: W, style: TextStyle) -> Self {
        TextWriter {
            out,
            style,
            problems: BTreeMap::new(),
            held: 0,
            not_held: 0,
            healthy: BTreeMap::new(),
            healthy_rows: Vec::new(),
            healthy_other: 0,
            codes: BTreeMap::new(),
            steps_shown: BTreeMap::new(),
        }
    }

    fn paint(&self, style: Style, text: &str) -> String {
        if self.style.color {
            format!("{style}{text}{style:#}")
        } else {
            text.to_string()
        }
    }

    fn severity_label(&self, s: Severity) -> String {
        let (label, color) = match s {
            Severity::Error => ("ERROR", AnsiColor::Red),
            Severity::Warning => ("WARN ", AnsiColor::Yellow),
            Severity::Info => ("info ", AnsiColor::Cyan),
        };
        self.paint(Style::new().fg_color(Some(color.into())).bold(), label)
    }

    /// Writes `text` wrapped at the width after `first_prefix` (whose visible width is
    /// `prefix_width`: it may hold colour codes), later lines indented by `indent`.
    fn wrapped(&mut self, first_prefix: &str, indent: usize, text: &str) -> io::Result<()> {
        self.wrapped_after(first_prefix, visible_width(first_prefix), indent, text)
    }

    fn wrapped_after(
        &mut self,
        first_prefix: &str,
        prefix_width: usize,
        indent: usize,
        text: &str,
    ) -> io::Result<()> {
        let width = self.style.width.max(40);
        let mut room = width.saturating_sub(prefix_width).max(20);
        let mut line = String::new();
        let mut first = true;
        for word in text.split_whitespace() {
            if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > room {
                room = width.saturating_sub(indent).max(20);
                self.emit_line(first, first_prefix, indent, &line)?;
                first = false;
                line.clear();
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
        if !line.is_empty() || first {
            self.emit_line(first, first_prefix, indent, &line)?;
        }
        Ok(())
    }

    fn emit_line(
        &mut self,
        first: bool,
        prefix: &str,
        indent: usize,
        line: &str,
    ) -> io::Result<()> {
        if first {
            writeln!(self.out, "{prefix}{line}")
        } else {
            writeln!(self.out, "{:indent$}{line}", "")
        }
    }

    fn connection_line(&self, c: &Connection) -> String {
        let ended = match (c.ended_by.how, c.ended_by.by) {
            ("fin", Some(by)) => format!("FIN by {by}"),
            ("half_close", Some(by)) => format!("FIN by {by} only"),
            ("rst", Some(by)) => format!("RST by {by}"),
            ("evicted", _) => "evicted at the connection limit".to_string(),
            _ if c.stats.frames_to_client == 0 && c.outcome != "open" => "no handshake".to_string(),
            _ => "open at the end of the capture".to_string(),
        };
        let outcome_style = match c.outcome {
            "ok" => Style::new().fg_color(Some(AnsiColor::Green.into())),
            "open" | "half_closed" => Style::new(),
            _ => Style::new().fg_color(Some(AnsiColor::Red.into())).bold(),
        };
        let mut login = c
            .login
            .as_ref()
            .and_then(|l| l.user.as_ref().map(|u| format!(", user {u}")))
            .unwrap_or_default();
        if let Some(s) = c.login.as_ref().and_then(|l| l.sspi.as_ref()) {
            login.push_str(&sspi_text(s));
        }
        format!(
            "{} {} -> {}  {}  {}  {:.3} s, {} frames, {}{}",
            self.paint(Style::new().bold(), &format!("#{}", c.id)),
            c.client,
            c.server,
            self.paint(outcome_style, c.outcome),
            short_time(&c.start),
            c.duration_s,
            c.stats.frames,
            ended,
            login
        )
    }

    fn finding(&mut self, f: &Finding, indent: usize, conn: Option<u32>) -> io::Result<()> {
        let head = format!(
            "{:indent$}{} {} ",
            "",
            self.severity_label(f.severity),
            self.paint(Style::new().bold(), f.code)
        );
        let body_indent = indent + 6;
        self.wrapped(&head, body_indent, &f.summary)?;
        if !f.detail.is_empty() {
            let detail: Vec<String> = f
                .detail
                .iter()
                .map(|(k, v)| match v {
                    serde_json::Value::String(s) => format!("{k}={s}"),
                    other => format!("{k}={other}"),
                })
                .collect();
            let prefix = format!("{:body_indent$}", "");
            self.wrapped(&prefix, body_indent, &detail.join("  "))?;
        }
        for e in &f.evidence {
            writeln!(
                self.out,
                "{:body_indent$}frame {} (input {}) at {}: {}",
                "",
                e.frame,
                e.input,
                short_time(&e.time),
                e.note
            )?;
        }
        if let Some(conn) = conn {
            let shown = self.steps_shown.entry(f.code).or_default();
            if let Some((_, first)) = shown.iter().find(|(steps, _)| *steps == f.next_steps) {
                let note = format!("next: as for #{first} above");
                writeln!(
                    self.out,
                    "{:body_indent$}{}",
                    "",
                    self.paint(Style::new().dimmed(), &note)
                )?;
                return Ok(());
            }
            shown.push((f.next_steps.clone(), conn));
        }
        for step in &f.next_steps {
            let prefix = format!(
                "{:body_indent$}{} ",
                "",
                self.paint(Style::new().dimmed(), "next:")
            );
            self.wrapped(&prefix, body_indent + 6, step)?;
        }
        Ok(())
    }

    fn timeline(&mut self, c: &Connection) -> io::Result<()> {
        if c.timeline.is_empty() {
            return Ok(());
        }
        writeln!(self.out, "  timeline:")?;
        for e in &c.timeline {
            writeln!(
                self.out,
                "    {}  frame {:>6}  {:<7} {}",
                short_time(&e.time),
                e.frame,
                e.side,
                e.event
            )?;
        }
        Ok(())
    }

    /// Name lookups, SQL Browser and Kerberos requests: the ones with a problem, and a count of
    /// the rest.
    fn exchanges(&mut self, totals: &Totals) -> io::Result<()> {
        if totals.exchanges.is_empty() {
            return Ok(());
        }
        let problem = |e: &&crate::report::model::Exchange| {
            e.findings.iter().any(|f| f.severity > Severity::Info)
        };
        let problems: Vec<_> = totals.exchanges.iter().filter(problem).collect();
        writeln!(self.out)?;
        let title = format!(
            "Name lookups, SQL Browser and Kerberos: {} with problems",
            problems.len()
        );
        writeln!(
            self.out,
            "{}",
            self.paint(Style::new().bold().underline(), &title)
        )?;
        for e in &problems {
            for f in &e.findings {
                self.codes.entry(f.code).or_insert((f.severity, 0)).1 += 1;
            }
            let asked = match &e.request {
                ExchangeRequest::Ssrp(r) => format!(
                    "SQL Browser opcode {} {}",
                    r.opcode,
                    r.instance.as_deref().unwrap_or("(all instances)")
                ),
                ExchangeRequest::Dns(r) => format!("DNS {} {}", r.types.join("/"), r.name),
                ExchangeRequest::Kerberos(r) => format!("Kerberos {} {}", r.message, r.sname),
            };
            let asked = if e.transport == "tcp" {
                format!("{asked} (over TCP)")
            } else {
                asked
            };
            writeln!(
                self.out,
                "{} -> {}  {asked}  {}  {} attempt{}",
                e.client,
                e.server,
                short_time(&e.start),
                e.attempts,
                if e.attempts == 1 { "" } else { "s" }
            )?;
            for f in e.findings.iter().filter(|f| f.severity > Severity::Info) {
                self.finding(f, 2, None)?;
            }
        }
        let healthy = totals.exchanges.len() - problems.len();
        writeln!(self.out, "Exchanges without problems: {healthy}")?;
        if totals.exchanges_not_listed > 0 {
            writeln!(
                self.out,
                "... and {} more exchanges not listed (limit reached).",
                totals.exchanges_not_listed
            )?;
        }
        Ok(())
    }

    fn header(&mut self, totals: &Totals) -> io::Result<()> {
        let frames: u64 = totals.inputs.iter().map(|i| i.frames).sum();
        let first = totals
            .inputs
            .iter()
            .filter_map(|i| i.first_time.as_deref())
            .min();
        let last = totals
            .inputs
            .iter()
            .filter_map(|i| i.last_time.as_deref())
            .max();
        let span = match (first, last) {
            (Some(a), Some(b)) => format!("{} .. {}", short_time(a), short_time(b)),
            _ => "no frames".to_string(),
        };
        let title = format!(
            "tdsscope: {} input{}, {} frames, {}, {} TCP connection{}",
            totals.inputs.len(),
            if totals.inputs.len() == 1 { "" } else { "s" },
            frames,
            span,
            totals.connections,
            if totals.connections == 1 { "" } else { "s" }
        );
        writeln!(self.out, "{}", self.paint(Style::new().bold(), &title))?;
        for (i, input) in totals.inputs.iter().enumerate() {
            let span = match (&input.first_time, &input.last_time) {
                (Some(a), Some(b)) => format!("{} .. {}", short_time(a), short_time(b)),
                _ => "no frames".to_string(),
            };
            writeln!(
                self.out,
                "  input {i}: {} ({}{}), {} frames, {}",
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
        if !totals.servers.is_empty() {
            writeln!(self.out, "SQL Servers:")?;
            for s in &totals.servers {
                let mut about = vec![format!("found by {}", s.found_by.join(", "))];
                if let Some(v) = &s.version {
                    about.push(format!("version {v}"));
                }
                if let Some(i) = &s.instance {
                    about.push(format!("instance {i}"));
                }
                let addr = if s.address.contains(':') {
                    format!("[{}]:{}", s.address, s.port)
                } else {
                    format!("{}:{}", s.address, s.port)
                };
                writeln!(self.out, "  {addr}  {}", about.join("; "))?;
            }
        }
        writeln!(self.out)
    }
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

/// Characters a terminal shows for `s`, leaving out ANSI escape sequences.
fn visible_width(s: &str) -> usize {
    let mut width = 0;
    let mut in_escape = false;
    for ch in s.chars() {
        match (in_escape, ch) {
            (false, '\u{1b}') => in_escape = true,
            (true, 'm') => in_escape = false,
            (true, _) => {}
            (false, _) => width += 1,
        }
    }
    width
}

fn worst(c: &Connection) -> Severity {
    c.findings
        .iter()
        .map(|f| f.severity)
        .max()
        .unwrap_or(Severity::Info)
}

fn is_problem(c: &Connection) -> bool {
    c.findings.iter().any(|f| f.severity > Severity::Info)
}

impl<W: Write> ReportWriter for TextWriter<W> {
    fn connection(&mut self, c: &Connection) -> io::Result<()> {
        for f in &c.findings {
            let e = self.codes.entry(f.code).or_insert((f.severity, 0));
            e.1 += 1;
        }
        if is_problem(c) {
            if self.held < MAX_HELD {
                self.held += 1;
                self.problems
                    .entry(c.server.clone())
                    .or_default()
                    .push(c.clone());
            } else {
                self.not_held += 1;
            }
        } else if c.sql {
            *self.healthy.entry(c.server.clone()).or_default() += 1;
            if self.healthy_rows.len() < HEALTHY_ROWS {
                self.healthy_rows.push(c.clone());
            }
        } else {
            self.healthy_other += 1;
        }
        Ok(())
    }

    fn finish(&mut self, totals: &Totals) -> io::Result<()> {
        self.header(totals)?;
        let mut problems = std::mem::take(&mut self.problems);
        // A scan's attempts are listed under its finding, not one by one: thousands of
        // identical refusals would bury the connections that matter.
        let scanned: HashSet<u32> = totals
            .findings
            .iter()
            .filter(|f| f.code == Code::PatternPortScan.as_str())
            .flat_map(|f| f.connections.iter().copied())
            .collect();
        let mut folded = 0usize;
        for conns in problems.values_mut() {
            let before = conns.len();
            conns.retain(|c| !scanned.contains(&c.id));
            folded += before - conns.len();
        }
        problems.retain(|_, conns| !conns.is_empty());
        let count: usize = problems.values().map(Vec::len).sum();
        let scan_note = format!(
            "{folded} connection attempt{} of a port scan (see pattern.port_scan under \"Across the capture\"; --format json lists them)",
            if folded == 1 { "" } else { "s" }
        );
        if count == 0 && folded == 0 {
            writeln!(self.out, "No connection with a problem.")?;
        } else if count == 0 {
            self.wrapped(
                "",
                2,
                &format!("No connection with a problem besides the {scan_note}."),
            )?;
        } else {
            let title = format!("Connections with problems: {count}, by server");
            writeln!(
                self.out,
                "{}",
                self.paint(Style::new().bold().underline(), &title)
            )?;
            if folded > 0 {
                self.wrapped("", 2, &format!("Not listed here: the {scan_note}."))?;
            }
        }
        for (server, mut conns) in problems {
            // Failures before connections that are only at risk; then in capture order.
            conns.sort_by_key(|c| (std::cmp::Reverse(worst(c)), c.id));
            writeln!(self.out)?;
            let title = format!(
                "== {server} ({} connection{})",
                conns.len(),
                if conns.len() == 1 { "" } else { "s" }
            );
            writeln!(self.out, "{}", self.paint(Style::new().bold(), &title))?;
            for c in &conns {
                let line = self.connection_line(c);
                writeln!(self.out, "{line}")?;
                let mut shown: Vec<&Finding> = c
                    .findings
                    .iter()
                    .filter(|f| f.severity > Severity::Info)
                    .collect();
                // Errors first: what broke the connection, then what put it at risk.
                shown.sort_by_key(|f| std::cmp::Reverse(f.severity));
                for f in shown {
                    self.finding(f, 2, Some(c.id))?;
                }
                self.timeline(c)?;
            }
        }
        if self.not_held > 0 {
            writeln!(
                self.out,
                "... and {} more connections with problems (too many to group here: use --format json).",
                self.not_held
            )?;
        }

        writeln!(self.out)?;
        let healthy: u64 = self.healthy.values().sum();
        writeln!(
            self.out,
            "{}",
            self.paint(
                Style::new().bold().underline(),
                &format!("Healthy SQL connections: {healthy}")
            )
        )?;
        for (server, n) in &self.healthy {
            writeln!(self.out, "  {server}: {n}")?;
        }
        let mut rows = std::mem::take(&mut self.healthy_rows);
        rows.sort_by_key(|c| c.id);
        for c in &rows {
            let line = self.connection_line(c);
            writeln!(self.out, "  {line}")?;
            self.timeline(c)?;
        }
        if healthy > rows.len() as u64 {
            writeln!(self.out, "  ... {} more", healthy - rows.len() as u64)?;
        }
        if self.healthy_other > 0 {
            writeln!(
                self.out,
                "Other TCP connections without problems: {}",
                self.healthy_other
            )?;
        }

        self.exchanges(totals)?;

        if !totals.findings.is_empty() {
            writeln!(self.out)?;
            writeln!(
                self.out,
                "{}",
                self.paint(Style::new().bold().underline(), "Across the capture:")
            )?;
            for f in &totals.findings {
                self.finding(f, 0, None)?;
                if !f.connections.is_empty() {
                    let mut ids: Vec<String> = f
                        .connections
                        .iter()
                        .take(IDS_LISTED)
                        .map(|i| format!("#{i}"))
                        .collect();
                    if f.connections.len() > IDS_LISTED {
                        ids.push(format!("… and {} more", f.connections.len() - IDS_LISTED));
                    }
                    self.wrapped("      connections: ", 19, &ids.join(" "))?;
                }
            }
        }

        writeln!(self.out)?;
        writeln!(
            self.out,
            "{}",
            self.paint(Style::new().bold().underline(), "Summary")
        )?;
        let outcomes: Vec<String> = totals
            .outcomes
            .iter()
            .map(|(k, v)| format!("{v} {k}"))
            .collect();
        writeln!(
            self.out,
            "  {} TCP connection{}: {}",
            totals.connections,
            if totals.connections == 1 { "" } else { "s" },
            if outcomes.is_empty() {
                "none".to_string()
            } else {
                outcomes.join(", ")
            }
        )?;
        for f in &totals.findings {
            self.codes.entry(f.code).or_insert((f.severity, 0)).1 += 1;
        }
        let mut codes: Vec<(&'static str, Severity, u64)> =
            self.codes.iter().map(|(k, (s, n))| (*k, *s, *n)).collect();
        codes.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        for (code, sev, n) in codes {
            writeln!(self.out, "  {} {code:<32} {n}", self.severity_label(sev))?;
        }
        self.out.flush()
    }
}

/// `, NTLM LAB\\alice from WS01` or `, Kerberos ticket for MSSQLSvc/sql:1433@LAB.TEST`.
fn sspi_text(s: &crate::report::model::Sspi) -> String {
    let mut out = match s.mechanism {
        "ntlm" => ", NTLM".to_string(),
        "kerberos" => ", Kerberos".to_string(),
        other => format!(", {other}"),
    };
    if s.anonymous {
        out.push_str(" anonymous");
    }
    match (&s.domain, &s.user) {
        (Some(d), Some(u)) => out.push_str(&format!(" {d}\\{u}")),
        (None, Some(u)) => out.push_str(&format!(" {u}")),
        _ => {}
    }
    if let Some(w) = &s.workstation {
        out.push_str(&format!(" from {w}"));
    }
    if let Some(spn) = &s.spn {
        out.push_str(&format!(" ticket for {spn}"));
        if let Some(r) = &s.realm {
            out.push_str(&format!("@{r}"));
        }
    }
    out
}
