//! The messages the load sends: SMTP sources and API requests of each size.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::json;

use crate::options::Size;

pub(crate) const DOMAIN: &str = "load.postern.test";
/// The message minus its `Message-ID:` line, dot-stuffed, CRLF line ends,
/// ending in CRLF: ready to follow `DATA` on the wire.
pub(crate) fn make_message(size: Size) -> Vec<u8> {
    let msg = raw_message(size);
    let mut out = Vec::with_capacity(msg.len() + 64);
    for line in msg.split_inclusive('\n') {
        if line.starts_with('.') {
            out.push(b'.');
        }
        out.extend_from_slice(line.as_bytes());
    }
    out
}

/// The same message for `smtp-source -F`: LF line ends (it appends CRLF to
/// every line and dot-stuffs by itself), with a `Message-ID:` line.
pub(crate) fn source_file(size: Size) -> String {
    format!(
        "Message-ID: <smtp-source.0@{DOMAIN}>\n{}",
        raw_message(size).replace("\r\n", "\n")
    )
}

/// The message minus its `Message-ID:` line, CRLF line ends, not stuffed.
fn raw_message(size: Size) -> String {
    let mut h = format!(
        "From: Load Sender <sender@{DOMAIN}>\r\n\
         To: Sink <sink@{DOMAIN}>\r\n\
         Subject: postern load test ({})\r\n\
         Date: Tue, 01 Dec 2026 10:00:00 +0000\r\n\
         MIME-Version: 1.0\r\n",
        size.label()
    );
    if size == Size::K2 {
        h.push_str("Content-Type: text/plain; charset=utf-8\r\n\r\n");
        h.push_str(&prose(2000 - h.len(), 1));
        return h;
    }
    let (text, html, attachment) = parts(size);
    multipart(h, text, html, attachment)
}

/// The text, HTML and attachment sizes of each message shape.
fn parts(size: Size) -> (usize, usize, usize) {
    match size {
        Size::K2 => (1800, 0, 0),
        Size::K20 => (6000, 7000, 4096),
        Size::M1 | Size::M20 => {
            let total = if size == Size::M1 { 1 << 20 } else { 20 << 20 };
            // base64 with 76-column lines: 78 wire bytes per 57 raw bytes.
            (4000, 6000, (total - 12_000) / 78 * 57)
        }
    }
}

/// The same shape as a `POST /v1/messages` body: Postern composes the MIME.
pub(crate) fn api_request(size: Size) -> Vec<u8> {
    let (text, html, attachment) = parts(size);
    let mut v = json!({
        "from": format!("Load Sender <sender@{DOMAIN}>"),
        "to": [format!("Sink <sink@{DOMAIN}>")],
        "subject": format!("postern outbound load ({})", size.label()),
        "text": prose(text, 2),
    });
    if html > 0 {
        let body: String = prose(html, 3)
            .lines()
            .map(|p| format!("<p>{p}</p>\n"))
            .collect();
        v["html"] = json!(format!("<html><body>\n{body}</body></html>\n"));
    }
    if attachment > 0 {
        v["attachments"] = json!([{
            "filename": "data.bin",
            "content_type": "application/octet-stream",
            "content": B64.encode(pseudo_random(attachment)),
        }]);
    }
    serde_json::to_vec(&v).expect("request serialises")
}

/// Incompressible bytes, the same every time.
fn pseudo_random(n: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn multipart(mut h: String, text: usize, html: usize, attachment: usize) -> String {
    const B: &str = "=_postern_load_boundary";
    h.push_str(&format!(
        "Content-Type: multipart/mixed; boundary=\"{B}\"\r\n\r\n\
         This is a multi-part message in MIME format.\r\n\
         --{B}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
    ));
    h.push_str(&prose(text, 2));
    h.push_str(&format!(
        "--{B}\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<html><body>\r\n"
    ));
    for p in prose(html, 3).lines() {
        h.push_str(&format!("<p>{p}</p>\r\n"));
    }
    h.push_str(&format!(
        "</body></html>\r\n--{B}\r\n\
         Content-Type: application/octet-stream; name=\"data.bin\"\r\n\
         Content-Disposition: attachment; filename=\"data.bin\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n"
    ));
    for chunk in B64.encode(pseudo_random(attachment)).as_bytes().chunks(76) {
        h.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        h.push_str("\r\n");
    }
    h.push_str(&format!("--{B}--\r\n"));
    h
}

/// About `bytes` bytes of plain text in lines of at most 72 characters.
fn prose(bytes: usize, seed: usize) -> String {
    const WORDS: &[&str] = &[
        "postern",
        "gate",
        "mail",
        "webhook",
        "signed",
        "spool",
        "durable",
        "queue",
        "retry",
        "endpoint",
        "message",
        "envelope",
        "header",
        "the",
        "a",
        "of",
        "and",
        "to",
        "is",
        "for",
        "loopback",
        "benchmark",
        "latency",
        "throughput",
    ];
    let mut out = String::with_capacity(bytes + 80);
    let mut line = String::new();
    let mut i = seed;
    while out.len() + line.len() < bytes {
        let w = WORDS[(i * 7 + i / 3) % WORDS.len()];
        i += 1;
        if line.len() + w.len() + 1 > 72 {
            out.push_str(&line);
            out.push_str("\r\n");
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(w);
    }
    out.push_str(&line);
    out.push_str("\r\n");
    out
}

// ----------------------------------------------------------- run state
