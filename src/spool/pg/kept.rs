//! Kept attachments in the shared store (`kept_parts`, migration 0002):
//! the decoded bytes behind a payload's signed `url`, which every replica
//! can serve, kept apart from their message until the last link expires
//! (see [`crate::spool::kept`]). A request reads only the range it asks
//! for (`substring` of the `bytea`), so a 20 MB part is not loaded whole
//! for a small range.

use super::admin::{Sweep, sweeping};
use super::{PgStore, db, idx};
use crate::spool::kept::Body;
use crate::spool::{Error, Kept, KeptMeta, KeptPart, Result};

impl PgStore {
    /// Keeps `parts` of message `id` until at least `expires` (unix s): a
    /// part kept already only has its expiry extended.
    pub async fn keep(&self, id: &str, parts: Vec<KeptPart>, expires: u64) -> Result<()> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(db)?;
        for part in parts {
            let meta = serde_json::to_string(&part.meta)
                .map_err(|e| Error::Corrupt(id.into(), e.to_string()))?;
            let until = i64::try_from(expires.max(part.meta.expires)).unwrap_or(i64::MAX);
            tx.execute(
                "INSERT INTO kept_parts (message_id, idx, expires, meta, bytes)
                 VALUES ($1, $2, $3, $4::text::jsonb, $5)
                 ON CONFLICT (message_id, idx)
                 DO UPDATE SET expires = GREATEST(kept_parts.expires, EXCLUDED.expires)",
                &[&id, &idx(part.index), &until, &meta, &part.bytes],
            )
            .await
            .map_err(db)?;
        }
        tx.commit().await.map_err(db)?;
        Ok(())
    }

    /// Kept part `index` of message `id`, or `None`; its bytes are read
    /// by range later ([`Kept::range`]).
    pub async fn open_kept(&self, id: &str, index: usize) -> Result<Option<Kept>> {
        let row = self
            .conn()
            .await?
            .query_opt(
                "SELECT meta::text, expires FROM kept_parts WHERE message_id = $1 AND idx = $2",
                &[&id, &idx(index)],
            )
            .await
            .map_err(db)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let mut meta: KeptMeta = serde_json::from_str(row.get(0))
            .map_err(|e| Error::Corrupt(id.into(), e.to_string()))?;
        meta.expires = row.get::<_, i64>(1).max(0) as u64;
        Ok(Some(Kept {
            meta,
            body: Body::Pg {
                store: self.clone(),
                id: id.to_string(),
                index,
            },
        }))
    }

    /// Bytes `start..start + len` of a kept part.
    pub(crate) async fn kept_range(
        &self,
        id: &str,
        index: usize,
        start: u64,
        len: u64,
    ) -> Result<Vec<u8>> {
        // substring() counts from 1.
        let from = i64::try_from(start).unwrap_or(i64::MAX).saturating_add(1);
        let count = i64::try_from(len).unwrap_or(i64::MAX);
        let row = self
            .conn()
            .await?
            .query_opt(
                "SELECT substring(bytes FROM $3::int8::int4 FOR $4::int8::int4)
                 FROM kept_parts WHERE message_id = $1 AND idx = $2",
                &[&id, &idx(index), &from, &count],
            )
            .await
            .map_err(db)?;
        row.map(|r| r.get(0))
            .ok_or_else(|| Error::Io(std::io::ErrorKind::NotFound.into()))
    }

    /// Removes kept parts whose expiry is at or before `now` (unix s);
    /// once across the cluster.
    pub async fn sweep_kept(&self, now: u64) -> Result<usize> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(db)?;
        if !sweeping(&tx, Sweep::Kept).await? {
            return Ok(0);
        }
        let now = i64::try_from(now).unwrap_or(i64::MAX);
        let n = tx
            .execute("DELETE FROM kept_parts WHERE expires <= $1", &[&now])
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(n as usize)
    }
}
