//! `postern deliveries …`: the command line over the running server's
//! `/v1/deliveries` API ([`postern::api::deliveries`]), to list, retry and
//! delete pending and dead deliveries from next to the server (e.g. with
//! `kubectl exec`). A client like any other: it only speaks HTTP.

use std::process::ExitCode;

use postern::api::auth::DEV_API_KEY;
use postern::api::deliveries::{Item, MAX_LIMIT, Page, state_name};
use postern::config::api_keys;

const USAGE: &str = "usage: postern deliveries list [--state dead|pending]
       postern deliveries retry <id>
       postern deliveries delete <id>

Talks to the running server at POSTERN_HTTP_LISTEN (0.0.0.0 is reached on
127.0.0.1) with the first key of POSTERN_API_KEYS (\"dev\" when unset).";

/// `postern deliveries <args>`: 0 done, 1 failed, 2 usage.
pub fn run(args: &[String]) -> ExitCode {
    let cmd = match parse(args) {
        Parsed::Run(cmd) => cmd,
        Parsed::Help => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Parsed::Usage(why) => {
            eprintln!("{why}{USAGE}");
            return ExitCode::from(2);
        }
    };
    let client = match Client::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    super::block_on(async {
        let result = match cmd {
            Cmd::List(state) => client.list(state.as_deref()).await,
            Cmd::Retry(id) => client.retry(&id).await,
            Cmd::Delete(id) => client.delete(&id).await,
        };
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

#[derive(Debug, PartialEq, Eq)]
enum Cmd {
    List(Option<String>),
    Retry(String),
    Delete(String),
}

/// What the arguments ask for.
#[derive(Debug, PartialEq, Eq)]
enum Parsed {
    Run(Cmd),
    Help,
    /// Not a valid command line: why (empty, or a line and a blank line),
    /// printed before the usage.
    Usage(&'static str),
}

fn parse(args: &[String]) -> Parsed {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let cmd = match args.as_slice() {
        ["list"] => Cmd::List(None),
        ["list", "--state", s] => Cmd::List(Some(s.to_string())),
        ["list", flag] if flag.starts_with("--state=") => {
            Cmd::List(Some(flag["--state=".len()..].to_string()))
        }
        ["retry", id] => Cmd::Retry(id.to_string()),
        ["delete", id] => Cmd::Delete(id.to_string()),
        ["help" | "-h" | "--help"] => return Parsed::Help,
        _ => return Parsed::Usage(""),
    };
    if let Cmd::List(Some(s)) = &cmd
        && s != "dead"
        && s != "pending"
    {
        return Parsed::Usage("--state must be dead or pending\n\n");
    }
    Parsed::Run(cmd)
}

struct Client {
    base: String,
    key: String,
    http: reqwest::Client,
}

impl Client {
    fn from_env() -> Result<Client, String> {
        let addr = super::local_http_addr()?;
        let key = std::env::var("POSTERN_API_KEYS")
            .ok()
            .and_then(|keys| api_keys(&keys).next().map(str::to_string))
            .unwrap_or_else(|| DEV_API_KEY.to_string());
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        Ok(Client {
            base: format!("http://{addr}"),
            key,
            http,
        })
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response, String> {
        let resp = req.bearer_auth(&self.key).send().await.map_err(|e| {
            let mut msg = format!("cannot reach Postern at {}: {e}", self.base);
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                msg.push_str(&format!(": {s}"));
                source = s.source();
            }
            msg
        })?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let body: serde_json::Value = resp.json().await.unwrap_or_default();
        let code = body["error"]["code"].as_str().unwrap_or("");
        let message = body["error"]["message"].as_str().unwrap_or("");
        Err(format!("{status}: {code}: {message}"))
    }

    async fn list(&self, state: Option<&str>) -> Result<(), String> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut query = vec![("limit", MAX_LIMIT.to_string())];
            if let Some(s) = state {
                query.push(("state", s.to_string()));
            }
            if let Some(c) = &cursor {
                query.push(("cursor", c.clone()));
            }
            let page: Page = self
                .send(
                    self.http
                        .get(format!("{}/v1/deliveries", self.base))
                        .query(&query),
                )
                .await?
                .json()
                .await
                .map_err(|e| format!("unexpected answer: {e}"))?;
            items.extend(page.items);
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        print!("{}", table(&items));
        let what = state.unwrap_or("pending or dead");
        match items.len() {
            0 => println!("no {what} deliveries"),
            1 => println!("1 {what} delivery"),
            n => println!("{n} {what} deliveries"),
        }
        Ok(())
    }

    async fn retry(&self, id: &str) -> Result<(), String> {
        let url = format!("{}/v1/deliveries/{}/retry", self.base, path_segment(id));
        self.send(self.http.post(url)).await?;
        println!("{id}: retrying now (pending, attempts reset)");
        Ok(())
    }

    async fn delete(&self, id: &str) -> Result<(), String> {
        let url = format!("{}/v1/deliveries/{}", self.base, path_segment(id));
        self.send(self.http.delete(url)).await?;
        println!("{id}: deleted");
        Ok(())
    }
}

/// Keeps an id typed by a person from changing the URL's path.
fn path_segment(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The readable table `deliveries list` prints (empty for no items).
fn table(items: &[Item]) -> String {
    if items.is_empty() {
        return String::new();
    }
    let header = [
        "ID",
        "STATE",
        "KIND",
        "ATTEMPTS",
        "RECEIVED",
        "NEXT ATTEMPT",
        "URL",
        "LAST ERROR",
    ];
    let rows: Vec<[String; 8]> = items
        .iter()
        .map(|i| {
            [
                i.id.clone(),
                state_name(i.state).to_string(),
                i.kind.as_str().to_string(),
                i.attempts.to_string(),
                i.received_at.clone(),
                i.next_attempt_at.clone().unwrap_or_else(|| "-".into()),
                i.url.clone().unwrap_or_else(|| format!("({})", i.route)),
                i.last_error.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[String]| {
        let last = cells.len() - 1;
        for (i, c) in cells.iter().enumerate() {
            if i == last {
                out.push_str(c);
            } else {
                out.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        out.push('\n');
    };
    line(&header.map(String::from));
    for r in &rows {
        line(r);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use postern::spool::{self, Kind};

    fn item(id: &str, state: spool::State, error: Option<&str>) -> Item {
        Item {
            id: id.into(),
            message_id: id.split('.').next().unwrap().into(),
            kind: Kind::Webhook,
            route: "*".into(),
            url: Some("http://h/hook".into()),
            recipients: vec!["a@b".into()],
            state,
            attempts: 1,
            next_attempt_at: None,
            last_error: error.map(str::to_string),
            received_at: "2026-01-01T00:00:00Z".into(),
        }
    }

    #[test]
    fn table_aligns_columns() {
        let t = table(&[
            item("ab.0", spool::State::Dead, Some("endpoint answered 410")),
            item("abcdef.12", spool::State::Pending, None),
        ]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("ID         STATE    KIND     ATTEMPTS"));
        assert!(lines[1].starts_with("ab.0       dead     webhook  1 "));
        assert!(lines[1].ends_with("endpoint answered 410"));
        assert!(lines[2].ends_with("  -"));
        assert_eq!(table(&[]), "");
    }

    #[test]
    fn arguments() {
        let p = |args: &[&str]| parse(&args.iter().map(|a| a.to_string()).collect::<Vec<_>>());
        let list = |s: Option<&str>| Parsed::Run(Cmd::List(s.map(str::to_string)));
        assert_eq!(p(&["list"]), list(None));
        assert_eq!(p(&["list", "--state", "dead"]), list(Some("dead")));
        assert_eq!(p(&["list", "--state=pending"]), list(Some("pending")));
        assert_eq!(p(&["retry", "x.0"]), Parsed::Run(Cmd::Retry("x.0".into())));
        assert_eq!(
            p(&["delete", "x.1"]),
            Parsed::Run(Cmd::Delete("x.1".into()))
        );
        for help in ["help", "-h", "--help"] {
            assert_eq!(p(&[help]), Parsed::Help);
        }
        let bad_state = Parsed::Usage("--state must be dead or pending\n\n");
        assert_eq!(p(&["list", "--state", "delivered"]), bad_state);
        assert_eq!(p(&["list", "--state="]), bad_state);
        for usage in [
            &[][..],
            &["list", "--state"],
            &["retry"],
            &["retry", "a", "b"],
            &["show", "x.0"],
        ] {
            assert_eq!(p(usage), Parsed::Usage(""), "{usage:?}");
        }
    }
}
