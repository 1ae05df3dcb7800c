//! Several capture files read as one capture: ordered by each file's first timestamp, read one
//! after the other. Frame numbers restart in every file (`FrameRef { input, no }`), so evidence
//! still matches Wireshark opened on that one file; `input` is the position in the ordered list.

use std::path::{Path, PathBuf};

use super::{open, Error, Format, Frame, FrameSource};
use crate::limits::Limits;
use crate::time::Timestamp;

/// What the report says about one input file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InputInfo {
    pub path: PathBuf,
    /// `None` until the file is opened, or if it could not be.
    pub format: Option<Format>,
    /// Frames delivered so far.
    pub frames: u64,
    pub first_ts: Option<Timestamp>,
    pub last_ts: Option<Timestamp>,
    /// Frames whose captured length was below their length on the wire.
    pub truncated_frames: u64,
    /// The file's snaplen (largest among pcapng interfaces; 0 = none declared).
    pub snaplen: Option<u32>,
    /// Bytes of the file read (compressed bytes for gzip).
    pub bytes_read: u64,
    /// Why reading stopped early (cannot open, damaged at byte N), already in one line.
    pub error: Option<String>,
}

impl InputInfo {
    fn new(path: &Path) -> Self {
        InputInfo {
            path: path.to_path_buf(),
            ..InputInfo::default()
        }
    }

    fn count(&mut self, frame: &Frame<'_>) {
        self.frames += 1;
        if self.first_ts.is_none() {
            self.first_ts = Some(frame.ts);
        }
        self.last_ts = Some(frame.ts);
        if frame.is_truncated() {
            self.truncated_frames += 1;
        }
    }
}

/// The time of each file's first frame (`None` when it cannot be opened or holds no frame).
pub fn first_timestamp(path: &Path, limits: &Limits) -> Option<Timestamp> {
    let mut source = open(path, 0, limits).ok()?;
    let ts = source.next_frame().ok()??.ts;
    Some(ts)
}

/// `paths` reordered by first timestamp. Files without a readable first frame keep their
/// relative order at the end; equal times keep the order given.
pub fn order_by_first_timestamp(paths: &[PathBuf], limits: &Limits) -> Vec<PathBuf> {
    let mut keyed: Vec<(Option<Timestamp>, &PathBuf)> = paths
        .iter()
        .map(|p| (first_timestamp(p, limits), p))
        .collect();
    keyed.sort_by_key(|(ts, _)| (ts.is_none(), *ts));
    keyed.into_iter().map(|(_, p)| p.clone()).collect()
}

/// One step of reading a chain.
#[derive(Debug)]
pub enum ChainEvent<'a> {
    Frame(Frame<'a>),
    /// Input `input` ended; `error` says why if it ended early (already in its `InputInfo`).
    InputDone {
        input: u16,
        error: Option<Error>,
    },
    /// Every input is done.
    End,
}

/// Several inputs read as one capture, in first-timestamp order.
pub struct Chain {
    inputs: Vec<InputInfo>,
    limits: Limits,
    /// Index of the input being read.
    current: usize,
    source: Option<Box<dyn FrameSource>>,
    /// The source ended or failed; it is closed on the next call.
    source_done: bool,
}

impl Chain {
    /// Orders `paths` by first timestamp (opening each file once to peek at its first frame);
    /// nothing else is read until [`Chain::next_event`]. Inputs past `u16::MAX` are ignored.
    pub fn new(paths: &[PathBuf], limits: &Limits) -> Chain {
        let ordered = order_by_first_timestamp(paths, limits);
        Chain::in_order(&ordered, limits)
    }

    /// Reads `paths` in the order given.
    pub fn in_order(paths: &[PathBuf], limits: &Limits) -> Chain {
        Chain {
            inputs: paths
                .iter()
                .take(usize::from(u16::MAX) + 1)
                .map(|p| InputInfo::new(p))
                .collect(),
            limits: limits.clone(),
            current: 0,
            source: None,
            source_done: false,
        }
    }

    /// The inputs in reading order; their counters grow as frames are read.
    pub fn inputs(&self) -> &[InputInfo] {
        &self.inputs
    }

    /// Bytes read so far across all inputs (for a progress bar).
    pub fn bytes_read(&self) -> u64 {
        let done: u64 = self.inputs.iter().map(|i| i.bytes_read).sum();
        done + self.source.as_ref().map_or(0, |s| s.bytes_read())
    }

    /// The next frame, or the end of an input (with its error, if any), or the end.
    /// An error never ends the chain: the next call goes on with the next input.
    pub fn next_event(&mut self) -> ChainEvent<'_> {
        if self.source_done {
            self.close_current();
        }
        if self.source.is_none() {
            let Some(info) = self.inputs.get_mut(self.current) else {
                return ChainEvent::End;
            };
            let input = u16::try_from(self.current).unwrap_or(u16::MAX);
            match open(&info.path, input, &self.limits) {
                Ok(source) => {
                    info.format = Some(source.format());
                    self.source = Some(source);
                }
                Err(e) => {
                    info.error = Some(e.to_string());
                    self.current += 1;
                    return ChainEvent::InputDone {
                        input,
                        error: Some(e),
                    };
                }
            }
        }
        let input = u16::try_from(self.current).unwrap_or(u16::MAX);
        let Some(source) = self.source.as_mut() else {
            return ChainEvent::End;
        };
        match source.next_frame() {
            Ok(Some(frame)) => {
                if let Some(info) = self.inputs.get_mut(self.current) {
                    info.count(&frame);
                }
                ChainEvent::Frame(frame)
            }
            Ok(None) => {
                self.source_done = true;
                ChainEvent::InputDone { input, error: None }
            }
            Err(e) => {
                self.source_done = true;
                if let Some(info) = self.inputs.get_mut(self.current) {
                    info.error = Some(e.to_string());
                }
                ChainEvent::InputDone {
                    input,
                    error: Some(e),
                }
            }
        }
    }

    /// Records the finished source's final counters and moves to the next input.
    fn close_current(&mut self) {
        if let (Some(source), Some(info)) = (self.source.take(), self.inputs.get_mut(self.current))
        {
            info.snaplen = source.snaplen();
            info.bytes_read = source.bytes_read();
            info.truncated_frames = info.truncated_frames.max(source.truncated_frames());
        }
        self.source_done = false;
        self.current += 1;
    }
}
