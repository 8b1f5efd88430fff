//! The README's sending examples work as pasted: every `curl … -d '{…}'`
//! to `/v1/messages` is posted, unchanged, to a development instance.

use crate::helpers::*;

/// The single-quoted `-d` bodies of the README's `curl` calls to
/// `/v1/messages`.
fn readme_bodies() -> Vec<String> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let mut out = Vec::new();
    let mut rest = readme.as_str();
    while let Some(at) = rest.find("curl -s http://127.0.0.1:8080/v1/messages ") {
        rest = &rest[at..];
        let end = rest.find("\n```").unwrap_or(rest.len());
        let command = &rest[..end];
        if let Some(d) = command.find("-d '") {
            let body = &command[d + 4..];
            let close = body.find('\'').expect("closing quote");
            out.push(body[..close].to_string());
        }
        rest = &rest[end..];
    }
    out
}

#[tokio::test]
async fn sending_examples_in_the_readme_are_accepted() {
    let bodies = readme_bodies();
    assert!(bodies.len() >= 2, "found {} examples", bodies.len());
    let app = spawn_app(&[]).await;
    let client = reqwest::Client::new();
    for body in bodies {
        assert!(!body.contains('…'), "placeholder in the example: {body}");
        let r = client
            .post(format!("http://{}/v1/messages", app.http))
            .bearer_auth("dev")
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        let status = r.status();
        let text = r.text().await.unwrap();
        assert_eq!(status, 202, "{text}\nfor {body}");
    }
    app.stop().await;
}
