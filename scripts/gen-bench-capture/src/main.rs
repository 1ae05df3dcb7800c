use std::fs::File;
use std::io::BufWriter;
use std::process::ExitCode;
use std::time::Instant;

use gen_bench_capture::{Config, Generator};

const USAGE: &str = "\
usage: gen-bench-capture --size-mib N [--concurrency C] [--seed S] -o FILE [options]

Writes a deterministic classic pcap (little-endian, µs, Ethernet, snaplen 262144) of many
concurrent TCP connections carrying TDS (SQL Server) traffic, stopping after the packet that
brings the file to N MiB. Same seed, concurrency and options give byte-identical output, and a
smaller size is a byte prefix of a larger one.

options:
  --size-mib N          target size in MiB (required; 0 writes just the file header)
  --size-bytes N        target size in bytes instead
  --concurrency C       connections open at once (default 2000); kept fixed, so a longer file only
                        lasts longer and never holds more open connections
  --seed S              seed (default 1)
  -o, --output FILE     output file (required; '-' for stdout)
  --loss-ppm P          per data segment chance (parts per million) of a loss before the capture
                        point, followed by dup ACKs and a retransmission (default 300)
  --dup-ppm P           per data segment chance of being captured twice (default 100)
  --unanswered-ppm P    per connection chance of an unanswered SYN (default 5000)
  --refused-ppm P       per connection chance of a refused SYN (SYN -> RST, default 5000)
  --loopback-ppm P      per connection chance of a loopback flow, 64 KiB segments (default 50000)
  --stats-json FILE     write what was written (connections, packets, losses, ...) as JSON
  -q, --quiet           no summary on stderr
";

fn parse_u64(flag: &str, v: Option<String>) -> Result<u64, String> {
    let v = v.ok_or_else(|| format!("{flag} needs a value"))?;
    v.parse::<u64>()
        .map_err(|_| format!("{flag}: '{v}' is not a non-negative integer"))
}

fn parse_ppm(flag: &str, v: Option<String>) -> Result<u32, String> {
    let n = parse_u64(flag, v)?;
    if n > 1_000_000 {
        return Err(format!("{flag}: {n} is more than 1000000"));
    }
    Ok(n as u32)
}

struct Args {
    size_bytes: u64,
    cfg: Config,
    output: String,
    stats_json: Option<String>,
    quiet: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut size_bytes = None;
    let mut seed = 1;
    let mut concurrency = 2000u64;
    let mut output = None;
    let mut stats_json = None;
    let mut quiet = false;
    let mut knobs: Vec<(String, u32)> = Vec::new();
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "-h" | "--help" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            "--size-mib" => size_bytes = Some(parse_u64(&a, it.next())?.saturating_mul(1 << 20)),
            "--size-bytes" => size_bytes = Some(parse_u64(&a, it.next())?),
            "--concurrency" => concurrency = parse_u64(&a, it.next())?,
            "--seed" => seed = parse_u64(&a, it.next())?,
            "-o" | "--output" => output = Some(it.next().ok_or("-o needs a file name")?),
            "--stats-json" => stats_json = Some(it.next().ok_or("--stats-json needs a file name")?),
            "-q" | "--quiet" => quiet = true,
            "--loss-ppm" | "--dup-ppm" | "--unanswered-ppm" | "--refused-ppm"
            | "--loopback-ppm" => {
                let v = parse_ppm(&a, it.next())?;
                knobs.push((a, v));
            }
            _ => return Err(format!("unknown argument '{a}'")),
        }
    }
    if !(1..=1_000_000).contains(&concurrency) {
        return Err("--concurrency must be between 1 and 1000000".into());
    }
    let mut cfg = Config::new(seed, concurrency as u32);
    for (k, v) in knobs {
        match k.as_str() {
            "--loss-ppm" => cfg.loss_ppm = v,
            "--dup-ppm" => cfg.dup_ppm = v,
            "--unanswered-ppm" => cfg.unanswered_ppm = v,
            "--refused-ppm" => cfg.refused_ppm = v,
            _ => cfg.loopback_ppm = v,
        }
    }
    if u64::from(cfg.unanswered_ppm) + u64::from(cfg.refused_ppm) > 1_000_000 {
        return Err("--unanswered-ppm plus --refused-ppm exceed 1000000".into());
    }
    Ok(Args {
        size_bytes: size_bytes.ok_or("--size-mib is required")?,
        cfg,
        output: output.ok_or("-o FILE is required")?,
        stats_json,
        quiet,
    })
}

fn run(args: Args) -> Result<(), String> {
    let started = Instant::now();
    let writer: Box<dyn std::io::Write> = if args.output == "-" {
        Box::new(std::io::stdout().lock())
    } else {
        Box::new(
            File::create(&args.output)
                .map_err(|e| format!("cannot create '{}': {e}", args.output))?,
        )
    };
    let out = BufWriter::with_capacity(1 << 20, writer);
    let mut g = Generator::new(args.cfg, out).map_err(|e| format!("write failed: {e}"))?;
    g.run(args.size_bytes)
        .map_err(|e| format!("write failed: {e}"))?;
    let stats = g.stats.clone();
    drop(g.into_inner());
    let secs = started.elapsed().as_secs_f64();
    if let Some(path) = &args.stats_json {
        std::fs::write(path, stats.to_json() + "\n")
            .map_err(|e| format!("cannot write '{path}': {e}"))?;
    }
    if !args.quiet {
        eprintln!(
            "gen-bench-capture: {} bytes, {} packets, {} connections (max {} open), {:.1} s of traffic, written in {:.2} s ({:.0} MB/s)",
            stats.bytes,
            stats.packets,
            stats.connections,
            stats.max_open,
            stats.last_ts_us.saturating_sub(stats.first_ts_us) as f64 / 1e6,
            secs,
            stats.bytes as f64 / 1e6 / secs.max(1e-9)
        );
        eprintln!("gen-bench-capture: {}", stats.to_json());
    }
    Ok(())
}

fn main() -> ExitCode {
    match parse_args().and_then(run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gen-bench-capture: {e}\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}
