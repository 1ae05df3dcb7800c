//! Opening a capture: the format is chosen from the first bytes, never from the file name.
//! gzip-compressed files (magic 1f 8b) are decompressed on the fly and detected again.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Cursor, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use flate2::bufread::MultiGzDecoder;

use super::netmon::NetmonReader;
use super::pcap::PcapReader;
use super::pcapng::PcapngReader;
use super::stream::{read_error, READ_BUFFER_BYTES};
use super::{netmon, pcap, Error, Format, Frame, FrameSource};
use crate::limits::Limits;

/// A gzip-compressed NetMon file must be decompressed into memory, because NetMon frames are
/// found through a table at the end of the file and gzip cannot seek. Larger ones are refused
/// with a message asking to decompress the file first.
pub const MAX_GZIP_NETMON_BYTES: u64 = 256 << 20;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const PCAPNG_MAGIC: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];

/// What the first bytes of a file say it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Detected {
    Format(Format),
    Gzip,
}

/// Detects the format from the first (up to 4) bytes.
pub fn detect(first: &[u8]) -> Option<Detected> {
    if first.starts_with(&GZIP_MAGIC) {
        return Some(Detected::Gzip);
    }
    if pcap::magic(first).is_some() {
        return Some(Detected::Format(Format::Pcap));
    }
    if first.starts_with(&PCAPNG_MAGIC) {
        return Some(Detected::Format(Format::Pcapng));
    }
    if first.starts_with(netmon::MAGIC) {
        return Some(Detected::Format(Format::Netmon2));
    }
    None
}

/// Opens a capture file of any supported format, optionally gzip-compressed.
///
/// `input` is the index frames will carry in [`super::FrameRef::input`]. `bytes_read()` of
/// the returned source counts bytes of the file on disk (compressed bytes for gzip).
pub fn open(path: &Path, input: u16, limits: &Limits) -> Result<Box<dyn FrameSource>, Error> {
    let file = File::open(path).map_err(|source| Error::Open {
        path: path.to_path_buf(),
        source,
    })?;
    let compressed = starts_with_gzip_magic(&file, path)?;
    let counter = Arc::new(AtomicU64::new(0));
    let counted = CountingReader {
        inner: file,
        count: Arc::clone(&counter),
    };
    let inner = from_reader(counted, path, input, limits)?;
    Ok(Box::new(Counted {
        inner,
        counter,
        compressed,
    }))
}

/// Peeks at the file's first two bytes (and rewinds) to tell the report it was gzip input.
fn starts_with_gzip_magic(mut file: &File, path: &Path) -> Result<bool, Error> {
    use std::io::{Read as _, Seek as _, SeekFrom};
    let read_err = |source| Error::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut magic = [0u8; 2];
    let n = file.read(&mut magic).map_err(read_err)?;
    file.seek(SeekFrom::Start(0)).map_err(read_err)?;
    Ok(n == 2 && magic == [0x1f, 0x8b])
}

/// Builds a reader from any seekable byte source positioned at its start (a file, or an
/// in-memory `Cursor` for tests and fuzzing). `path` only names the input in errors.
/// `bytes_read()` here counts bytes the reader consumed (decompressed bytes for gzip; for
/// NetMon, the position of the last record read).
pub fn from_reader<R>(
    reader: R,
    path: &Path,
    input: u16,
    limits: &Limits,
) -> Result<Box<dyn FrameSource>, Error>
where
    R: Read + Seek + 'static,
{
    let mut buffered = BufReader::with_capacity(READ_BUFFER_BYTES, reader);
    let mut first = [0u8; 4];
    // Peek without consuming, so the file is read once; a source that hands out fewer than
    // four bytes at a time is read and rewound instead.
    let peeked = buffered.fill_buf().map_err(|e| read_error(path, 0, e))?;
    let got = if peeked.len() >= first.len() || peeked.is_empty() {
        let n = peeked.len().min(first.len());
        first[..n].copy_from_slice(&peeked[..n]);
        n
    } else {
        let n = read_up_to(&mut buffered, &mut first).map_err(|e| read_error(path, 0, e))?;
        buffered
            .seek(SeekFrom::Start(0))
            .map_err(|e| read_error(path, 0, e))?;
        n
    };
    let first = first.get(..got).unwrap_or_default();
    if got == 0 {
        return Err(Error::Empty {
            path: path.to_path_buf(),
        });
    }
    let detected = detect(first).ok_or_else(|| unknown(path, first))?;
    match detected {
        Detected::Format(format) => with_format(format, buffered, path, input, limits),
        Detected::Gzip => from_gzip(buffered, path, input, limits),
    }
}

fn with_format<R>(
    format: Format,
    reader: R,
    path: &Path,
    input: u16,
    limits: &Limits,
) -> Result<Box<dyn FrameSource>, Error>
where
    R: BufRead + Seek + 'static,
{
    Ok(match format {
        Format::Pcap => Box::new(PcapReader::new(reader, path, input, limits)?),
        Format::Pcapng => Box::new(PcapngReader::new(reader, path, input, limits)?),
        Format::Netmon2 => Box::new(NetmonReader::new(reader, path, input, limits)?),
        Format::Live => {
            return Err(Error::UnknownFormat {
                path: path.to_path_buf(),
                magic: "a live source".into(),
            })
        }
    })
}

fn from_gzip<R>(
    reader: R,
    path: &Path,
    input: u16,
    limits: &Limits,
) -> Result<Box<dyn FrameSource>, Error>
where
    R: BufRead + 'static,
{
    let mut decoder = MultiGzDecoder::new(reader);
    let mut first = [0u8; 4];
    let got = read_up_to(&mut decoder, &mut first).map_err(|e| read_error(path, 0, e))?;
    let first = first.get(..got).unwrap_or_default();
    if got == 0 {
        return Err(Error::Empty {
            path: path.to_path_buf(),
        });
    }
    // The 4 bytes already taken go back in front of the rest of the stream.
    let replay = Cursor::new(first.to_vec()).chain(decoder);
    match detect(first) {
        Some(Detected::Format(Format::Pcap)) => Ok(Box::new(PcapReader::new(
            BufReader::with_capacity(READ_BUFFER_BYTES, replay),
            path,
            input,
            limits,
        )?)),
        Some(Detected::Format(Format::Pcapng)) => Ok(Box::new(PcapngReader::new(
            BufReader::with_capacity(READ_BUFFER_BYTES, replay),
            path,
            input,
            limits,
        )?)),
        Some(Detected::Format(Format::Netmon2)) => {
            let mut whole = Vec::new();
            let got = replay
                .take(MAX_GZIP_NETMON_BYTES + 1)
                .read_to_end(&mut whole)
                .map_err(|e| read_error(path, 0, e))?;
            if got as u64 > MAX_GZIP_NETMON_BYTES {
                return Err(Error::Read {
                    path: path.to_path_buf(),
                    source: io::Error::other(format!(
                        "a gzip-compressed Network Monitor file larger than {} MiB cannot be read (its frame table is at the end); decompress it first (gunzip)",
                        MAX_GZIP_NETMON_BYTES >> 20
                    )),
                });
            }
            Ok(Box::new(NetmonReader::new(
                Cursor::new(whole),
                path,
                input,
                limits,
            )?))
        }
        _ => Err(unknown(path, first)),
    }
}

fn unknown(path: &Path, first: &[u8]) -> Error {
    let hex: Vec<String> = first.iter().map(|b| format!("{b:02x}")).collect();
    let mut magic = hex.join(" ");
    // Say what the file is when we know it, so the user can convert it.
    let known = match first {
        b"RTSS" => Some("Network Monitor 1.x; convert it with `editcap -F pcapng`"),
        [0xa1, 0xb2, 0xcd, 0x34] | [0x34, 0xcd, 0xb2, 0xa1] => {
            Some("Alexey Kuznetsov's modified pcap; convert it with `editcap -F pcapng`")
        }
        _ => None,
    };
    if let Some(what) = known {
        magic = format!("{magic} ({what})");
    }
    Error::UnknownFormat {
        path: path.to_path_buf(),
        magic,
    }
}

/// Reads until `buf` is full or the stream ends.
fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while let Some(rest) = buf.get_mut(filled..) {
        if rest.is_empty() {
            break;
        }
        match reader.read(rest) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Counts the bytes read from the file, so progress reflects the file on disk even when the
/// reader sees decompressed data.
struct CountingReader<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

impl<R: Seek> Seek for CountingReader<R> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.inner.seek(pos)
    }
}

/// A source whose `bytes_read` comes from the file rather than from the reader.
struct Counted {
    inner: Box<dyn FrameSource>,
    counter: Arc<AtomicU64>,
    compressed: bool,
}

impl FrameSource for Counted {
    fn next_frame(&mut self) -> Result<Option<Frame<'_>>, Error> {
        self.inner.next_frame()
    }

    fn format(&self) -> Format {
        self.inner.format()
    }

    fn bytes_read(&self) -> u64 {
        self.counter.load(Ordering::Relaxed)
    }

    fn snaplen(&self) -> Option<u32> {
        self.inner.snaplen()
    }

    fn truncated_frames(&self) -> u64 {
        self.inner.truncated_frames()
    }

    fn compressed(&self) -> bool {
        self.compressed
    }
}
