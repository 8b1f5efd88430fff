//! One record of a segment, and reading a segment back record by record.
//!
//! ```text
//! [len: u32 LE] [crc32c: u32 LE] [kind: u8] [id_len: u8] [id] [content]
//!  `len` counts everything after the crc; the crc covers the same bytes
//! ```
//!
//! A record is valid only when it is whole and its checksum matches, so a
//! write cut short by a crash (a torn tail) is recognised, not read as a
//! shorter message.

use std::fs::File;
use std::io::Read as _;
use std::os::unix::fs::FileExt as _;

/// Bytes before the kind: `len` and `crc`.
pub const HEADER: u64 = 8;
/// A record larger than this is not one we wrote (messages this big go to
/// files): a corrupt length, not a reason to read gigabytes.
pub const MAX_RECORD: u32 = 64 * 1024 * 1024;

/// What a record says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A committed message: its content is the spool file format
    /// (envelope line, then the message as received).
    Message = 1,
    /// The message left the pending set (delivered, withdrawn, discarded
    /// or moved out to a file); with content, it is kept for the history:
    /// `[finished_at: u64 LE unix ms][history sidecar JSON]`.
    Done = 2,
    /// A keyed record of the records log ([`crate::spool::records`]; never
    /// in a message segment): `[written_at: u64 LE unix ms][bytes]`.
    Put = 3,
}

impl Kind {
    fn from_byte(b: u8) -> Option<Kind> {
        match b {
            1 => Some(Kind::Message),
            2 => Some(Kind::Done),
            3 => Some(Kind::Put),
            _ => None,
        }
    }
}

/// Appends one record to `out`.
pub fn encode(out: &mut Vec<u8>, kind: Kind, id: &str, content: &[u8]) {
    let id = id.as_bytes();
    debug_assert!(id.len() <= u8::MAX as usize);
    let len = 2 + id.len() + content.len();
    out.reserve(HEADER as usize + len);
    let start = out.len();
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.push(kind as u8);
    out.push(id.len() as u8);
    out.extend_from_slice(id);
    out.extend_from_slice(content);
    let crc = crc32c::crc32c(&out[start + HEADER as usize..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Bytes a record takes on disk.
pub fn encoded_len(id: &str, content: usize) -> u64 {
    HEADER + 2 + id.len() as u64 + content as u64
}

/// A valid record found by [`Scanner`].
#[derive(Debug)]
pub struct Found {
    pub kind: Kind,
    pub id: String,
    /// Offset of the record in its segment.
    pub offset: u64,
    /// Length of the content.
    pub content_len: u32,
    /// The unix-ms stamp that starts the content of a Done record with a
    /// history sidecar (when the message finished) and of a Put record
    /// (when it was written).
    pub stamp_ms: Option<u64>,
}

/// Reads a segment's records in order, checking each; stops at the end or
/// at the first record that is not whole and valid (`stopped_at`).
pub struct Scanner {
    reader: std::io::BufReader<File>,
    pos: u64,
    end: u64,
    buf: Vec<u8>,
}

impl Scanner {
    pub fn new(file: File, start: u64) -> std::io::Result<Scanner> {
        use std::io::Seek as _;
        let end = file.metadata()?.len();
        let mut reader = std::io::BufReader::with_capacity(256 * 1024, file);
        reader.seek(std::io::SeekFrom::Start(start))?;
        Ok(Scanner {
            reader,
            pos: start,
            end,
            buf: Vec::new(),
        })
    }

    /// Where the valid records end.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// The file's length.
    pub fn end(&self) -> u64 {
        self.end
    }

    /// The next valid record, or `None` at the end of the valid records.
    pub fn next_record(&mut self) -> std::io::Result<Option<Found>> {
        if self.end - self.pos < HEADER + 2 {
            return Ok(None);
        }
        let mut head = [0u8; HEADER as usize];
        self.reader.read_exact(&mut head)?;
        let len = u32::from_le_bytes(head[0..4].try_into().expect("4 bytes"));
        let crc = u32::from_le_bytes(head[4..8].try_into().expect("4 bytes"));
        if !(2..=MAX_RECORD).contains(&len) || self.end - self.pos - HEADER < len as u64 {
            return Ok(None);
        }
        self.buf.resize(len as usize, 0);
        self.reader.read_exact(&mut self.buf)?;
        if crc32c::crc32c(&self.buf) != crc {
            return Ok(None);
        }
        let Some(kind) = Kind::from_byte(self.buf[0]) else {
            return Ok(None);
        };
        let id_len = self.buf[1] as usize;
        let Some(id) = self
            .buf
            .get(2..2 + id_len)
            .and_then(|b| std::str::from_utf8(b).ok())
        else {
            return Ok(None);
        };
        let content = &self.buf[2 + id_len..];
        let stamp_ms = (matches!(kind, Kind::Done | Kind::Put) && content.len() >= 8)
            .then(|| u64::from_le_bytes(content[..8].try_into().expect("8 bytes")));
        let found = Found {
            kind,
            id: id.to_string(),
            offset: self.pos,
            content_len: content.len() as u32,
            stamp_ms,
        };
        self.pos += HEADER + len as u64;
        Ok(Some(found))
    }
}

/// Reads the `kind` record at `offset` of `file` and returns its content,
/// checked against its checksum (`None`: not a valid such record for `id`
/// there).
pub fn read_at(file: &File, offset: u64, kind: Kind, id: &str) -> std::io::Result<Option<Vec<u8>>> {
    let mut head = [0u8; HEADER as usize];
    file.read_exact_at(&mut head, offset)?;
    let len = u32::from_le_bytes(head[0..4].try_into().expect("4 bytes"));
    let crc = u32::from_le_bytes(head[4..8].try_into().expect("4 bytes"));
    if !(2..=MAX_RECORD).contains(&len) {
        return Ok(None);
    }
    let mut body = vec![0u8; len as usize];
    file.read_exact_at(&mut body, offset + HEADER)?;
    let id_len = body[1] as usize;
    if crc32c::crc32c(&body) != crc
        || body[0] != kind as u8
        || body.get(2..2 + id_len) != Some(id.as_bytes())
    {
        return Ok(None);
    }
    body.drain(..2 + id_len);
    Ok(Some(body))
}

/// The content of the `kind` record of `id` at `offset` whose content is
/// `content_len` bytes (the index knows it), or `None` when what is there
/// is not that record whole. One `preadv` reads the record's head into a
/// small buffer and the content straight into the returned vector: no
/// second read and no copy to drop the head (a delivery reads every
/// message it sends this way).
pub fn read_content_at(
    file: &File,
    offset: u64,
    kind: Kind,
    id: &str,
    content_len: usize,
) -> std::io::Result<Option<Vec<u8>>> {
    let id_bytes = id.as_bytes();
    if id_bytes.len() > u8::MAX as usize {
        return Ok(None);
    }
    let mut head = [0u8; HEADER as usize + 2 + u8::MAX as usize];
    let head = &mut head[..HEADER as usize + 2 + id_bytes.len()];
    let mut content = vec![0u8; content_len];
    read_two_at(file, head, &mut content, offset)?;
    let len = u32::from_le_bytes(head[0..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(head[4..8].try_into().expect("4 bytes"));
    let body = &head[HEADER as usize..];
    if len != 2 + id_bytes.len() + content_len
        || body[0] != kind as u8
        || body[1] as usize != id_bytes.len()
        || &body[2..] != id_bytes
        || crc32c::crc32c_append(crc32c::crc32c(body), &content) != crc
    {
        return Ok(None);
    }
    Ok(Some(content))
}

/// Fills `head` then `tail` from `offset` on: one `preadv`, then plain
/// reads for whatever a short read left.
fn read_two_at(file: &File, head: &mut [u8], tail: &mut [u8], offset: u64) -> std::io::Result<()> {
    use std::io::IoSliceMut;
    let want = head.len() + tail.len();
    let mut got = loop {
        let mut bufs = [IoSliceMut::new(head), IoSliceMut::new(tail)];
        match rustix::io::preadv(file, &mut bufs, offset) {
            Ok(n) => break n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    };
    if got == want {
        return Ok(());
    }
    if got < head.len() {
        file.read_exact_at(&mut head[got..], offset + got as u64)?;
        got = head.len();
    }
    let done = got - head.len();
    file.read_exact_at(&mut tail[done..], offset + got as u64)
}

/// The first `max` bytes (at most) of the content of the record at
/// `offset`, read without the rest and so **not checked** against the
/// record's checksum: for a summary of a message whose whole record was
/// read and checked to deliver it (the history's subject line), where
/// reading the whole record again (up to [`super::MAX_INLINE`]) for its
/// first lines is the waste.
pub fn read_prefix_at(
    file: &File,
    offset: u64,
    id: &str,
    content_len: usize,
    max: usize,
) -> std::io::Result<Vec<u8>> {
    let mut prefix = vec![0u8; content_len.min(max)];
    let start = offset + HEADER + 2 + id.len() as u64;
    file.read_exact_at(&mut prefix, start)?;
    Ok(prefix)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    fn segment(records: &[(Kind, &str, &[u8])]) -> (tempfile::NamedTempFile, Vec<u64>) {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        let mut bytes = Vec::new();
        let mut ends = Vec::new();
        for (kind, id, content) in records {
            encode(&mut bytes, *kind, id, content);
            ends.push(bytes.len() as u64);
        }
        f.write_all(&bytes).unwrap();
        (f, ends)
    }

    fn scan(f: &tempfile::NamedTempFile) -> Vec<(Kind, String, Vec<u8>)> {
        let mut s = Scanner::new(f.reopen().unwrap(), 0).unwrap();
        let mut out = Vec::new();
        while let Some(r) = s.next_record().unwrap() {
            let file = f.reopen().unwrap();
            let content = if r.kind == Kind::Message {
                read_at(&file, r.offset, Kind::Message, &r.id)
                    .unwrap()
                    .unwrap()
            } else {
                Vec::new()
            };
            assert_eq!(content.len(), r.content_len as usize);
            out.push((r.kind, r.id, content));
        }
        out
    }

    #[test]
    fn records_read_back_in_order() {
        let (f, _) = segment(&[
            (Kind::Message, "a1", b"hello"),
            (Kind::Done, "a1", b""),
            (Kind::Message, "b2", b""),
        ]);
        assert_eq!(
            scan(&f),
            vec![
                (Kind::Message, "a1".into(), b"hello".to_vec()),
                (Kind::Done, "a1".into(), vec![]),
                (Kind::Message, "b2".into(), vec![]),
            ]
        );
    }

    /// Cut anywhere: every record wholly before the cut is read, nothing
    /// after it, and no partial record is ever returned.
    #[test]
    fn a_torn_tail_at_any_offset_keeps_exactly_the_whole_records() {
        let contents: Vec<Vec<u8>> = (0..6).map(|i| vec![b'x' + i as u8; 37 * i + 3]).collect();
        let records: Vec<(Kind, String, &[u8])> = contents
            .iter()
            .enumerate()
            .map(|(i, c)| (Kind::Message, format!("m{i}"), c.as_slice()))
            .collect();
        let borrowed: Vec<(Kind, &str, &[u8])> = records
            .iter()
            .map(|(k, i, c)| (*k, i.as_str(), *c))
            .collect();
        let (f, ends) = segment(&borrowed);
        let total = *ends.last().unwrap();
        for cut in 0..=total {
            f.as_file().set_len(cut).unwrap();
            let whole = ends.iter().filter(|&&e| e <= cut).count();
            let got = scan(&f);
            assert_eq!(got.len(), whole, "cut at {cut}");
            for (i, (_, id, content)) in got.iter().enumerate() {
                assert_eq!(id, &format!("m{i}"));
                assert_eq!(content, &contents[i]);
            }
            // Restore for the next cut.
            let mut bytes = Vec::new();
            for (k, i, c) in &borrowed {
                encode(&mut bytes, *k, i, c);
            }
            f.as_file().write_all_at(&bytes, 0).unwrap();
        }
    }

    #[test]
    fn a_flipped_bit_ends_the_valid_records_there() {
        let (f, ends) = segment(&[
            (Kind::Message, "a", b"first"),
            (Kind::Message, "b", b"second"),
            (Kind::Message, "c", b"third"),
        ]);
        // A byte of the second record's content.
        let at = ends[0] + HEADER + 2 + 1 + 2;
        let mut b = [0u8; 1];
        f.as_file().read_exact_at(&mut b, at).unwrap();
        f.as_file().write_all_at(&[b[0] ^ 0x10], at).unwrap();
        let got = scan(&f);
        assert_eq!(got.len(), 1);
        assert!(
            read_at(f.as_file(), ends[0], Kind::Message, "b")
                .unwrap()
                .is_none()
        );
        // The wrong id or kind at a valid record's offset is not that record.
        assert!(
            read_at(f.as_file(), 0, Kind::Message, "z")
                .unwrap()
                .is_none()
        );
        assert!(read_at(f.as_file(), 0, Kind::Done, "a").unwrap().is_none());
        // The one-read path says the same.
        let content =
            |offset, kind, id, len| read_content_at(f.as_file(), offset, kind, id, len).unwrap();
        assert_eq!(content(0, Kind::Message, "a", 5), Some(b"first".to_vec()));
        assert_eq!(content(ends[0], Kind::Message, "b", 6), None);
        assert_eq!(content(0, Kind::Message, "z", 5), None);
        assert_eq!(content(0, Kind::Done, "a", 5), None);
        assert_eq!(
            content(ends[1], Kind::Message, "c", 5),
            Some(b"third".to_vec())
        );
    }

    /// The one-read path returns what the two-read one does, for every
    /// record and size, and nothing for a length the record does not have
    /// or past the end of the file.
    #[test]
    fn content_in_one_read_is_the_record_content() {
        let contents: Vec<Vec<u8>> = [0usize, 1, 7, 4096, 70_000]
            .iter()
            .map(|&n| (0..n).map(|i| (i * 31 % 251) as u8).collect())
            .collect();
        let ids: Vec<String> = (0..contents.len())
            .map(|i| format!("id{i}").repeat(i + 1))
            .collect();
        let records: Vec<(Kind, &str, &[u8])> = ids
            .iter()
            .zip(&contents)
            .map(|(id, c)| (Kind::Message, id.as_str(), c.as_slice()))
            .collect();
        let (f, ends) = segment(&records);
        let mut offset = 0;
        for (i, (id, c)) in ids.iter().zip(&contents).enumerate() {
            let file = f.as_file();
            let got = read_content_at(file, offset, Kind::Message, id, c.len()).unwrap();
            assert_eq!(got.as_deref(), Some(c.as_slice()), "record {i}");
            assert_eq!(got, read_at(file, offset, Kind::Message, id).unwrap());
            assert_eq!(
                read_content_at(file, offset, Kind::Message, id, c.len() + 1)
                    .ok()
                    .flatten(),
                None
            );
            if !c.is_empty() {
                assert_eq!(
                    read_content_at(file, offset, Kind::Message, id, c.len() - 1).unwrap(),
                    None
                );
            }
            let prefix = read_prefix_at(file, offset, id, c.len(), 5000).unwrap();
            assert_eq!(prefix, c[..c.len().min(5000)]);
            offset = ends[i];
        }
    }

    #[test]
    fn zeros_after_the_records_are_the_end() {
        let (f, ends) = segment(&[(Kind::Message, "a", b"x")]);
        f.as_file().write_all_at(&[0u8; 4096], ends[0]).unwrap();
        assert_eq!(scan(&f).len(), 1);
    }
}
