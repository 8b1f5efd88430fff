//! The dead letters: deliveries that ran out of attempts, with **Retry**
//! (pending again, to the worker at once) and **Delete** (after a
//! confirmation page, so it works without JavaScript). The same store calls
//! as `/v1/deliveries` (`api/deliveries.rs`).

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use maud::{Markup, html};
use serde::Deserialize;
use tracing::info;

use super::Console;
use super::guard::check_post;
use super::layout::{notice_body, page, time_tag};
use super::login::TokenForm;
use super::session::{LoggedIn, Session};
use crate::spool::{self, Change, DeliveryInfo, JobKey};

/// Dead deliveries per page.
const PAGE_SIZE: usize = 50;

pub(super) fn routes() -> Router<Console> {
    Router::new()
        .route("/ui/dead", get(list))
        .route("/ui/deliveries/{id}/retry", post(retry))
        .route(
            "/ui/deliveries/{id}/delete",
            get(confirm_delete).post(delete),
        )
}

/// `GET /ui/`: where the console opens.
pub async fn home(_: LoggedIn) -> Redirect {
    Redirect::to("/ui/messages")
}

/// A delivery state as the API names it.
pub fn state_word(s: spool::State) -> &'static str {
    crate::api::deliveries::state_name(s)
}

/// RFC 3339 of Unix milliseconds.
pub fn rfc3339(ms: u64) -> String {
    crate::api::deliveries::rfc3339_ms(ms)
}

#[derive(Deserialize)]
pub struct ListQuery {
    cursor: Option<String>,
    /// What the last action did, shown once.
    done: Option<String>,
}

/// A URL for display: without userinfo, which may hold a password.
pub fn display_url(u: &str) -> String {
    match url::Url::parse(u) {
        Ok(mut parsed) => {
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.to_string()
        }
        Err(_) => u.to_string(),
    }
}

pub(super) fn unavailable(e: spool::Error) -> Response {
    tracing::error!(error = %e, "console: store unavailable");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        page(
            "Unavailable",
            None,
            notice_body("The store is unavailable right now; try again shortly."),
        ),
    )
        .into_response()
}

/// `404` with what was not found.
pub(super) fn missing(session: &Session, what: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        page("Not found", Some(session), notice_body(what)),
    )
        .into_response()
}

fn not_found(session: &Session) -> Response {
    missing(
        session,
        "No dead delivery with this id (it may have been retried or deleted).",
    )
}

fn row(d: &DeliveryInfo, csrf: &str, now: u64) -> Markup {
    let id = spool::delivery_id(&d.key);
    html! {
        tr {
            td { a href={ "/ui/messages/" (d.key.id) } { code { (id) } } }
            td { (time_tag(&d.received_at, now)) }
            td {
                (d.delivery.target.route())
                @if let Some(u) = d.delivery.target.url() { br; small.url { (display_url(u)) } }
            }
            td { (d.delivery.rcpt_to.join(", ")) }
            td.num { (d.state.attempts) }
            td.error { (d.state.last_error.as_deref().unwrap_or("")) }
            td.actions {
                form method="post" action={ "/ui/deliveries/" (id) "/retry" } {
                    input type="hidden" name="csrf" value=(csrf);
                    button type="submit" aria-label={ "Retry " (id) } { "Retry" }
                }
                a.button.danger href={ "/ui/deliveries/" (id) "/delete" } aria-label={ "Delete " (id) } { "Delete" }
            }
        }
    }
}

/// `GET /ui/dead`.
async fn list(State(st): State<Console>, login: LoggedIn, Query(q): Query<ListQuery>) -> Response {
    let after = q.cursor.as_deref().and_then(spool::parse_delivery_id);
    let (items, more) = match st
        .store
        .list_deliveries(vec![spool::State::Dead], after, PAGE_SIZE)
        .await
    {
        Ok(found) => found,
        Err(e) => return unavailable(e),
    };
    let now = spool::now_ms();
    let csrf = &login.session.csrf;
    let notice = match q.done.as_deref() {
        Some("retried") => Some("Retried: the delivery is pending again and goes out now."),
        Some("deleted") => Some("Deleted."),
        _ => None,
    };
    let next = if more {
        items.last().map(|d| spool::delivery_id(&d.key))
    } else {
        None
    };
    page(
        "Dead letters",
        Some(&login.session),
        html! {
            @if let Some(n) = notice { p.notice role="status" { (n) } }
            @if items.is_empty() {
                p.empty { "No dead deliveries." }
            } @else {
                div.table-wrap {
                    table.dead {
                        caption { "Deliveries that ran out of attempts, oldest message first" }
                        thead { tr {
                            th scope="col" { "Delivery" } th scope="col" { "Received" }
                            th scope="col" { "Route" } th scope="col" { "Recipients" }
                            th scope="col" { "Attempts" } th scope="col" { "Last error" }
                            th scope="col" { span.visually-hidden { "Actions" } }
                        } }
                        tbody { @for d in &items { (row(d, csrf, now)) } }
                    }
                }
            }
            @if let Some(c) = next {
                nav.pager aria-label="Pages" { a href={ "/ui/dead?cursor=" (c) } { "Next page →" } }
            }
        },
    )
    .into_response()
}

/// What both actions check before touching a delivery: the form's CSRF
/// token and origin, then the id from the path. The refusal is boxed: a
/// `Response` is too large to be an `Err` by value.
fn action_key(
    st: &Console,
    session: &Session,
    headers: &HeaderMap,
    form: &TokenForm,
    id: &str,
) -> Result<JobKey, Box<Response>> {
    check_post(st, session, headers, &form.csrf)
        .map_err(|refused| Box::new(refused.into_response()))?;
    spool::parse_delivery_id(id).ok_or_else(|| Box::new(not_found(session)))
}

/// `POST /ui/deliveries/{id}/retry`.
async fn retry(
    State(st): State<Console>,
    login: LoggedIn,
    Path(id): Path<String>,
    headers: HeaderMap,
    Form(f): Form<TokenForm>,
) -> Response {
    let key = match action_key(&st, &login.session, &headers, &f, &id) {
        Ok(key) => key,
        Err(refused) => return *refused,
    };
    match st.store.retry_dead(&key).await {
        Err(e) => unavailable(e),
        Ok(Change::Done { .. }) => {
            st.store.schedule_fresh(key.clone(), spool::now_ms());
            info!(message_id = %key.id, delivery = key.index, who = %login.session.who, "dead delivery retried from the console");
            Redirect::to("/ui/dead?done=retried").into_response()
        }
        Ok(_) => not_found(&login.session),
    }
}

/// `GET /ui/deliveries/{id}/delete`: the confirmation.
async fn confirm_delete(
    State(st): State<Console>,
    login: LoggedIn,
    Path(id): Path<String>,
) -> Response {
    let info = match spool::parse_delivery_id(&id) {
        Some(key) => st.store.delivery_info(&key).await,
        None => Ok(None),
    };
    let info = match info {
        Err(e) => return unavailable(e),
        Ok(Some(i)) if i.state.state == spool::State::Dead => i,
        Ok(_) => return not_found(&login.session),
    };
    page(
        "Delete this delivery?",
        Some(&login.session),
        html! {
            p { "Delivery " code { (id) } " of the message received " (time_tag(&info.received_at, spool::now_ms()))
                " to " (info.delivery.rcpt_to.join(", ")) " (route " (info.delivery.target.route()) ") will never be attempted again. "
                "When it is the message's last delivery, the message is gone." }
            form.confirm method="post" action={ "/ui/deliveries/" (id) "/delete" } {
                input type="hidden" name="csrf" value=(login.session.csrf);
                button.danger type="submit" { "Delete" }
                a.button href="/ui/dead" { "Cancel" }
            }
        },
    )
    .into_response()
}

/// `POST /ui/deliveries/{id}/delete`.
async fn delete(
    State(st): State<Console>,
    login: LoggedIn,
    Path(id): Path<String>,
    headers: HeaderMap,
    Form(f): Form<TokenForm>,
) -> Response {
    let key = match action_key(&st, &login.session, &headers, &f, &id) {
        Ok(key) => key,
        Err(refused) => return *refused,
    };
    match st.store.discard(&key, &[spool::State::Dead]).await {
        Err(e) => unavailable(e),
        Ok(Change::Done { message_removed }) => {
            info!(message_id = %key.id, delivery = key.index, message_removed, who = %login.session.who,
                reason = "deleted from the console", "delivery deleted");
            Redirect::to("/ui/dead?done=deleted").into_response()
        }
        Ok(_) => not_found(&login.session),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_shown_without_userinfo() {
        assert_eq!(
            display_url("https://u:p@hook.example/x?y=1"),
            "https://hook.example/x?y=1"
        );
        assert_eq!(display_url("not a url"), "not a url");
    }
}
