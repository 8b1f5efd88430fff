//! Which parts of a message are its body text, which are attachments, and
//! which body parts make up the `text` and `html` views.
//!
//! mail-parser classifies parts too, but keeps only what one "text body"
//! and one "html body" need, and its `text_body`/`html_body` lists mix in
//! images and the other alternative. The rules here are small enough to own,
//! and are what README ("Body text") documents:
//!
//! - A leaf part is body text when it is `text/plain` or `text/html` (a
//!   `Content-Type` without a subtype, or none at all outside a digest, is
//!   `text/plain`: RFC 2045 §5.2), and is not an attachment: not
//!   `Content-Disposition: attachment`; not a later part of a
//!   `multipart/related` (those are the root's resources); not a later part
//!   with a `name` but no disposition (how old mailers attach files).
//!   Everything else that is not a multipart container is an attachment;
//!   nested messages are attachments, and their insides stay in them.
//! - A view walks the tree in order. In a `multipart/alternative` it takes
//!   the last alternative that holds its type (RFC 2046 §5.1.4: the last is
//!   the richest), else the last that holds any text; every other multipart
//!   contributes all of its children. Body parts of the other type that the
//!   walk meets are converted, so a plain list footer under an HTML
//!   newsletter is in `html` too. A view with no part of its own type is
//!   null: a message is never given an html body it does not have, or the
//!   other way round.
//!
//! Everything is iterative: the nesting depth is the sender's choice.

use mail_parser::{MessagePart, MimeHeaders, PartType};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TextKind {
    Plain,
    Html,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Text(TextKind),
    Attachment,
    Container,
}

/// The classification of every part of one message, indexed like `parts`.
#[derive(Debug)]
pub(crate) struct Structure {
    pub roles: Vec<Role>,
    /// `multipart/alternative` containers.
    alternative: Vec<bool>,
    /// Children of each container, in order.
    children: Vec<Vec<usize>>,
    /// Which text kinds a part's subtree holds: [plain, html].
    holds: Vec<[bool; 2]>,
    /// Parts not reachable from the root (only after mail-parser's recovery
    /// from broken structure); taken in their order, after the tree.
    orphans: Vec<usize>,
}

impl Structure {
    pub fn of(parts: &[MessagePart<'_>]) -> Structure {
        let n = parts.len();
        let mut roles = vec![Role::Attachment; n];
        let mut alternative = vec![false; n];
        let mut children = vec![Vec::new(); n];
        let mut parent: Vec<Option<usize>> = vec![None; n];
        let mut reached = vec![false; n];
        if n == 0 {
            return Structure {
                roles,
                alternative,
                children,
                holds: Vec::new(),
                orphans: Vec::new(),
            };
        }
        // Top-down: a part's role depends on its parent and its position.
        let mut stack: Vec<(usize, Option<(usize, usize)>)> = vec![(0, None)];
        reached[0] = true;
        while let Some((id, place)) = stack.pop() {
            let context = place.map(|(p, index)| Context {
                related: subtype_is(&parts[p], "related"),
                digest: subtype_is(&parts[p], "digest"),
                index,
            });
            roles[id] = role(&parts[id], context);
            parent[id] = place.map(|(p, _)| p);
            if let PartType::Multipart(ids) = &parts[id].body {
                alternative[id] = subtype_is(&parts[id], "alternative");
                for (index, &child) in ids.iter().enumerate() {
                    let child = child as usize;
                    // Each part once: a malformed tree cannot loop.
                    if child < n && !reached[child] {
                        reached[child] = true;
                        children[id].push(child);
                        stack.push((child, Some((id, index))));
                    }
                }
            }
        }
        let mut orphans = Vec::new();
        for id in 0..n {
            if !reached[id] {
                roles[id] = role(&parts[id], None);
                orphans.push(id);
            }
        }
        // Bottom-up: mail-parser numbers parts in document order, so every
        // child comes after its parent.
        let mut holds = vec![[false; 2]; n];
        for id in (0..n).rev() {
            match roles[id] {
                Role::Text(TextKind::Plain) => holds[id][0] = true,
                Role::Text(TextKind::Html) => holds[id][1] = true,
                _ => {}
            }
            if let Some(p) = parent[id] {
                holds[p][0] |= holds[id][0];
                holds[p][1] |= holds[id][1];
            }
        }
        Structure {
            roles,
            alternative,
            children,
            holds,
            orphans,
        }
    }

    /// Body text parts, in document order.
    pub fn texts(&self) -> impl Iterator<Item = (usize, TextKind)> + '_ {
        self.roles.iter().enumerate().filter_map(|(id, r)| match r {
            Role::Text(kind) => Some((id, *kind)),
            _ => None,
        })
    }

    pub fn attachments(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.roles.len()).filter(|&id| self.roles[id] == Role::Attachment)
    }

    /// The body parts a reader of `kind` sees, in order; empty when the
    /// message has no part of that kind among them.
    pub fn view(&self, kind: TextKind) -> Vec<(usize, TextKind)> {
        let slot = kind as usize;
        let mut out = Vec::new();
        if self.roles.is_empty() {
            return out;
        }
        let mut stack = vec![0usize];
        while let Some(id) = stack.pop() {
            match self.roles[id] {
                Role::Text(k) => out.push((id, k)),
                Role::Attachment => {}
                Role::Container if self.alternative[id] => {
                    let kids = &self.children[id];
                    let pick = kids
                        .iter()
                        .rev()
                        .find(|&&c| self.holds[c][slot])
                        .or_else(|| kids.iter().rev().find(|&&c| self.holds[c] != [false; 2]));
                    stack.extend(pick);
                }
                Role::Container => stack.extend(self.children[id].iter().rev()),
            }
        }
        out.extend(self.orphans.iter().filter_map(|&id| match self.roles[id] {
            Role::Text(k) => Some((id, k)),
            _ => None,
        }));
        if out.iter().any(|&(_, k)| k == kind) {
            out
        } else {
            Vec::new()
        }
    }
}

struct Context {
    related: bool,
    digest: bool,
    /// Position among the parent's children.
    index: usize,
}

fn subtype_is(part: &MessagePart<'_>, subtype: &str) -> bool {
    part.content_type().is_some_and(|ct| {
        ct.ctype().eq_ignore_ascii_case("multipart")
            && ct
                .subtype()
                .is_some_and(|s| s.eq_ignore_ascii_case(subtype))
    })
}

fn role(part: &MessagePart<'_>, context: Option<Context>) -> Role {
    match part.body {
        PartType::Multipart(_) => return Role::Container,
        PartType::Message(_) => return Role::Attachment,
        _ => {}
    }
    let in_digest = context.as_ref().is_some_and(|c| c.digest);
    let Some(kind) = text_kind(part, in_digest) else {
        return Role::Attachment;
    };
    let later = context.as_ref().is_some_and(|c| c.index > 0);
    let disposition = part.content_disposition();
    let attached = match disposition {
        Some(cd) => cd.is_attachment(),
        None => {
            later
                && part
                    .content_type()
                    .is_some_and(|ct| ct.has_attribute("name"))
        }
    };
    let resource = later && context.as_ref().is_some_and(|c| c.related);
    if attached || resource {
        Role::Attachment
    } else {
        Role::Text(kind)
    }
}

/// text/plain or text/html, by RFC 2045's defaults for what is missing.
fn text_kind(part: &MessagePart<'_>, in_digest: bool) -> Option<TextKind> {
    let Some(ct) = part.content_type() else {
        // RFC 2046 §5.1.5: in a digest the default is message/rfc822; a
        // part mail-parser could not read as one stays an attachment.
        return (!in_digest).then_some(TextKind::Plain);
    };
    let ctype = ct.ctype();
    match ct.subtype() {
        Some(sub) if ctype.eq_ignore_ascii_case("text") => {
            if sub.eq_ignore_ascii_case("plain") {
                Some(TextKind::Plain)
            } else if sub.eq_ignore_ascii_case("html") {
                Some(TextKind::Html)
            } else {
                None
            }
        }
        Some(_) => None,
        // No subtype is invalid syntax, which RFC 2045 §5.2 reads as
        // text/plain ("text" alone being the usual case). A multipart or
        // message without a usable structure stays an attachment.
        None if ctype.eq_ignore_ascii_case("multipart")
            || ctype.eq_ignore_ascii_case("message") =>
        {
            None
        }
        None => Some(TextKind::Plain),
    }
}

/// One view's text: the parts joined, each starting on a new line; parts of
/// the other kind converted.
pub(crate) fn join(kind: TextKind, pieces: &[(TextKind, &str)]) -> String {
    let mut out = String::new();
    for &(k, text) in pieces {
        if !out.is_empty() && !out.ends_with('\n') {
            out.push_str("\r\n");
        }
        match (kind, k) {
            (TextKind::Plain, TextKind::Html) => {
                out.push_str(&mail_parser::decoders::html::html_to_text(text));
            }
            (TextKind::Html, TextKind::Plain) => out.push_str(&plain_to_html(text)),
            _ => out.push_str(text),
        }
    }
    out
}

/// Plain text shown in an HTML view: escaped, its line breaks and spaces
/// kept. C0 controls other than tab and line breaks are dropped: HTML
/// cannot show them, and each would cost six bytes of JSON escape.
fn plain_to_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 48);
    out.push_str("<div style=\"white-space: pre-wrap\">");
    // Runs of bytes that stay as they are are copied whole: every byte
    // that changes is ASCII, so each cut is on a character boundary.
    let mut from = 0;
    for (i, b) in text.bytes().enumerate() {
        let replacement = match b {
            b'&' => "&amp;",
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'\t' | b'\r' | b'\n' => continue,
            0..0x20 => "",
            _ => continue,
        };
        out.push_str(&text[from..i]);
        out.push_str(replacement);
        from = i + 1;
    }
    out.push_str(&text[from..]);
    out.push_str("</div>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_parser::MessageParser;

    fn views(raw: &[u8]) -> (Vec<Role>, Vec<usize>, Vec<usize>) {
        let m = MessageParser::default().parse(raw).unwrap();
        let s = Structure::of(&m.parts);
        let ids = |v: Vec<(usize, TextKind)>| v.into_iter().map(|(id, _)| id).collect();
        (
            s.roles.clone(),
            ids(s.view(TextKind::Plain)),
            ids(s.view(TextKind::Html)),
        )
    }

    #[test]
    fn plain_text_in_an_html_view_is_escaped_with_controls_dropped() {
        let wrap = |s: &str| format!("<div style=\"white-space: pre-wrap\">{s}</div>");
        for (text, want) in [
            ("", ""),
            ("plain", "plain"),
            ("a < b && c > d", "a &lt; b &amp;&amp; c &gt; d"),
            ("<<>>", "&lt;&lt;&gt;&gt;"),
            ("tab\there\r\nnext\n", "tab\there\r\nnext\n"),
            ("bell\u{7}nul\u{0}esc\u{1b}end", "bellnulescend"),
            ("del \u{7f} stays", "del \u{7f} stays"),
            ("\u{1}&\u{1f}", "&amp;"),
            (
                "héllo → <b>ünïcode</b> 😀",
                "héllo → &lt;b&gt;ünïcode&lt;/b&gt; 😀",
            ),
            ("ends with <", "ends with &lt;"),
        ] {
            assert_eq!(plain_to_html(text), wrap(want), "{text:?}");
        }
    }

    const T: Role = Role::Text(TextKind::Plain);
    const H: Role = Role::Text(TextKind::Html);
    const A: Role = Role::Attachment;
    const C: Role = Role::Container;

    #[test]
    fn alternative_with_a_footer() {
        let raw = b"Content-Type: multipart/mixed; boundary=m\r\n\r\n\
            --m\r\nContent-Type: multipart/alternative; boundary=a\r\n\r\n\
            --a\r\nContent-Type: text/plain\r\n\r\nplain\r\n\
            --a\r\nContent-Type: text/html\r\n\r\n<p>html</p>\r\n--a--\r\n\
            --m\r\nContent-Type: text/plain\r\n\r\nfooter\r\n--m--\r\n";
        let (roles, text, html) = views(raw);
        assert_eq!(roles, [C, C, T, H, T]);
        assert_eq!(text, [2, 4]);
        assert_eq!(html, [3, 4]);
    }

    #[test]
    fn the_last_alternative_of_a_kind_wins() {
        let raw = b"Content-Type: multipart/alternative; boundary=a\r\n\r\n\
            --a\r\nContent-Type: text/plain\r\n\r\nplain\r\n\
            --a\r\nContent-Type: text/html\r\n\r\n<p>simple</p>\r\n\
            --a\r\nContent-Type: multipart/related; boundary=r\r\n\r\n\
            --r\r\nContent-Type: text/html\r\n\r\n<img src=cid:i>\r\n\
            --r\r\nContent-Type: text/html\r\n\r\n<p>a resource</p>\r\n\
            --r\r\nContent-Type: image/png\r\nContent-ID: <i>\r\n\r\npng\r\n--r--\r\n\
            --a\r\nContent-Type: application/x-unknown\r\n\r\n?\r\n--a--\r\n";
        let (roles, text, html) = views(raw);
        assert_eq!(roles, [C, T, H, C, H, A, A, A]);
        assert_eq!(text, [1]);
        assert_eq!(html, [4]);
    }

    #[test]
    fn text_image_text_and_attachment_rules() {
        let raw = b"Content-Type: multipart/mixed; boundary=m\r\n\r\n\
            --m\r\nContent-Type: text/plain\r\n\r\none\r\n\
            --m\r\nContent-Type: image/jpeg\r\nContent-Disposition: inline\r\n\r\njpg\r\n\
            --m\r\nContent-Type: text\r\n\r\ntwo\r\n\
            --m\r\nContent-Type: text/plain; name=notes.txt\r\n\r\nnotes\r\n\
            --m\r\nContent-Type: text/plain\r\nContent-Disposition: attachment\r\n\r\nfile\r\n\
            --m\r\nContent-Type: text/plain\r\nContent-Disposition: inline; filename=x.txt\r\n\r\nshown\r\n\
            --m\r\n\r\nno content type\r\n--m--\r\n";
        let (roles, text, html) = views(raw);
        assert_eq!(roles, [C, T, A, T, A, A, T, T]);
        assert_eq!(text, [1, 3, 6, 7]);
        assert_eq!(html, Vec::<usize>::new(), "no html part, no html view");
    }

    #[test]
    fn html_only_parts_are_converted_into_a_text_view_that_exists() {
        let raw = b"Content-Type: multipart/mixed; boundary=m\r\n\r\n\
            --m\r\nContent-Type: text/plain\r\n\r\nintro\r\n\
            --m\r\nContent-Type: text/html\r\n\r\n<p>body</p>\r\n--m--\r\n";
        let (_, text, html) = views(raw);
        assert_eq!(text, [1, 2]);
        assert_eq!(html, [1, 2]);
        assert_eq!(
            join(
                TextKind::Plain,
                &[(TextKind::Plain, "intro"), (TextKind::Html, "<p>body</p>")]
            ),
            "intro\r\nbody\n"
        );
        assert_eq!(
            join(
                TextKind::Html,
                &[
                    (TextKind::Plain, "a < b & c\r\n\u{1}"),
                    (TextKind::Html, "<p>x</p>")
                ]
            ),
            "<div style=\"white-space: pre-wrap\">a &lt; b &amp; c\r\n</div>\r\n<p>x</p>"
        );
    }

    #[test]
    fn deep_nesting_does_not_recurse() {
        let depth = 5000;
        let mut raw = Vec::new();
        for i in 0..depth {
            raw.extend_from_slice(
                format!("Content-Type: multipart/mixed; boundary=b{i}\r\n\r\n--b{i}\r\n")
                    .as_bytes(),
            );
        }
        raw.extend_from_slice(b"Content-Type: text/plain\r\n\r\ndeep\r\n");
        let m = MessageParser::default().parse(&raw).unwrap();
        let s = Structure::of(&m.parts);
        let text = s.view(TextKind::Plain);
        assert_eq!(text.len(), 1);
        assert_eq!(s.texts().count(), 1);
    }
}
