//! The command line: which command runs, and the usage text. Each command
//! is a file here; they are the edge of the program, the only place that
//! reads arguments, prints for a person, picks exit codes and uses
//! `anyhow`. Everything they call is in the library (`postern::…`).
//!
//! This module belongs to the binary (`src/main.rs`), not to the library,
//! so the library cannot depend on it.

mod deliveries;
mod doctor;
mod hash_password;
mod healthcheck;
mod serve;

use std::net::SocketAddr;
use std::process::ExitCode;

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

/// The commands, as the first argument names them.
#[derive(Debug, PartialEq, Eq)]
enum Command {
    Serve,
    GenSecret,
    HashPassword,
    Healthcheck,
    Doctor,
    Deliveries,
    Version,
    Help,
    Unknown(String),
}

impl Command {
    /// No argument means `serve`, so a bare `postern` (or a container with
    /// no command) runs the server.
    fn parse(first: Option<&str>) -> Command {
        match first.unwrap_or("serve") {
            "serve" => Command::Serve,
            "gen-secret" => Command::GenSecret,
            "hash-password" => Command::HashPassword,
            "healthcheck" => Command::Healthcheck,
            "doctor" => Command::Doctor,
            "deliveries" => Command::Deliveries,
            "version" | "-V" | "--version" => Command::Version,
            "help" | "-h" | "--help" => Command::Help,
            other => Command::Unknown(other.to_string()),
        }
    }
}

/// Runs the command `args` (without the program name) asks for. An `Err`
/// is printed by `main` and exits with 1.
pub fn main(args: &[String]) -> anyhow::Result<ExitCode> {
    match Command::parse(args.first().map(String::as_str)) {
        Command::Serve => serve::run(),
        Command::GenSecret => {
            println!("{}", postern::model::secret::Secret::generate().to_whsec());
            Ok(ExitCode::SUCCESS)
        }
        Command::HashPassword => hash_password::run(),
        Command::Healthcheck => Ok(healthcheck::run()),
        Command::Doctor => Ok(doctor::run()),
        Command::Deliveries => Ok(deliveries::run(&args[1..])),
        Command::Version => {
            println!("postern {}", env!("CARGO_PKG_VERSION"));
            Ok(ExitCode::SUCCESS)
        }
        Command::Help => {
            println!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Unknown(other) => {
            eprintln!("unknown command {other:?}\n\n{USAGE}");
            Ok(ExitCode::from(2))
        }
    }
}

/// Runs a one-shot command's `task` on a single-thread runtime (they need
/// no more); 1 when the runtime cannot start.
fn block_on(task: impl Future<Output = ExitCode>) -> ExitCode {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(task),
        Err(e) => {
            eprintln!("runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Where the commands that talk to a running server (`healthcheck`,
/// `deliveries`) find it: `POSTERN_HTTP_LISTEN` (the server's default
/// when unset).
fn local_http_addr() -> Result<SocketAddr, String> {
    let listen = std::env::var("POSTERN_HTTP_LISTEN")
        .unwrap_or_else(|_| postern::config::DEFAULT_HTTP_LISTEN.to_string());
    reachable(&listen)
}

/// The address a client on this machine uses for a listen address: a
/// wildcard listener (`0.0.0.0`, `[::]`) is reached on loopback.
fn reachable(listen: &str) -> Result<SocketAddr, String> {
    let mut addr: SocketAddr = listen
        .trim()
        .parse()
        .map_err(|_| format!("POSTERN_HTTP_LISTEN: not an address: {listen}"))?;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands() {
        let cases = [
            (None, Command::Serve),
            (Some("serve"), Command::Serve),
            (Some("gen-secret"), Command::GenSecret),
            (Some("hash-password"), Command::HashPassword),
            (Some("healthcheck"), Command::Healthcheck),
            (Some("doctor"), Command::Doctor),
            (Some("deliveries"), Command::Deliveries),
            (Some("version"), Command::Version),
            (Some("-V"), Command::Version),
            (Some("--version"), Command::Version),
            (Some("help"), Command::Help),
            (Some("-h"), Command::Help),
            (Some("--help"), Command::Help),
            (Some("Serve"), Command::Unknown("Serve".into())),
            (Some(""), Command::Unknown("".into())),
        ];
        for (arg, want) in cases {
            assert_eq!(Command::parse(arg), want, "{arg:?}");
        }
    }

    #[test]
    fn wildcard_listeners_are_reached_on_loopback() {
        let ok = |s: &str| reachable(s).map(|a| a.to_string());
        assert_eq!(ok("0.0.0.0:8080"), Ok("127.0.0.1:8080".into()));
        assert_eq!(ok("[::]:8080"), Ok("[::1]:8080".into()));
        assert_eq!(ok("10.1.2.3:80"), Ok("10.1.2.3:80".into()));
        assert_eq!(ok(" 127.0.0.1:9000\n"), Ok("127.0.0.1:9000".into()));
        assert_eq!(
            ok("localhost:8080"),
            Err("POSTERN_HTTP_LISTEN: not an address: localhost:8080".into())
        );
    }
}
