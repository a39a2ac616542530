//! A small length-prefixed binary format for what crosses the launcher ↔ helper socket: the
//! [`SandboxSpec`](crate::SandboxSpec) and the protocol messages. Pure: no I/O, no syscalls.
//!
//! Integers are little-endian; byte strings are a `u32` length then the bytes (so `OsString`s and
//! paths that are not UTF-8 survive). Both ends are the same binary, so there is no versioning
//! beyond a magic byte that catches a mismatched helper.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

/// Bytes that did not decode: truncated, trailing garbage, or an unknown tag.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed sandbox message: {0}")]
pub struct DecodeError(pub &'static str);

#[derive(Debug, Default)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }
    pub fn bool(&mut self, v: bool) -> &mut Self {
        self.u8(u8::from(v))
    }
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn i32(&mut self, v: i32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn bytes(&mut self, v: &[u8]) -> &mut Self {
        let len = u32::try_from(v.len()).expect("a sandbox message field over 4 GiB");
        self.u32(len);
        self.buf.extend_from_slice(v);
        self
    }
    pub fn str(&mut self, v: &str) -> &mut Self {
        self.bytes(v.as_bytes())
    }
    pub fn os(&mut self, v: &OsStr) -> &mut Self {
        self.bytes(v.as_bytes())
    }
    pub fn path(&mut self, v: &Path) -> &mut Self {
        self.os(v.as_os_str())
    }
    pub fn len(&mut self, n: usize) -> &mut Self {
        self.u32(u32::try_from(n).expect("a sandbox message list over 4G entries"))
    }
}

#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError("truncated"));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    pub fn bool(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError("bad bool")),
        }
    }
    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("2 bytes")))
    }
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
    pub fn i32(&mut self) -> Result<i32, DecodeError> {
        Ok(i32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
    pub fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    pub fn string(&mut self) -> Result<String, DecodeError> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| DecodeError("string is not UTF-8"))
    }
    pub fn os(&mut self) -> Result<OsString, DecodeError> {
        Ok(OsString::from_vec(self.bytes()?.to_vec()))
    }
    pub fn path(&mut self) -> Result<PathBuf, DecodeError> {
        Ok(PathBuf::from(self.os()?))
    }
    /// A list length, bounded by what is left so a corrupt length cannot make us allocate wildly.
    pub fn len(&mut self) -> Result<usize, DecodeError> {
        let n = self.u32()? as usize;
        if n > self.buf.len() {
            return Err(DecodeError("list longer than the message"));
        }
        Ok(n)
    }
    pub fn finish(self) -> Result<(), DecodeError> {
        if self.buf.is_empty() { Ok(()) } else { Err(DecodeError("trailing bytes")) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_field_kind() {
        let mut w = Writer::new();
        w.u8(7).bool(true).u16(443).u32(70_000).i32(-5).str("héllo").os(OsStr::from_bytes(b"\xff\xfe")).len(3);
        let bytes = w.into_bytes();
        let mut r = Reader::new(&bytes);
        assert_eq!(r.u8(), Ok(7));
        assert_eq!(r.bool(), Ok(true));
        assert_eq!(r.u16(), Ok(443));
        assert_eq!(r.u32(), Ok(70_000));
        assert_eq!(r.i32(), Ok(-5));
        assert_eq!(r.string().as_deref(), Ok("héllo"));
        assert_eq!(r.os().unwrap().as_bytes(), b"\xff\xfe");
        assert_eq!(r.u32(), Ok(3));
        r.finish().unwrap();
    }

    #[test]
    fn rejects_truncation_and_huge_lengths() {
        let mut w = Writer::new();
        w.str("abc");
        let bytes = w.into_bytes();
        assert!(Reader::new(&bytes[..5]).string().is_err());
        let mut huge = Writer::new();
        huge.u32(u32::MAX);
        assert!(Reader::new(&huge.into_bytes()).len().is_err());
        let mut extra = Reader::new(&[1, 2]);
        extra.u8().unwrap();
        assert!(extra.finish().is_err());
    }
}
