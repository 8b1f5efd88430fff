//! The `postern` binary: hands the command line to [`cli`], which holds
//! every command; the work itself is in the `postern` library.

#![forbid(unsafe_code)]

mod cli;

fn main() -> anyhow::Result<std::process::ExitCode> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    cli::main(&args)
}
