//! Moving blob bytes between async HTTP bodies and the synchronous content
//! store without holding a blob in memory: a blocking thread reads (or writes)
//! the file in large chunks and hands them over through a small bounded
//! channel, so at most a few chunks are in flight per transfer.

use std::io::{self, Read, Write};
use std::pin::Pin;
use std::task::{Context, Poll};

use bosun_image::ContentStore;
use bosun_oci::Digest;
use bytes::Bytes;
use hyper::body::{Frame, SizeHint};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Large chunks: fewer syscalls and channel hand-offs per byte.
pub(crate) const CHUNK: usize = 1 << 20;
/// Chunks in flight per transfer: enough to keep disk and socket busy at once.
const IN_FLIGHT: usize = 4;

/// An HTTP body: nothing, bytes in memory, or a blob streamed from disk.
#[derive(Debug)]
pub(crate) enum Body {
    Empty,
    Full(Option<Bytes>),
    Stream {
        rx: mpsc::Receiver<io::Result<Bytes>>,
        remaining: u64,
    },
}

impl Body {
    pub(crate) fn full(bytes: impl Into<Bytes>) -> Self {
        Body::Full(Some(bytes.into()))
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match self.get_mut() {
            Body::Empty => Poll::Ready(None),
            Body::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Body::Stream { rx, remaining } => match rx.poll_recv(cx) {
                Poll::Ready(Some(Ok(chunk))) => {
                    *remaining = remaining.saturating_sub(chunk.len() as u64);
                    Poll::Ready(Some(Ok(Frame::data(chunk))))
                }
                Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
                Poll::Ready(None) if *remaining > 0 => Poll::Ready(Some(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "blob ended early",
                )))),
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Empty | Body::Full(None) => true,
            Body::Full(Some(b)) => b.is_empty(),
            Body::Stream { remaining, .. } => *remaining == 0,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Empty | Body::Full(None) => SizeHint::with_exact(0),
            Body::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            Body::Stream { remaining, .. } => SizeHint::with_exact(*remaining),
        }
    }
}

/// Streams bytes `start..=end` of a stored blob. The whole blob is read and
/// hashed, and the last chunk is held back until the hash matched, so a
/// corrupt blob makes the body fail before it is complete: a client never
/// receives all of a response that is wrong. `on_chunk` sees each chunk's
/// length as it is read (progress).
pub(crate) fn stream_blob(
    content: ContentStore,
    digest: Digest,
    start: u64,
    end: u64,
    on_chunk: Option<Box<dyn Fn(u64) + Send>>,
) -> Body {
    let (tx, rx) = mpsc::channel(IN_FLIGHT);
    let remaining = end + 1 - start;
    tokio::task::spawn_blocking(move || {
        let mut reader = match content.open(&digest) {
            Ok(r) => r,
            Err(e) => {
                let _ = tx.blocking_send(Err(io::Error::other(e)));
                return;
            }
        };
        let mut pos = 0u64;
        let mut pending: Option<Bytes> = None;
        loop {
            let mut chunk = Vec::with_capacity(CHUNK);
            // `take` + `read_to_end` fills without zeroing the buffer first.
            let n = match (&mut reader).take(CHUNK as u64).read_to_end(&mut chunk) {
                Ok(n) => n as u64,
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            };
            if n == 0 {
                break;
            }
            if let Some(f) = &on_chunk {
                f(n);
            }
            let chunk_start = pos;
            pos += n;
            let (lo, hi) = (chunk_start.max(start), pos.min(end + 1));
            if lo < hi {
                let piece = Bytes::from(chunk)
                    .slice((lo - chunk_start) as usize..(hi - chunk_start) as usize);
                if let Some(ready) = pending.replace(piece)
                    && tx.blocking_send(Ok(ready)).is_err()
                {
                    return; // the receiver went away
                }
            }
        }
        if let Some(last) = pending {
            let _ = tx.blocking_send(Ok(last));
        }
    });
    Body::Stream { rx, remaining }
}

/// A blocking thread that writes the chunks it is sent to `writer`, and
/// returns the writer with how much it wrote, or the write error. Sending
/// fails once it stopped on an error, which tells the producer to stop too.
pub(crate) fn spawn_writer<W: Write + Send + 'static>(
    mut writer: W,
) -> (mpsc::Sender<Bytes>, JoinHandle<(W, io::Result<u64>)>) {
    let (tx, mut rx) = mpsc::channel::<Bytes>(IN_FLIGHT);
    let handle = tokio::task::spawn_blocking(move || {
        let mut written = 0u64;
        while let Some(chunk) = rx.blocking_recv() {
            if let Err(e) = writer.write_all(&chunk) {
                return (writer, Err(e));
            }
            written += chunk.len() as u64;
        }
        (writer, Ok(written))
    });
    (tx, handle)
}

/// Gathers small network reads into chunks of about [`CHUNK`] bytes before
/// they go to the writer thread.
#[derive(Debug, Default)]
pub(crate) struct Coalesce {
    buf: bytes::BytesMut,
}

impl Coalesce {
    /// Adds `data`; returns a full chunk when one is ready.
    pub(crate) fn push(&mut self, data: &[u8]) -> Option<Bytes> {
        if self.buf.is_empty() && data.len() >= CHUNK {
            return Some(Bytes::copy_from_slice(data));
        }
        if self.buf.capacity() == 0 {
            self.buf.reserve(CHUNK);
        }
        self.buf.extend_from_slice(data);
        (self.buf.len() >= CHUNK).then(|| self.buf.split().freeze())
    }

    /// Whatever is left.
    pub(crate) fn finish(&mut self) -> Option<Bytes> {
        (!self.buf.is_empty()).then(|| self.buf.split().freeze())
    }
}
