//! The load generators: raw pipelined SMTP connections and the sending API client.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use crate::corpus::DOMAIN;
use crate::receiver::Run;
use crate::server::API_KEY;

pub(crate) struct SmtpConn {
    pub(crate) r: BufReader<OwnedReadHalf>,
    pub(crate) w: OwnedWriteHalf,
    pub(crate) line: Vec<u8>,
}

impl SmtpConn {
    /// Connects and reads the greeting.
    pub(crate) async fn connect(addr: SocketAddr) -> Result<SmtpConn, String> {
        let s = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let _ = s.set_nodelay(true);
        let (r, w) = s.into_split();
        let mut c = SmtpConn {
            r: BufReader::with_capacity(16 * 1024, r),
            w,
            line: Vec::with_capacity(256),
        };
        let (code, text) = c.reply().await?;
        if code != 220 {
            return Err(format!("greeting: {code} {text}"));
        }
        Ok(c)
    }

    pub(crate) async fn send(&mut self, b: &[u8]) -> Result<(), String> {
        self.w.write_all(b).await.map_err(|e| format!("write: {e}"))
    }

    /// One (possibly multi-line) reply: its code and its text.
    pub(crate) async fn reply(&mut self) -> Result<(u16, String), String> {
        let mut text = String::new();
        loop {
            self.line.clear();
            let n = self
                .r
                .read_until(b'\n', &mut self.line)
                .await
                .map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return Err("server closed the connection".into());
            }
            let l = String::from_utf8_lossy(&self.line);
            let l = l.trim_end();
            text.push_str(l);
            let code = l.get(..3).and_then(|c| c.parse::<u16>().ok());
            if l.as_bytes().get(3) != Some(&b'-') {
                return code
                    .map(|c| (c, text.clone()))
                    .ok_or(format!("malformed reply {text:?}"));
            }
            text.push('\n');
        }
    }
}

/// Connects, reads the greeting and says EHLO.
async fn greeted(smtp: SocketAddr) -> Result<SmtpConn, String> {
    let mut c = SmtpConn::connect(smtp).await?;
    c.send(b"EHLO load-client.test\r\n").await?;
    let (code, text) = c.reply().await?;
    if code != 250 || !text.contains("PIPELINING") {
        return Err(format!("EHLO: {text}"));
    }
    Ok(c)
}

/// One client: sends messages until N are taken or sending stops, on one
/// connection, or (`new_connection`) on a new one for each message
/// (connect, greeting, EHLO, the transaction, QUIT), the way
/// `smtp-source` without `-d` does.
pub(crate) async fn client(
    run: Arc<Run>,
    smtp: SocketAddr,
    body: Arc<Vec<u8>>,
    new_connection: bool,
) -> Result<(), String> {
    let mut c = greeted(smtp).await?;
    let mut used = false;
    let envelope = format!(
        "MAIL FROM:<sender@{DOMAIN}> SIZE={}\r\nRCPT TO:<sink@{DOMAIN}>\r\nDATA\r\n",
        body.len() + 80
    );
    let mut small = Vec::with_capacity(if body.len() < 256 << 10 {
        body.len() + 128
    } else {
        0
    });
    loop {
        if run.stop_sending.load(Relaxed) {
            break;
        }
        let i = run.next.fetch_add(1, Relaxed);
        if i >= run.n {
            break;
        }
        let mid = format!("Message-ID: <{}>\r\n", run.message_id(i));
        if !run.wait_turn(i).await {
            break;
        }
        run.started[i].store(run.now(), Relaxed);
        // The first connection is open already; the time to open the
        // next ones counts in the transaction.
        if new_connection && used {
            c.send(b"QUIT\r\n").await?;
            let _ = c.reply().await;
            c = greeted(smtp).await?;
        }
        used = true;
        c.send(envelope.as_bytes()).await?;
        let (mail, _) = c.reply().await?;
        let (rcpt, _) = c.reply().await?;
        let (data, data_text) = c.reply().await?;
        if (mail, rcpt, data) != (250, 250, 354) {
            if run.refused.fetch_add(1, Relaxed) < 5 {
                eprintln!("transaction refused: MAIL {mail}, RCPT {rcpt}, DATA {data_text}");
            }
            c.send(b"RSET\r\n").await?;
            c.reply().await?;
            continue;
        }
        if small.capacity() > 0 {
            small.clear();
            small.extend_from_slice(mid.as_bytes());
            small.extend_from_slice(&body);
            small.extend_from_slice(b".\r\n");
            c.send(&small).await?;
        } else {
            c.send(mid.as_bytes()).await?;
            c.send(&body).await?;
            c.send(b".\r\n").await?;
        }
        let (code, text) = c.reply().await?;
        if code == 250 {
            run.accepted_at[i].store(run.now(), Relaxed);
            run.accepted.fetch_add(1, Relaxed);
        } else if run.refused.fetch_add(1, Relaxed) < 5 {
            eprintln!("message refused at end of DATA: {text}");
        }
    }
    c.send(b"QUIT\r\n").await?;
    let _ = c.reply().await;
    Ok(())
}

// ------------------------------------------------------------ load runs

/// One API client: POSTs until N are taken or sending stops. `run.started`
/// is the request start, `run.accepted_at` the 202.
pub(crate) async fn api_client(
    run: Arc<Run>,
    ids: Arc<Vec<OnceLock<String>>>,
    http: reqwest::Client,
    url: String,
    body: Bytes,
) -> Result<(), String> {
    loop {
        if run.stop_sending.load(Relaxed) {
            break;
        }
        let i = run.next.fetch_add(1, Relaxed);
        if i >= run.n || !run.wait_turn(i).await {
            break;
        }
        run.started[i].store(run.now(), Relaxed);
        let resp = http
            .post(&url)
            .bearer_auth(API_KEY)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .map_err(|e| format!("POST: {e}"))?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| format!("POST body: {e}"))?;
        let id = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v["id"].as_str().map(String::from));
        match (status.as_u16(), id) {
            (202, Some(id)) => {
                run.accepted_at[i].store(run.now(), Relaxed);
                run.accepted.fetch_add(1, Relaxed);
                let _ = ids[i].set(id);
            }
            _ => {
                if run.refused.fetch_add(1, Relaxed) < 5 {
                    eprintln!(
                        "POST /v1/messages: {status} {}",
                        String::from_utf8_lossy(&bytes)
                    );
                }
            }
        }
    }
    Ok(())
}

/// The relay attempt's time from `GET /v1/messages/{id}` once it is
/// `sent`, as ns since `run.base` + 1; 0 if it never got there.
pub(crate) async fn relay_time(
    http: &reqwest::Client,
    base: &str,
    id: &str,
    base_unix: i128,
    until: Instant,
) -> u64 {
    loop {
        let record = match http
            .get(format!("{base}/v1/messages/{id}"))
            .bearer_auth(API_KEY)
            .send()
            .await
        {
            Ok(r) => r.json::<serde_json::Value>().await.ok(),
            Err(_) => None,
        };
        if let Some(r) = record
            && r["status"] == "sent"
        {
            let at = r["attempts"]
                .as_array()
                .and_then(|a| a.last())
                .and_then(|a| a["at"].as_str())
                .and_then(|t| {
                    time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                        .ok()
                });
            return at.map_or(0, |t| {
                (t.unix_timestamp_nanos() - base_unix).max(0) as u64 + 1
            });
        }
        if Instant::now() > until {
            return 0;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `deadline` for every client task to end and then for
/// `arrived` (everything accepted has come out the other side); at the
/// deadline the clients still running are aborted. Returns the clients'
/// errors and whether the deadline was reached.
pub(crate) async fn join_clients(
    clients: Vec<tokio::task::JoinHandle<Result<(), String>>>,
    deadline: std::time::Instant,
    arrived: impl Fn() -> bool,
) -> (Vec<String>, bool) {
    let aborts: Vec<_> = clients.iter().map(|h| h.abort_handle()).collect();
    let finished = tokio::time::timeout_at(deadline.into(), async {
        let mut errors = Vec::new();
        for h in clients {
            match h.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => errors.push(e),
                Err(e) => errors.push(format!("client task: {e}")),
            }
        }
        while !arrived() {
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        errors
    })
    .await;
    match finished {
        Ok(errors) => (errors, false),
        Err(_) => {
            aborts.iter().for_each(|a| a.abort());
            (Vec::new(), true)
        }
    }
}
