//! Small records in the shared store: API status (`outbox`, what
//! `GET /v1/messages/{id}` shows on every replica) and `Idempotency-Key`
//! records (`idempotency_keys`; inserted with their message by the commit,
//! see `messages`). Same names and bytes as the file spool's files.

use std::time::Duration;

use super::admin::{Sweep, sweeping};
use super::{PgStore, db};
use crate::spool::{Error, RECORDS_AUTH, RECORDS_IDEM, RECORDS_OUTBOX, Result};

/// Pure: the table holding records of `dir`.
fn table(dir: &str) -> Result<&'static str> {
    match dir {
        RECORDS_OUTBOX => Ok("outbox"),
        RECORDS_IDEM => Ok("idempotency_keys"),
        other => Err(Error::Corrupt(other.into(), "no such record kind".into())),
    }
}

/// Pure: the column of `table` a record's age is measured from.
fn stamp(table: &str) -> &'static str {
    if table == "outbox" {
        "updated_at"
    } else {
        "created_at"
    }
}

/// Pure: the message a verdicts record (`<id>.json`) belongs to.
fn auth_message(name: &str) -> Result<&str> {
    name.strip_suffix(".json")
        .filter(|id| crate::spool::is_message_id(id))
        .ok_or_else(|| Error::Corrupt(name.into(), "not a message's verdicts record".into()))
}

impl PgStore {
    /// Durably writes (or replaces) a record.
    pub async fn write_record(&self, dir: &'static str, name: &str, bytes: Vec<u8>) -> Result<()> {
        if dir == RECORDS_AUTH {
            // Keyed by its message, and removed with it (cascade).
            self.conn()
                .await?
                .execute(
                    "INSERT INTO auth_results (message_id, record) VALUES ($1, $2)
                     ON CONFLICT (message_id) DO UPDATE SET record = EXCLUDED.record",
                    &[&auth_message(name)?, &bytes],
                )
                .await
                .map_err(db)?;
            return Ok(());
        }
        let t = table(dir)?;
        let col = stamp(t);
        let sql = format!(
            "INSERT INTO {t} (name, record) VALUES ($1, $2)
             ON CONFLICT (name) DO UPDATE SET record = EXCLUDED.record, {col} = now()"
        );
        self.conn()
            .await?
            .execute(&sql, &[&name, &bytes])
            .await
            .map_err(db)?;
        Ok(())
    }

    /// A record, or `None`.
    pub async fn read_record(&self, dir: &'static str, name: &str) -> Result<Option<Vec<u8>>> {
        let row = if dir == RECORDS_AUTH {
            self.conn()
                .await?
                .query_opt(
                    "SELECT record FROM auth_results WHERE message_id = $1",
                    &[&auth_message(name)?],
                )
                .await
        } else {
            let t = table(dir)?;
            self.conn()
                .await?
                .query_opt(&format!("SELECT record FROM {t} WHERE name = $1"), &[&name])
                .await
        }
        .map_err(db)?;
        Ok(row.map(|r| r.get(0)))
    }

    /// Removes records of `dir` older than `max_age`; returns how many.
    /// Once across the cluster (see [`super::admin::sweeping`]).
    pub async fn sweep_records(&self, dir: &'static str, max_age: Duration) -> Result<usize> {
        let t = table(dir)?;
        let col = stamp(t);
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(db)?;
        if !sweeping(&tx, Sweep::Records).await? {
            return Ok(0);
        }
        let n = tx
            .execute(
                &format!("DELETE FROM {t} WHERE {col} < now() - $1::float8 * interval '1 second'"),
                &[&max_age.as_secs_f64()],
            )
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(n as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_kinds_have_their_tables() {
        assert_eq!(table(RECORDS_OUTBOX).unwrap(), "outbox");
        assert_eq!(table(RECORDS_IDEM).unwrap(), "idempotency_keys");
        assert!(table("../etc").is_err());
        assert_eq!(stamp("outbox"), "updated_at");
        assert_eq!(stamp("idempotency_keys"), "created_at");
        let id = "0123456789abcdef0123456789abcdef";
        assert_eq!(auth_message(&format!("{id}.json")).unwrap(), id);
        assert!(auth_message(id).is_err());
        assert!(auth_message("../x.json").is_err());
    }
}
