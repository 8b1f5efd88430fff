//! The active segment of a log, as its one writer thread appends to it:
//! shared by the message log ([`super::writer`]) and the records log
//! ([`crate::spool::records`]), which differ in their records and index,
//! not in how bytes reach the disk.
//!
//! A segment is created with its header and made durable (file and
//! directory) before anything goes into it. A batch is appended with one
//! `write` and, when asked, one `fdatasync`; a write cut short is cut off
//! again so that the segment ends in whole records, and after a failed
//! write or `fdatasync` (the page cache's state is then unknown) nothing
//! more goes into that segment: the next batch starts a new one.

use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};

pub(in crate::spool) struct Appender {
    dir: PathBuf,
    magic: &'static [u8; 8],
    name: fn(u64) -> String,
    fsync: bool,
    segment_bytes: u64,
    pub file: File,
    pub seq: u64,
    /// Bytes in the segment, header included.
    pub len: u64,
    broken: bool,
}

impl Appender {
    /// Creates segment `seq` (file `dir/name(seq)`, starting with `magic`).
    pub fn create(
        dir: &Path,
        magic: &'static [u8; 8],
        name: fn(u64) -> String,
        seq: u64,
        fsync: bool,
        segment_bytes: u64,
    ) -> std::io::Result<Appender> {
        Ok(Appender {
            file: create_segment(dir, &name(seq), magic, fsync)?,
            dir: dir.to_path_buf(),
            magic,
            name,
            fsync,
            segment_bytes,
            seq,
            len: magic.len() as u64,
            broken: false,
        })
    }

    /// Whether the next batch must go into a new segment.
    pub fn due(&self) -> bool {
        self.broken || self.len >= self.segment_bytes
    }

    /// Starts the next segment.
    pub fn roll(&mut self) -> std::io::Result<()> {
        let seq = self.seq + 1;
        self.file = create_segment(&self.dir, &(self.name)(seq), self.magic, self.fsync)?;
        self.seq = seq;
        self.len = self.magic.len() as u64;
        self.broken = false;
        Ok(())
    }

    /// Appends `bytes` (whole records) and, with `sync` and fsync on,
    /// covers them with one `fdatasync`; returns where they start.
    pub fn append(&mut self, bytes: &[u8], sync: bool) -> std::io::Result<u64> {
        let start = self.len;
        if let Err(e) = self.file.write_all(bytes) {
            // Cut what was written, so that the segment ends in whole
            // records; if even that fails, leave it.
            if self.file.set_len(start).is_err() {
                self.broken = true;
            }
            return Err(e);
        }
        self.len += bytes.len() as u64;
        if sync
            && self.fsync
            && let Err(e) = self.file.sync_data()
        {
            // The page cache's state is unknown now: nothing more goes
            // into this segment.
            self.broken = true;
            return Err(e);
        }
        Ok(start)
    }
}

/// A new segment with its header, on disk (and in its directory) before
/// anything is written to it.
fn create_segment(dir: &Path, name: &str, magic: &[u8; 8], fsync: bool) -> std::io::Result<File> {
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .append(true)
        .create_new(true)
        .open(dir.join(name))?;
    file.write_all(magic)?;
    if fsync {
        file.sync_all()?;
        File::open(dir)?.sync_all()?;
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(seq: u64) -> String {
        format!("{seq}.t")
    }

    #[test]
    fn segments_start_with_their_header_and_roll_when_full() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = Appender::create(dir.path(), b"TESTLOG1", name, 7, true, 20).unwrap();
        assert!(!a.due());
        assert_eq!(a.append(b"0123456789", true).unwrap(), 8);
        assert_eq!(a.append(b"ab", false).unwrap(), 18);
        assert!(a.due(), "20 bytes: full");
        a.roll().unwrap();
        assert_eq!((a.seq, a.len), (8, 8));
        assert_eq!(
            std::fs::read(dir.path().join("7.t")).unwrap(),
            b"TESTLOG10123456789ab"
        );
        assert_eq!(std::fs::read(dir.path().join("8.t")).unwrap(), b"TESTLOG1");
        // An existing segment is never reused.
        assert!(Appender::create(dir.path(), b"TESTLOG1", name, 8, false, 20).is_err());
    }
}
