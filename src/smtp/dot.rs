//! The DATA content decoder: a streaming receiver for the message bytes
//! that follow `354`, used by the DATA phase.
//!
//! It ends only on `<CRLF>.<CRLF>` (RFC 5321 4.1.1.4), removes the leading
//! dot of dot-stuffed lines (4.5.2), and flags a bare CR or bare LF anywhere
//! in the content. Bare line ends are how SMTP smuggling works
//! (CVE-2023-51764 and friends): a server that takes `<LF>.<LF>` or
//! `<LF>.<CRLF>` as the end lets a sender hide a second message inside the
//! first. After a bare LF we stay mid-line, so no sequence containing one can
//! end the data; the session then refuses the whole message, as Postfix 3.9
//! does by default.
//!
//! Our own `DataReceiver` instead of smtp-proto's: we stream to disk in
//! chunks and need the bare-line-end verdict, which smtp-proto's receiver
//! does not give.

/// Where we are in the byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Just after CRLF (or at the very start).
    LineStart,
    /// Inside a line.
    Text,
    /// Inside a line, just after a CR.
    Cr,
    /// A line began with a dot (already removed).
    Dot,
    /// `<CRLF>.<CR>`: one LF away from the end.
    DotCr,
}

/// Incremental DATA decoder.
#[derive(Debug)]
pub struct DataReceiver {
    state: State,
    /// A bare CR or LF was seen.
    pub bare_line_end: bool,
}

impl Default for DataReceiver {
    fn default() -> Self {
        DataReceiver {
            state: State::LineStart,
            bare_line_end: false,
        }
    }
}

impl DataReceiver {
    pub fn new() -> Self {
        Self::default()
    }

    /// Decodes `input` into `out` (appending). Returns `Some(n)` when the
    /// end-of-data sequence was found, `n` being the number of input bytes
    /// consumed (the rest belongs to the next command), or `None` when all
    /// of `input` was consumed and more is needed.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Option<usize> {
        let mut i = 0;
        while i < input.len() {
            if self.state == State::Text {
                // Fast path: copy up to the next CR or LF in one go.
                match memchr::memchr2(b'\r', b'\n', &input[i..]) {
                    Some(p) => {
                        out.extend_from_slice(&input[i..i + p]);
                        i += p;
                    }
                    None => {
                        out.extend_from_slice(&input[i..]);
                        return None;
                    }
                }
            }
            let b = input[i];
            i += 1;
            self.state = match (self.state, b) {
                (State::LineStart, b'.') => State::Dot,
                (State::DotCr, b'\n') => {
                    self.state = State::LineStart;
                    return Some(i);
                }
                (State::DotCr, _) => {
                    // ".<CR>x": that CR was bare.
                    self.bare_line_end = true;
                    out.push(b'\r');
                    self.text_byte(b, out)
                }
                (State::Dot, b'\r') => State::DotCr,
                (State::Cr, b'\n') => {
                    out.extend_from_slice(b"\r\n");
                    State::LineStart
                }
                (State::Cr, _) => {
                    self.bare_line_end = true;
                    out.push(b'\r');
                    self.text_byte(b, out)
                }
                (_, _) => self.text_byte(b, out),
            };
        }
        None
    }

    /// A byte inside a line (or the first byte of one).
    fn text_byte(&mut self, b: u8, out: &mut Vec<u8>) -> State {
        match b {
            b'\r' => State::Cr,
            b'\n' => {
                // A bare LF does not start a new line: nothing after it can
                // be taken as the end of data.
                self.bare_line_end = true;
                out.push(b'\n');
                State::Text
            }
            _ => {
                out.push(b);
                State::Text
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` whole and split at every point; all must agree.
    fn run(input: &[u8]) -> (Option<usize>, Vec<u8>, bool) {
        let mut r = DataReceiver::new();
        let mut out = Vec::new();
        let whole = (r.feed(input, &mut out), out, r.bare_line_end);
        for cut in 0..input.len() {
            let mut r = DataReceiver::new();
            let mut out = Vec::new();
            let end = match r.feed(&input[..cut], &mut out) {
                Some(n) => Some(n),
                None => r.feed(&input[cut..], &mut out).map(|n| n + cut),
            };
            assert_eq!(
                (end, &out, r.bare_line_end),
                (whole.0, &whole.1, whole.2),
                "cut at {cut}"
            );
        }
        whole
    }

    #[test]
    fn ends_only_on_crlf_dot_crlf() {
        let (end, out, bare) = run(b"Subject: x\r\n\r\nhello\r\n.\r\nQUIT\r\n");
        assert_eq!(end, Some(24));
        assert_eq!(out, b"Subject: x\r\n\r\nhello\r\n");
        assert!(!bare);
    }

    #[test]
    fn empty_message() {
        assert_eq!(run(b".\r\n"), (Some(3), vec![], false));
    }

    #[test]
    fn dot_unstuffing() {
        let (end, out, _) = run(b"..leading\r\n...\r\n.x\r\nmid.dle\r\n.\r\n");
        assert!(end.is_some());
        assert_eq!(out, b".leading\r\n..\r\nx\r\nmid.dle\r\n");
    }

    #[test]
    fn smuggling_variants_do_not_end_data() {
        for evil in [
            &b"a\n.\nMAIL FROM:<x@y>\r\n"[..],
            b"a\n.\r\nMAIL FROM:<x@y>\r\n",
            b"a\r\n.\nMAIL FROM:<x@y>\r\n",
            b"a\r.\r\nMAIL FROM:<x@y>\r\n",
            b"a\r\n.\r.\r\n",
        ] {
            let (end, _, bare) = run(evil);
            assert_eq!(end, None, "{:?}", String::from_utf8_lossy(evil));
            assert!(bare, "{:?}", String::from_utf8_lossy(evil));
        }
        // ...and the real end still works after them, with the verdict kept.
        let (end, out, bare) = run(b"a\n.\nb\r\n.\r\n");
        assert_eq!(end, Some(10));
        assert_eq!(out, b"a\n.\nb\r\n");
        assert!(bare);
    }

    #[test]
    fn bare_cr_and_lf_are_flagged() {
        assert!(run(b"a\rb\r\n.\r\n").2);
        assert!(run(b"a\nb\r\n.\r\n").2);
        assert!(run(b"a\r\r\n.\r\n").2);
        assert!(!run(b"a\r\nb\r\n.\r\n").2);
    }
}
