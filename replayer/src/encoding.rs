//! The canonical byte encoding: big-endian fixed-width integers, length-prefixed strings and
//! presence-flagged options. Decoding is strict: every byte is consumed exactly once, flags are 0 or 1,
//! strings are UTF-8, and nothing may follow the last field.

use thiserror::Error;

/// Why canonical bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("at byte {offset}: {what}")]
pub struct DecodeError {
    /// Offset of the byte where decoding failed.
    pub offset: usize,
    /// What was wrong there.
    pub what: String,
}

/// Why a value could not be encoded (a field longer than its length prefix allows).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("field {field} is {len} bytes, more than the {max} its encoding allows")]
pub struct EncodeError {
    /// The field name.
    pub field: &'static str,
    /// Its length.
    pub len: usize,
    /// The maximum.
    pub max: usize,
}

/// Appends canonical fields to a byte buffer.
#[derive(Default)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// A writer with room for `n` bytes.
    pub fn with_capacity(n: usize) -> Self {
        Self { buf: Vec::with_capacity(n) }
    }
    /// One byte.
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }
    /// Big-endian u32.
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }
    /// Big-endian u64.
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }
    /// Raw bytes with no length prefix (fixed-size fields).
    pub fn raw(&mut self, v: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(v);
        self
    }
    /// A string with a one-byte length prefix (at most 255 bytes).
    pub fn str8(&mut self, field: &'static str, v: &str) -> Result<&mut Self, EncodeError> {
        let len = u8::try_from(v.len()).map_err(|_| EncodeError { field, len: v.len(), max: 255 })?;
        self.buf.push(len);
        self.buf.extend_from_slice(v.as_bytes());
        Ok(self)
    }
    /// Bytes with a two-byte length prefix, at most `max` bytes.
    pub fn bytes16(&mut self, field: &'static str, v: &[u8], max: usize) -> Result<&mut Self, EncodeError> {
        let len = u16::try_from(v.len()).ok().filter(|l| usize::from(*l) <= max).ok_or(EncodeError {
            field,
            len: v.len(),
            max,
        })?;
        self.buf.extend_from_slice(&len.to_be_bytes());
        self.buf.extend_from_slice(v);
        Ok(self)
    }
    /// The encoded bytes.
    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

/// Reads canonical fields from a byte slice.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Start reading `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }
    /// An error at the current offset.
    pub fn error(&self, what: impl Into<String>) -> DecodeError {
        DecodeError { offset: self.pos, what: what.into() }
    }
    fn take(&mut self, n: usize, field: &str) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).filter(|e| *e <= self.buf.len());
        match end {
            Some(end) => {
                let s = &self.buf[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(self.error(format!("truncated: {field} needs {n} bytes, {} left", self.buf.len() - self.pos))),
        }
    }
    /// One byte.
    pub fn u8(&mut self, field: &str) -> Result<u8, DecodeError> {
        Ok(self.take(1, field)?[0])
    }
    /// Big-endian u32.
    pub fn u32(&mut self, field: &str) -> Result<u32, DecodeError> {
        let mut a = [0u8; 4];
        a.copy_from_slice(self.take(4, field)?);
        Ok(u32::from_be_bytes(a))
    }
    /// Big-endian u64.
    pub fn u64(&mut self, field: &str) -> Result<u64, DecodeError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8, field)?);
        Ok(u64::from_be_bytes(a))
    }
    /// A fixed-size byte array.
    pub fn array<const N: usize>(&mut self, field: &str) -> Result<[u8; N], DecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, field)?);
        Ok(a)
    }
    /// `n` raw bytes.
    pub fn array_vec(&mut self, n: usize, field: &str) -> Result<Vec<u8>, DecodeError> {
        Ok(self.take(n, field)?.to_vec())
    }
    /// A string with a one-byte length prefix; must be UTF-8.
    pub fn str8(&mut self, field: &str) -> Result<String, DecodeError> {
        let len = usize::from(self.u8(field)?);
        let start = self.pos;
        let bytes = self.take(len, field)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| DecodeError { offset: start, what: format!("{field} is not UTF-8") })
    }
    /// Bytes with a two-byte length prefix, at most `max`.
    pub fn bytes16(&mut self, field: &str, max: usize) -> Result<Vec<u8>, DecodeError> {
        let len = usize::from(u16::from_be_bytes(self.array::<2>(field)?));
        if len > max {
            return Err(self.error(format!("{field} is {len} bytes, at most {max} allowed")));
        }
        Ok(self.take(len, field)?.to_vec())
    }
    /// A presence flag: 0 (absent) or 1 (present).
    pub fn flag(&mut self, field: &str) -> Result<bool, DecodeError> {
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(DecodeError { offset: self.pos - 1, what: format!("{field} presence flag is {v}, not 0 or 1") }),
        }
    }
    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
    /// Fails unless every byte was consumed.
    pub fn end(&self) -> Result<(), DecodeError> {
        if self.pos == self.buf.len() {
            Ok(())
        } else {
            Err(self.error(format!("{} trailing bytes", self.buf.len() - self.pos)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_strictness() {
        let mut w = Writer::default();
        w.u8(1).u32(7).u64(u64::MAX);
        w.str8("s", "héllo").unwrap();
        w.bytes16("b", &[1, 2, 3], 10).unwrap();
        let bytes = w.finish();
        let mut r = Reader::new(&bytes);
        assert_eq!(r.u8("a").unwrap(), 1);
        assert_eq!(r.u32("b").unwrap(), 7);
        assert_eq!(r.u64("c").unwrap(), u64::MAX);
        assert_eq!(r.str8("s").unwrap(), "héllo");
        assert_eq!(r.bytes16("b", 10).unwrap(), vec![1, 2, 3]);
        r.end().unwrap();

        let mut r = Reader::new(&bytes[..3]);
        r.u8("a").unwrap();
        let e = r.u32("count").unwrap_err();
        assert!(e.what.contains("truncated"), "{e}");

        let mut r = Reader::new(&[2u8]);
        assert!(r.flag("memo").unwrap_err().what.contains("presence flag"));

        let mut r = Reader::new(&[1u8, 0xff]);
        assert!(r.str8("s").unwrap_err().what.contains("UTF-8"));
    }

    #[test]
    fn encode_limits() {
        let long = "x".repeat(256);
        assert!(Writer::default().str8("from", &long).is_err());
        assert!(Writer::default().bytes16("memo", &[0u8; 11], 10).is_err());
    }
}
