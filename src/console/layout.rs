//! The page frame (landmarks, navigation, the log-out form) and the small
//! formatting helpers the pages share.

use maud::{DOCTYPE, Markup, html};

use super::session::Session;

/// A whole page. `session`: the logged-in browser's, for the navigation
/// and the log-out form's token; `None` on the log-in and error pages.
pub fn page(title: &str, session: Option<&Session>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Postern" }
                link rel="stylesheet" href="/ui/static/console.css";
                script src="/ui/static/console.js" defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/ui/" { "Postern" }
                    @if let Some(s) = session {
                        nav aria-label="Main" {
                            ul {
                                li { a href="/ui/messages" { "Messages" } }
                                li { a href="/ui/dead" { "Dead letters" } }
                            }
                        }
                        form.logout method="post" action="/ui/logout" {
                            input type="hidden" name="csrf" value=(s.csrf);
                            span.who { (s.who) }
                            button type="submit" { "Log out" }
                        }
                    }
                }
                main id="main" tabindex="-1" {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// A page body that only says something.
pub fn notice_body(text: &str) -> Markup {
    html! { p.notice role="alert" { (text) } }
}

/// Milliseconds since the Unix epoch of an RFC 3339 time.
pub fn parse_ms(rfc3339: &str) -> Option<u64> {
    let t = time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .ok()?;
    u64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

/// "3 min ago" (or "in 3 min" for a time ahead of `now_ms`).
pub fn ago(now_ms: u64, then_ms: u64) -> String {
    let (secs, future) = if then_ms > now_ms {
        ((then_ms - now_ms) / 1000, true)
    } else {
        ((now_ms - then_ms) / 1000, false)
    };
    let span = match secs {
        0..10 => return "just now".to_string(),
        10..60 => format!("{secs} s"),
        60..3600 => format!("{} min", secs / 60),
        3600..86_400 => format!("{} h", secs / 3600),
        _ => format!("{} d", secs / 86_400),
    };
    if future {
        format!("in {span}")
    } else {
        format!("{span} ago")
    }
}

/// A `<time>` with the exact time as its `datetime` and tooltip and the
/// relative one as its text.
pub fn time_tag(rfc3339: &str, now_ms: u64) -> Markup {
    let relative = parse_ms(rfc3339).map_or_else(|| rfc3339.to_string(), |ms| ago(now_ms, ms));
    html! { time datetime=(rfc3339) title=(rfc3339) { (relative) } }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_times() {
        let now = 1_700_000_000_000;
        let cases: &[(u64, &str)] = &[
            (now, "just now"),
            (now - 9_999, "just now"),
            (now - 10_000, "10 s ago"),
            (now - 59_999, "59 s ago"),
            (now - 60_000, "1 min ago"),
            (now - 3 * 60_000 - 5, "3 min ago"),
            (now - 3_600_000, "1 h ago"),
            (now - 86_400_000 * 2, "2 d ago"),
            (now + 120_000, "in 2 min"),
        ];
        for (then, want) in cases {
            assert_eq!(ago(now, *then), *want, "{then}");
        }
    }

    #[test]
    fn time_tags_carry_the_exact_time() {
        let t = "2023-11-14T22:13:20Z";
        assert_eq!(parse_ms(t), Some(1_700_000_000_000));
        let html = time_tag(t, 1_700_000_180_000).into_string();
        assert_eq!(
            html,
            r#"<time datetime="2023-11-14T22:13:20Z" title="2023-11-14T22:13:20Z">3 min ago</time>"#
        );
        assert!(time_tag("garbage", 0).into_string().contains(">garbage<"));
    }

    #[test]
    fn pages_escape_what_they_show() {
        let html = page("<b>x</b>", None, notice_body("<script>")).into_string();
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;b&gt;x&lt;/b&gt;"), "{html}");
        assert!(html.contains("<main id=\"main\""), "{html}");
    }
}
