//! Container logs in Docker's json-file format: one JSON object per line,
//! `{"log":"…","stream":"stdout","time":"…"}`. The shim writes them, so a
//! daemon restart loses nothing; the daemon reads and follows them.

use std::fs::File;
use std::io::{self, BufRead, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::time::now_rfc3339_nano;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    /// The stream byte of Docker's multiplexed framing.
    pub(crate) fn frame_type(self) -> u8 {
        match self {
            Self::Stdout => 1,
            Self::Stderr => 2,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Entry {
    pub log: String,
    pub stream: Stream,
    pub time: String,
}

/// Docker splits lines longer than this into several entries.
const MAX_ENTRY: usize = 16 * 1024;

/// Turns output bytes into entries, a line at a time, per stream.
#[derive(Debug)]
pub(crate) struct LogWriter {
    file: File,
    partial: [Vec<u8>; 2],
}

impl LogWriter {
    pub(crate) fn open(path: &Path) -> io::Result<Self> {
        let file = File::options().create(true).append(true).open(path)?;
        Ok(Self {
            file,
            partial: [Vec::new(), Vec::new()],
        })
    }

    pub(crate) fn write(&mut self, stream: Stream, bytes: &[u8]) {
        let i = stream.frame_type() as usize - 1;
        self.partial[i].extend_from_slice(bytes);
        loop {
            let buf = &self.partial[i];
            let cut = match buf.iter().position(|&b| b == b'\n') {
                Some(nl) => nl + 1,
                None if buf.len() >= MAX_ENTRY => MAX_ENTRY,
                None => return,
            };
            let line: Vec<u8> = self.partial[i].drain(..cut).collect();
            self.emit(stream, &line);
        }
    }

    /// Write out unterminated lines (the process has ended).
    pub(crate) fn finish(&mut self) {
        for (i, stream) in [Stream::Stdout, Stream::Stderr].into_iter().enumerate() {
            let rest = std::mem::take(&mut self.partial[i]);
            if !rest.is_empty() {
                self.emit(stream, &rest);
            }
        }
        let _ = self.file.sync_data();
    }

    fn emit(&mut self, stream: Stream, line: &[u8]) {
        let entry = Entry {
            log: String::from_utf8_lossy(line).into_owned(),
            stream,
            time: now_rfc3339_nano(),
        };
        if let Ok(mut text) = serde_json::to_vec(&entry) {
            text.push(b'\n');
            // One write per entry, appended: a reader never sees half an entry
            // unless the disk is full, and then it skips that line.
            let _ = self.file.write_all(&text);
        }
    }
}

/// Entries from `reader`, skipping lines that are not entries (a torn write).
pub(crate) fn read_entries(reader: impl BufRead) -> impl Iterator<Item = Entry> {
    reader
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| serde_json::from_str(&l).ok())
}

/// Which entries a `logs` request wants.
#[derive(Debug, Clone, Default)]
pub(crate) struct Filter {
    pub stdout: bool,
    pub stderr: bool,
    pub since: Option<String>,
    pub until: Option<String>,
    pub tail: Option<usize>,
}

impl Filter {
    pub(crate) fn wants(&self, e: &Entry) -> bool {
        let stream = match e.stream {
            Stream::Stdout => self.stdout,
            Stream::Stderr => self.stderr,
        };
        stream
            && self
                .since
                .as_ref()
                .is_none_or(|s| e.time.as_str() > s.as_str())
            && self
                .until
                .as_ref()
                .is_none_or(|u| e.time.as_str() <= u.as_str())
    }
}

/// Docker's multiplexed frame: `[stream, 0, 0, 0, len u32 BE]` + payload.
pub(crate) fn mux_frame(stream: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + payload.len());
    out.extend_from_slice(&[stream, 0, 0, 0]);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_split_per_stream_and_flushed_at_the_end() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log");
        let mut w = LogWriter::open(&path).expect("open");
        w.write(Stream::Stdout, b"hel");
        w.write(Stream::Stderr, b"oops\n");
        w.write(Stream::Stdout, b"lo\nwor");
        w.finish();
        let entries: Vec<Entry> =
            read_entries(io::BufReader::new(File::open(&path).expect("read"))).collect();
        let got: Vec<(&str, Stream)> = entries.iter().map(|e| (e.log.as_str(), e.stream)).collect();
        assert_eq!(
            got,
            vec![
                ("oops\n", Stream::Stderr),
                ("hello\n", Stream::Stdout),
                ("wor", Stream::Stdout)
            ]
        );
    }

    #[test]
    fn long_lines_are_cut() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log");
        let mut w = LogWriter::open(&path).expect("open");
        w.write(Stream::Stdout, &vec![b'x'; MAX_ENTRY + 10]);
        w.finish();
        let entries: Vec<Entry> =
            read_entries(io::BufReader::new(File::open(&path).expect("read"))).collect();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].log.len(), MAX_ENTRY);
    }

    #[test]
    fn frames() {
        assert_eq!(
            mux_frame(1, b"hi"),
            vec![1, 0, 0, 0, 0, 0, 0, 2, b'h', b'i']
        );
    }
}
