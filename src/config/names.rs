//! Which `POSTERN_*` names are ours: the known names (from `RawConfig`
//! itself), the closest one to a typo, and the Kubernetes service links
//! that are not ours but share the prefix.

use serde::Deserialize;

use super::RawConfig;

/// The names envy reads, from `RawConfig`'s own `Deserialize` impl, so the
/// list of known variables cannot drift from the fields.
pub(super) fn known_fields() -> &'static [&'static str] {
    use serde::de::{self, Visitor};
    struct Introspect<'a>(&'a mut &'static [&'static str]);
    impl<'de> de::Deserializer<'de> for Introspect<'_> {
        type Error = de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("not a struct"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _visitor: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(de::Error::custom("introspected"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map enum identifier ignored_any
        }
    }
    static FIELDS: std::sync::OnceLock<&'static [&'static str]> = std::sync::OnceLock::new();
    FIELDS.get_or_init(|| {
        let mut fields: &'static [&'static str] = &[];
        let _ = RawConfig::deserialize(Introspect(&mut fields));
        fields
    })
}

/// Every `POSTERN_*` variable Postern reads, sorted.
pub fn known_names() -> Vec<String> {
    let mut names: Vec<String> = known_fields()
        .iter()
        .map(|f| format!("POSTERN_{}", f.to_ascii_uppercase()))
        .collect();
    names.sort();
    names
}

/// The known name closest to a misspelt one, if any is close enough to be
/// a plausible typo (a few edits, transpositions counting as one).
pub(super) fn closest_name(var: &str) -> Option<&'static str> {
    let var = var.to_ascii_uppercase();
    static NAMES: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    let names = NAMES.get_or_init(|| {
        known_names()
            .into_iter()
            .map(|n| &*Box::leak(n.into_boxed_str()))
            .collect()
    });
    let limit = (var.len() / 4).clamp(2, 5);
    names
        .iter()
        .map(|n| (strsim::damerau_levenshtein(&var, n), *n))
        .filter(|(d, _)| *d <= limit)
        .min()
        .map(|(_, n)| n)
}

/// Variables Kubernetes injects for every Service in the namespace
/// (`<NAME>_SERVICE_HOST`, `<NAME>_PORT_2525_TCP_ADDR`, …): a Service named
/// `postern…` makes them start with `POSTERN_`. They are not ours, and
/// refusing to start over them would break ordinary deployments (our chart
/// also sets `enableServiceLinks: false`). Their shapes are distinctive,
/// and a `*_PORT` is only skipped when its value is a `tcp://…` link, so
/// `POSTERN_SMTP_PORT=25` is still reported as unknown.
pub(super) fn is_kubernetes_service_link(var: &str, value: &str) -> bool {
    if var.ends_with("_SERVICE_HOST")
        || var.ends_with("_SERVICE_PORT")
        || var.contains("_SERVICE_PORT_")
    {
        return true;
    }
    let link_value = ["tcp://", "udp://", "sctp://"]
        .iter()
        .any(|p| value.starts_with(p));
    if var.ends_with("_PORT") && link_value {
        return true;
    }
    // <NAME>_PORT_<port>_<PROTO>[_PROTO|_PORT|_ADDR]
    let parts: Vec<&str> = var.split('_').collect();
    parts.windows(3).enumerate().any(|(i, w)| {
        w[0] == "PORT"
            && !w[1].is_empty()
            && w[1].bytes().all(|b| b.is_ascii_digit())
            && matches!(w[2], "TCP" | "UDP" | "SCTP")
            && match parts.get(i + 3..) {
                Some([]) | None => true,
                Some([last]) => matches!(*last, "PROTO" | "PORT" | "ADDR"),
                Some(_) => false,
            }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::cfg;

    #[test]
    fn unknown_names_are_errors_with_a_suggestion() {
        let e = cfg(&[
            ("POSTERN_WEBHOOK_ULR", "http://x/"),
            ("POSTERN_SMTP_LISTEN", "0.0.0.0:2525"),
        ])
        .unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains(
                "POSTERN_WEBHOOK_ULR: unknown variable; did you mean POSTERN_WEBHOOK_URL?"
            ),
            "{text}"
        );
        // ...and the typo does not turn on development mode on 0.0.0.0.
        assert!(
            text.contains("POSTERN_SMTP_LISTEN: 0.0.0.0:2525 is not a loopback address"),
            "{text}"
        );
        let far = cfg(&[("POSTERN_COMPLETELY_DIFFERENT", "1")]).unwrap_err();
        assert_eq!(
            far.to_string(),
            "POSTERN_COMPLETELY_DIFFERENT: unknown variable (the README's Configuration table lists every POSTERN_* name)"
        );
        // An unknown name is an error even when empty; other prefixes are not ours.
        assert!(cfg(&[("POSTERN_FSYNK", "")]).is_err());
        assert!(cfg(&[("POSTERNX_FOO", "1"), ("HOME", "/root")]).is_ok());
    }

    #[test]
    fn kubernetes_service_links_are_not_ours() {
        let links = [
            ("POSTERN_SERVICE_HOST", "10.0.0.7"),
            ("POSTERN_SERVICE_PORT", "2525"),
            ("POSTERN_SERVICE_PORT_SMTP", "2525"),
            ("POSTERN_PORT", "tcp://10.0.0.7:2525"),
            ("POSTERN_PORT_2525_TCP", "tcp://10.0.0.7:2525"),
            ("POSTERN_PORT_2525_TCP_PROTO", "tcp"),
            ("POSTERN_PORT_2525_TCP_PORT", "2525"),
            ("POSTERN_PORT_2525_TCP_ADDR", "10.0.0.7"),
            ("POSTERN_SMTP_PORT_2525_TCP_ADDR", "10.0.0.7"),
        ];
        assert!(cfg(&links).is_ok());
        for (k, v) in [
            ("POSTERN_SMTP_PORT", "25"),
            ("POSTERN_PORT", "2525"),
            ("POSTERN_PORT_2525_TCP_HOST", "x"),
        ] {
            assert!(cfg(&[(k, v)]).is_err(), "{k}={v}");
        }
    }

    #[test]
    fn known_names_match_the_fields() {
        let names = known_names();
        assert!(names.contains(&"POSTERN_WEBHOOK_URL".to_string()));
        assert!(names.contains(&"POSTERN_DEAD_RETENTION".to_string()));
        assert!(names.len() >= 49, "{names:?}");
        // Every known name is accepted (with some value) as a name.
        for n in &names {
            let r = cfg(&[(n.as_str(), "")]);
            assert!(r.is_ok(), "{n}: {:?}", r.err());
        }
    }
}
