//! Physical line numbers of CSV records, as errors, skipped-line warnings and positions name
//! them: the 1-based line of the file on which a record's first byte lies.
//!
//! A line ends at `\n`, at `\r\n` (one line, not two) and at a bare `\r`, the three terminators
//! the CSV parser accepts. The parser's own count (`csv::Position::line`) is not that number:
//! it counts `\n` bytes only (every record of a file with bare `\r` ends is "line 1"), and a
//! record's position is where the parser started reading it, *before* the empty lines and the
//! `\n` of a `\r\n` that it skips ahead of the record (so after empty lines or with `\r\n` line
//! ends the number is too small). So the readers count lines themselves ([`LineCount`]): a
//! record starts at the first byte at or after its read position that is not a terminator
//! ([`record_start`]), and its line is one more than the line ends before that byte. A quoted
//! field's newlines end lines like any other, so the record after it is numbered after them.

use std::io::{self, Read};

/// A count of line ends over a prefix of the input: the line the next byte is on, and whether
/// the last byte counted was `\r` (so that a `\n` next ends no further line).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LineCount {
    /// The 1-based line of the next byte.
    pub(crate) line: u64,
    after_cr: bool,
}

impl LineCount {
    /// At the start of the input: line 1.
    pub(crate) const START: LineCount = LineCount {
        line: 1,
        after_cr: false,
    };

    /// The count at a byte that follows `previous` (a terminator, `\r` or `\n`) on `line`.
    pub(crate) fn after(line: u64, previous: u8) -> LineCount {
        LineCount {
            line,
            after_cr: previous == b'\r',
        }
    }

    /// Counts the line ends in `bytes`, which come right after the bytes counted so far.
    #[inline]
    pub(crate) fn advance(&mut self, bytes: &[u8]) {
        let Some(&last) = bytes.last() else { return };
        // `\r` and `\n` each end a line, except a `\n` right after a `\r`. This runs over
        // every byte of the file: most files have no `\r` (a memchr scan tells), and then the
        // count is that of `\n` alone.
        let lf = count(bytes, b'\n');
        let crlf = usize::from(self.after_cr && bytes[0] == b'\n');
        let ends = if bytes.contains(&b'\r') {
            let pairs = bytes
                .iter()
                .zip(&bytes[1..])
                .filter(|(a, b)| **a == b'\r' && **b == b'\n')
                .count();
            count(bytes, b'\r') + lf - pairs - crlf
        } else {
            lf - crlf
        };
        self.line += ends as u64;
        self.after_cr = last == b'\r';
    }
}

/// The number of bytes `byte` in `bytes`. Sums of one-byte flags over pieces of 255 bytes
/// (which no such sum can overflow): the compiler vectorizes them a register wide, where a
/// plain count widens every flag to a `usize` first.
#[inline]
fn count(bytes: &[u8], byte: u8) -> usize {
    bytes
        .chunks(255)
        .map(|piece| {
            let n: u8 = piece.iter().map(|b| u8::from(*b == byte)).sum();
            usize::from(n)
        })
        .sum()
}

/// Whether `byte` ends a line (and, outside quotes, a record).
#[inline]
pub(crate) fn is_terminator(byte: u8) -> bool {
    byte == b'\n' || byte == b'\r'
}

/// Where the record that the parser reads from `bytes[from..]` starts: the parser first skips
/// empty lines and the `\n` of a `\r\n` (every terminator byte), then the record begins.
#[inline]
pub(crate) fn record_start(bytes: &[u8], from: usize) -> usize {
    let rest = bytes.get(from..).unwrap_or_default();
    from + rest.iter().take_while(|b| is_terminator(**b)).count()
}

/// A count of line ends over an in-memory buffer, moved forward record by record: the lines of
/// the records read from the buffer, in order, at one pass over its bytes in all.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LineCursor {
    /// The count at byte `at` of the buffer.
    count: LineCount,
    at: usize,
}

impl LineCursor {
    /// A cursor at byte `at` of a buffer, where the count is `count`.
    pub(crate) fn new(count: LineCount, at: usize) -> Self {
        LineCursor { count, at }
    }

    /// The line of the record that the parser read from `bytes[from..]` (its position in the
    /// buffer, at or after this cursor's previous record): see [`record_start`]. Moves the
    /// cursor to the record's start.
    #[inline]
    pub(crate) fn record_line(&mut self, bytes: &[u8], from: usize) -> u64 {
        let start = record_start(bytes, from.max(self.at));
        self.count_to(bytes, start).line
    }

    /// Counts up to byte `to` of `bytes` (no further than its end, no further back than the
    /// cursor) and returns the count there.
    #[inline]
    pub(crate) fn count_to(&mut self, bytes: &[u8], to: usize) -> LineCount {
        let to = to.clamp(self.at, bytes.len().max(self.at));
        self.count
            .advance(bytes.get(self.at..to).unwrap_or_default());
        self.at = to;
        self.count
    }
}

/// An input that keeps what it read until its line ends are counted past, for a reader that
/// hands the bytes to a CSV parser and needs each record's line (the single reader: standard
/// input cannot be read twice).
pub(crate) struct Counted<R> {
    inner: R,
    /// Bytes read from `inner` and not yet forgotten; `kept_at` is the offset in the input of
    /// `kept[0]`, and `cursor` stands in `kept`.
    kept: Vec<u8>,
    kept_at: u64,
    cursor: LineCursor,
}

impl<R> Counted<R> {
    /// Counts the lines of `inner`, from its start.
    pub(crate) fn new(inner: R) -> Self {
        Counted {
            inner,
            kept: Vec::new(),
            kept_at: 0,
            cursor: LineCursor::new(LineCount::START, 0),
        }
    }

    /// The input, for reading on after the parser (at the parser's position, not this one's).
    pub(crate) fn into_inner(self) -> R {
        self.inner
    }

    /// `offset` in the input as an index into `kept`.
    fn index(&self, offset: u64) -> usize {
        usize::try_from(offset.saturating_sub(self.kept_at)).unwrap_or(usize::MAX)
    }

    /// Forgets counted bytes now and then, not per record (it moves what is left).
    fn forget(&mut self) {
        let done = self.cursor.at;
        if done > (1 << 16) && done * 2 > self.kept.len() {
            self.kept.drain(..done);
            self.kept_at += done as u64;
            self.cursor.at = 0;
        }
    }

    /// The line of the record that the parser read from byte `offset` of the input on (its
    /// position), once the parser has read it. Records must be asked for in input order.
    pub(crate) fn record_line(&mut self, offset: u64) -> u64 {
        let line = self.cursor.record_line(&self.kept, self.index(offset));
        self.forget();
        line
    }

    /// The count at byte `offset`, where the parser stands after a record (after its
    /// terminator): where a reader that goes on from there starts counting.
    pub(crate) fn count_at(&mut self, offset: u64) -> LineCount {
        let count = self.cursor.count_to(&self.kept, self.index(offset));
        self.forget();
        count
    }
}

impl<R: Read> Counted<R> {
    /// The count at byte `offset` of `input` (read from its start): for a reader that resumes
    /// at `offset` ([`Counted::resume`]). One pass over the prefix's bytes, no parsing.
    ///
    /// Errors: reading `input`, or an input shorter than `offset`.
    pub(crate) fn count_prefix(mut input: R, offset: u64) -> io::Result<LineCount> {
        let mut count = LineCount::START;
        let mut left = offset;
        let mut chunk = vec![0; 1 << 20];
        while left > 0 {
            let want = usize::try_from(left).unwrap_or(usize::MAX).min(chunk.len());
            let n = input.read(&mut chunk[..want])?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the input is shorter than the checkpointed position",
                ));
            }
            count.advance(&chunk[..n]);
            left -= n as u64;
        }
        Ok(count)
    }

    /// Sets the count at the offset the input was just sought to: `count` is the count of the
    /// input's bytes before it ([`Counted::count_prefix`]).
    pub(crate) fn resume(&mut self, count: LineCount) {
        self.cursor = LineCursor::new(count, 0);
    }
}

impl<R: io::Seek> io::Seek for Counted<R> {
    /// Seeks the input and drops the bytes kept: counting goes on from the new offset, from the
    /// count that [`Counted::resume`] sets there (line 1 until then).
    fn seek(&mut self, pos: io::SeekFrom) -> io::Result<u64> {
        let at = self.inner.seek(pos)?;
        self.kept.clear();
        self.kept_at = at;
        self.cursor = LineCursor::new(LineCount::START, 0);
        Ok(at)
    }
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.kept.extend_from_slice(&buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The brute-force count: line ends before `offset`, by the definition.
    fn reference(bytes: &[u8], offset: usize) -> u64 {
        let mut line = 1;
        for i in 0..offset {
            let ends = match bytes[i] {
                b'\r' => true,
                b'\n' => i == 0 || bytes[i - 1] != b'\r',
                _ => false,
            };
            line += u64::from(ends);
        }
        line
    }

    #[test]
    fn counts_every_terminator_kind_in_any_pieces() {
        let text = b"a\r\nb\rc\n\n\r\r\n\rd\r\n\r\nx\r";
        for cut in 0..=text.len() {
            for second in cut..=text.len() {
                let mut count = LineCount::START;
                count.advance(&text[..cut]);
                count.advance(&text[cut..second]);
                assert_eq!(count.line, reference(text, second), "{cut} {second}");
            }
        }
    }

    #[test]
    fn counts_long_pieces_with_and_without_carriage_returns() {
        // Pieces longer than the 255-byte steps of the count, with more than 255 line ends.
        let plain = "ab\n\n".repeat(700);
        let mixed = "a\r\nb\rc\n\r".repeat(300);
        for text in [plain.as_bytes(), mixed.as_bytes()] {
            for cut in [0, 1, 2, 254, 255, 256, 511, 1000, text.len()] {
                let mut count = LineCount::START;
                count.advance(&text[..cut]);
                count.advance(&text[cut..]);
                assert_eq!(count.line, reference(text, text.len()), "{cut}");
            }
        }
    }

    #[test]
    fn a_record_starts_after_the_terminators_before_it() {
        assert_eq!(record_start(b"\n\r\nab", 0), 3);
        assert_eq!(record_start(b"ab", 0), 0);
        assert_eq!(record_start(b"ab\r\n", 2), 4);
        let mut counted = Counted::new(&b"h\r\n\r\nx\ry\n"[..]);
        let mut sink = Vec::new();
        counted.read_to_end(&mut sink).expect("in memory");
        // The header's read starts at 0, the next records' at 2 (the `\n` of `\r\n`) and 6.
        assert_eq!(counted.record_line(0), 1);
        assert_eq!(counted.record_line(2), 3);
        assert_eq!(counted.record_line(6), 4);
        assert_eq!(counted.count_at(10).line, 5);
    }
}
