//! The one keyset cursor of every trace index: results are ordered newest first by
//! `(start, trace id)`, and a cursor is the hex of the last hit's key; the next page holds
//! the keys strictly below it. Stable under concurrent writes of older data.

use crate::{Error, Result};

/// A result's sort key: `(start of its earliest matching span, trace id)`.
pub type Key = (u64, [u8; 16]);

/// The cursor after `key`.
pub fn encode_cursor(start: u64, id: &[u8; 16]) -> String {
    let mut b = [0u8; 24];
    b[..8].copy_from_slice(&start.to_be_bytes());
    b[8..].copy_from_slice(id);
    hex::encode(b)
}

/// The key of a cursor made by [`encode_cursor`]; anything else is
/// [`Error::InvalidRequest`].
pub fn decode_cursor(text: &str) -> Result<Key> {
    let bad = || Error::InvalidRequest("malformed cursor".into());
    if text.len() != 48 {
        return Err(bad());
    }
    let b = hex::decode(text).map_err(|_| bad())?;
    let start = u64::from_be_bytes(b[..8].try_into().map_err(|_| bad())?);
    let id: [u8; 16] = b[8..].try_into().map_err(|_| bad())?;
    Ok((start, id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_and_rejects_garbage() {
        let id = [7u8; 16];
        let c = encode_cursor(42, &id);
        assert_eq!(decode_cursor(&c).unwrap(), (42, id));
        for bad in ["", "zz", &c[..47], &format!("{c}00"), &"g".repeat(48)] {
            assert!(
                matches!(decode_cursor(bad), Err(Error::InvalidRequest(_))),
                "{bad:?}"
            );
        }
    }
}
