//! Every ceiling on memory fed by input, with its default and the reason for it.
//!
//! `Limits` is passed down explicitly; no stage reads a global.

/// Ceilings on memory that input can make us allocate.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Out-of-order bytes buffered per direction of one TCP connection. 4 MiB holds a full
    /// 64 KiB-window burst many times over, and a scaled 1 MiB window four times.
    pub stream_buffer_bytes: usize,
    /// Out-of-order bytes buffered across all connections at once. When exceeded, the
    /// connection holding the most is flushed as gaps (its data is dropped and counted).
    pub total_buffer_bytes: usize,
    /// Open TCP connections tracked at once; past this the least recently active one is
    /// finalised early (its report says so).
    pub max_connections: usize,
    /// Bytes held per IP datagram being reassembled from fragments (the IPv4/IPv6 maximum).
    pub ip_fragment_bytes: usize,
    /// IP datagrams being reassembled at once.
    pub ip_fragment_datagrams: usize,
    /// Seconds an incomplete fragmented datagram is kept (Linux `ipfrag_time` default: 30 s).
    pub ip_fragment_timeout_s: u32,
    /// Largest frame a capture file may declare. 256 KiB is Wireshark's `WTAP_MAX_PACKET_SIZE_STANDARD`;
    /// anything larger is treated as a corrupt length rather than allocated.
    pub max_frame_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            stream_buffer_bytes: 4 << 20,
            total_buffer_bytes: 256 << 20,
            max_connections: 200_000,
            ip_fragment_bytes: 65_535,
            ip_fragment_datagrams: 4_096,
            ip_fragment_timeout_s: 30,
            max_frame_bytes: 262_144,
        }
    }
}
