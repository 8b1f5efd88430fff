//! `postern serve`: loads the configuration (printing every problem at
//! once), sets up logs and the runtime, binds the listeners and runs the
//! server until SIGTERM or Ctrl-C.

use std::process::ExitCode;

use anyhow::Context;
use postern::config::{Config, ConfigErrors, LogFormat};
use tokio_util::sync::CancellationToken;

pub fn run() -> anyhow::Result<ExitCode> {
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(errors) => {
            eprint!("{}", config_problems(&errors));
            return Ok(ExitCode::from(2));
        }
    };
    init_logs(config.log_format);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(async move {
        let listeners = postern::app::Listeners::bind(&config).await?;
        let shutdown = CancellationToken::new();
        tokio::spawn(signal_shutdown(shutdown.clone()));
        postern::app::run(config, listeners, shutdown).await?;
        Ok(ExitCode::SUCCESS)
    })
}

/// Every problem, one per line, so one round of fixes is enough.
fn config_problems(errors: &ConfigErrors) -> String {
    let n = errors.iter().count();
    let plural = if n == 1 { "problem" } else { "problems" };
    let mut text = format!("postern: invalid configuration ({n} {plural}):\n");
    for e in errors.iter() {
        text.push_str(&format!("  {e}\n"));
    }
    text.push_str("(`postern doctor` checks a configuration without starting)\n");
    text
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_problems_are_counted_and_listed_one_per_line() {
        let one = Config::from_vars([("POSTERN_FSYNC", "maybe")]).unwrap_err();
        assert_eq!(
            config_problems(&one),
            "postern: invalid configuration (1 problem):\n  POSTERN_FSYNC: must be true or false\n\
             (`postern doctor` checks a configuration without starting)\n"
        );
        let two = Config::from_vars([("POSTERN_FSYNC", "maybe"), ("POSTERN_LOG_FORMAT", "xml")])
            .unwrap_err();
        let text = config_problems(&two);
        assert!(
            text.starts_with("postern: invalid configuration (2 problems):\n"),
            "{text}"
        );
        assert_eq!(text.lines().filter(|l| l.starts_with("  ")).count(), 2);
    }
}
