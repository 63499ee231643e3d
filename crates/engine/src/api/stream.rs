//! Streaming bodies, hijacked connections and log following.

use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Frame;
use hyper::header::{CONNECTION, CONTENT_TYPE, HeaderValue, UPGRADE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

use super::Body;
use crate::engine::{Change, Container};
use crate::logs::{Entry, Filter, mux_frame, read_entries};

/// A response body fed from a channel: each message is sent as it comes.
/// When the channel closes it ends cleanly, unless `failed` was set first:
/// then it ends with an error, which aborts the response.
#[derive(Debug)]
pub(crate) struct ChannelBody {
    rx: mpsc::Receiver<Bytes>,
    failed: Arc<AtomicBool>,
}

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        self.rx.poll_recv(cx).map(|m| match m {
            Some(b) => Some(Ok(Frame::data(b))),
            None if self.failed.load(Ordering::Acquire) => {
                Some(Err(std::io::Error::other("the stream failed part-way")))
            }
            None => None,
        })
    }
}

/// Blocking code's output into a streaming response ([`blocking`]).
pub(crate) struct BlockingWriter {
    tx: mpsc::Sender<Bytes>,
    failed: Arc<AtomicBool>,
}

impl BlockingWriter {
    /// Ends the response with an error: what was written is not the whole.
    pub(crate) fn fail(self) {
        self.failed.store(true, Ordering::Release);
    }
}

impl std::io::Write for BlockingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.tx
            .blocking_send(Bytes::copy_from_slice(buf))
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client went away")
            })?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A streaming response and the sender that feeds it.
pub(crate) fn channel(content_type: &'static str) -> (mpsc::Sender<Bytes>, Response<Body>) {
    let (tx, _failed, r) = channel_with_failure(content_type);
    (tx, r)
}

/// A streaming response fed by blocking code (a tar of an image or a
/// container's files): the writer, and the response. A producer that fails
/// part-way calls [`BlockingWriter::fail`], so the client does not take a
/// truncated archive for a whole one.
pub(crate) fn blocking(content_type: &'static str) -> (BlockingWriter, Response<Body>) {
    let (tx, failed, r) = channel_with_failure(content_type);
    (BlockingWriter { tx, failed }, r)
}

fn channel_with_failure(
    content_type: &'static str,
) -> (mpsc::Sender<Bytes>, Arc<AtomicBool>, Response<Body>) {
    let (tx, rx) = mpsc::channel(64);
    let failed = Arc::new(AtomicBool::new(false));
    let body = ChannelBody {
        rx,
        failed: failed.clone(),
    };
    let mut r = Response::new(body.boxed());
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    (tx, failed, r)
}

/// A streaming response of JSON lines (pull, push and build progress), one
/// per value sent on the returned channel.
pub(crate) fn json_lines(mut rx: mpsc::UnboundedReceiver<serde_json::Value>) -> Response<Body> {
    let (tx, resp) = channel("application/json");
    tokio::spawn(async move {
        while let Some(v) = rx.recv().await {
            if tx.send(Bytes::from(format!("{v}\r\n"))).await.is_err() {
                return;
            }
        }
    });
    resp
}

pub(crate) const RAW_STREAM: &str = "application/vnd.docker.raw-stream";
pub(crate) const MUX_STREAM: &str = "application/vnd.docker.multiplexed-stream";

/// Hijack the connection: answer `101 UPGRADED` (the client sent
/// `Upgrade: tcp`) and hand the raw connection to `f` once hyper lets go.
pub(crate) fn hijack<B, F, Fut>(req: Request<B>, tty: bool, f: F) -> Response<Body>
where
    B: Send + 'static,
    F: FnOnce(Box<dyn RawIo>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let wants_upgrade = req.headers().contains_key(UPGRADE);
    let content_type = if tty { RAW_STREAM } else { MUX_STREAM };
    if !wants_upgrade {
        // Old clients without the upgrade handshake: stream output only.
        let (tx, mut resp) = channel(content_type);
        tokio::spawn(async move {
            let io = SenderIo { tx };
            f(Box::new(io)).await;
        });
        *resp.status_mut() = StatusCode::OK;
        return resp;
    }
    tokio::spawn(async move {
        if let Ok(upgraded) = hyper::upgrade::on(req).await {
            f(Box::new(TokioIo::new(upgraded))).await;
        }
    });
    let mut r = Response::new(super::full(Bytes::new()));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(UPGRADE, HeaderValue::from_static("tcp"));
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// A bidirectional byte stream (the hijacked connection).
pub(crate) trait RawIo: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> RawIo for T {}

/// Output-only stand-in for a connection that was not upgraded.
struct SenderIo {
    tx: mpsc::Sender<Bytes>,
}

impl AsyncRead for SenderIo {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        _: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        // No input: reads wait forever (EOF would close stdin).
        Poll::Pending
    }
}

impl AsyncWrite for SenderIo {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.tx.try_send(Bytes::copy_from_slice(buf)) {
            Ok(()) => Poll::Ready(Ok(buf.len())),
            Err(mpsc::error::TrySendError::Full(_)) => Poll::Ready(Ok(0)),
            Err(mpsc::error::TrySendError::Closed(_)) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "client gone",
            ))),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// How one entry goes on the wire: raw bytes with a TTY, framed without.
pub(crate) fn encode_entry(e: &Entry, tty: bool, timestamps: bool) -> Vec<u8> {
    let mut payload = Vec::new();
    if timestamps {
        payload.extend_from_slice(e.time.as_bytes());
        payload.push(b' ');
    }
    payload.extend_from_slice(e.log.as_bytes());
    match tty {
        true => payload,
        false => mux_frame(e.stream.frame_type(), &payload),
    }
}

/// Where a follower starts reading.
#[derive(Debug, Clone, Copy)]
pub(crate) enum From {
    /// The end of the log as it is now (attach: only new output).
    End,
    /// The beginning (logs).
    Start,
}

/// Follow a container's log: entries the filter wants go to `out` until
/// the container has exited (an exit after `since_exits`) and the log is
/// drained, or `out` refuses more. Without `follow`, stop at the end.
pub(crate) struct Follow {
    pub container: Arc<Container>,
    pub filter: Filter,
    pub from: From,
    pub follow: bool,
}

impl Follow {
    /// Runs the follow; `sink` returns false when the client has gone.
    pub(crate) async fn run<S>(self, mut sink: S)
    where
        S: FnMut(Entry) -> Pin<Box<dyn std::future::Future<Output = bool> + Send>> + Send,
    {
        let path = self.container.log_path();
        let mut rx = self.container.subscribe();
        let start: Change = *rx.borrow();
        let mut pos: u64 = match self.from {
            From::End => std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0),
            From::Start => 0,
        };
        let live = |c: &Change| {
            matches!(
                c.status,
                crate::model::Status::Running
                    | crate::model::Status::Paused
                    | crate::model::Status::Restarting
                    | crate::model::Status::Created
            )
        };
        // `--tail`: only the last N entries of what is there now.
        if let (Some(n), From::Start) = (self.filter.tail, self.from) {
            let (all, end) = read_from(&path, 0, &self.filter);
            let skip = all.len().saturating_sub(n);
            for e in all.into_iter().skip(skip) {
                if !sink(e).await {
                    return;
                }
            }
            pos = end;
        }
        loop {
            let (batch, end) = read_from(&path, pos, &self.filter);
            pos = end;
            for e in batch {
                if !sink(e).await {
                    return;
                }
            }
            if !self.follow {
                return;
            }
            let now = *rx.borrow();
            let ended = now.removed || now.exits > start.exits || (!live(&now) && !live(&start));
            if ended {
                // One more pass: the shim wrote everything before it ended.
                for e in read_from(&path, pos, &self.filter).0 {
                    if !sink(e).await {
                        return;
                    }
                }
                return;
            }
            tokio::select! {
                changed = rx.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
                () = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
    }
}

/// Complete entries from byte `pos` on that the filter wants, and the
/// offset after the last complete line.
fn read_from(path: &std::path::Path, pos: u64, filter: &Filter) -> (Vec<Entry>, u64) {
    let Ok(mut f) = std::fs::File::open(path) else {
        return (Vec::new(), pos);
    };
    if f.seek(SeekFrom::Start(pos)).is_err() {
        return (Vec::new(), pos);
    }
    let mut reader = BufReader::new(f);
    let mut out = Vec::new();
    let mut offset = pos;
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if !line.ends_with('\n') {
                    // Half an entry: the writer is mid-line; read it next time.
                    break;
                }
                offset += n as u64;
                if let Some(e) = read_entries(line.as_bytes()).next()
                    && filter.wants(&e)
                {
                    out.push(e);
                }
            }
        }
    }
    (out, offset)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use http_body_util::BodyExt;

    use super::blocking;

    #[tokio::test]
    async fn a_failed_producer_aborts_the_body_and_a_finished_one_ends_it() {
        let (mut w, resp) = blocking("application/x-tar");
        std::thread::spawn(move || {
            w.write_all(b"part of it").unwrap();
            w.fail();
        })
        .join()
        .unwrap();
        assert!(
            resp.into_body().collect().await.is_err(),
            "a truncated stream ended cleanly"
        );

        let (mut w, resp) = blocking("application/x-tar");
        std::thread::spawn(move || w.write_all(b"all of it").unwrap())
            .join()
            .unwrap();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"all of it");
    }
}
