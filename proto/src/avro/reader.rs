//! Avro binary primitives, bounds-checked, for both decoders: every length and block count
//! is checked against the bytes left before anything is allocated for it, and every error
//! names its offset in the datum.

use super::AvroError;

/// A position in one datum.
pub(super) struct Reader<'a> {
    pub buf: &'a [u8],
    pub pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub fn err(&self, what: impl Into<String>) -> AvroError {
        AvroError::Malformed {
            offset: self.pos,
            what: what.into(),
        }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The datum must end here.
    pub fn finish(&self) -> Result<(), AvroError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(self.err(format!("{n} trailing bytes after the datum"))),
        }
    }

    /// A zig-zag varint `int` or `long`.
    pub fn long(&mut self) -> Result<i64, AvroError> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(self.err("truncated integer"));
            };
            self.pos += 1;
            v |= ((b & 0x7f) as u64) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(((v >> 1) as i64) ^ -((v & 1) as i64));
            }
        }
        Err(self.err("integer longer than 10 bytes"))
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], AvroError> {
        if n > self.remaining() {
            return Err(self.err(format!(
                "{what} of {n} bytes but only {} left (truncated or absurd length)",
                self.remaining()
            )));
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    /// The bytes of a `bytes` or `string` (length-prefixed).
    pub fn sized(&mut self, what: &str) -> Result<&'a [u8], AvroError> {
        let n = self.long()?;
        if n < 0 {
            return Err(self.err(format!("negative {what} length {n}")));
        }
        if n as u64 > self.remaining() as u64 {
            return Err(self.err(format!(
                "{what} of {n} bytes but only {} left (truncated or absurd length)",
                self.remaining()
            )));
        }
        self.take(n as usize, what)
    }

    /// A `string`: UTF-8 checked.
    pub fn str(&mut self) -> Result<&'a str, AvroError> {
        let start = self.pos;
        let raw = self.sized("string")?;
        std::str::from_utf8(raw).map_err(|_| {
            let at = Reader {
                buf: self.buf,
                pos: start,
            };
            at.err("string is not UTF-8")
        })
    }

    pub fn boolean(&mut self) -> Result<bool, AvroError> {
        let b = *self
            .buf
            .get(self.pos)
            .ok_or_else(|| self.err("truncated boolean"))?;
        if b > 1 {
            return Err(self.err(format!("boolean byte {b}")));
        }
        self.pos += 1;
        Ok(b == 1)
    }

    /// A union's branch index, which must be below `branches`.
    pub fn branch(&mut self, branches: usize) -> Result<usize, AvroError> {
        let i = self.long()?;
        usize::try_from(i)
            .ok()
            .filter(|i| *i < branches)
            .ok_or_else(|| self.err(format!("union branch {i} does not exist")))
    }

    /// The item count of the next array or map block, 0 at the end. Every item takes at
    /// least one byte in clew's schemas, so a count larger than what is left is refused
    /// before anyone reserves room for it.
    pub fn block(&mut self) -> Result<usize, AvroError> {
        let mut count = self.long()?;
        if count < 0 {
            count = count
                .checked_neg()
                .ok_or_else(|| self.err("block count overflow"))?;
            self.long()?; // block size in bytes, not needed
        }
        if count as u64 > self.remaining() as u64 {
            return Err(self.err(format!(
                "block of {count} items but only {} bytes left (truncated or absurd count)",
                self.remaining()
            )));
        }
        Ok(count as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zigzag_reader_matches_avro() {
        let mut r = Reader::new(&[0x01, 0x02, 0x7f, 0x80, 0x01]);
        assert_eq!(r.long().unwrap(), -1);
        assert_eq!(r.long().unwrap(), 1);
        assert_eq!(r.long().unwrap(), -64);
        assert_eq!(r.long().unwrap(), 64);
        assert!(r.finish().is_ok());
    }
}
