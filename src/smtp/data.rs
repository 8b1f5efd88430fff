//! DATA (RFC 5321 4.1.1.4): the message is received after `354`,
//! decoded by [`super::dot`] while it streams to the spool through the
//! intake, and answered `250` only once the intake has committed it to
//! disk (and the apps of its sync routes took it, [`super::sync`]).
//! Temporary trouble on our side is a `4xx`: the client keeps the
//! message.

use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tracing::{Instrument, info, warn};

use super::dot::DataReceiver;
use super::reply;
use super::session::{End, Next, Session, Transaction};
use super::sync::SyncTarget;
use crate::model::attachment_url::AttachmentMode;
use crate::model::clock::rfc3339_now;
use crate::route;
use crate::spool::{self, Delivery, Envelope, Incoming};

const READ_CHUNK: usize = 64 * 1024;

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    /// DATA: allowed once a transaction has a sender and a recipient.
    pub(super) fn data_command(&mut self) -> Next {
        if self.tx.mail_from.is_none() {
            return self.error(reply::NEED_MAIL);
        }
        if self.tx.rcpts.is_empty() {
            return self.error(reply::NO_RCPTS);
        }
        Next::Data
    }

    /// Receives the message after `DATA`, spools it, answers.
    pub(super) async fn data(&mut self) -> Result<(), End> {
        let tx = std::mem::take(&mut self.tx);
        let id = spool::new_id();
        let span = tracing::info_span!("message", message_id = %id);
        self.receive(id, tx).instrument(span).await
    }

    async fn receive(&mut self, id: String, tx: Transaction) -> Result<(), End> {
        let (envelope, sync) = self.envelope(&id, &tx);

        // Open the spool file before 354, so a full disk is refused here,
        // before the client sends megabytes.
        let mut writer = match self.inbound.intake.accept(envelope).await {
            Ok(w) => Some(w),
            Err(e) => {
                warn!(error = %e, "cannot open spool file");
                self.reply(reply::for_spool_error(&e));
                return Ok(());
            }
        };
        let received = self.received_header(&id, &tx);
        let mut failure: Option<spool::Error> = None;
        if let Some(w) = writer.as_mut()
            && let Err(e) = w.write(received.as_bytes()).await
        {
            failure = Some(e);
        }
        self.reply(reply::DATA_START);
        self.flush().await.map_err(End::Io)?;

        let max = self.inbound.settings.limits.max_message_size;
        let min_rate = self.inbound.settings.limits.min_data_rate;
        let started = Instant::now();
        let mut received_bytes: u64 = 0;
        let mut receiver = DataReceiver::new();
        let mut decoded = Vec::with_capacity(READ_CHUNK);
        let mut size: u64 = 0;
        let mut too_big = false;
        let mut input = std::mem::take(&mut self.input);
        let mut chunk = vec![0u8; READ_CHUNK];
        loop {
            decoded.clear();
            let end = receiver.feed(&input, &mut decoded);
            size += decoded.len() as u64;
            if size > max && !too_big {
                // Keep reading to the end so the session stays in sync, but
                // stop storing: memory stays flat whatever the client sends.
                too_big = true;
                writer = None;
            }
            if let (Some(w), None) = (writer.as_mut(), failure.as_ref())
                && let Err(e) = w.write(&decoded).await
            {
                warn!(error = %e, "spool write failed");
                failure = Some(e);
                writer = None;
            }
            if let Some(n) = end {
                input.drain(..n);
                self.input = input;
                break;
            }
            input.clear();
            let n = match tokio::time::timeout(self.read_timeout(), self.stream.read(&mut chunk))
                .await
            {
                Err(_) => return Err(self.timed_out()),
                Ok(Err(e)) => return Err(End::Io(e)),
                Ok(Ok(0)) => return Err(End::ClientGone),
                Ok(Ok(n)) => n,
            };
            received_bytes += n as u64;
            let grace = self.inbound.settings.limits.data_rate_grace;
            if too_slow(received_bytes, started.elapsed(), min_rate, grace) {
                // A slowloris holds a session slot as long as it trickles.
                info!(received_bytes, "DATA too slow");
                self.inbound.metrics.rejected("too_slow");
                self.reply(reply::TOO_SLOW);
                return Err(End::TooSlow);
            }
            input.extend_from_slice(&chunk[..n]);
        }

        if too_big {
            info!(size, "message refused: too big");
            self.inbound.metrics.rejected("too_big");
            self.reply(reply::TOO_BIG);
        } else if receiver.bare_line_end {
            info!("message refused: bare CR or LF");
            self.inbound.metrics.rejected("bare_line_end");
            self.reply(reply::BARE_LINE_END);
        } else if let Some(e) = failure {
            self.inbound.metrics.rejected("spool_error");
            self.reply(reply::for_spool_error(&e));
        } else {
            let writer: Incoming = writer.expect("writer present when nothing failed");
            match writer.commit().await {
                Ok(committed) => {
                    // Authentication checks (checks.rs): verdicts stored
                    // with the message, or the message refused.
                    let Some(committed) = self.authenticate(committed, &tx).await else {
                        return Ok(());
                    };
                    // Sync routes (smtp/sync.rs): their apps' answers may
                    // refuse the message, withdrawn then, nothing scheduled.
                    let committed = match self.call_sync_routes(committed, sync).await {
                        Ok(c) => c,
                        Err(refusal) => {
                            self.reply(&refusal);
                            return Ok(());
                        }
                    };
                    // (end of sync routes)
                    let envelope = committed.schedule();
                    self.inbound.metrics.messages_accepted.inc();
                    self.inbound.metrics.received_bytes.inc_by(size);
                    info!(
                        size,
                        from = %envelope.mail_from,
                        rcpts = envelope.rcpt_to.len(),
                        deliveries = envelope.deliveries.len(),
                        "message accepted"
                    );
                    self.reply(&reply::queued(&id));
                }
                Err(e) => {
                    self.inbound.metrics.rejected("spool_error");
                    warn!(error = %e, "spool commit failed");
                    self.reply(reply::for_spool_error(&e));
                }
            }
        }
        Ok(())
    }

    /// The envelope to spool, and the deliveries of sync routes, which
    /// are POSTed during DATA and never spooled.
    fn envelope(&self, id: &str, tx: &Transaction) -> (Envelope, Vec<SyncTarget>) {
        let routes = &self.inbound.settings.routes;
        let mut deliveries = Vec::new();
        let mut sync = Vec::new();
        for (target, rcpt_to) in route::split(&tx.rcpts) {
            let r = &routes[target.route];
            let delivery = Delivery {
                target: spool::Target::Webhook {
                    route: r.pattern.clone(),
                    url: target.url,
                },
                rcpt_to,
                raw: r.raw,
                max_attachment_inline: r.max_attachment_inline,
                attachment_urls: r.attachments == AttachmentMode::Url,
            };
            match r.sync_timeout {
                Some(_) => sync.push(SyncTarget {
                    route: target.route,
                    delivery,
                }),
                None => deliveries.push(delivery),
            }
        }
        let envelope = Envelope {
            id: id.to_string(),
            received_at: rfc3339_now(),
            mail_from: tx.mail_from.clone().unwrap_or_default(),
            rcpt_to: tx.rcpts.iter().map(|(a, _)| a.clone()).collect(),
            helo: self.helo.clone().unwrap_or_default(),
            remote_ip: self.peer.ip.to_string(),
            tls: self.tls.clone(),
            authenticated_user: self.auth_user.clone(),
            deliveries,
            outbound: None,
        };
        (envelope, sync)
    }
}

/// Whether a DATA transfer is below the minimum rate, judged only after
/// the grace period.
fn too_slow(bytes: u64, elapsed: Duration, min_rate: u64, grace: Duration) -> bool {
    min_rate > 0 && elapsed > grace && (bytes as f64) < min_rate as f64 * elapsed.as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn too_slow_table() {
        let s = Duration::from_secs;
        // (bytes, elapsed, min_rate, grace) -> too slow
        for (bytes, elapsed, min_rate, grace, expected) in [
            (0, s(100), 0, s(10), false),     // no minimum rate
            (0, s(10), 100, s(10), false),    // still in the grace period
            (999, s(11), 100, s(10), true),   // 999 < 1100
            (1100, s(11), 100, s(10), false), // exactly the rate
            (2999, s(30), 100, s(10), true),
            (5000, s(30), 100, s(10), false),
        ] {
            assert_eq!(
                too_slow(bytes, elapsed, min_rate, grace),
                expected,
                "{bytes} bytes in {elapsed:?}"
            );
        }
    }
}
