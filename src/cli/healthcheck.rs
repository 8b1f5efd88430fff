//! `postern healthcheck`: exit 0 when `GET /readyz` on our own HTTP
//! listener answers 200, else 1, for container HEALTHCHECKs (no curl
//! needed in the image).

use std::process::ExitCode;

pub fn run() -> ExitCode {
    let addr = match super::local_http_addr() {
        Ok(addr) => addr,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    super::block_on(async {
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(3))
            .build()
            .expect("HTTP client builds");
        match client.get(format!("http://{addr}/readyz")).send().await {
            Ok(r) if r.status().is_success() => {
                println!("ready");
                ExitCode::SUCCESS
            }
            Ok(r) => {
                let status = r.status();
                println!("not ready: {status} {}", r.text().await.unwrap_or_default());
                ExitCode::FAILURE
            }
            Err(e) => {
                println!("not ready: {e}");
                ExitCode::FAILURE
            }
        }
    })
}
