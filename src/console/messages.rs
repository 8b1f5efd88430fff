//! The messages: the list (search, filters, badges, cursor paging, live
//! rows over Server-Sent Events) and one message (envelope, TLS and
//! authentication facts, headers, text, the HTML preview, raw source,
//! attachments, each delivery with its attempts as a timeline).
//!
//! Live rows: `/ui/events` polls the store about once a second for
//! messages newer than the newest one shown, so it works the same across
//! replicas sharing a store, and sends each as a rendered (escaped) row.

use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use maud::{Markup, html};
use serde::Deserialize;

use super::Console;
use super::dead::unavailable;
use super::layout::{page, time_tag};
use super::session::{LoggedIn, Session};
use crate::mail::{MessageJson, PayloadOptions, parse_message};
use crate::spool::{
    self, AttemptResult, DeliveryDetail, Direction, MessageDetail, MessageQuery, MessageStatus,
    MessageSummary,
};

/// Messages per page.
const PAGE_SIZE: usize = 50;
/// How often the live list asks the store for newer messages.
const POLL: Duration = Duration::from_secs(1);

pub(super) fn routes() -> Router<Console> {
    Router::new()
        .route("/ui/messages", get(list))
        .route("/ui/messages/{id}", get(show))
        .route("/ui/messages/{id}/raw", get(super::parts::raw))
        .route("/ui/messages/{id}/preview", get(super::parts::preview))
        .route(
            "/ui/messages/{id}/attachments/{n}",
            get(super::parts::attachment),
        )
        .route("/ui/messages/{id}/cid/{cid}", get(super::parts::cid))
        .route(
            "/ui/messages/{id}/inline/{token}/{cid}",
            get(super::parts::inline_image),
        )
        .route("/ui/events", get(events))
}

/// The list's filters, as the form sends them (empty fields are unset).
#[derive(Debug, Default, Deserialize, Clone)]
pub struct Filters {
    #[serde(default)]
    q: String,
    #[serde(default)]
    direction: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    address: String,
    /// `YYYY-MM-DDTHH:MM` (a datetime-local field), UTC.
    #[serde(default)]
    since: String,
    #[serde(default)]
    until: String,
    #[serde(default)]
    cursor: String,
    /// The newest id shown (live updates only).
    #[serde(default)]
    after: String,
}

/// Unix ms of a `datetime-local` value read as UTC.
fn form_time_ms(v: &str) -> Option<u64> {
    let v = v.trim();
    if v.is_empty() {
        return None;
    }
    let with_secs = if v.len() == 16 {
        format!("{v}:00Z")
    } else {
        format!("{v}Z")
    };
    super::layout::parse_ms(&with_secs)
}

fn non_empty(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_string())
}

impl Filters {
    /// The store query these filters mean (unknown values ignored).
    fn query(&self, limit: usize) -> MessageQuery {
        MessageQuery {
            direction: Direction::parse(&self.direction),
            status: MessageStatus::parse(&self.status),
            address: non_empty(&self.address),
            text: non_empty(&self.q),
            since_ms: form_time_ms(&self.since),
            until_ms: form_time_ms(&self.until),
            cursor: non_empty(&self.cursor),
            limit,
        }
    }

    /// The filters as a query string (without the cursor), for the next
    /// page's link and the live stream.
    fn query_string(&self) -> String {
        let pairs = [
            ("q", &self.q),
            ("direction", &self.direction),
            ("status", &self.status),
            ("address", &self.address),
            ("since", &self.since),
            ("until", &self.until),
        ];
        url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs.iter().filter(|(_, v)| !v.is_empty()))
            .finish()
    }
}

pub fn status_badge(s: MessageStatus) -> Markup {
    html! { span class={ "badge " (s.as_str()) } { (s.as_str()) } }
}

fn size_text(bytes: u64) -> String {
    match bytes {
        0..1024 => format!("{bytes} B"),
        1024..1_048_576 => format!("{:.1} KB", bytes as f64 / 1024.0),
        _ => format!("{:.1} MB", bytes as f64 / 1_048_576.0),
    }
}

/// One row of the list (also what a live update sends).
fn row(m: &MessageSummary, now: u64) -> Markup {
    html! {
        tr id={ "m-" (m.id) } {
            td { (time_tag(&m.received_at, now)) }
            td.hide-narrow { span class={ "badge " (m.direction.as_str()) } { (m.direction.as_str()) } }
            td.hide-narrow { (m.mail_from) }
            td { (m.rcpt_to.join(", ")) }
            td.subject { a href={ "/ui/messages/" (m.id) } { (m.subject.as_deref().unwrap_or("(no subject)")) } }
            td.num.hide-narrow { (size_text(m.size)) }
            td { (status_badge(m.status)) }
        }
    }
}

fn select(name: &str, label: &str, current: &str, options: &[&str]) -> Markup {
    html! {
        div {
            label for=(name) { (label) }
            select id=(name) name=(name) {
                option value="" selected[current.is_empty()] { "any" }
                @for o in options {
                    option value=(o) selected[current == *o] { (o) }
                }
            }
        }
    }
}

fn filter_form(f: &Filters) -> Markup {
    html! {
        form.filters method="get" action="/ui/messages" role="search" {
            div.grow {
                label for="q" { "Subject contains" }
                input id="q" name="q" type="search" value=(f.q);
            }
            div.grow {
                label for="address" { "Address (sender or recipient)" }
                input id="address" name="address" type="text" value=(f.address);
            }
            (select("direction", "Direction", &f.direction, &["inbound", "outbound"]))
            (select("status", "Status", &f.status, &["pending", "delivered", "dead", "partial"]))
            div {
                label for="since" { "Since (UTC)" }
                input id="since" name="since" type="datetime-local" value=(f.since);
            }
            div {
                label for="until" { "Until (UTC)" }
                input id="until" name="until" type="datetime-local" value=(f.until);
            }
            button type="submit" { "Search" }
            a.button href="/ui/messages" { "Clear" }
        }
    }
}

/// `GET /ui/messages`.
async fn list(State(st): State<Console>, login: LoggedIn, Query(f): Query<Filters>) -> Response {
    let found = match st.store.list_messages(&f.query(PAGE_SIZE)).await {
        Ok(p) => p,
        Err(e) => return unavailable(e),
    };
    let now = spool::now_ms();
    let first_page = f.cursor.trim().is_empty();
    let newest = found.items.first().map_or("", |m| m.id.as_str());
    let filters = f.query_string();
    let events = format!(
        "/ui/events?{}{}after={newest}",
        filters,
        if filters.is_empty() { "" } else { "&" }
    );
    page(
        "Messages",
        Some(&login.session),
        html! {
            (filter_form(&f))
            @if first_page { p.live id="live-status" aria-live="polite" { "Live updates need JavaScript; reload for new messages." } }
            div.table-wrap {
                table.messages {
                    caption { "Messages, newest first" }
                    thead { tr {
                        th scope="col" { "Received" } th.hide-narrow scope="col" { "Direction" }
                        th.hide-narrow scope="col" { "From" } th scope="col" { "To" }
                        th scope="col" { "Subject" } th.hide-narrow scope="col" { "Size" }
                        th scope="col" { "Status" }
                    } }
                    @if first_page {
                        tbody data-events=(events) { @for m in &found.items { (row(m, now)) } }
                    } @else {
                        tbody { @for m in &found.items { (row(m, now)) } }
                    }
                }
            }
            @if found.items.is_empty() { p.empty id="no-messages" { "No messages match." } }
            @if let Some(c) = &found.next_cursor {
                nav.pager aria-label="Pages" {
                    a href={ "/ui/messages?" (filters) (if filters.is_empty() { "" } else { "&" }) "cursor=" (c) } { "Older messages →" }
                }
            }
        },
    )
    .into_response()
}

/// `GET /ui/events`: rows for messages newer than `after`, as they come.
async fn events(State(st): State<Console>, _: LoggedIn, Query(f): Query<Filters>) -> Response {
    let state = (st, f);
    let stream = futures_util::stream::unfold(state, |(st, mut f)| async move {
        loop {
            if st.shutdown.is_cancelled() {
                return None;
            }
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                _ = st.shutdown.cancelled() => return None,
            }
            let mut q = f.query(20);
            q.cursor = None;
            let Ok(found) = st.store.list_messages(&q).await else {
                continue;
            };
            // Ids are UUID v7 in hex: newer sorts higher.
            let mut newer: Vec<MessageSummary> = found
                .items
                .into_iter()
                .filter(|m| m.id.as_str() > f.after.as_str())
                .collect();
            if newer.is_empty() {
                continue;
            }
            newer.reverse();
            f.after = newer.last().map(|m| m.id.clone()).unwrap_or_default();
            let now = spool::now_ms();
            let events: Vec<Result<Event, Infallible>> = newer
                .iter()
                .map(|m| {
                    let data = serde_json::json!({"id": m.id, "html": row(m, now).into_string()});
                    Ok(Event::default().event("row").data(data.to_string()))
                })
                .collect();
            return Some((futures_util::stream::iter(events), (st, f)));
        }
    });
    use futures_util::StreamExt as _;
    Sse::new(stream.flatten())
        .keep_alive(KeepAlive::default())
        .into_response()
}

fn not_found(session: &Session) -> Response {
    super::dead::missing(session, "No message with this id.")
}

/// The message's parsed form, without attachment contents.
pub fn parsed(raw: &[u8]) -> MessageJson {
    parse_message(
        raw,
        &PayloadOptions {
            max_attachment_inline: Some(0),
            ..PayloadOptions::default()
        },
    )
}

fn outcome_class(a: Option<AttemptResult>) -> &'static str {
    match a {
        Some(AttemptResult::Delivered) => "delivered",
        Some(AttemptResult::Retry) => "retry",
        Some(AttemptResult::Dead) => "dead",
        None => "",
    }
}

fn delivery_section(d: &DeliveryDetail, csrf: &str, now: u64) -> Markup {
    let state = super::dead::state_word(d.state.state);
    html! {
        section.delivery aria-labelledby={ "d-" (d.id) } {
            h3 id={ "d-" (d.id) } {
                code { (d.id) } " · " (d.kind.as_str()) " · "
                span class={ "badge " (state) } { (state) }
            }
            dl.facts {
                dt { "Target" } dd { (d.target) }
                dt { "Attempts" } dd { (d.state.attempts) }
                @if d.state.state == spool::State::Pending && d.state.next_at > 0 {
                    dt { "Next attempt" } dd { (time_tag(&super::dead::rfc3339(d.state.next_at), now)) }
                }
                @if let Some(e) = &d.state.last_error { dt { "Last error" } dd.error { (e) } }
                @for r in &d.state.recipients {
                    dt { (r.address) } dd { (format!("{:?}", r.status).to_lowercase()) @if let Some(reply) = &r.reply { " — " (reply) } }
                }
            }
            @if d.state.state == spool::State::Dead {
                form method="post" action={ "/ui/deliveries/" (d.id) "/retry" } {
                    input type="hidden" name="csrf" value=(csrf);
                    button type="submit" { "Retry" }
                    " "
                    a.button.danger href={ "/ui/deliveries/" (d.id) "/delete" } { "Delete" }
                }
            }
            @if d.state.history.is_empty() {
                p.muted { "No attempt yet." }
            } @else {
                ol.timeline aria-label="Attempts, oldest first" {
                    @for a in &d.state.history {
                        li class=(outcome_class(a.outcome)) {
                            (time_tag(&a.at, now)) " · "
                            strong { (a.outcome.map_or("attempt", |o| match o {
                                AttemptResult::Delivered => "delivered",
                                AttemptResult::Retry => "will retry",
                                AttemptResult::Dead => "dead",
                            })) }
                            @if let Some(s) = a.status { " · HTTP " (s) }
                            @if let Some(ms) = a.duration_ms { " · " (ms) " ms" }
                            @if let Some(t) = &a.target { br; small.url { (t) } }
                            @for r in &a.replies { br; small { (r) } }
                            @if let Some(e) = &a.error { br; span.error { (e) } }
                        }
                    }
                }
            }
        }
    }
}

#[derive(Deserialize)]
pub struct ShowQuery {
    remote: Option<String>,
}

/// `GET /ui/messages/{id}`.
async fn show(
    State(st): State<Console>,
    login: LoggedIn,
    Path(id): Path<String>,
    Query(q): Query<ShowQuery>,
) -> Response {
    let detail = match st.store.message_detail(&id).await {
        Ok(Some(d)) => d,
        Ok(None) => return not_found(&login.session),
        Err(e) => return unavailable(e),
    };
    let raw = match st.store.read_message(&id).await {
        Ok(r) => r,
        Err(e) => return unavailable(e),
    };
    let mail = parsed(&raw);
    let remote = q.remote.as_deref() == Some("1");
    detail_page(&login.session, &detail, &mail, raw.len(), remote).into_response()
}

fn detail_page(
    session: &Session,
    detail: &MessageDetail,
    mail: &MessageJson,
    raw_len: usize,
    remote: bool,
) -> Markup {
    let now = spool::now_ms();
    let m = &detail.summary;
    let env = &detail.envelope;
    let id = &m.id;
    let preview = format!("/ui/messages/{id}/preview");
    let title = m
        .subject
        .clone()
        .unwrap_or_else(|| "(no subject)".to_string());
    page(
        &title,
        Some(session),
        html! {
            p { (status_badge(m.status)) " " span class={ "badge " (m.direction.as_str()) } { (m.direction.as_str()) } }
            h2 { "Envelope" }
            dl.facts {
                dt { "Id" } dd { code { (id) } }
                dt { "Received" } dd { (time_tag(&m.received_at, now)) }
                dt { "Mail from" } dd { (env.mail_from) }
                dt { "Recipients" } dd { (env.rcpt_to.join(", ")) }
                dt { "Size" } dd { (size_text(m.size)) }
                dt { "HELO" } dd { (env.helo) }
                dt { "Client IP" } dd { (env.remote_ip) }
                dt { "TLS" } dd { @match &env.tls { Some(t) => { (t.version) " · " (t.cipher) }, None => { "none" } } }
                dt { "Authenticated as" } dd { (env.authenticated_user.as_deref().unwrap_or("—")) }
                @if let Some(o) = &env.outbound {
                    dt { "Message-ID" } dd { (o.message_id) }
                    @if !o.tags.is_empty() { dt { "Tags" } dd { (o.tags.join(", ")) } }
                }
            }
            @if let Some(auth) = &detail.auth {
                h2 { "Authentication (SPF, DKIM, DMARC, ARC)" }
                pre.auth { (serde_json::to_string_pretty(auth).unwrap_or_default()) }
            }
            h2 { "Headers" }
            details {
                summary { (mail.headers.len()) " headers" }
                div.table-wrap { table { tbody {
                    @for h in &mail.headers { tr { th scope="row" { (h.name) } td { (h.value) } } }
                } } }
            }
            h2 { "Text" }
            @match &mail.text {
                Some(t) => pre.text { (t) },
                None => p.muted { "No text part." },
            }
            h2 id="preview" { "HTML preview" }
            @if mail.html.is_some() {
                p.hint {
                    "Shown in a sandbox: no scripts, no forms, nothing from other hosts. "
                    @if remote { "Remote images are loaded." } @else {
                        a data-remote-images={ (preview) "?remote=1" } href={ "/ui/messages/" (id) "?remote=1#preview" } { "Load remote images" }
                    }
                }
                iframe.preview sandbox="" title="HTML preview of the message"
                    src={ (preview) @if remote { "?remote=1" } } {}
            } @else {
                p.muted { "No HTML part." }
            }
            h2 { "Attachments" }
            @if mail.attachments.is_empty() { p.muted { "None." } } @else {
                ul { @for (n, a) in mail.attachments.iter().enumerate() {
                    li {
                        a href={ "/ui/messages/" (id) "/attachments/" (n) } download {
                            (a.filename.as_deref().unwrap_or("(unnamed)"))
                        }
                        " · " (a.content_type) " · " (size_text(a.size as u64)) " · " (a.disposition)
                    }
                } }
            }
            h2 { "Raw source" }
            p { a href={ "/ui/messages/" (id) "/raw" } { "View the raw message (" (size_text(raw_len as u64)) ")" } }
            h2 { "Deliveries" }
            @for d in &detail.deliveries { (delivery_section(d, &session.csrf, now)) }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_times_are_utc() {
        assert_eq!(form_time_ms("2023-11-14T22:13"), Some(1_699_999_980_000));
        assert_eq!(form_time_ms("2023-11-14T22:13:20"), Some(1_700_000_000_000));
        assert_eq!(form_time_ms(""), None);
        assert_eq!(form_time_ms("yesterday"), None);
    }

    #[test]
    fn filters_become_a_query_and_back() {
        let f = Filters {
            q: " hello ".into(),
            direction: "inbound".into(),
            status: "bogus".into(),
            address: "".into(),
            cursor: "abc".into(),
            ..Filters::default()
        };
        let q = f.query(10);
        assert_eq!(q.text.as_deref(), Some("hello"));
        assert_eq!(q.direction, Some(Direction::Inbound));
        assert_eq!(q.status, None);
        assert_eq!(q.address, None);
        assert_eq!(q.cursor.as_deref(), Some("abc"));
        assert_eq!(f.query_string(), "q=+hello+&direction=inbound&status=bogus");
    }

    #[test]
    fn sizes() {
        assert_eq!(size_text(10), "10 B");
        assert_eq!(size_text(2048), "2.0 KB");
        assert_eq!(size_text(3 * 1_048_576), "3.0 MB");
    }
}
