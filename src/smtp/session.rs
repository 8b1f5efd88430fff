//! One SMTP session, generic over the stream so tests drive it in memory.
//!
//! The loop reads what the client sent, answers every complete command in
//! order, and flushes the replies only when no complete command is left in
//! the buffer: that is all PIPELINING (RFC 2920) needs, and it batches
//! replies into few writes.

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use smtp_proto::Request;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use super::authorize::Authorizer;
use super::checks::AuthChecker;
use super::starttls::unknown_tls;
use super::throttle::AuthThrottle;
use super::{Settings, reply};
use crate::model::attachment_url::Linker;
use crate::route::Target;
use crate::spool::{Intake, Store, TlsInfo};

/// What a session needs from the rest of the server.
#[derive(Clone)]
pub struct Inbound {
    /// Limits, AUTH policy, routes: what the stage reads from the config.
    pub settings: Arc<Settings>,
    /// Where accepted messages go.
    pub intake: Intake,
    /// Offered as STARTTLS when present.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// Failed AUTH attempts per client IP, shared by all sessions.
    pub auth_throttle: Arc<AuthThrottle>,
    /// Asks routes' `authorize_url` at RCPT; its cache is shared.
    pub authorizer: Arc<Authorizer>,
    /// POSTs to sync routes during DATA (`super::sync`).
    pub sync_client: reqwest::Client,
    pub metrics: Arc<crate::telemetry::Metrics>,
    /// SPF/DKIM/DMARC/ARC after DATA's commit; `None` while they are off.
    pub auth_checker: Option<Arc<AuthChecker>>,
    /// Signs attachment links in sync routes' payloads, as the worker's
    /// do (`None`: no `POSTERN_PUBLIC_URL` outside development mode).
    pub links: Option<Linker>,
}

impl Inbound {
    /// With the configured AUTH throttle; STARTTLS is offered with `tls`.
    pub fn new(
        settings: Settings,
        store: Store,
        tls: Option<tokio_rustls::TlsAcceptor>,
        metrics: Arc<crate::telemetry::Metrics>,
    ) -> Inbound {
        let sec = &settings.security;
        let auth_throttle = Arc::new(AuthThrottle::new(
            sec.auth_max_failures,
            sec.auth_failure_window,
            sec.auth_failure_delay,
        ));
        Inbound {
            settings: Arc::new(settings),
            intake: store.intake(),
            tls,
            auth_throttle,
            authorizer: Arc::new(Authorizer::default()),
            sync_client: super::sync::client(),
            metrics,
            auth_checker: None,
            links: None,
        }
    }

    /// Sync routes' payloads link attachments with `links`, like the
    /// worker's.
    pub fn with_attachment_links(self, links: Option<Linker>) -> Inbound {
        Inbound { links, ..self }
    }

    /// With the authentication checks run after each DATA (issue 13
    /// item 2); without this call there are none.
    pub fn with_auth_checks(self, checker: AuthChecker) -> Inbound {
        Inbound {
            auth_checker: Some(Arc::new(checker)),
            ..self
        }
    }
}

/// Why a session ended.
#[derive(Debug)]
pub enum End {
    Quit,
    ClientGone,
    Timeout,
    Shutdown,
    TooManyErrors,
    /// The whole-session time limit.
    SessionTimeout,
    /// DATA arrived slower than the minimum rate.
    TooSlow,
    /// Sent before our greeting.
    EarlyTalker,
    TooManyAuthFailures,
    /// STARTTLS accepted; the caller runs the handshake.
    StartTls,
    TlsHandshake(String),
    Io(std::io::Error),
}

/// Per-connection facts, fixed at accept time.
#[derive(Debug, Clone)]
pub struct Peer {
    pub ip: IpAddr,
}

/// The transaction in progress (between MAIL and the end of DATA).
#[derive(Debug, Default)]
pub(super) struct Transaction {
    pub(super) mail_from: Option<String>,
    /// MAIL carried SMTPUTF8 (RFC 6531): changes the `with` protocol name.
    pub(super) smtputf8: bool,
    /// `SIZE=` of MAIL FROM, when given (told to `authorize_url`).
    pub(super) size: Option<u64>,
    pub(super) rcpts: Vec<(String, Vec<Target>)>,
}

pub struct Session<S> {
    pub(super) stream: S,
    pub(super) inbound: Inbound,
    pub(super) peer: Peer,
    pub(super) shutdown: CancellationToken,
    /// Received, not yet handled.
    pub(super) input: Vec<u8>,
    /// Replies not yet flushed.
    pub(super) output: Vec<u8>,
    pub(super) helo: Option<String>,
    pub(super) esmtp: bool,
    pub(super) tx: Transaction,
    pub(super) errors: usize,
    /// Inside an over-long line: drop bytes until the next LF.
    pub(super) discarding: bool,
    /// Set once TLS is up (STARTTLS or implicit).
    pub(super) tls: Option<TlsInfo>,
    pub(super) auth_user: Option<String>,
    /// The session ends at this instant whatever happens.
    pub(super) deadline: Instant,
    /// `authorize_url`s that did not answer in this session: their
    /// further recipients get `451` at once, so a hung app costs a
    /// session one timeout, not one per recipient.
    pub(super) authorize_down: Vec<String>,
}

/// What an idle session keeps of its read buffer; a read gets at least
/// `READ_MIN` bytes of room.
const IDLE_BUFFER: usize = 1024;
const READ_MIN: usize = 256;

/// Gives a buffer that grew (a DATA transfer, a long burst of replies)
/// back down to the idle size: a thousand idle sessions should not each
/// keep what their biggest moment needed.
fn shrink(buf: &mut Vec<u8>) {
    if buf.capacity() > 4 * IDLE_BUFFER {
        buf.shrink_to(IDLE_BUFFER.max(buf.len()));
    }
}

/// What handling one command asks the loop to do next.
pub(super) enum Next {
    Continue,
    Data,
    Close(End),
}

impl From<End> for Next {
    fn from(e: End) -> Next {
        Next::Close(e)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    pub fn new(stream: S, inbound: Inbound, peer: Peer, shutdown: CancellationToken) -> Self {
        Session {
            stream,
            peer,
            shutdown,
            // Allocated on first use, kept small while idle (`IDLE_BUFFER`).
            input: Vec::new(),
            output: Vec::new(),
            helo: None,
            esmtp: false,
            tx: Transaction::default(),
            errors: 0,
            discarding: false,
            tls: None,
            auth_user: None,
            deadline: Instant::now() + inbound.settings.limits.session_timeout,
            authorize_down: Vec::new(),
            inbound,
        }
    }

    /// A session on a stream that is already TLS (implicit TLS, RFC 8314).
    pub fn with_tls(mut self, info: Option<TlsInfo>) -> Self {
        self.tls = Some(info.unwrap_or_else(unknown_tls));
        self
    }

    /// Runs the session to its end: greeting, commands, and for STARTTLS
    /// the handshake and the rest of the session on the encrypted stream
    /// (the same code, over `TlsStream<S>`).
    pub async fn run(mut self) -> End
    where
        S: Send,
    {
        if let Err(end) = self.greet().await {
            let _ = self.stream.shutdown().await;
            return end;
        }
        let end = self.serve().await;
        if !matches!(end, End::StartTls) {
            let _ = self.stream.shutdown().await;
            debug!(?end, "session ended");
            return end;
        }
        // Boxed: the TLS session is a second, bigger session that a
        // plain one should not reserve room for while it idles.
        Box::pin(self.upgrade()).await
    }

    /// Sends the greeting; with a greeting delay, a client that talks
    /// first is refused (spam bots rarely wait). Without a delay, input
    /// already waiting at accept time still counts. Implicit-TLS sessions
    /// skip the check: there the client speaks first by design.
    async fn greet(&mut self) -> Result<(), End> {
        if self.tls.is_none() {
            let delay = self.inbound.settings.limits.greeting_delay;
            let mut probe = [0u8; 1];
            let early = if delay.is_zero() {
                // One look without waiting: input already there at accept.
                let mut buf = ReadBuf::new(&mut probe);
                let mut cx = Context::from_waker(std::task::Waker::noop());
                match Pin::new(&mut self.stream).poll_read(&mut cx, &mut buf) {
                    Poll::Ready(Ok(())) => Some(buf.filled().len()),
                    Poll::Ready(Err(_)) => Some(0),
                    Poll::Pending => None,
                }
            } else {
                match tokio::time::timeout(delay, self.stream.read(&mut probe)).await {
                    Ok(r) => Some(r.unwrap_or(0)),
                    Err(_) => None,
                }
            };
            match early {
                None => {}
                Some(0) => return Err(End::ClientGone),
                Some(_) => {
                    info!("early talker refused");
                    self.reply(reply::EARLY_TALKER);
                    let _ = self.flush().await;
                    return Err(End::EarlyTalker);
                }
            }
        }
        let greeting = reply::greeting(&self.inbound.settings.hostname);
        self.reply(&greeting);
        Ok(())
    }

    pub(super) async fn serve(&mut self) -> End {
        loop {
            // Answer every complete line we already have.
            while let Some(line) = self.next_line() {
                let next = match line {
                    // Boxed, like DATA below: the future of a command (an
                    // authorize POST, AUTH) exists only while it runs, so
                    // an idle session does not carry room for it.
                    Ok(line) => Box::pin(self.command(&line)).await,
                    Err(()) => self.error(reply::LINE_TOO_LONG),
                };
                match next {
                    Next::Continue => {}
                    Next::Close(end) => {
                        let _ = self.flush().await;
                        return end;
                    }
                    Next::Data => {
                        let result = Box::pin(self.data()).await;
                        shrink(&mut self.input);
                        if let Err(end) = result {
                            let _ = self.flush().await;
                            return end;
                        }
                    }
                }
            }
            if let Err(e) = self.flush().await {
                return End::Io(e);
            }
            if self.shutdown.is_cancelled() {
                self.reply(reply::SHUTTING_DOWN);
                let _ = self.flush().await;
                return End::Shutdown;
            }
            match self.read_more().await {
                Ok(()) => {}
                Err(end) => {
                    let _ = self.flush().await;
                    return end;
                }
            }
        }
    }

    /// Reads more input, bounded by the idle timeout, interrupted by
    /// shutdown (between commands only: a DATA transfer is never cut by
    /// this path).
    async fn read_more(&mut self) -> Result<(), End> {
        let wait = self.read_timeout();
        // Straight into `input` (no buffer in the future, so none in every
        // idle session's task): commands are short, and a pipelined
        // burst that does not fit is read in the next round.
        if self.input.capacity() - self.input.len() < READ_MIN {
            self.input.reserve(IDLE_BUFFER);
        }
        let read = self.stream.read_buf(&mut self.input);
        let n = tokio::select! {
            r = tokio::time::timeout(wait, read) => match r {
                Err(_) => return Err(self.timed_out()),
                Ok(Err(e)) => return Err(End::Io(e)),
                Ok(Ok(0)) => return Err(End::ClientGone),
                Ok(Ok(n)) => n,
            },
            _ = self.shutdown.cancelled() => {
                self.reply(reply::SHUTTING_DOWN);
                return Err(End::Shutdown);
            }
        };
        debug_assert!(n > 0);
        Ok(())
    }

    /// How long the next read may take: the idle timeout, cut short by
    /// the session deadline.
    pub(super) fn read_timeout(&self) -> Duration {
        let idle = self.inbound.settings.limits.idle_timeout;
        idle.min(self.deadline.saturating_duration_since(Instant::now()))
    }

    /// A read timed out: which limit was it?
    pub(super) fn timed_out(&mut self) -> End {
        if Instant::now() >= self.deadline {
            self.reply(reply::SESSION_TIMEOUT);
            End::SessionTimeout
        } else {
            self.reply(reply::TIMEOUT);
            End::Timeout
        }
    }

    /// Reads one line of an AUTH exchange.
    pub(super) async fn read_line(&mut self) -> Result<Option<String>, End> {
        loop {
            match self.next_line() {
                Some(Ok(line)) => {
                    let text = String::from_utf8_lossy(&line).trim_end().to_string();
                    return Ok(Some(text));
                }
                Some(Err(())) => return Ok(None),
                None => {
                    self.flush().await.map_err(End::Io)?;
                    self.read_more().await?;
                }
            }
        }
    }

    /// The next complete command line (CRLF or LF terminated) from the
    /// input buffer; `Err` for a line over the limit (reported once, the
    /// rest of it is discarded as it arrives).
    fn next_line(&mut self) -> Option<Result<Vec<u8>, ()>> {
        let max = self.inbound.settings.limits.max_line_length;
        match memchr::memchr(b'\n', &self.input) {
            Some(pos) => {
                let line: Vec<u8> = self.input.drain(..=pos).collect();
                if std::mem::take(&mut self.discarding) {
                    // The tail of a line already refused.
                    return self.next_line();
                }
                if line.len() > max {
                    return Some(Err(()));
                }
                Some(Ok(line))
            }
            None if self.input.len() > max => {
                self.input.clear();
                if self.discarding {
                    return None;
                }
                self.discarding = true;
                Some(Err(()))
            }
            None => None,
        }
    }

    pub(super) fn reply(&mut self, line: &str) {
        debug!(reply = line, "S:");
        if line.as_bytes().get(3) != Some(&b'-') {
            self.inbound.metrics.reply(reply::class(line));
        }
        self.output.extend_from_slice(line.as_bytes());
        self.output.extend_from_slice(b"\r\n");
    }

    /// Writes the pending replies. Bounded by the same clock as reads: a
    /// client that pipelines commands and never reads the replies would
    /// otherwise block us in a write forever, past every time limit.
    pub(super) async fn flush(&mut self) -> std::io::Result<()> {
        if !self.output.is_empty() {
            let wait = self.read_timeout();
            let write = async {
                self.stream.write_all(&self.output).await?;
                self.stream.flush().await
            };
            match tokio::time::timeout(wait, write).await {
                Ok(r) => r?,
                Err(_) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "client does not read its replies",
                    ));
                }
            }
            self.output.clear();
            shrink(&mut self.output);
        }
        Ok(())
    }

    /// A protocol error: reply, count, and close after too many.
    pub(super) fn error(&mut self, line: &str) -> Next {
        self.reply(line);
        self.errors += 1;
        if self.errors >= self.inbound.settings.limits.max_errors {
            self.reply(reply::TOO_MANY_ERRORS);
            return Next::Close(End::TooManyErrors);
        }
        Next::Continue
    }

    async fn command(&mut self, line: &[u8]) -> Next {
        debug!(command = %redact(line), "C:");
        // smtp-proto wants CRLF; accept a bare LF terminator on commands
        // (lenient where it is harmless: commands are not data).
        let mut owned;
        let line = if line.ends_with(b"\r\n") {
            line
        } else {
            owned = line[..line.len() - 1].to_vec();
            owned.extend_from_slice(b"\r\n");
            &owned
        };
        // Commands are ASCII, or UTF-8 with SMTPUTF8. smtp-proto would
        // replace invalid bytes with U+FFFD and so alter an address.
        if std::str::from_utf8(line).is_err() {
            return self.error(reply::for_invalid_utf8(line));
        }
        let request = match Request::parse(&mut line.iter()) {
            Ok(r) => r,
            Err(e) => return self.error(reply::for_parse_error(&e).as_ref()),
        };
        match request {
            Request::Ehlo { host } => self.hello(host.as_ref(), true),
            Request::Helo { host } => self.hello(host.as_ref(), false),
            Request::Mail { from } => self.mail(from),
            Request::Rcpt { to } => self.rcpt(to, line).await,
            Request::Data => self.data_command(),
            Request::Rset => self.rset(),
            Request::Noop { .. } => self.answer(reply::OK),
            Request::Quit => {
                self.reply(reply::BYE);
                Next::Close(End::Quit)
            }
            Request::Vrfy { .. } => self.answer(reply::VRFY),
            Request::Help { .. } => self.answer(reply::HELP),
            Request::StartTls => self.starttls(),
            Request::Auth {
                mechanism,
                initial_response,
            } => self
                .auth(mechanism, initial_response.into_owned())
                .await
                .unwrap_or_else(Next::Close),
            // Recognised but not offered: BDAT needs CHUNKING.
            Request::Bdat { .. }
            | Request::Lhlo { .. }
            | Request::Expn { .. }
            | Request::Etrn { .. }
            | Request::Atrn { .. }
            | Request::Burl { .. } => self.error(reply::NOT_IMPLEMENTED),
        }
    }

    /// A command that only gets its reply.
    fn answer(&mut self, line: &str) -> Next {
        self.reply(line);
        Next::Continue
    }

    /// RSET: the transaction is dropped, the greeting and AUTH stay.
    fn rset(&mut self) -> Next {
        self.tx = Transaction::default();
        self.reply(reply::OK);
        Next::Continue
    }
}

/// Never log what follows AUTH (credentials), whatever the mechanism.
fn redact(line: &[u8]) -> Cow<'_, str> {
    // Compare bytes: the line is client input and need not be UTF-8.
    if line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"auth") {
        Cow::Borrowed("AUTH <redacted>")
    } else {
        Cow::Owned(String::from_utf8_lossy(line).trim_end().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_auth_and_survives_any_bytes() {
        assert_eq!(
            redact(b"AUTH PLAIN AGJvYgBzZWNyZXQ=\r\n"),
            "AUTH <redacted>"
        );
        assert_eq!(redact(b"auth login\r\n"), "AUTH <redacted>");
        assert_eq!(redact(b"NOOP\r\n"), "NOOP");
        // a multi-byte character across byte 4 (found by the property test)
        assert_eq!(redact("aa\u{e9}b\r\n".as_bytes()), "aa\u{e9}b");
        assert_eq!(
            redact(b"\xff\xfe\xfd\xfc\xfb"),
            "\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}"
        );
    }
}
