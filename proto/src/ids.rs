//! Trace and span identifiers.
//!
//! OTLP carries ids as raw bytes; everything user-facing (URLs, JSON, index terms) uses
//! lowercase hex. Parsing accepts either case, and 16-hex-digit (64-bit) legacy trace ids
//! are left-padded with zeros to 16 bytes (see `docs/adr/0001-row-layout.md`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why an identifier was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("expected {expected} bytes, got {got}")]
    WrongLength { expected: usize, got: usize },
    #[error("id is all zeros")]
    AllZeros,
    #[error("id is not hex: expected {expected} hex digits")]
    NotHex { expected: usize },
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $len:expr, $legacy_hex:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
        pub struct $name(pub [u8; $len]);

        impl $name {
            /// Number of bytes in the id.
            pub const LEN: usize = $len;

            /// Takes OTLP's raw bytes. Wrong length and all zeros are invalid (OTLP spec).
            pub fn from_bytes(bytes: &[u8]) -> Result<Self, IdError> {
                let arr: [u8; $len] = bytes
                    .try_into()
                    .map_err(|_| IdError::WrongLength { expected: $len, got: bytes.len() })?;
                if arr == [0u8; $len] {
                    return Err(IdError::AllZeros);
                }
                Ok(Self(arr))
            }

            pub fn as_bytes(&self) -> &[u8; $len] {
                &self.0
            }

            /// Lowercase hex, `2 * LEN` digits.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }

            /// Parses hex in either case. Legacy short ids are left-padded with zeros.
            pub fn from_hex(text: &str) -> Result<Self, IdError> {
                let full = 2 * $len;
                let legacy: usize = $legacy_hex;
                if !(text.len() == full || (legacy > 0 && text.len() == legacy)) {
                    return Err(IdError::NotHex { expected: full });
                }
                let mut buf = [0u8; $len];
                let offset = (full - text.len()) / 2;
                hex::decode_to_slice(text, &mut buf[offset..])
                    .map_err(|_| IdError::NotHex { expected: full })?;
                if buf == [0u8; $len] {
                    return Err(IdError::AllZeros);
                }
                Ok(Self(buf))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let mut buf = [0u8; 2 * $len];
                hex::encode_to_slice(self.0, &mut buf).expect("buffer is exactly twice the id");
                f.write_str(std::str::from_utf8(&buf).expect("hex is ascii"))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self)
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::from_hex(s)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.to_hex())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                Self::from_hex(&text).map_err(serde::de::Error::custom)
            }
        }
    };
}

id_type!(
    /// A 16-byte trace id: the row key of the span store.
    TraceId, 16, 16
);
id_type!(
    /// An 8-byte span id: the column qualifier within a trace's row.
    SpanId, 8, 0
);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rejects_zero_and_wrong_length() {
        assert_eq!(TraceId::from_bytes(&[0; 16]), Err(IdError::AllZeros));
        assert_eq!(
            TraceId::from_bytes(&[1; 15]),
            Err(IdError::WrongLength {
                expected: 16,
                got: 15
            })
        );
        assert_eq!(SpanId::from_bytes(&[0; 8]), Err(IdError::AllZeros));
        assert!(SpanId::from_hex("0102030405060708").is_ok());
        assert!(SpanId::from_hex("01020304050607").is_err());
        assert!(TraceId::from_hex("zz").is_err());
        assert!(TraceId::from_hex("../../etc/passwd").is_err());
    }

    #[test]
    fn legacy_64_bit_trace_ids_are_left_padded() {
        let id = TraceId::from_hex("00000000000000ff").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(id.to_hex(), "000000000000000000000000000000ff");
        assert_eq!(id.0[15], 0xff);
        assert_eq!(id.0[..15], [0u8; 15]);
    }

    #[test]
    fn parsing_is_case_insensitive() {
        let a = TraceId::from_hex("ABCDEF0123456789ABCDEF0123456789").unwrap();
        let b = TraceId::from_hex("abcdef0123456789abcdef0123456789").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.to_string(), "abcdef0123456789abcdef0123456789");
    }

    proptest! {
        #[test]
        fn trace_id_hex_round_trips(bytes in proptest::array::uniform16(any::<u8>())) {
            prop_assume!(bytes != [0u8; 16]);
            let id = TraceId(bytes);
            prop_assert_eq!(TraceId::from_hex(&id.to_hex()).unwrap(), id);
            prop_assert_eq!(id.to_string(), id.to_hex());
        }

        #[test]
        fn span_id_parse_never_panics(text in ".{0,40}") {
            let _ = SpanId::from_hex(&text);
            let _ = TraceId::from_hex(&text);
        }
    }
}
