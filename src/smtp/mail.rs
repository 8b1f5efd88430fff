//! MAIL FROM (RFC 5321 4.1.1.2): opens a transaction once the session may
//! send (greeted, TLS and AUTH as the policy requires) and the sender's
//! address and declared size are acceptable.

use std::borrow::Cow;

use smtp_proto::MailFrom;
use tokio::io::{AsyncRead, AsyncWrite};

use super::AuthMode;
use super::address;
use super::reply;
use super::session::{Next, Session};

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    pub(super) fn mail(&mut self, from: MailFrom<Cow<'_, str>>) -> Next {
        if self.helo.is_none() {
            return self.error(reply::NEED_HELO);
        }
        if self.tx.mail_from.is_some() {
            return self.error(reply::NESTED_MAIL);
        }
        let sec = &self.inbound.settings.security;
        if sec.require_tls && self.tls.is_none() {
            return self.error(reply::MUST_STARTTLS);
        }
        if sec.auth == AuthMode::Required && self.auth_user.is_none() {
            return self.error(reply::AUTH_REQUIRED);
        }
        if from.size as u64 > self.inbound.settings.limits.max_message_size {
            self.reply(reply::TOO_BIG);
            return Next::Continue;
        }
        let Ok(mail_from) = address::canonical(&from.address) else {
            return self.error(reply::BAD_SENDER);
        };
        self.tx.smtputf8 = from.flags & smtp_proto::MAIL_SMTPUTF8 != 0;
        // smtp-proto gives 0 for "no SIZE=" (and SIZE=0 says nothing either).
        self.tx.size = (from.size > 0).then_some(from.size as u64);
        self.tx.mail_from = Some(mail_from.into_owned());
        self.reply(reply::SENDER_OK);
        Next::Continue
    }
}
