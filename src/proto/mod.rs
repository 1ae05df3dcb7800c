//! Protocol parsers: pure functions over byte slices, one folder per protocol. No I/O, no
//! printing, no clocks, no frames: offsets and values only. Nothing here panics on input.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

/// An open enum over a registry-valued byte: known values get names, the rest `Unknown(v)`,
/// so decoding never fails on an unregistered value (as smoltcp's `enum_with_unknown!`).
macro_rules! open_enum {
    (
        $(#[$attr:meta])*
        pub enum $name:ident($ty:ty) {
            $( $(#[$vattr:meta])* $variant:ident = $value:expr ),+ $(,)?
        }
    ) => {
        $(#[$attr])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vattr])* $variant, )+
            Unknown($ty),
        }

        impl From<$ty> for $name {
            fn from(v: $ty) -> Self {
                match v {
                    $( $value => $name::$variant, )+
                    other => $name::Unknown(other),
                }
            }
        }

        impl From<$name> for $ty {
            fn from(v: $name) -> $ty {
                match v {
                    $( $name::$variant => $value, )+
                    $name::Unknown(other) => other,
                }
            }
        }

        impl $name {
            /// False for values outside the registry.
            pub fn is_known(self) -> bool {
                !matches!(self, $name::Unknown(_))
            }
        }
    };
}

pub mod dns;
pub mod kerberos;
pub mod ntlm;
pub mod ssrp;
pub mod tds;
pub mod tls;

/// Why a parser could not produce a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// More bytes are needed; `needed` is a lower bound when known.
    Incomplete { needed: Option<usize> },
    /// The bytes contradict the format at `at` (offset from the start of the input).
    Malformed { what: &'static str, at: usize },
    /// A length field asks for more than we are willing to hold.
    TooLarge {
        what: &'static str,
        len: usize,
        max: usize,
    },
    /// Valid, but a part we do not decode (the caller skips to the end of the message).
    Unsupported { what: &'static str, at: usize },
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParseError::Incomplete { .. } => f.write_str("message incomplete"),
            ParseError::Malformed { what, at } => write!(f, "malformed {what} at byte {at}"),
            ParseError::TooLarge { what, len, max } => {
                write!(f, "{what} of {len} bytes exceeds the limit of {max}")
            }
            ParseError::Unsupported { what, at } => write!(f, "{what} at byte {at} is not decoded"),
        }
    }
}
