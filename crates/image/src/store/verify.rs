use std::io::{self, Read};

use bosun_oci::Digest;

use crate::hash::Hasher;
use crate::store::StoreError;

/// A reader over a stored blob that hashes what it yields and fails at the end
/// if the content does not match the digest it was opened by.
///
/// Bytes are handed out before the check can be made (a blob can be larger than
/// memory), so a consumer must treat its output as untrusted until it has read
/// to the end without error. The error at the end is an
/// [`io::ErrorKind::InvalidData`] wrapping [`StoreError::Corrupt`].
#[derive(Debug)]
pub struct VerifyingReader<R> {
    inner: R,
    expected: Digest,
    // `None` once the end was reached and checked.
    hasher: Option<Hasher>,
}

impl<R: Read> VerifyingReader<R> {
    pub(crate) fn new(inner: R, expected: Digest) -> Self {
        Self {
            inner,
            expected,
            hasher: Some(Hasher::default()),
        }
    }

    /// The digest the content is checked against.
    pub fn digest(&self) -> &Digest {
        &self.expected
    }
}

impl<R: Read> Read for VerifyingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(hasher) = self.hasher.as_mut() else {
            return Ok(0);
        };
        let n = self.inner.read(buf)?;
        if n > 0 {
            hasher.update(&buf[..n]);
            return Ok(n);
        }
        if buf.is_empty() {
            // A zero-length read says nothing about the end of the stream.
            return Ok(0);
        }
        let actual = self.hasher.take().map(Hasher::finish);
        match actual {
            Some(actual) if actual != self.expected => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                StoreError::Corrupt {
                    expected: self.expected.clone(),
                    actual,
                },
            )),
            _ => Ok(0),
        }
    }
}
