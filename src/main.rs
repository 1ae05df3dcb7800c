//! Glue only: parse flags, run the library, print errors, choose the exit code.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

use std::io::{self, IsTerminal, Write};
use std::process::ExitCode;

use clap::Parser;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use tdsscope::analyze::{analyze, Progress};
use tdsscope::cli::{AnalyzeArgs, Cli, Command, OutputFormat};
use tdsscope::report::json::JsonWriter;
use tdsscope::report::text::{TextStyle, TextWriter};
use tdsscope::report::ReportWriter;

/// mimalloc instead of glibc malloc: the three analysis threads allocate and free across each
/// other (batches, facts, report strings), and glibc's arena locks made that a tenth of the run.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn progress_bar(quiet: bool) -> ProgressBar {
    if quiet || !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template(
        "{bar:40} {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar
}

/// Colour when stdout is a terminal (honouring NO_COLOR and CLICOLOR_FORCE), wrapped at the
/// terminal's width.
fn text_style() -> TextStyle {
    let stdout = io::stdout();
    let color = anstream::AutoStream::choice(&stdout) != anstream::ColorChoice::Never;
    let width = terminal_size::terminal_size()
        .map(|(terminal_size::Width(w), _)| usize::from(w))
        .unwrap_or(100);
    TextStyle { color, width }
}

fn run_analyze(args: &AnalyzeArgs) -> io::Result<u8> {
    let opts = args.options();
    // Not locked: the report is written from the reporting thread.
    let out = io::BufWriter::with_capacity(1 << 16, io::stdout());
    let mut writer: Box<dyn ReportWriter + Send> = match args.format {
        OutputFormat::Text => Box::new(TextWriter::with_style(out, text_style())),
        OutputFormat::Json => Box::new(JsonWriter::new(out)),
    };
    let bar = progress_bar(args.quiet);
    let mut on_progress = |p: Progress| {
        bar.set_length(p.bytes_total);
        bar.set_position(p.bytes_done);
    };
    let result = analyze(&args.files, &opts, writer.as_mut(), &mut on_progress);
    bar.finish_and_clear();
    let result = result?;
    for e in result.input_errors.iter().chain(&result.damaged_inputs) {
        eprintln!("tdsscope: {e}");
    }
    Ok(if !result.input_errors.is_empty() {
        2
    } else if result.error_findings {
        1
    } else {
        0
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let status = match &cli.command {
        Command::Analyze(args) => run_analyze(args),
        Command::Schema => {
            let schema = tdsscope::report::json::schema();
            serde_json::to_writer_pretty(io::stdout().lock(), &schema)
                .map_err(io::Error::other)
                .and_then(|()| writeln!(io::stdout()))
                .map(|()| 0)
        }
    };
    match status {
        Ok(code) => ExitCode::from(code),
        // A closed pipe (`tdsscope analyze f | head`) is not an error worth a message.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::from(0),
        Err(e) => {
            let _ = writeln!(io::stderr(), "tdsscope: {e}");
            ExitCode::from(2)
        }
    }
}
