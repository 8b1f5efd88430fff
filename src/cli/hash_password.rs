//! `postern hash-password`: prints the argon2id hash of a password for
//! `POSTERN_SMTP_USERS` (`user:<hash>`).

use std::process::ExitCode;

use anyhow::Context;

/// Reads the password from stdin (one line), never from the command line,
/// where it would land in shell history and `ps`.
pub fn run() -> anyhow::Result<ExitCode> {
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
    Ok(ExitCode::SUCCESS)
}
