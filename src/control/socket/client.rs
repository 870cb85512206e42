//! One connected client: its socket, the requests it sent that are not answered yet, the
//! replies it has not taken yet.

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use mio::net::UnixStream;

pub(super) struct Client {
    pub stream: UnixStream,
    pub input: LineReader,
    pub output: Output,
    /// The client shut its writing side (or closed): once its requests are answered and
    /// the replies are out, it is done.
    pub read_closed: bool,
    /// Set when the server decided to close the connection (a request line too long): the
    /// last reply is flushed, then the write side is shut so the client sees EOF, and its
    /// input is read and thrown away until it closes, so closing never discards unread data
    /// (which the kernel would turn into ECONNRESET, losing the explanation). Dropped at
    /// this instant at the latest.
    pub closing: Option<Instant>,
    pub write_shut: bool,
    /// It subscribed to the event stream (`events.subscribe`): notifications are appended to
    /// its output as they happen.
    pub subscribed: bool,
}

impl Client {
    pub fn new(stream: UnixStream, max_line: usize) -> Client {
        Client {
            stream,
            input: LineReader::new(max_line),
            output: Output::default(),
            read_closed: false,
            closing: None,
            write_shut: false,
            subscribed: false,
        }
    }

    /// Nothing more will come from or go to the client.
    pub fn finished(&self) -> bool {
        self.read_closed && self.input.is_empty() && self.output.pending() == 0
    }

    /// The earliest of the instants at which this client must be looked at again.
    pub fn deadline(&self, partial_timeout: Duration, stall_timeout: Duration) -> Option<Instant> {
        let partial = self.input.since().map(|t| t + partial_timeout);
        let stall = self.output.stalled_since().map(|t| t + stall_timeout);
        [self.closing, partial, stall].into_iter().flatten().min()
    }
}

/// What [`LineReader::next_line`] found.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Line<'a> {
    /// A complete line, without its "\n" or "\r\n".
    Complete(&'a [u8]),
    /// A line longer than the limit; everything buffered was discarded.
    TooLong,
    /// No complete line buffered.
    NeedMore,
}

/// Splits a byte stream into lines ("\n", optionally preceded by "\r"). Reads into a buffer
/// of its own of `max + 2` bytes: room for a maximal line and its "\r\n", so a full buffer
/// without a newline is a line too long, and never more memory per client. Lines are
/// handed out one at a time, so the server can stop answering (a client not reading its
/// replies) and leave the rest of what it read here.
pub(super) struct LineReader {
    /// Allocated on first read.
    buf: Vec<u8>,
    /// Unconsumed bytes are `buf[start..end]`.
    start: usize,
    end: usize,
    /// `buf[start..scanned]` has no newline: not searched again.
    scanned: usize,
    /// When the server started waiting for the rest of an incomplete line: a client that
    /// sits on one too long is dropped (it holds a buffer and a slot, and is most likely
    /// stuck).
    since: Option<Instant>,
    /// The client will send nothing more: a last line without its newline is still a line.
    eof: bool,
    max: usize,
}

impl LineReader {
    pub fn new(max: usize) -> LineReader {
        LineReader { buf: Vec::new(), start: 0, end: 0, scanned: 0, since: None, eof: false, max }
    }

    pub fn since(&self) -> Option<Instant> {
        self.since
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    pub fn mark_eof(&mut self) {
        self.eof = true;
    }

    /// Drops everything buffered.
    pub fn discard(&mut self) {
        (self.start, self.end, self.scanned, self.since) = (0, 0, 0, None);
    }

    /// One read from `src` into the free space. Ok(0) is EOF. Call only after `next_line`
    /// said `NeedMore` (then there is room).
    pub fn fill(&mut self, mut src: impl Read) -> io::Result<usize> {
        if self.buf.is_empty() {
            self.buf = vec![0; self.max + 2];
        }
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            (self.end, self.scanned, self.start) = (self.end - self.start, self.scanned - self.start, 0);
        }
        if self.end == self.buf.len() {
            // Unreachable when used as documented: `next_line` reports a full buffer as a line
            // too long. Not Ok(0), which would read as EOF.
            return Err(io::Error::other("request line buffer full"));
        }
        let n = src.read(&mut self.buf[self.end..])?;
        self.end += n;
        Ok(n)
    }

    pub fn next_line(&mut self, now: Instant) -> Line<'_> {
        let (line_start, line_end) = match self.buf[self.scanned..self.end].iter().position(|&b| b == b'\n') {
            Some(i) => {
                let newline = self.scanned + i;
                let line_start = self.start;
                (self.start, self.scanned) = (newline + 1, newline + 1);
                (line_start, newline)
            }
            None => {
                self.scanned = self.end;
                let pending = self.end - self.start;
                if pending > self.max + 1 {
                    self.discard();
                    return Line::TooLong;
                }
                if pending == 0 || !self.eof {
                    if pending > 0 && self.since.is_none() {
                        self.since = Some(now);
                    }
                    return Line::NeedMore;
                }
                let line_start = self.start;
                self.start = self.end;
                (line_start, self.end)
            }
        };
        self.since = None;
        let line_end = if line_end > line_start && self.buf[line_end - 1] == b'\r' { line_end - 1 } else { line_end };
        if line_end - line_start > self.max {
            self.discard();
            return Line::TooLong;
        }
        Line::Complete(&self.buf[line_start..line_end])
    }
}

/// Replies not yet taken by the socket. Written without blocking: what the socket does not
/// take stays here and is continued when the socket is writable again.
#[derive(Default)]
pub(super) struct Output {
    buf: Vec<u8>,
    /// Bytes of `buf` already written.
    sent: usize,
    /// Since when the pending bytes have not moved: the last write that made progress, or
    /// when output became pending.
    stalled_since: Option<Instant>,
}

impl Output {
    pub fn pending(&self) -> usize {
        self.buf.len() - self.sent
    }

    pub fn stalled_since(&self) -> Option<Instant> {
        self.stalled_since
    }

    /// Where to append replies.
    pub fn buf(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    /// Writes what the socket takes. An error means the connection is gone.
    pub fn flush(&mut self, mut stream: &UnixStream, now: Instant) -> io::Result<()> {
        let mut progressed = false;
        while self.sent < self.buf.len() {
            match stream.write(&self.buf[self.sent..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.sent += n;
                    progressed = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if self.sent == self.buf.len() {
            self.buf.clear();
            self.sent = 0;
            self.stalled_since = None;
        } else {
            if progressed || self.stalled_since.is_none() {
                self.stalled_since = Some(now);
            }
            // Drop the written prefix once it is the larger part, so the buffer does not
            // grow with everything ever sent and the copy stays amortized.
            if self.sent >= self.buf.len() / 2 {
                self.buf.drain(..self.sent);
                self.sent = 0;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `data`, a read at a time as the server does, taking every complete line, until
    /// all of it is read or a line is too long.
    fn lines(reader: &mut LineReader, mut data: &[u8]) -> (Vec<String>, bool) {
        let mut got = Vec::new();
        loop {
            let (more, too_long) = drain(reader);
            got.extend(more);
            if too_long || data.is_empty() {
                return (got, too_long);
            }
            let n = reader.fill(data).expect("fill");
            data = &data[n..];
        }
    }

    /// Lines, and whether the reader ended with TooLong.
    fn drain(reader: &mut LineReader) -> (Vec<String>, bool) {
        let mut got = Vec::new();
        loop {
            match reader.next_line(Instant::now()) {
                Line::Complete(l) => got.push(String::from_utf8_lossy(l).into_owned()),
                Line::TooLong => return (got, true),
                Line::NeedMore => return (got, false),
            }
        }
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn splits_lines_across_reads() {
        let mut r = LineReader::new(16);
        assert_eq!(lines(&mut r, b"a\nbc"), (strings(&["a"]), false));
        assert!(r.since().is_some());
        assert_eq!(lines(&mut r, b"d\r"), (vec![], false));
        assert_eq!(lines(&mut r, b"\n\nef\r\ng"), (strings(&["bcd", "", "ef"]), false));
        assert!(!r.is_empty());
        assert_eq!(lines(&mut r, b"\n"), (strings(&["g"]), false));
        assert!(r.since().is_none() && r.is_empty());
    }

    #[test]
    fn a_last_line_without_newline_counts_at_eof() {
        let mut r = LineReader::new(16);
        assert_eq!(lines(&mut r, b"a\nlast\r"), (strings(&["a"]), false));
        r.mark_eof();
        assert_eq!(drain(&mut r), (strings(&["last"]), false));
        assert!(r.is_empty() && r.since().is_none());
    }

    #[test]
    fn lines_left_unread_wait_in_the_buffer() {
        let mut r = LineReader::new(16);
        r.fill(&b"1\n2\n3"[..]).expect("fill");
        assert_eq!(r.next_line(Instant::now()), Line::Complete(b"1"));
        // The server stops here (backpressure); later it goes on where it stopped.
        assert_eq!(lines(&mut r, b"\n"), (strings(&["2", "3"]), false));
    }

    #[test]
    fn limits_line_length_without_buffering_more() {
        let mut r = LineReader::new(4);
        assert_eq!(lines(&mut r, b"1234\n1234\r\n"), (strings(&["1234", "1234"]), false));
        assert_eq!(lines(&mut r, b"12345\nok\n"), (vec![], true));
        assert!(r.is_empty());
        let mut r = LineReader::new(4);
        assert_eq!(lines(&mut r, b"123"), (vec![], false));
        assert_eq!(lines(&mut r, b"4\r"), (vec![], false));
        assert_eq!(lines(&mut r, b"\n"), (strings(&["1234"]), false));
        assert_eq!(lines(&mut r, b"123"), (vec![], false));
        assert_eq!(lines(&mut r, b"45\n"), (vec![], true));
        let mut r = LineReader::new(4);
        assert_eq!(lines(&mut r, b"1234"), (vec![], false));
        assert_eq!(lines(&mut r, b"5"), (vec![], false), "4 bytes and one that could be a \\r");
        assert_eq!(lines(&mut r, b"6"), (vec![], true));
        assert!(r.is_empty() && r.since().is_none());
        // One read never takes more than the buffer holds.
        let mut r = LineReader::new(4);
        assert_eq!(r.fill(&b"0123456789"[..]).expect("fill"), 6);
    }
}
