//! Kept attachments (issue 13 item 5): the decoded bytes behind the
//! signed `url` of a payload's attachment, held apart from the message
//! until the last link to them expires.
//!
//! Why decoded parts and not the message: the link serves one part, by
//! range, many times; kept decoded it is a plain file that is streamed
//! from disk as is (`Range` is a seek), while keeping the message would
//! mean parsing and decoding all of it (every attachment, the 20 MB one
//! included, in memory) at every request. The payload builder has the
//! decoded bytes in hand already, and only the parts sent as links are
//! kept, never the rest of the message. The cost is that the bytes are
//! written once more, at the first attempt that links them (later ones
//! only extend the expiry).
//!
//! What is kept outlives the message in the spool (its deliveries
//! finishing removes only the message) and is removed by the sweep once
//! its expiry has passed ([`super::Store::sweep_kept`]). A part linked
//! again (another route, a retry) is kept until the later expiry.

use serde::{Deserialize, Serialize};
use tokio::io::AsyncRead;

/// One part to keep: attachment `index` of the payload.
#[derive(Debug, Clone, PartialEq)]
pub struct KeptPart {
    pub index: usize,
    pub meta: KeptMeta,
    pub bytes: Vec<u8>,
}

/// What the link serves besides the bytes, and until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeptMeta {
    /// `type/subtype` as in the payload.
    pub content_type: String,
    pub filename: Option<String>,
    /// Lowercase hex SHA-256 of the bytes (the payload's `sha256`).
    pub sha256: String,
    pub size: u64,
    /// Unix seconds: the latest expiry of a link to it.
    pub expires: u64,
}

/// A kept part, opened: its metadata, and its bytes to read.
pub struct Kept {
    pub meta: KeptMeta,
    pub(super) body: Body,
}

pub(super) enum Body {
    /// A file of the file backend; the bytes start at `offset`.
    File { file: tokio::fs::File, offset: u64 },
    /// A row of the shared store, read by range when asked.
    Pg {
        store: super::pg::PgStore,
        id: String,
        index: usize,
    },
}

impl Kept {
    /// A reader of bytes `start..start + len` (within `meta.size`).
    pub async fn range(self, start: u64, len: u64) -> super::Result<impl AsyncRead + Send + Unpin> {
        use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};
        match self.body {
            Body::File { mut file, offset } => {
                file.seek(std::io::SeekFrom::Start(offset + start)).await?;
                Ok(tokio_util::either::Either::Left(file.take(len)))
            }
            Body::Pg { store, id, index } => {
                let bytes = store.kept_range(&id, index, start, len).await?;
                Ok(tokio_util::either::Either::Right(std::io::Cursor::new(
                    bytes,
                )))
            }
        }
    }
}
