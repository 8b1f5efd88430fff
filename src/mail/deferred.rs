//! Large base64 values of the payload (attachments' `content`, `raw`) that
//! are not built with the rest of the JSON: the JSON holds a marker where
//! each goes, and the sender encodes the bytes in its place as the body is
//! sent (`delivery::body`). A 20 MB attachment then exists once, as the
//! stored message, instead of three times (the message, its decoded bytes,
//! their base64 in a string, and that string again in the body).
//!
//! Markers are strings no message can produce: a control character and a
//! random 128-bit nonce drawn for each payload.

use std::ops::Range;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha2::{Digest as _, Sha256};

use super::transfer::Base64;

/// Values of at least this many bytes (decoded) are deferred.
pub const DEFER_AT: usize = 64 * 1024;
/// How much encoded input is decoded at a time.
const PIECE: usize = 48 * 1024;

/// A value left out of the JSON, and where its bytes come from.
#[derive(Debug, Clone, PartialEq)]
pub struct Deferred {
    /// The string that stands in the JSON (as a JSON string) for the
    /// base64 of the bytes.
    pub marker: String,
    pub source: Source,
}

/// The bytes of a deferred value.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// These bytes (an attachment whose encoding is not decoded as read,
    /// e.g. quoted-printable).
    Held(Vec<u8>),
    /// This range of the message, as it is.
    Plain(Range<usize>),
    /// This range of the message, base64 decoded into `len` bytes.
    Base64 { range: Range<usize>, len: usize },
}

impl Source {
    /// How many bytes it stands for (before base64).
    pub fn len(&self) -> usize {
        match self {
            Source::Held(b) => b.len(),
            Source::Plain(r) => r.len(),
            Source::Base64 { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Calls `f` with the bytes, in pieces of at most about 48 KB.
    /// `message` is the message the ranges are in.
    pub fn for_each(&self, message: &[u8], mut f: impl FnMut(&[u8])) {
        let mut decoder = Decoder::default();
        let mut out = Vec::with_capacity(PIECE);
        for piece in self.input(message).chunks(PIECE) {
            out.clear();
            self.decode(piece, &mut decoder, &mut out);
            f(&out);
        }
        out.clear();
        self.finish(decoder, &mut out);
        f(&out);
    }

    /// What is read to produce the bytes: the held bytes, or the range of
    /// the message.
    pub fn input<'a>(&'a self, message: &'a [u8]) -> &'a [u8] {
        match self {
            Source::Held(b) => b,
            Source::Plain(r) | Source::Base64 { range: r, .. } => &message[r.clone()],
        }
    }

    /// Appends the bytes that `piece`, the next piece of [`Source::input`],
    /// gives to `out`.
    pub fn decode(&self, piece: &[u8], decoder: &mut Decoder, out: &mut Vec<u8>) {
        match self {
            Source::Held(_) | Source::Plain(_) => out.extend_from_slice(piece),
            // Decoded once already (see `digest_base64`): it is base64.
            Source::Base64 { .. } => {
                let _ = decoder.0.feed(piece, out);
            }
        }
    }

    /// Appends the last bytes, once the input is read.
    pub fn finish(&self, decoder: Decoder, out: &mut Vec<u8>) {
        if let Source::Base64 { .. } = self {
            let _ = decoder.0.finish(out);
        }
    }

    /// The bytes in one vector (an attachment sent as a link is kept).
    pub fn to_vec(&self, message: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len());
        self.for_each(message, |b| out.extend_from_slice(b));
        out
    }

    /// Standard padded base64 of the bytes, in one string.
    pub fn to_base64(&self, message: &[u8]) -> String {
        match self {
            Source::Held(b) => BASE64.encode(b),
            Source::Plain(r) => BASE64.encode(&message[r.clone()]),
            Source::Base64 { .. } => BASE64.encode(self.to_vec(message)),
        }
    }
}

/// Where decoding a [`Source`] in pieces is.
#[derive(Debug, Default)]
pub struct Decoder(Base64);

/// Size and hash of an attachment's decoded bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Digest {
    pub len: usize,
    pub sha256: String,
}

/// The digest of `message[range]` base64 decoded, read in pieces; `None`
/// when it is not base64.
pub(crate) fn digest_base64(message: &[u8], range: Range<usize>) -> Option<Digest> {
    let mut hash = Sha256::new();
    let mut len = 0;
    let mut out = Vec::with_capacity(PIECE);
    let mut decoder = Base64::default();
    for piece in message[range].chunks(PIECE) {
        out.clear();
        decoder.feed(piece, &mut out).ok()?;
        hash.update(&out);
        len += out.len();
    }
    out.clear();
    decoder.finish(&mut out).ok()?;
    hash.update(&out);
    len += out.len();
    Some(Digest {
        len,
        sha256: format!("{:x}", hash.finalize()),
    })
}

/// The digest of `bytes` as they are.
pub(crate) fn digest(bytes: &[u8]) -> Digest {
    Digest {
        len: bytes.len(),
        sha256: format!("{:x}", Sha256::digest(bytes)),
    }
}

/// Deferral for one payload: on or off, and the markers handed out.
#[derive(Debug)]
pub(crate) struct Splice {
    on: bool,
    nonce: u128,
    pub deferred: Vec<Deferred>,
}

impl Splice {
    /// Defers values of at least [`DEFER_AT`] bytes when `on`.
    pub fn new(on: bool) -> Self {
        Splice {
            on,
            nonce: if on { rand::random() } else { 0 },
            deferred: Vec::new(),
        }
    }

    /// Whether a value of `len` bytes is deferred.
    pub fn defers(&self, len: usize) -> bool {
        self.on && len >= DEFER_AT
    }

    /// The `content` (or `raw`) for `source`: its base64, or a marker
    /// that the sender replaces with it.
    pub fn value(&mut self, source: Source, message: &[u8]) -> String {
        if !self.defers(source.len()) {
            return source.to_base64(message);
        }
        let marker = format!(
            "\u{1}postern-deferred:{:032x}:{}",
            self.nonce,
            self.deferred.len()
        );
        self.deferred.push(Deferred {
            marker: marker.clone(),
            source,
        });
        marker
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_gives_its_bytes_in_pieces_and_as_base64() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let encoded = BASE64.encode(&data);
        let mut message = b"head\r\n".to_vec();
        let start = message.len();
        for line in encoded.as_bytes().chunks(76) {
            message.extend_from_slice(line);
            message.extend_from_slice(b"\r\n");
        }
        let range = start..message.len();
        let d = digest_base64(&message, range.clone()).unwrap();
        assert_eq!(d, digest(&data));
        let source = Source::Base64 { range, len: d.len };
        assert_eq!(source.to_vec(&message), data);
        assert_eq!(source.to_base64(&message), encoded);
        let plain = Source::Plain(0..4);
        assert_eq!(plain.to_vec(&message), b"head");
        assert!(digest_base64(b"QUJD!", 0..5).is_none());
    }

    #[test]
    fn small_values_and_splices_that_are_off_stay_inline() {
        let message = vec![b'x'; DEFER_AT + 10];
        let mut off = Splice::new(false);
        let v = off.value(Source::Plain(0..message.len()), &message);
        assert_eq!(v, BASE64.encode(&message));
        let mut on = Splice::new(true);
        assert_eq!(on.value(Source::Plain(0..3), &message), "eHh4");
        let marker = on.value(Source::Plain(0..message.len()), &message);
        assert!(marker.starts_with("\u{1}postern-deferred:"));
        assert_eq!(on.deferred.len(), 1);
        assert_eq!(on.deferred[0].marker, marker);
    }
}
