//! The byte stream under a capture reader: a buffered reader that knows how far it has got,
//! so every error can name the byte offset where the file went wrong.

use std::io::{self, BufRead, ErrorKind};
use std::path::{Path, PathBuf};

use super::Error;

/// Read-ahead size for capture files. Large enough that one `read` system call brings in
/// hundreds of frames, small enough to be irrelevant next to the rest of the program.
pub const READ_BUFFER_BYTES: usize = 256 * 1024;

/// A buffered byte stream with its current offset from the start of the (decompressed) file.
pub(crate) struct ByteStream<R> {
    inner: R,
    offset: u64,
}

impl<R: BufRead> ByteStream<R> {
    pub fn new(inner: R) -> Self {
        ByteStream { inner, offset: 0 }
    }

    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// True when no byte is left; a record may only end the file at such a point.
    pub fn at_eof(&mut self) -> io::Result<bool> {
        loop {
            match self.inner.fill_buf() {
                Ok(b) => return Ok(b.is_empty()),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Fills `buf` completely unless the stream ends first; returns how many bytes were read,
    /// so the caller can tell a clean end (0) from a cut record.
    pub fn read_full(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut filled = 0;
        while let Some(rest) = buf.get_mut(filled..) {
            if rest.is_empty() {
                break;
            }
            match self.inner.read(rest) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.offset += filled as u64;
                    return Err(e);
                }
            }
        }
        self.offset += filled as u64;
        Ok(filled)
    }

    /// Skips up to `n` bytes without copying them; returns how many were skipped (fewer only
    /// at the end of the stream).
    pub fn skip(&mut self, n: u64) -> io::Result<u64> {
        let mut left = n;
        while left > 0 {
            let available = match self.inner.fill_buf() {
                Ok(b) => b.len(),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if available == 0 {
                break;
            }
            let step = usize::try_from(left).unwrap_or(usize::MAX).min(available);
            self.inner.consume(step);
            self.offset += step as u64;
            left -= step as u64;
        }
        Ok(n - left)
    }

    /// The bytes buffered now (reading more only when none are), without consuming them.
    pub fn peek(&mut self) -> io::Result<&[u8]> {
        loop {
            match self.inner.fill_buf() {
                Ok(_) => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        self.inner.fill_buf()
    }

    /// Consumes `n` bytes of what [`peek`](Self::peek) returned.
    pub fn consume(&mut self, n: usize) {
        self.inner.consume(n);
        self.offset += n as u64;
    }

    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    /// Moves the offset after the caller repositioned the inner reader itself (NetMon seeks).
    pub fn set_offset(&mut self, offset: u64) {
        self.offset = offset;
    }
}

/// The file is damaged at `offset`.
pub(crate) fn malformed(path: &Path, offset: u64, what: impl Into<String>) -> Error {
    Error::Malformed {
        path: path.to_path_buf(),
        offset,
        what: what.into(),
    }
}

/// An I/O error while reading. Damaged compressed data and cut gzip streams surface as
/// `InvalidData`/`UnexpectedEof` from the decoder: those are damage at a known offset, not an
/// unreadable file.
pub(crate) fn read_error(path: &Path, offset: u64, source: io::Error) -> Error {
    match source.kind() {
        ErrorKind::UnexpectedEof | ErrorKind::InvalidData | ErrorKind::InvalidInput => {
            Error::Malformed {
                path: path.to_path_buf(),
                offset,
                what: format!("cannot decode the data: {source}"),
            }
        }
        _ => Error::Read {
            path: PathBuf::from(path),
            source,
        },
    }
}
