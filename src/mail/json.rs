// TEMPORARY placeholder, replaced by the mail-parser conversion.
use base64::Engine;
#[derive(Debug, Clone, Default)]
pub struct PayloadOptions { pub include_raw: bool, pub max_attachment_inline: Option<usize> }
#[derive(Debug, Clone, serde::Serialize, PartialEq)]
pub struct MessageJson { pub subject: Option<String>, pub raw: Option<String>, pub parse_error: bool }
pub fn parse_message(raw: &[u8], opts: &PayloadOptions) -> MessageJson {
    let m = mail_parser::MessageParser::default().parse(raw);
    MessageJson { subject: m.as_ref().and_then(|m| m.subject()).map(str::to_string),
      raw: opts.include_raw.then(|| base64::engine::general_purpose::STANDARD.encode(raw)), parse_error: m.is_none() }
}
