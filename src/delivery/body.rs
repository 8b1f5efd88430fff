//! A POST body as it is sent. Most are bytes built whole; a webhook
//! payload with deferred values ([`crate::mail::deferred`]) is its JSON
//! with a marker where each large base64 value goes, and the message those
//! values come from. Its bytes are produced in pieces, by [`Chunks`],
//! twice: once for the signature, once onto the connection. Producing them
//! costs a base64 decode and encode of each large attachment per pass;
//! holding them would cost the attachment twice over in memory.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;

use crate::mail::deferred::{Deferred, Source};

/// What a piece of the body is at most (about; base64 of a 48 KB piece).
const CHUNK: usize = 64 * 1024;
/// Input read per piece of a deferred value.
const INPUT: usize = 48 * 1024;

/// A POST body.
#[derive(Debug, Clone)]
pub struct Body(Arc<Inner>);

#[derive(Debug)]
enum Inner {
    Bytes(Vec<u8>),
    Spliced(Spliced),
}

#[derive(Debug)]
struct Spliced {
    json: Vec<u8>,
    /// Ascending by `at`.
    pieces: Vec<Piece>,
    /// The message the sources' ranges are in.
    message: Bytes,
    len: usize,
}

/// A deferred value: its marker is `json[at..at + skip]`.
#[derive(Debug)]
struct Piece {
    at: usize,
    skip: usize,
    source: Source,
}

impl From<Vec<u8>> for Body {
    fn from(bytes: Vec<u8>) -> Self {
        Body(Arc::new(Inner::Bytes(bytes)))
    }
}

impl Body {
    /// The body `json` stands for once each deferred value is in place of
    /// its marker; the sources' ranges are in `message`.
    pub fn splice(mut json: Vec<u8>, deferred: Vec<Deferred>, message: Bytes) -> Body {
        if deferred.is_empty() {
            return Body::from(json);
        }
        let mut pieces = Vec::with_capacity(deferred.len());
        let mut missing = Vec::new();
        for d in deferred {
            // The marker as serde_json wrote it, without its quotes.
            let quoted = serde_json::to_string(&d.marker).expect("a string serialises");
            let inner = &quoted.as_bytes()[1..quoted.len() - 1];
            match memchr::memmem::find(&json, inner) {
                Some(at) => pieces.push(Piece {
                    at,
                    skip: inner.len(),
                    source: d.source,
                }),
                None => missing.push(d),
            }
        }
        if !missing.is_empty() {
            // Cannot happen (the builder put every marker in); if it did,
            // a marker must not be sent in place of an attachment.
            tracing::error!("a deferred value has no marker in the payload; building it whole");
            let mut whole =
                Body(Arc::new(Inner::Spliced(spliced(json, pieces, &message)))).to_vec();
            for d in missing {
                let quoted = serde_json::to_string(&d.marker).expect("a string serialises");
                let value = serde_json::to_string(&d.source.to_base64(&message))
                    .expect("a string serialises");
                whole = replace(&whole, quoted.as_bytes(), value.as_bytes());
            }
            json = whole;
            return Body::from(json);
        }
        Body(Arc::new(Inner::Spliced(spliced(json, pieces, &message))))
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        match &*self.0 {
            Inner::Bytes(b) => b.len(),
            Inner::Spliced(s) => s.len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether it is produced in pieces (a large payload).
    pub fn is_spliced(&self) -> bool {
        matches!(&*self.0, Inner::Spliced(_))
    }

    /// Its bytes, in order, in pieces of at most about 64 KB.
    pub fn chunks(&self) -> Chunks {
        Chunks {
            body: self.0.clone(),
            at: At::Json { from: 0, next: 0 },
        }
    }

    /// Calls `f` with each piece of its bytes, in order.
    pub fn for_each(&self, f: &mut dyn FnMut(&[u8])) {
        match &*self.0 {
            Inner::Bytes(b) => f(b),
            Inner::Spliced(_) => self.chunks().for_each(|c| f(&c)),
        }
    }

    /// Its bytes in one vector.
    pub fn to_vec(&self) -> Vec<u8> {
        match &*self.0 {
            Inner::Bytes(b) => b.clone(),
            Inner::Spliced(s) => {
                let mut out = Vec::with_capacity(s.len);
                self.for_each(&mut |c| out.extend_from_slice(c));
                out
            }
        }
    }

    /// Its bytes in one vector, without a copy when it is bytes already.
    pub fn into_vec(self) -> Vec<u8> {
        match Arc::try_unwrap(self.0) {
            Ok(Inner::Bytes(b)) => b,
            Ok(inner) => Body(Arc::new(inner)).to_vec(),
            Err(shared) => Body(shared).to_vec(),
        }
    }

    /// The body for reqwest: bytes as they are, a spliced body as a stream
    /// of its [`Chunks`] (its length is known: the caller sends it as
    /// `content-length`).
    pub fn into_request_body(self) -> reqwest::Body {
        match Arc::try_unwrap(self.0) {
            Ok(Inner::Bytes(b)) => reqwest::Body::from(b),
            Ok(inner) => stream(Body(Arc::new(inner))),
            Err(shared) => stream(Body(shared)),
        }
    }
}

fn stream(body: Body) -> reqwest::Body {
    let chunks = body
        .chunks()
        .map(|c| Ok::<_, std::convert::Infallible>(Bytes::from(c)));
    reqwest::Body::wrap_stream(futures_util::stream::iter(chunks))
}

fn spliced(json: Vec<u8>, mut pieces: Vec<Piece>, message: &Bytes) -> Spliced {
    pieces.sort_by_key(|p| p.at);
    let len = json.len() - pieces.iter().map(|p| p.skip).sum::<usize>()
        + pieces
            .iter()
            .map(|p| p.source.len().div_ceil(3) * 4)
            .sum::<usize>();
    Spliced {
        json,
        pieces,
        message: message.clone(),
        len,
    }
}

fn replace(haystack: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    match memchr::memmem::find(haystack, from) {
        Some(at) => [&haystack[..at], to, &haystack[at + from.len()..]].concat(),
        None => haystack.to_vec(),
    }
}

/// The pieces of a [`Body`], in order.
pub struct Chunks {
    body: Arc<Inner>,
    at: At,
}

enum At {
    /// In the JSON from `from`; `next` is the next deferred value.
    Json {
        from: usize,
        next: usize,
    },
    /// In deferred value `i`, `pos` bytes of its input read; `carry` holds
    /// the decoded bytes not yet encoded (fewer than three).
    Value {
        i: usize,
        pos: usize,
        decoder: crate::mail::deferred::Decoder,
        carry: Vec<u8>,
    },
    Done,
}

impl Iterator for Chunks {
    type Item = Vec<u8>;

    fn next(&mut self) -> Option<Vec<u8>> {
        let s = match &*self.body {
            Inner::Bytes(b) => {
                return match std::mem::replace(&mut self.at, At::Done) {
                    At::Done => None,
                    _ => Some(b.clone()),
                };
            }
            Inner::Spliced(s) => s,
        };
        loop {
            match &mut self.at {
                At::Done => return None,
                At::Json { from, next } => {
                    let end = s.pieces.get(*next).map_or(s.json.len(), |p| p.at);
                    if *from < end {
                        let to = end.min(*from + CHUNK);
                        let out = s.json[*from..to].to_vec();
                        *from = to;
                        return Some(out);
                    }
                    self.at = if *next < s.pieces.len() {
                        At::Value {
                            i: *next,
                            pos: 0,
                            decoder: Default::default(),
                            carry: Vec::new(),
                        }
                    } else {
                        At::Done
                    };
                }
                At::Value {
                    i,
                    pos,
                    decoder,
                    carry,
                } => {
                    let piece = &s.pieces[*i];
                    let input = piece.source.input(&s.message);
                    if *pos < input.len() {
                        let to = input.len().min(*pos + INPUT);
                        piece.source.decode(&input[*pos..to], decoder, carry);
                        *pos = to;
                        let whole = carry.len() / 3 * 3;
                        let out = BASE64.encode(&carry[..whole]).into_bytes();
                        carry.drain(..whole);
                        if !out.is_empty() {
                            return Some(out);
                        }
                        continue;
                    }
                    piece.source.finish(std::mem::take(decoder), carry);
                    let out = BASE64.encode(&carry[..]).into_bytes();
                    self.at = At::Json {
                        from: piece.at + piece.skip,
                        next: *i + 1,
                    };
                    if !out.is_empty() {
                        return Some(out);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mail::deferred::Splice;

    /// A message with a base64 body, the range of that body and its bytes.
    fn message() -> (Bytes, std::ops::Range<usize>, Vec<u8>) {
        let data: Vec<u8> = (0..300_001u32).map(|i| (i * 13 % 256) as u8).collect();
        let mut m = b"Subject: x\r\n\r\n".to_vec();
        let start = m.len();
        for line in BASE64.encode(&data).as_bytes().chunks(76) {
            m.extend_from_slice(line);
            m.extend_from_slice(b"\r\n");
        }
        let end = m.len();
        m.extend_from_slice(b"tail\r\n");
        (Bytes::from(m), start..end, data)
    }

    #[test]
    fn a_spliced_body_is_the_json_with_each_value_in_place() {
        let (message, range, data) = message();
        let mut splice = Splice::new(true);
        let a = splice.value(
            Source::Base64 {
                range,
                len: data.len(),
            },
            &message,
        );
        let b = splice.value(Source::Plain(0..message.len()), &message);
        let held = splice.value(Source::Held(vec![7u8; 70_000]), &message);
        let json = serde_json::to_vec(&serde_json::json!({
            "attachments": [{"content": a}, {"content": held}],
            "raw": b,
            "after": "ok",
        }))
        .unwrap();
        let body = Body::splice(json, splice.deferred, message.clone());
        assert!(body.is_spliced());
        let bytes = body.to_vec();
        assert_eq!(bytes.len(), body.len());
        let chunks: Vec<Vec<u8>> = body.chunks().collect();
        assert!(chunks.iter().all(|c| c.len() <= CHUNK));
        assert_eq!(chunks.concat(), bytes);
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["attachments"][0]["content"], BASE64.encode(&data));
        assert_eq!(
            v["attachments"][1]["content"],
            BASE64.encode(vec![7u8; 70_000])
        );
        assert_eq!(v["raw"], BASE64.encode(&message));
        assert_eq!(v["after"], "ok");
        assert_eq!(body.clone().into_vec(), bytes);
    }

    #[test]
    fn every_length_of_value_encodes_like_the_whole() {
        let (message, range, _) = message();
        for len in [0usize, 1, 2, 3, 47_999, 48_000, 48_001, 65_536, 100_003] {
            let source = Source::Plain(range.start..range.start + len);
            let expected = source.to_base64(&message);
            let marker = "\u{1}m".to_owned();
            let json = serde_json::to_vec(&serde_json::json!([marker])).unwrap();
            let body = Body::splice(json, vec![Deferred { marker, source }], message.clone());
            assert_eq!(
                body.to_vec(),
                format!("[\"{expected}\"]").into_bytes(),
                "{len}"
            );
            assert_eq!(body.len(), expected.len() + 4);
        }
    }

    #[test]
    fn a_plain_body_is_one_piece() {
        let body = Body::from(b"{}".to_vec());
        assert!(!body.is_spliced());
        assert_eq!(body.chunks().collect::<Vec<_>>(), vec![b"{}".to_vec()]);
        assert_eq!(body.into_vec(), b"{}");
    }
}
