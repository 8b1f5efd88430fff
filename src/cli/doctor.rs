//! `postern doctor`: runs [`postern::doctor`]'s checks on the process
//! environment and turns the verdict into the exit code.

use std::process::ExitCode;

/// Prints the transcript to stdout; 0 when every check passed or was
/// skipped, 1 when something failed.
pub fn run() -> ExitCode {
    // Non-UTF-8 variables are skipped rather than panicking; Postern only
    // reads POSTERN_* ones, which the config check then reports on.
    let vars: Vec<(String, String)> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    super::block_on(async {
        let mut stdout = std::io::stdout();
        if postern::doctor::run(vars, &mut stdout).await {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    })
}
