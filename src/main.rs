//! The `postern` binary: parses the command line, loads configuration, sets
//! up logs and runs the library.

use anyhow::Context;
use postern::config::{Config, LogFormat};
use tokio_util::sync::CancellationToken;

const USAGE: &str =
    "usage: postern [serve | gen-secret | hash-password | healthcheck | doctor | deliveries | version | help]

  serve          run the SMTP server and webhook delivery (default)
  gen-secret     print a new random webhook secret (whsec_...)
  hash-password  read a password from stdin, print its argon2id hash
                 for POSTERN_SMTP_USERS (user:<hash>)
  healthcheck    exit 0 when GET /readyz on POSTERN_HTTP_LISTEN answers 200,
                 else 1 (for container HEALTHCHECKs: no curl needed)
  doctor         check the configuration without serving: config, spool,
                 TLS files, relay (no mail sent), a signed test event to
                 each webhook endpoint; exit 0 when all pass, else 1
  deliveries     list [--state dead|pending] | retry <id> | delete <id>:
                 pending and dead deliveries, through the running server's
                 API (POSTERN_HTTP_LISTEN, first key of POSTERN_API_KEYS)
  version        print the version (also --version, -V)

Configuration comes from POSTERN_* environment variables (see README.md).
With none set, Postern runs in development mode on 127.0.0.1.";

fn main() -> anyhow::Result<()> {
    let cmd = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "serve".to_string());
    match cmd.as_str() {
        "serve" => serve(),
        "gen-secret" => {
            println!("{}", postern::delivery::sign::Secret::generate().to_whsec());
            Ok(())
        }
        "hash-password" => hash_password(),
        "healthcheck" => std::process::exit(healthcheck()),
        "doctor" => std::process::exit(postern::doctor::main()),
        "deliveries" => {
            let args: Vec<String> = std::env::args().skip(2).collect();
            std::process::exit(postern::api::deliveries::cli(&args))
        }
        "version" | "-V" | "--version" => {
            println!("postern {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        "help" | "-h" | "--help" => {
            println!("{USAGE}");
            Ok(())
        }
        other => {
            eprintln!("unknown command {other:?}\n\n{USAGE}");
            std::process::exit(2);
        }
    }
}

/// Reads the password from stdin (one line), never from the command line,
/// where it would land in shell history and `ps`.
fn hash_password() -> anyhow::Result<()> {
    use std::io::BufRead;
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the password from stdin")?;
    let password = line.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        anyhow::bail!(
            "empty password: pipe it in, e.g. `printf %s \"$PW\" | postern hash-password`"
        );
    }
    println!("{}", postern::model::users::hash_password(password));
    Ok(())
}

/// GET /readyz on our own HTTP listener; a wildcard listen address is
/// reached on loopback.
fn healthcheck() -> i32 {
    let listen = std::env::var("POSTERN_HTTP_LISTEN").unwrap_or_else(|_| "127.0.0.1:8080".into());
    let Ok(mut addr) = listen.parse::<std::net::SocketAddr>() else {
        eprintln!("POSTERN_HTTP_LISTEN: not an address: {listen}");
        return 1;
    };
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("runtime: {e}");
            return 1;
        }
    };
    rt.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(3))
            .build()
            .expect("HTTP client builds");
        match client.get(format!("http://{addr}/readyz")).send().await {
            Ok(r) if r.status().is_success() => {
                println!("ready");
                0
            }
            Ok(r) => {
                let status = r.status();
                println!("not ready: {status} {}", r.text().await.unwrap_or_default());
                1
            }
            Err(e) => {
                println!("not ready: {e}");
                1
            }
        }
    })
}

fn serve() -> anyhow::Result<()> {
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(errors) => {
            // Every problem, one per line, so one round of fixes is enough.
            let n = errors.iter().count();
            let plural = if n == 1 { "problem" } else { "problems" };
            eprintln!("postern: invalid configuration ({n} {plural}):");
            for e in errors.iter() {
                eprintln!("  {e}");
            }
            eprintln!("(`postern doctor` checks a configuration without starting)");
            std::process::exit(2);
        }
    };
    init_logs(config.log_format);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(async move {
        let listeners = postern::Listeners::bind(&config).await?;
        let shutdown = CancellationToken::new();
        tokio::spawn(signal_shutdown(shutdown.clone()));
        postern::run(config, listeners, shutdown).await?;
        Ok(())
    })
}

async fn signal_shutdown(token: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    token.cancel();
}

fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only for a person at a terminal: escape codes in a log file
    // or a collector are noise (https://no-color.org).
    use std::io::IsTerminal;
    let ansi = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .init(),
        LogFormat::Text => builder.init(),
    }
}
