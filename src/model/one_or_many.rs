//! `OneOrMany<T>`: a JSON field that takes a single value or a list of
//! them (a route's `"secret"`, the sending API's `"to"`, …), so the common
//! case of one needs no brackets.

use serde::Deserialize;

/// A single value or a list of them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T> OneOrMany<T> {
    /// The values as a slice, whichever form was sent.
    pub fn as_slice(&self) -> &[T] {
        match self {
            OneOrMany::One(value) => std::slice::from_ref(value),
            OneOrMany::Many(values) => values,
        }
    }

    /// JSON path of the `index`-th value below `base`: a single value is
    /// reported as `base` itself so the path matches what the client sent.
    pub fn field_path(&self, base: &str, index: usize) -> String {
        match self {
            OneOrMany::One(_) => base.to_string(),
            OneOrMany::Many(_) => format!("{base}[{index}]"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_or_a_list() {
        let one: OneOrMany<String> = serde_json::from_str(r#""a""#).unwrap();
        let many: OneOrMany<String> = serde_json::from_str(r#"["a","b"]"#).unwrap();
        assert_eq!(one.as_slice(), ["a"]);
        assert_eq!(many.as_slice(), ["a", "b"]);
        assert_eq!(one.field_path("to", 0), "to");
        assert_eq!(many.field_path("to", 1), "to[1]");
        let e = serde_json::from_str::<OneOrMany<String>>("5").unwrap_err();
        assert_eq!(
            e.to_string(),
            "data did not match any variant of untagged enum OneOrMany"
        );
    }
}
