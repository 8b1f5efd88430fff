//! Large base64 bodies left out of the copy of a message that mail-parser
//! reads, so that a 20 MB attachment is not decoded (and held) by the
//! parser at all: its size, hash and content come from the stored bytes,
//! decoded as they are read ([`super::transfer::Base64`]).
//!
//! The cut is blind to MIME: it removes the middle of every long run of
//! lines that hold only whole base64 quanta (`A-Z a-z 0-9 + /`), keeping
//! [`KEEP`] lines at each end of the run. Such a line can be neither a
//! boundary (`--…`), nor a header field (it has no colon), nor the blank
//! line that ends a header block, so what mail-parser finds in the copy has
//! the same structure as in the message. The caller does not rely on that
//! argument alone: a cut is used only when, in the parse of the copy, it
//! lies inside the body of a base64 attachment; any other cut (inside a
//! text body, a header block, a nested message) makes the caller parse the
//! whole message instead ([`Elided::owner`]).

use std::ops::Range;

/// Messages above this size are parsed from an elided copy; below it the
/// parser's own copy of an attachment costs little.
pub(crate) const ELIDE_ABOVE: usize = 1024 * 1024;
/// A run shorter than this (in bytes) is left alone.
const MIN_CUT: usize = 16 * 1024;
/// Lines kept at each end of a run.
const KEEP: usize = 2;

/// A copy of a message with the middle of its long base64 runs removed.
#[derive(Debug)]
pub(crate) struct Elided {
    pub bytes: Vec<u8>,
    /// Ascending; `at` is where the removed bytes were, in `bytes`.
    cuts: Vec<Cut>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cut {
    at: usize,
    /// Bytes removed at `at`, plus those removed before it.
    removed_through: usize,
}

impl Elided {
    /// Where `offset` of the copy is in the message. An offset at a cut
    /// maps to the end of the removed bytes: a body range that holds a
    /// cut maps to the whole body.
    pub fn to_original(&self, offset: usize) -> usize {
        let i = self.cuts.partition_point(|c| c.at <= offset);
        offset + i.checked_sub(1).map_or(0, |i| self.cuts[i].removed_through)
    }

    /// The range of the message that `range` of the copy stands for.
    pub fn original(&self, range: Range<usize>) -> Range<usize> {
        // The start maps to before any cut at the same offset (a range
        // never starts at a cut: a run keeps its first lines).
        let i = self.cuts.partition_point(|c| c.at < range.start);
        let start = range.start + i.checked_sub(1).map_or(0, |i| self.cuts[i].removed_through);
        start..self.to_original(range.end)
    }

    /// For every cut, which of `bodies` (id, body range in the copy) holds
    /// it strictly inside; `None` when a cut is in none of them.
    pub fn owner(&self, bodies: &[(usize, Range<usize>)]) -> Option<Vec<usize>> {
        self.cuts
            .iter()
            .map(|c| {
                bodies
                    .iter()
                    .find(|(_, r)| r.start < c.at && c.at < r.end)
                    .map(|(id, _)| *id)
            })
            .collect()
    }
}

/// The elided copy of `raw`, or `None` when there is nothing to cut.
pub(crate) fn elide(raw: &[u8]) -> Option<Elided> {
    let spans = runs(raw);
    if spans.is_empty() {
        return None;
    }
    let removed: usize = spans.iter().map(|r| r.len()).sum();
    let mut bytes = Vec::with_capacity(raw.len() - removed);
    let mut cuts = Vec::with_capacity(spans.len());
    let mut from = 0;
    let mut total = 0;
    for span in spans {
        bytes.extend_from_slice(&raw[from..span.start]);
        total += span.len();
        cuts.push(Cut {
            at: bytes.len(),
            removed_through: total,
        });
        from = span.end;
    }
    bytes.extend_from_slice(&raw[from..]);
    Some(Elided { bytes, cuts })
}

/// The ranges of `raw` to remove: the middle of each run of base64 lines
/// of at least [`MIN_CUT`] bytes.
fn runs(raw: &[u8]) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    // Line starts of the current run: the first KEEP + 1 and the last KEEP.
    let mut head: Vec<usize> = Vec::with_capacity(KEEP + 1);
    let mut tail: [usize; KEEP] = [0; KEEP];
    let mut lines = 0usize;
    let mut start = 0;
    let mut close = |head: &mut Vec<usize>, tail: &[usize; KEEP], lines: &mut usize| {
        if *lines > 2 * KEEP {
            // Remove from the end of the KEEP-th line to the start of the
            // KEEP-th line from the end.
            let cut = head[KEEP]..tail[(*lines - KEEP) % KEEP];
            if cut.len() >= MIN_CUT {
                out.push(cut);
            }
        }
        head.clear();
        *lines = 0;
    };
    while start < raw.len() {
        let end = memchr::memchr(b'\n', &raw[start..]).map_or(raw.len(), |i| start + i + 1);
        if is_base64_line(&raw[start..end]) {
            if head.len() <= KEEP {
                head.push(start);
            }
            tail[lines % KEEP] = start;
            lines += 1;
        } else {
            close(&mut head, &tail, &mut lines);
        }
        start = end;
    }
    close(&mut head, &tail, &mut lines);
    out
}

/// A line (with its line end) of whole base64 quanta: a multiple of four
/// characters of the alphabet, without padding, not empty. Removing such
/// lines removes whole quanta, so a decoder that reads the copy fails or
/// succeeds where it would on the message (padding, a dangling group or a
/// stray character are all in lines that stay).
fn is_base64_line(line: &[u8]) -> bool {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    !line.is_empty()
        && line.len().is_multiple_of(4)
        && line
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || c == b'+' || c == b'/')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64_lines(n: usize, tag: u8) -> Vec<u8> {
        let mut out = Vec::new();
        for i in 0..n {
            let c = b'A' + ((i + tag as usize) % 26) as u8;
            out.extend(std::iter::repeat_n(c, 76)); // 19 quanta
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    #[test]
    fn a_long_run_keeps_its_ends_and_maps_back() {
        let mut raw =
            b"Content-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n".to_vec();
        let body_start = raw.len();
        raw.extend(b64_lines(1000, 0));
        let body_end = raw.len();
        raw.extend_from_slice(b"--b--\r\n");
        let e = elide(&raw).expect("cut");
        // two lines at each end remain
        assert_eq!(e.bytes.len(), raw.len() - 996 * 78);
        assert_eq!(&e.bytes[..body_start], &raw[..body_start]);
        assert!(e.bytes.ends_with(b"--b--\r\n"));
        let copy_end = body_end - 996 * 78;
        assert_eq!(e.original(body_start..copy_end), body_start..body_end);
        assert_eq!(e.to_original(e.bytes.len()), raw.len());
        assert_eq!(e.owner(&[(7, body_start..copy_end)]), Some(vec![7]));
        assert_eq!(e.owner(&[(7, 0..body_start)]), None);
    }

    #[test]
    fn short_runs_and_other_lines_stay() {
        let mut raw = b64_lines(100, 0); // 7.8 KB: under MIN_CUT
        raw.extend_from_slice(b"--boundary\r\n");
        raw.extend(b64_lines(100, 1));
        assert!(elide(&raw).is_none());
        // a colon, a dash or a space ends a run
        for sep in [
            &b"a:b\r\n"[..],
            b"--x\r\n",
            b"AAAA AAAA\r\n",
            b"\r\n",
            b"AAA=\r\n",
            b"AAAAA\r\n",
        ] {
            let mut raw = b64_lines(300, 0);
            raw.extend_from_slice(sep);
            raw.extend(b64_lines(300, 3));
            let e = elide(&raw).expect("two runs");
            assert_eq!(e.cuts.len(), 2, "{sep:?}");
            // the lines next to it stay with it
            let at = 300 * 78;
            let window = &raw[at - 78..at + sep.len() + 78];
            assert!(memchr::memmem::find(&e.bytes, window).is_some(), "{sep:?}");
        }
    }

    #[test]
    fn mapping_is_monotonic_across_many_cuts() {
        let mut raw = Vec::new();
        for i in 0..5 {
            raw.extend_from_slice(format!("--b{i}\r\n\r\n").as_bytes());
            raw.extend(b64_lines(400 + i * 10, i as u8));
        }
        let e = elide(&raw).unwrap();
        assert_eq!(e.cuts.len(), 5);
        let mut last = 0;
        for off in 0..=e.bytes.len() {
            let o = e.to_original(off);
            assert!(o >= last);
            last = o;
        }
        // bytes off the cuts map to the same bytes
        for off in (0..e.bytes.len()).step_by(97) {
            if !e.cuts.iter().any(|c| c.at == off) {
                assert_eq!(e.bytes[off], raw[e.to_original(off)], "{off}");
            }
        }
    }
}
