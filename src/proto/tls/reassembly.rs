//! Handshake message framing over records (RFC 8446 4, RFC 5246 7.4): a record may carry several
//! handshake messages and one message may span records (a certificate chain often does).
//!
//! ```text
//! HandshakeType msg_type (1)  uint24 length (3)  body[length]
//! ```

use crate::proto::ParseError;

/// Largest handshake message we hold while it is being reassembled. Certificate chains of SQL
/// Server deployments are a few KiB; 64 KiB leaves room for long chains and stops a peer (or a
/// mis-framed stream) from making us buffer 16 MiB, the most a uint24 can ask for.
pub const MAX_HANDSHAKE_MESSAGE: usize = 64 * 1024;

/// Bounded reassembly of handshake messages split across records.
#[derive(Clone, Debug)]
pub struct HandshakeReassembler {
    pending: Vec<u8>,
    /// Bytes of an oversized message still to be dropped as they arrive.
    skip: usize,
    max: usize,
}

impl Default for HandshakeReassembler {
    fn default() -> Self {
        Self::with_limit(MAX_HANDSHAKE_MESSAGE)
    }
}

impl HandshakeReassembler {
    pub fn with_limit(max: usize) -> Self {
        HandshakeReassembler {
            pending: Vec::new(),
            skip: 0,
            max,
        }
    }

    /// Bytes held for a message not yet complete.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Forgets any partial message (the direction switched to encrypted records).
    pub fn reset(&mut self) {
        self.pending.clear();
        self.skip = 0;
    }

    /// Feeds one handshake record's fragment; calls `on_message(msg_type, body)` for every
    /// message it completes. A message longer than the limit is skipped (its bytes counted off
    /// as they arrive, framing resumes after it) and reported as `TooLarge` once the fragment
    /// is processed. Bytes are copied only for a message that spans records, and only once.
    pub fn push(
        &mut self,
        fragment: &[u8],
        mut on_message: impl FnMut(u8, &[u8]),
    ) -> Result<(), ParseError> {
        let mut input = fragment;
        let mut result = Ok(());
        loop {
            if self.skip > 0 {
                let n = self.skip.min(input.len());
                self.skip -= n;
                input = input.get(n..).unwrap_or_default();
            }
            if self.pending.is_empty() || input.is_empty() {
                break;
            }
            // Complete the header, then the body, of the message begun in earlier records.
            let have = self.pending.len();
            let want = match message_len(&self.pending) {
                None => HEADER_LEN,
                Some(len) if len > self.max => {
                    result = Err(self.too_large(len));
                    self.skip = (HEADER_LEN + len).saturating_sub(have);
                    self.pending.clear();
                    continue;
                }
                Some(len) => HEADER_LEN + len,
            };
            let n = want.saturating_sub(have).min(input.len());
            self.pending
                .extend_from_slice(input.get(..n).unwrap_or_default());
            input = input.get(n..).unwrap_or_default();
            if let (Some(len), [msg_type, ..]) = (message_len(&self.pending), &self.pending[..]) {
                if self.pending.len() == HEADER_LEN + len {
                    on_message(
                        *msg_type,
                        self.pending.get(HEADER_LEN..).unwrap_or_default(),
                    );
                    self.pending.clear();
                }
            }
        }
        while !input.is_empty() && self.skip == 0 {
            let Some(len) = message_len(input) else {
                break;
            };
            if len > self.max {
                result = Err(self.too_large(len));
                let total = HEADER_LEN + len;
                let n = total.min(input.len());
                self.skip = total - n;
                input = input.get(n..).unwrap_or_default();
                continue;
            }
            let Some(message) = input.get(..HEADER_LEN + len) else {
                break;
            };
            if let [msg_type, ..] = message {
                on_message(*msg_type, message.get(HEADER_LEN..).unwrap_or_default());
            }
            input = input.get(HEADER_LEN + len..).unwrap_or_default();
        }
        // What is left starts a message that later records complete.
        self.pending.extend_from_slice(input);
        result
    }

    fn too_large(&self, len: usize) -> ParseError {
        ParseError::TooLarge {
            what: "TLS handshake message",
            len,
            max: self.max,
        }
    }
}

const HEADER_LEN: usize = 4;

/// The uint24 body length of the handshake message starting `data`, once its header is there.
fn message_len(data: &[u8]) -> Option<usize> {
    match data {
        [_, l0, l1, l2, ..] => {
            Some(usize::from(*l0) << 16 | usize::from(*l1) << 8 | usize::from(*l2))
        }
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    fn collect(r: &mut HandshakeReassembler, frag: &[u8]) -> (Vec<(u8, Vec<u8>)>, bool) {
        let mut out = Vec::new();
        let res = r.push(frag, |t, b| out.push((t, b.to_vec())));
        (out, res.is_ok())
    }

    /// ServerHelloDone (empty body) then a 3-byte unknown message 0x42.
    const TWO: [u8; 11] = [
        0x0e, 0x00, 0x00, 0x00, /* ServerHelloDone, length 0 */
        0x42, 0x00, 0x00, 0x03, /* type 0x42, length 3 */
        0x01, 0x02, 0x03, /* body */
    ];

    #[test]
    fn two_messages_in_one_fragment() {
        let mut r = HandshakeReassembler::default();
        let (out, ok) = collect(&mut r, &TWO);
        assert!(ok);
        assert_eq!(out, vec![(0x0e, vec![]), (0x42, vec![1, 2, 3])]);
        assert_eq!(r.pending_len(), 0);
    }

    #[test]
    fn every_split_point_gives_the_same_messages() {
        for cut in 0..=TWO.len() {
            let mut r = HandshakeReassembler::default();
            let (mut a, _) = collect(&mut r, &TWO[..cut]);
            let (b, _) = collect(&mut r, &TWO[cut..]);
            a.extend(b);
            assert_eq!(a, vec![(0x0e, vec![]), (0x42, vec![1, 2, 3])], "cut {cut}");
            assert_eq!(r.pending_len(), 0);
        }
    }

    #[test]
    fn byte_by_byte() {
        let mut r = HandshakeReassembler::default();
        let mut all = Vec::new();
        for b in TWO {
            all.extend(collect(&mut r, &[b]).0);
        }
        assert_eq!(all.len(), 2);
    }

    #[test]
    fn oversized_message_is_skipped_then_framing_resumes() {
        let mut r = HandshakeReassembler::with_limit(4);
        let (out, ok) = collect(&mut r, &[0x0b, 0x00, 0x00, 0x06, 1, 2]);
        assert!(!ok && out.is_empty());
        let (out, ok) = collect(&mut r, &[3, 4, 5, 6, 0x0e, 0x00, 0x00, 0x00]);
        assert!(ok);
        assert_eq!(out, vec![(0x0e, vec![])]);
    }

    #[test]
    fn oversized_message_inside_one_fragment_does_not_hide_the_next() {
        let mut r = HandshakeReassembler::with_limit(4);
        let (out, ok) = collect(&mut r, &[0x0b, 0, 0, 6, 1, 2, 3, 4, 5, 6, 0x0e, 0, 0, 0]);
        assert!(!ok);
        assert_eq!(out, vec![(0x0e, vec![])]);
        // Oversized header completed across fragments.
        let mut r = HandshakeReassembler::with_limit(4);
        let (out, ok) = collect(&mut r, &[0x0b, 0]);
        assert!(ok && out.is_empty());
        let (_, ok) = collect(&mut r, &[0, 6, 1]);
        assert!(!ok);
        let (out, ok) = collect(&mut r, &[2, 3, 4, 5, 6, 0x0e, 0, 0, 0]);
        assert!(ok);
        assert_eq!(out, vec![(0x0e, vec![])]);
    }

    #[test]
    fn pending_never_exceeds_limit_plus_header() {
        let mut r = HandshakeReassembler::with_limit(100);
        let _ = collect(&mut r, &[0x0b, 0x00, 0x00, 100]);
        for _ in 0..99 {
            let _ = collect(&mut r, &[0]);
            assert!(r.pending_len() <= 104);
        }
        let (out, _) = collect(&mut r, &[0]);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].1.len(), 100);
    }
}
