//! The error every validation step returns: a [`FieldError`] names the
//! JSON path of the offending value, a stable code and an explanation. It
//! carries no HTTP: the API layer answers it with `422` (see
//! `impl From<FieldError> for ApiError` in `api/`).

use serde_json::{Value, json};

/// HTTP status the handler should answer a [`FieldError`] with.
pub const FIELD_ERROR_STATUS: u16 = 422;

/// A field-level validation error → HTTP 422 with
/// `{"error": {"code", "message", "field"}}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message} ({code})")]
pub struct FieldError {
    /// Stable machine-readable code, see the module docs for the list.
    pub code: &'static str,
    /// Human-readable explanation.
    pub message: String,
    /// JSON path of the offending value, e.g. `to[1]`, `headers.X-Foo`,
    /// `attachments[0].content`.
    pub field: String,
}

impl FieldError {
    pub fn new(code: &'static str, field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            code,
            message: message.into(),
            field: field.into(),
        }
    }

    /// The response body for this error.
    pub fn to_json(&self) -> Value {
        json!({
            "error": {
                "code": self.code,
                "message": self.message,
                "field": self.field,
            }
        })
    }
}

/// Field paths are echoed to clients and logs; keep them on one line.
pub(crate) fn escape_controls(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_error_json_shape() {
        let error = FieldError::new("invalid_address", "to[1]", "bad");
        assert_eq!(
            error.to_json(),
            json!({"error": {"code": "invalid_address", "message": "bad", "field": "to[1]"}})
        );
        assert_eq!(error.to_string(), "to[1]: bad (invalid_address)");
    }
}
