//! `reply_text`: the new text of a reply, without the quoted thread and the
//! signature (what Mailgun calls `stripped-text`, Postmark
//! `StrippedTextReply`).
//!
//! No maintained crate does this for several languages and for HTML (the
//! one Rust port of email_reply_parser is English-only, plain-only and has
//! had one release), so the rules are here, as small table-tested pieces:
//!
//! 1. [`is_reply`]: only a reply has a reply text. Threading headers or a
//!    reply prefix in the subject say so.
//! 2. The lines: the plain `text` view; for a message with no plain part,
//!    its `html` view converted to lines by [`html_lines`], where the
//!    quoting elements of the HTML (Gmail's, Outlook's, Apple Mail's,
//!    Thunderbird's) become marker lines instead of text.
//! 3. [`classify`] gives each line a [`Kind`]: quoted, an attribution
//!    ("On <date>, <name> wrote:" in five languages and two more, also
//!    wrapped over two lines), the start of the history (Outlook's header
//!    block, "-----Original Message-----", a "____" separator) or a
//!    signature ("-- ", "Sent from my iPhone" and its translations).
//! 4. [`select`] keeps the new lines: it stops at the history or a
//!    signature, drops quoted lines and attributions, and joins what an
//!    inline (interleaved) answer wrote between the quotes with one blank
//!    line. Without any boundary it cannot tell where the new text ends,
//!    and says so (`None`).
//!
//! Every step is linear in the size of the text: the message is the
//! sender's choice.

use std::sync::LazyLock;

use regex::Regex;

/// What the reply text is made from: views and headers of the payload.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Reply<'a> {
    pub text: Option<&'a str>,
    pub html: Option<&'a str>,
    pub subject: Option<&'a str>,
    /// The message has `In-Reply-To` or `References`.
    pub threaded: bool,
}

/// The new text of a reply; `None` when the message is not a reply or no
/// boundary between new and quoted text was found. Lines end in `\n`,
/// trailing whitespace removed, no line break at the end.
pub(crate) fn reply_text(reply: &Reply<'_>) -> Option<String> {
    if !is_reply(reply.subject, reply.threaded) {
        return None;
    }
    let html;
    let lines: Vec<Line<'_>> = match (reply.text, reply.html) {
        (Some(text), _) => text.split('\n').map(Line::text).collect(),
        (None, Some(source)) => {
            html = html_lines(source);
            html.iter().map(Seg::lines).collect::<Vec<_>>().concat()
        }
        (None, None) => return None,
    };
    select(&lines, &classify(&lines))
}

/// A reply names the message it answers (RFC 5322 §3.6.4), or at least
/// says "Re:" in a language a mail client writes it in.
pub(crate) fn is_reply(subject: Option<&str>, threaded: bool) -> bool {
    static PREFIX: LazyLock<Regex> = LazyLock::new(|| {
        // Mailing-list tags may come first ("[team] Re: ..."). "AW"
        // German, "R"/"Rif" Italian, "RES" Portuguese, "SV"/"VS"
        // Scandinavian, "Antw" Dutch, "Odp" Polish; "Re[2]:" counts.
        Regex::new(
            r"(?i)^\s*(?:\[[^\]]{0,64}\]\s*)*(?:re|aw|r|rif|res|sv|vs|antw|odp)\s*(?:\[\d+\]|\^\d+|\(\d+\))?\s*:",
        )
        .unwrap()
    });
    threaded || subject.is_some_and(|s| PREFIX.is_match(s))
}

/// One line to classify: its text, or what an HTML element said it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Line<'a> {
    text: &'a str,
    mark: Option<Kind>,
}

impl<'a> Line<'a> {
    fn text(text: &'a str) -> Line<'a> {
        Line {
            text: text.strip_suffix('\r').unwrap_or(text),
            mark: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Blank,
    Text,
    /// `>` quoted, or a quoting element of the HTML.
    Quote,
    /// "On <date>, <name> wrote:"; `Continuation` is its second line when
    /// the sender's client wrapped it.
    Attribution,
    Continuation,
    /// Everything from here on is the quoted history.
    History,
    /// A signature starts here.
    Signature,
}

/// Attributions are short; longer lines are not matched at all, so a
/// hostile megabyte line costs one length check.
const MAX_ATTRIBUTION: usize = 300;
/// Lines after "From:" searched for the rest of a header block.
const HEADER_BLOCK: usize = 8;

fn classify(lines: &[Line<'_>]) -> Vec<Kind> {
    let mut kinds: Vec<Kind> = lines.iter().map(base_kind).collect();
    let mut i = 0;
    while i < lines.len() {
        if kinds[i] == Kind::Text {
            let line = lines[i].text.trim();
            if is_history_start(lines, i) {
                kinds[i] = Kind::History;
            } else if is_signature_delimiter(line) {
                kinds[i] = Kind::Signature;
            } else if is_attribution(line) {
                kinds[i] = Kind::Attribution;
            } else if let Some(next) = lines.get(i + 1).filter(|_| kinds[i + 1] == Kind::Text) {
                let next = next.text.trim();
                if line.len() + next.len() < MAX_ATTRIBUTION
                    && !is_attribution(next)
                    && is_attribution(&format!("{line} {next}"))
                {
                    kinds[i] = Kind::Attribution;
                    kinds[i + 1] = Kind::Continuation;
                    i += 1;
                }
            }
        }
        i += 1;
    }
    // "Sent from my iPhone" is a signature only where nothing new follows
    // it: someone may well start a reply with "Sent from my phone, so...".
    let mut after = None;
    for i in (0..lines.len()).rev() {
        if kinds[i] == Kind::Text
            && is_mobile_signature(lines[i].text.trim())
            && matches!(
                after,
                None | Some(Kind::Quote | Kind::Attribution | Kind::History | Kind::Signature)
            )
        {
            kinds[i] = Kind::Signature;
        }
        if kinds[i] != Kind::Blank {
            after = Some(kinds[i]);
        }
    }
    kinds
}

fn base_kind(line: &Line<'_>) -> Kind {
    if let Some(mark) = line.mark {
        return mark;
    }
    let trimmed = line.text.trim();
    if trimmed.is_empty() {
        Kind::Blank
    } else if trimmed.starts_with('>') {
        Kind::Quote
    } else {
        Kind::Text
    }
}

/// The new lines, given each line's kind; `None` when no line was quoted,
/// an attribution, history or signature.
fn select(lines: &[Line<'_>], kinds: &[Kind]) -> Option<String> {
    let mut runs: Vec<Vec<&str>> = vec![Vec::new()];
    let mut boundary = false;
    let mut i = 0;
    while i < lines.len() {
        match kinds[i] {
            Kind::History | Kind::Signature => {
                boundary = true;
                break;
            }
            Kind::Quote | Kind::Continuation => {
                boundary = true;
                runs.push(Vec::new());
            }
            Kind::Attribution => {
                boundary = true;
                // An attribution over `>` lines may be followed by answers
                // between them; over unquoted text (or nothing), all that
                // follows is the history.
                let next = kinds[i + 1..]
                    .iter()
                    .find(|k| !matches!(k, Kind::Blank | Kind::Continuation));
                if next != Some(&Kind::Quote) {
                    break;
                }
                runs.push(Vec::new());
            }
            Kind::Blank | Kind::Text => runs.last_mut().unwrap().push(lines[i].text.trim_end()),
        }
        i += 1;
    }
    if !boundary {
        return None;
    }
    let paragraphs: Vec<String> = runs
        .iter()
        .filter_map(|run| {
            let first = run.iter().position(|l| !l.is_empty())?;
            let last = run.iter().rposition(|l| !l.is_empty())?;
            Some(run[first..=last].join("\n"))
        })
        .collect();
    Some(paragraphs.join("\n\n"))
}

/// "On <date>, <name> wrote:" as Gmail, Apple Mail, Thunderbird and iOS
/// write it in English, French, German, Spanish and Italian (and Dutch and
/// Portuguese, which cost nothing more). A date has a digit: "On
/// reflection Bob wrote:" is not one.
fn is_attribution(line: &str) -> bool {
    static ATTRIBUTION: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(
            r"(?i)^(?:On\s.*\d.*\swrote|Le\s.*\d.*\sa\s+écrit|Am\s.*\d.*\sschrieb\s.+|El\s.*\d.*\sescribió|Il\s.*\d.*\sha\s+scritto|Op\s.*\d.*\s(?:schreef\s.+|geschreven)|Em\s.*\d.*\sescreveu)\s*:$",
        )
        .unwrap()
    });
    line.len() < MAX_ATTRIBUTION && ATTRIBUTION.is_match(line)
}

fn is_signature_delimiter(line: &str) -> bool {
    // "-- " (RFC 3676 §4.3); clients and editors often drop the space.
    line == "--"
}

/// What mobile clients append by default.
fn is_mobile_signature(line: &str) -> bool {
    static MOBILE: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(
            r"(?i)^(?:Sent from my \S.{0,60}|Envoyé de mon \S.{0,60}|Von meinem \S.{0,60} gesendet\.?|Enviado desde mi \S.{0,60}|Inviato da(?:l mio)? \S.{0,60}|Get Outlook for (?:iOS|Android)\S{0,80})$",
        )
        .unwrap()
    });
    line.len() < MAX_ATTRIBUTION && MOBILE.is_match(line)
}

/// Outlook's ways of starting the quoted message.
fn is_history_start(lines: &[Line<'_>], i: usize) -> bool {
    static ORIGINAL: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(
            r"(?i)^-{2,}\s*(?:Original Message|Ursprüngliche Nachricht|Original-Nachricht|Message d'origine|Mensaje original|Messaggio originale)\s*-{2,}$",
        )
        .unwrap()
    });
    static BANNER: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"^-{3,}[^-]{3,60}-{3,}$").unwrap());
    let line = lines[i].text.trim();
    if is_separator(line) || is_header_block(lines, i) {
        return true;
    }
    if line.len() >= MAX_ATTRIBUTION {
        return false;
    }
    // A banner such as Gmail's "---------- Forwarded message ---------" in
    // front of a header block belongs to the history too.
    ORIGINAL.is_match(line)
        || BANNER.is_match(line)
            && lines[i + 1..]
                .iter()
                .take(2)
                .position(|l| !l.text.trim().is_empty())
                .is_some_and(|n| is_header_block(lines, i + 1 + n))
}

/// Outlook web's line of underscores (32 of them) above the header block.
fn is_separator(line: &str) -> bool {
    line.len() >= 20 && line.bytes().all(|b| b == b'_')
}

/// The fields of an Outlook header block, as its languages name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    From,
    Date,
    To,
    Subject,
    Cc,
}

fn field(line: &str) -> Option<Field> {
    // Bold labels come out of HTML as "*From:*" in some clients' plain text.
    let line = line.trim_start_matches(['*', ' ', '\t']);
    let (label, _) = line.split_once(':')?;
    let label = label.trim_end_matches([' ', '\u{a0}', '*']);
    if label.len() > 12 {
        return None;
    }
    const FIELDS: &[(Field, &[&str])] = &[
        (Field::From, &["from", "de", "von", "da"]),
        (
            Field::Date,
            &[
                "sent", "date", "envoyé", "gesendet", "datum", "inviato", "data", "enviado",
                "fecha",
            ],
        ),
        (Field::To, &["to", "à", "a", "an", "para"]),
        (
            Field::Subject,
            &["subject", "objet", "betreff", "oggetto", "asunto"],
        ),
        (Field::Cc, &["cc", "cci", "bcc"]),
    ];
    let label = label.to_lowercase();
    FIELDS
        .iter()
        .find(|(_, names)| names.contains(&label.as_str()))
        .map(|(f, _)| *f)
}

/// "From:" followed, before the next blank line, by at least two of the
/// date, recipients and subject: a quoted message's header.
fn is_header_block(lines: &[Line<'_>], i: usize) -> bool {
    if lines[i].mark.is_some() || field(lines[i].text) != Some(Field::From) {
        return false;
    }
    let mut seen = [false; 3];
    for line in lines[i + 1..].iter().take(HEADER_BLOCK) {
        if line.mark.is_some() || line.text.trim().is_empty() {
            break;
        }
        match field(line.text) {
            Some(Field::Date) => seen[0] = true,
            Some(Field::To) => seen[1] = true,
            Some(Field::Subject) => seen[2] = true,
            _ => {}
        }
    }
    seen.iter().filter(|s| **s).count() >= 2
}

/// HTML converted for [`classify`]: text, and the marks that stand for the
/// quoting elements left out.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Text(String),
    Mark(Kind),
}

impl Seg {
    fn lines(&self) -> Vec<Line<'_>> {
        match self {
            Seg::Text(text) => text.split('\n').map(Line::text).collect(),
            Seg::Mark(kind) => vec![Line {
                text: "",
                mark: Some(*kind),
            }],
        }
    }
}

/// What an opening tag says about its element.
fn marker(name: &str, attrs: &str) -> Option<Kind> {
    let class = |wanted: &str| {
        attr(attrs, "class").is_some_and(|c| {
            c.split_ascii_whitespace()
                .any(|t| t.eq_ignore_ascii_case(wanted))
        })
    };
    let id = |wanted: &str| attr(attrs, "id").is_some_and(|v| v.eq_ignore_ascii_case(wanted));
    let quote = if name == "blockquote" {
        // Apple Mail and Thunderbird: type="cite"; Gmail: class gmail_quote
        // (Gmail's own "indent" is a blockquote too, without either).
        attr(attrs, "type").is_some_and(|t| t.eq_ignore_ascii_case("cite"))
            || class("gmail_quote")
            || class("protonmail_quote")
    } else {
        // Thunderbird's attribution, Yahoo's quoted message.
        class("moz-cite-prefix") || class("yahoo_quoted")
    };
    if quote {
        Some(Kind::Quote)
    } else if id("divRplyFwdMsg")
        || id("appendonsend")
        || id("OutlookMessageHeader")
        || class("OutlookMessageHeader")
        || id("mail-editor-reference-message-container")
    {
        // Outlook (web, new, and old desktop) puts the header block of the
        // quoted message here and the quoted message after it.
        Some(Kind::History)
    } else if class("gmail_signature") || class("moz-signature") {
        Some(Kind::Signature)
    } else {
        None
    }
}

/// Elements that start and end a line of text.
const BLOCKS: &[&str] = &[
    "address",
    "article",
    "blockquote",
    "center",
    "dd",
    "div",
    "dl",
    "dt",
    "footer",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "header",
    "hr",
    "li",
    "ol",
    "pre",
    "section",
    "table",
    "tr",
    "ul",
];

/// Elements whose content is not text.
const RAW: &[&str] = &["script", "style", "title", "template"];

/// Elements without content (an opening tag is all there is).
const VOID: &[&str] = &[
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track",
    "wbr",
];

/// The text of an HTML body, each quoting element replaced by its mark.
///
/// mail-parser's `html_to_text` (which the `text` view uses for html-only
/// parts elsewhere in a message) breaks lines only at `<br>` and `</p>`;
/// Gmail and Apple Mail write every line as a `<div>`, and the boundaries
/// found here are lines. So this is a small, block-aware converter of its
/// own; entities are still decoded by mail-parser's table.
fn html_lines(html: &str) -> Vec<Seg> {
    let mut out = Converter::default();
    let mut tokens = Tokens { html, pos: 0 };
    while let Some(token) = tokens.next() {
        let tag = match token {
            Token::Text(text) => {
                out.text(text);
                continue;
            }
            Token::Tag(tag) => tag,
        };
        let name = tag.name.to_ascii_lowercase();
        if !tag.close {
            if let Some(kind) = marker(&name, tag.attrs) {
                out.mark(kind);
                if kind == Kind::History {
                    break;
                }
                if !tag.empty() && !VOID.contains(&name.as_str()) {
                    tokens.skip_element(&name);
                }
                continue;
            }
            if RAW.contains(&name.as_str()) {
                tokens.skip_raw(&name);
                continue;
            }
        }
        match name.as_str() {
            "br" => out.newline(),
            "pre" => {
                out.block();
                out.pre = !tag.close;
            }
            "td" | "th" if tag.close => out.space = true,
            // A paragraph, except Outlook's: its style sheet sets the
            // margins of `MsoNormal` to zero, and it writes one per line.
            "p" if !tag.close => {
                out.outlook_p =
                    attr(tag.attrs, "class").is_some_and(|c| c.eq_ignore_ascii_case("MsoNormal"));
                out.paragraph();
            }
            "p" => out.paragraph(),
            n if BLOCKS.contains(&n) => out.block(),
            _ => {}
        }
    }
    out.finish()
}

#[derive(Default)]
struct Converter {
    segs: Vec<Seg>,
    line: String,
    /// Inside `<pre>`: whitespace is kept.
    pre: bool,
    /// Whitespace seen since the last character: one space, unless at the
    /// start of a line.
    space: bool,
    /// The open `<p>` is Outlook's: one line, not a paragraph.
    outlook_p: bool,
}

impl Converter {
    fn text(&mut self, raw: &str) {
        let mut rest = raw;
        while let Some(amp) = rest.find('&') {
            self.chars(&rest[..amp]);
            rest = &rest[amp..];
            // An entity is short; anything else is a literal "&".
            let end = rest.bytes().take(34).position(|b| b == b';').filter(|&e| {
                rest[1..e]
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'#')
            });
            match end {
                Some(end) => {
                    let mut decoded = String::new();
                    mail_parser::decoders::html::add_html_token(
                        &mut decoded,
                        &rest.as_bytes()[..=end],
                        false,
                    );
                    self.chars(&decoded);
                    rest = &rest[end + 1..];
                }
                None => {
                    self.chars("&");
                    rest = &rest[1..];
                }
            }
        }
        self.chars(rest);
    }

    fn chars(&mut self, text: &str) {
        for c in text.chars() {
            match c {
                '\n' if self.pre => self.newline(),
                '\r' if self.pre => {}
                ' ' | '\t' | '\n' | '\r' | '\u{c}' if !self.pre => self.space = true,
                c => {
                    if self.space && !self.at_line_start() {
                        self.line.push(' ');
                    }
                    self.space = false;
                    // &nbsp; is how HTML editors keep spaces; in text it is
                    // a space.
                    self.line.push(if c == '\u{a0}' { ' ' } else { c });
                }
            }
        }
    }

    fn at_line_start(&self) -> bool {
        self.line.is_empty() || self.line.ends_with('\n')
    }

    fn newline(&mut self) {
        self.line.push('\n');
        self.space = false;
    }

    fn block(&mut self) {
        if !self.at_line_start() {
            self.line.push('\n');
        }
        self.space = false;
    }

    /// A blank line before and after, unless in Outlook's `<p>`.
    fn paragraph(&mut self) {
        self.block();
        if !self.outlook_p && !self.line.is_empty() && !self.line.ends_with("\n\n") {
            self.line.push('\n');
        }
    }

    fn mark(&mut self, kind: Kind) {
        self.flush();
        self.segs.push(Seg::Mark(kind));
    }

    fn flush(&mut self) {
        let line = std::mem::take(&mut self.line);
        let line = line.strip_suffix('\n').unwrap_or(&line);
        if !line.is_empty() {
            self.segs.push(Seg::Text(line.to_owned()));
        }
        self.space = false;
    }

    fn finish(mut self) -> Vec<Seg> {
        self.flush();
        self.segs
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Token<'a> {
    Text(&'a str),
    Tag(Tag<'a>),
}

#[derive(Debug, PartialEq, Eq)]
struct Tag<'a> {
    name: &'a str,
    close: bool,
    /// Everything between the name and `>`.
    attrs: &'a str,
}

impl Tag<'_> {
    /// `<div/>`: no content follows.
    fn empty(&self) -> bool {
        self.attrs.trim_end().ends_with('/')
    }
}

/// A forgiving HTML tokenizer: text and tags, comments and declarations
/// skipped; a `<` that starts no tag is text.
struct Tokens<'a> {
    html: &'a str,
    pos: usize,
}

impl<'a> Tokens<'a> {
    fn next(&mut self) -> Option<Token<'a>> {
        // A loop, not recursion: comments in a row are the sender's choice.
        loop {
            let rest = &self.html[self.pos..];
            if rest.is_empty() {
                return None;
            }
            let Some(lt) = rest.find('<') else {
                self.pos = self.html.len();
                return Some(Token::Text(rest));
            };
            if lt > 0 {
                self.pos += lt;
                return Some(Token::Text(&rest[..lt]));
            }
            if let Some(comment) = rest.strip_prefix("<!--") {
                self.pos += comment.find("-->").map_or(rest.len(), |e| 4 + e + 3);
                continue;
            }
            let bytes = rest.as_bytes();
            let close = bytes.get(1) == Some(&b'/');
            let start = if close { 2 } else { 1 };
            match bytes.get(start) {
                Some(b) if b.is_ascii_alphabetic() => {}
                Some(b'!' | b'?') => {
                    // <!DOCTYPE>, <![if ...]>, <?xml ...?>
                    self.pos += rest.find('>').map_or(rest.len(), |e| e + 1);
                    continue;
                }
                _ => {
                    self.pos += 1;
                    return Some(Token::Text("<"));
                }
            }
            let name_len = rest[start..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == ':' || c == '-'))
                .unwrap_or(rest.len() - start);
            let name = &rest[start..start + name_len];
            let end = tag_end(&rest[start + name_len..]).map(|e| start + name_len + e);
            let attrs = &rest[start + name_len..end.unwrap_or(rest.len())];
            self.pos += end.map_or(rest.len(), |e| e + 1);
            return Some(Token::Tag(Tag { name, close, attrs }));
        }
    }

    /// Past the end of the element whose opening tag was just read.
    fn skip_element(&mut self, name: &str) {
        let mut depth = 1usize;
        while let Some(token) = self.next() {
            if let Token::Tag(tag) = token
                && tag.name.eq_ignore_ascii_case(name)
            {
                if tag.close {
                    depth -= 1;
                    if depth == 0 {
                        return;
                    }
                } else if !tag.empty() {
                    depth += 1;
                }
            }
        }
    }

    /// Past `</name>`, without reading the text before it as HTML.
    fn skip_raw(&mut self, name: &str) {
        let rest = &self.html[self.pos..];
        let closing = format!("</{name}");
        let at = rest
            .as_bytes()
            .windows(closing.len())
            .position(|w| w.eq_ignore_ascii_case(closing.as_bytes()));
        self.pos += match at {
            Some(at) => at + rest[at..].find('>').map_or(rest.len() - at, |e| e + 1),
            None => rest.len(),
        };
    }
}

/// The `>` that ends a tag, outside quoted attribute values.
fn tag_end(attrs: &str) -> Option<usize> {
    let mut quote = None;
    for (i, b) in attrs.bytes().enumerate() {
        match (quote, b) {
            (None, b'"' | b'\'') => quote = Some(b),
            (Some(q), b) if b == q => quote = None,
            (None, b'>') => return Some(i),
            _ => {}
        }
    }
    None
}

/// An attribute's value (quoted or not); `None` when absent.
fn attr<'a>(attrs: &'a str, wanted: &str) -> Option<&'a str> {
    let mut rest = attrs;
    loop {
        rest = rest.trim_start_matches(|c: char| c.is_ascii_whitespace() || c == '/');
        if rest.is_empty() {
            return None;
        }
        if let Some(after) = rest.strip_prefix('=') {
            // A stray "=": step over it.
            rest = after;
            continue;
        }
        let name_end = rest
            .find(|c: char| c.is_ascii_whitespace() || c == '=' || c == '/')
            .unwrap_or(rest.len());
        let name = &rest[..name_end];
        rest = rest[name_end..].trim_start();
        let value = match rest.strip_prefix('=') {
            Some(after) => {
                let after = after.trim_start();
                let (value, next) = match after.as_bytes().first() {
                    Some(&q @ (b'"' | b'\'')) => {
                        let body = &after[1..];
                        let end = body.find(q as char).unwrap_or(body.len());
                        (&body[..end], &body[(end + 1).min(body.len())..])
                    }
                    _ => {
                        let end = after
                            .find(|c: char| c.is_ascii_whitespace())
                            .unwrap_or(after.len());
                        (&after[..end], &after[end..])
                    }
                };
                rest = next;
                value
            }
            None => "",
        };
        if name.eq_ignore_ascii_case(wanted) {
            return Some(value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(text: &str) -> Option<String> {
        let lines: Vec<Line<'_>> = text.split('\n').map(Line::text).collect();
        select(&lines, &classify(&lines))
    }

    fn html(source: &str) -> Option<String> {
        reply_text(&Reply {
            html: Some(source),
            threaded: true,
            ..Reply::default()
        })
    }

    /// Every `tests/fixtures/replies/NAME.eml` through the whole payload
    /// conversion, against `NAME.expected.txt`: the reply text plus one
    /// line break, or `null` for none.
    #[test]
    fn fixtures_give_their_expected_reply_text() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/replies");
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter_map(|n| n.strip_suffix(".eml").map(str::to_owned))
            .collect();
        names.sort();
        assert!(names.len() >= 20, "{names:?}");
        let mut wrong = Vec::new();
        for name in &names {
            let raw = std::fs::read(format!("{dir}/{name}.eml")).unwrap();
            let expected = std::fs::read_to_string(format!("{dir}/{name}.expected.txt"))
                .unwrap_or_else(|e| panic!("{name}.expected.txt: {e}"));
            let expected = expected.strip_suffix('\n').unwrap_or(&expected);
            let expected = (expected != "null").then_some(expected);
            let m = crate::mail::parse_message(&raw, &crate::mail::PayloadOptions::default());
            assert!(!m.lossy, "{name}: {:?}", m.lossy_reasons);
            if m.reply_text.as_deref() != expected {
                wrong.push(format!(
                    "{name}:\n  got      {:?}\n  expected {expected:?}",
                    m.reply_text
                ));
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    #[test]
    fn replies_are_recognised_by_headers_or_subject() {
        let table: &[(Option<&str>, bool, bool)] = &[
            (None, true, true),
            (Some("Project update"), true, true),
            (Some("Re: Project update"), false, true),
            (Some("RE: Project update"), false, true),
            (Some("RE : Point projet"), false, true),
            (Some("AW: Projektstand"), false, true),
            (Some("R: Stato del progetto"), false, true),
            (Some("Rif: Stato del progetto"), false, true),
            (Some("Re[2]: Project"), false, true),
            (Some("[team] Re: Project"), false, true),
            (Some("SV: Projekt"), false, true),
            (Some("Project update"), false, false),
            (Some("Fwd: Project update"), false, false),
            (Some("Regarding the project"), false, false),
            (Some("Rest: the rest"), false, false),
            (None, false, false),
        ];
        for &(subject, threaded, want) in table {
            assert_eq!(is_reply(subject, threaded), want, "{subject:?} {threaded}");
        }
    }

    #[test]
    fn attributions_in_five_languages() {
        let yes = [
            "On Mon, Jun 3, 2024 at 10:15 AM Alice Martin <alice@example.com> wrote:",
            "On 3 Jun 2024, at 10:15, Alice Martin <alice@example.com> wrote:",
            "On 03/06/2024 10:15, Alice Martin wrote:",
            "Le lun. 3 juin 2024 à 10:15, Alice Martin <alice@example.com> a écrit :",
            "Le 3 juin 2024 à 10:15, Alice Martin <alice@example.com> a\u{a0}écrit\u{a0}:",
            "Am Mo., 3. Juni 2024 um 10:15 Uhr schrieb Alice Martin <alice@example.com>:",
            "Am 03.06.24 um 10:15 schrieb Alice Martin:",
            "El lun, 3 jun 2024 a las 10:15, Alice Martin (<alice@example.com>) escribió:",
            "Il giorno lun 3 giu 2024 alle ore 10:15 Alice Martin <alice@example.com> ha scritto:",
            "Il 03/06/2024 10:15, Alice Martin ha scritto:",
            "Op ma 3 jun 2024 om 10:15 schreef Alice Martin <alice@example.com>:",
            "Op 3 jun. 2024, om 10:15 heeft Alice Martin <alice@example.com> het volgende geschreven:",
            "Em seg., 3 de jun. de 2024 às 10:15, Alice Martin <alice@example.com> escreveu:",
        ];
        for line in yes {
            assert!(is_attribution(line), "{line}");
        }
        let no = [
            "On reflection, Alice wrote:",
            "On Monday we shipped version 2.",
            "Alice wrote: 3 things",
            "Le 3 juin, c'est parfait.",
            "Am 3. Juni geht es los:",
            "Il 3 giugno va bene.",
            "Op 3 juni is het feest.",
            "",
        ];
        for line in no {
            assert!(!is_attribution(line), "{line}");
        }
        assert!(!is_attribution(&format!(
            "On 3 Jun 2024 {} wrote:",
            "x".repeat(MAX_ATTRIBUTION)
        )));
    }

    #[test]
    fn mobile_signatures() {
        for line in [
            "Sent from my iPhone",
            "Sent from my Android",
            "Envoyé de mon iPhone",
            "Von meinem iPhone gesendet",
            "Enviado desde mi iPhone",
            "Inviato da iPhone",
            "Inviato dal mio iPhone",
            "Get Outlook for iOS",
        ] {
            assert!(is_mobile_signature(line), "{line}");
        }
        for line in [
            "Sent from my",
            "I sent from my iPhone",
            "Von meinem Büro aus",
        ] {
            assert!(!is_mobile_signature(line), "{line}");
        }
    }

    #[test]
    fn header_fields_in_five_languages() {
        let table: &[(&str, Option<Field>)] = &[
            ("From: Alice <a@x>", Some(Field::From)),
            ("*From:* Alice <a@x>", Some(Field::From)),
            ("De : Alice", Some(Field::From)),
            ("De: Alice", Some(Field::From)),
            ("Von: Alice", Some(Field::From)),
            ("Da: Alice", Some(Field::From)),
            ("Sent: Monday", Some(Field::Date)),
            ("Envoyé : lundi", Some(Field::Date)),
            ("Gesendet: Montag", Some(Field::Date)),
            ("Inviato: lunedì", Some(Field::Date)),
            ("Enviado: lunes", Some(Field::Date)),
            ("À : Bob", Some(Field::To)),
            ("An: Bob", Some(Field::To)),
            ("A: Bob", Some(Field::To)),
            ("Para: Bob", Some(Field::To)),
            ("Objet : x", Some(Field::Subject)),
            ("Betreff: x", Some(Field::Subject)),
            ("Oggetto: x", Some(Field::Subject)),
            ("Asunto: x", Some(Field::Subject)),
            ("CC: Carol", Some(Field::Cc)),
            ("Note: x", None),
            ("From the start", None),
        ];
        for &(line, want) in table {
            assert_eq!(field(line), want, "{line}");
        }
    }

    /// (text, reply text): the line rules on plain text.
    #[test]
    fn plain_text_boundaries() {
        let table: &[(&str, Option<&str>)] = &[
            // Top-posted, the attribution wrapped over two lines.
            (
                "Sounds good.\n\nOn Mon, Jun 3, 2024 at 10:15 AM Alice <\nalice@example.com> wrote:\n\n> Lunch?\n",
                Some("Sounds good."),
            ),
            // Interleaved: answers between the quotes, one blank line apart.
            (
                "On 03/06/2024 10:15, Alice wrote:\n> One?\nYes.\n> Two?\n\nNo.\n   \n> Three?\n",
                Some("Yes.\n\nNo."),
            ),
            // Bottom-posted.
            ("> Lunch?\n\nYes, at noon.", Some("Yes, at noon.")),
            // A quote and nothing new.
            ("> Lunch?\n", Some("")),
            // An attribution over unquoted text: the rest is history.
            (
                "Fine.\nOn 3 Jun 2024, at 10:15, Alice wrote:\nLunch?\n\nAlice",
                Some("Fine."),
            ),
            // Outlook: header block, "Original Message", separator.
            (
                "Agreed.\r\n\r\nFrom: Alice <a@x>\r\nSent: Monday, June 3, 2024 10:15 AM\r\nTo: Bob\r\nSubject: Lunch\r\n\r\nLunch?\r\n",
                Some("Agreed."),
            ),
            (
                "D'accord.\n-----Message d'origine-----\nDe : Alice\nLunch ?",
                Some("D'accord."),
            ),
            (
                "Vale.\n\n________________________________\nDe: Alice\nEnviado: lunes\nPara: Bob\nAsunto: Comida\n",
                Some("Vale."),
            ),
            // "From:" in the new text is not a header block by itself.
            (
                "From: the team\nthanks all\n> x",
                Some("From: the team\nthanks all"),
            ),
            // A forwarded message's banner goes with its header block.
            (
                "FYI\n\n---------- Forwarded message ---------\nFrom: Alice <a@x>\nDate: Mon, Jun 3, 2024\nSubject: Lunch\nTo: Bob\n\nLunch?",
                Some("FYI"),
            ),
            // Signatures end the new text.
            ("Thanks!\n\n-- \nBob\nACME\n\n> x", Some("Thanks!")),
            ("Thanks!\n--\nBob", Some("Thanks!")),
            ("Thanks!\n\nSent from my iPhone", Some("Thanks!")),
            (
                "Thanks!\nSent from my iPhone\n\n> On x wrote:\n> y",
                Some("Thanks!"),
            ),
            // ...but a sentence that looks like one and goes on is text.
            ("Sent from my phone, sorry.\nMore text.", None),
            // No boundary: cannot tell.
            ("Just a message.\nTwo lines.", None),
            ("", None),
        ];
        for &(text, want) in table {
            assert_eq!(plain(text).as_deref(), want, "{text:?}");
        }
    }

    #[test]
    fn html_is_converted_by_blocks_and_marks() {
        let lines = html_lines(
            "<html><head><style>p {color: red}</style><title>t</title></head><body>\
             <div dir=ltr>Hi&nbsp;Alice,<div><br></div><div>Sounds  good &amp; \
             fine.</div></div><!-- <blockquote type=cite> --><pre>a\n  b</pre>\
             <table><tr><td>x</td><td>y</td></tr></table>a < b\
             <blockquote type=\"cite\"><div>quoted <blockquote type=cite>nested</blockquote></div></blockquote>\
             after<div class=\"gmail_signature\">-- <br>Bob</div></body></html>",
        );
        assert_eq!(
            lines,
            [
                Seg::Text("Hi Alice,\n\nSounds good & fine.\na\n  b\nx y\na < b".into()),
                Seg::Mark(Kind::Quote),
                Seg::Text("after".into()),
                Seg::Mark(Kind::Signature),
            ]
        );
    }

    #[test]
    fn html_markers_of_each_client() {
        let table: &[(&str, Option<&str>)] = &[
            // Gmail, top-posted.
            (
                "<div dir=\"ltr\">Yes.</div><br><div class=\"gmail_quote gmail_quote_container\">\
                 <div dir=\"ltr\" class=\"gmail_attr\">On Mon, Jun 3, 2024 at 10:15 AM Alice &lt;\
                 <a href=\"mailto:a@x\">a@x</a>&gt; wrote:<br></div>\
                 <blockquote class=\"gmail_quote\" style=\"margin:0\">Lunch?</blockquote></div>",
                Some("Yes."),
            ),
            // Gmail, interleaved inside the quote container.
            (
                "<div class=\"gmail_quote\"><div class=\"gmail_attr\">On 3 Jun 2024 Alice wrote:</div>\
                 <blockquote class=\"gmail_quote\">One?</blockquote><div>Yes.</div>\
                 <blockquote class=\"gmail_quote\">Two?</blockquote><div>No.</div></div>",
                Some("Yes.\n\nNo."),
            ),
            // Gmail's indent button is a blockquote of the new text.
            (
                "<blockquote style=\"margin:0 0 0 40px\">indented</blockquote><div>-- </div><div>Bob</div>",
                Some("indented"),
            ),
            // Outlook web: everything from divRplyFwdMsg is history.
            (
                "<div>OK.</div><div id=\"appendonsend\"></div><hr tabindex=\"-1\">\
                 <div id=\"divRplyFwdMsg\" dir=\"ltr\"><b>From:</b> Alice</div><div>Lunch?</div>",
                Some("OK."),
            ),
            // Old Outlook, unquoted attribute values.
            (
                "<div>OK.</div><div class=OutlookMessageHeader lang=en-us dir=ltr align=left><hr tabindex=-1>\
                 <b>From:</b> Alice</div><div>Lunch?</div>",
                Some("OK."),
            ),
            // Thunderbird: cite prefix and cite blockquote, signature.
            (
                "<p>Yes.</p><div class=\"moz-cite-prefix\">Op 03-06-2024 om 10:15 schreef Alice:<br></div>\
                 <blockquote type=\"cite\"><p>Lunch?</p></blockquote><p>Where?</p>\
                 <pre class=\"moz-signature\" cols=\"72\">-- \nBob</pre>",
                Some("Yes.\n\nWhere?"),
            ),
            // Apple Mail: the attribution in its own div, before the cite.
            (
                "<div>Yes.<br><div><br><blockquote type=\"cite\"><div>On 3 Jun 2024, at 10:15, \
                 Alice &lt;a@x&gt; wrote:</div><br><div>Lunch?</div></blockquote></div></div>",
                Some("Yes."),
            ),
            // No quoting element, no boundary in the text.
            ("<p>Just a message.</p>", None),
            // A quote that never ends hides the rest.
            (
                "<div>Yes.</div><blockquote type=cite>Lunch? <div>",
                Some("Yes."),
            ),
        ];
        for &(source, want) in table {
            assert_eq!(html(source).as_deref(), want, "{source}");
        }
    }

    #[test]
    fn the_plain_view_wins_over_html() {
        let reply = Reply {
            text: Some("plain answer\n> q"),
            html: Some("<div>html answer</div><blockquote type=cite>q</blockquote>"),
            subject: Some("Re: x"),
            threaded: false,
        };
        assert_eq!(reply_text(&reply).as_deref(), Some("plain answer"));
        let not_a_reply = Reply {
            subject: Some("x"),
            ..reply
        };
        assert_eq!(reply_text(&not_a_reply), None);
        let empty = Reply {
            threaded: true,
            ..Reply::default()
        };
        assert_eq!(reply_text(&empty), None);
    }

    #[test]
    fn attributes_are_read_quoted_or_not() {
        let table: &[(&str, &str, Option<&str>)] = &[
            (" class=\"a b\" id=x", "class", Some("a b")),
            (" class=\"a b\" id=x", "id", Some("x")),
            (" CLASS='q' type = cite", "type", Some("cite")),
            (" data-x=\"id=y\" hidden", "id", None),
            (" hidden id=z", "id", Some("z")),
            (" = id=z", "id", Some("z")),
            (" class=\"unterminated", "class", Some("unterminated")),
            ("", "class", None),
        ];
        for &(attrs, name, want) in table {
            assert_eq!(attr(attrs, name), want, "{attrs:?} {name}");
        }
    }

    #[test]
    fn hostile_html_and_text_stay_linear_and_do_not_panic() {
        let n = 200_000;
        let nested = "<blockquote type=cite>".repeat(n) + "x";
        assert_eq!(html(&nested).as_deref(), Some(""));
        let open = "<div".repeat(n) + "é<";
        assert_eq!(html(&open), None);
        let entities = "&#xZZ;&amp".repeat(n) + "&";
        assert_eq!(html(&entities), None);
        for s in [
            "<",
            "</",
            "<!--",
            "<a b='",
            "&",
            "<blockquote type=cite",
            "é&é;<é",
        ] {
            let _ = html(s);
        }
        let lines = "On 1 x\n".repeat(n) + "> q";
        assert!(plain(&lines).is_some());
        let sigs = "Sent from my iPhone\n\n".repeat(n);
        assert_eq!(plain(&sigs).as_deref(), Some(""));
    }
}
