//! The web console's settings (`POSTERN_UI_USERS`) → [`ConsoleConfig`].
//! Who may log in besides API holders; whether the console is on at all is
//! decided at start-up from these, the API keys and development mode
//! (`app::settings::console`).

use super::{Problems, RawConfig, invalid};
use crate::model::users::{Users, UsersError};

/// What the console takes from the configuration.
#[derive(Debug, Clone)]
pub struct ConsoleConfig {
    /// `POSTERN_UI_USERS`: `user:<argon2id hash>` entries, as SMTP users.
    pub users: Users,
}

pub(super) fn parse(raw: &mut RawConfig, p: &mut Problems) -> ConsoleConfig {
    let none = || Users::parse("").expect("no users parse");
    let users = match raw.ui_users.take() {
        None => none(),
        Some(text) => p.or(
            // The shared parser names the SMTP variable; say ours instead.
            Users::parse(&text).map_err(
                |UsersError::InvalidUserEntry {
                     line,
                     entry,
                     reason,
                 }| {
                    invalid(
                        "POSTERN_UI_USERS",
                        format!("line {line}, entry {entry}: {reason}"),
                    )
                },
            ),
            none(),
        ),
    };
    ConsoleConfig { users }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn ui_users_parse_and_errors_name_the_variable() {
        let hash = crate::model::users::hash_password("pw");
        let c = Config::from_vars([("POSTERN_UI_USERS", format!("ann:{hash}"))]).unwrap();
        assert_eq!(c.console.users.len(), 1);
        let e = Config::from_vars([("POSTERN_UI_USERS", "ann:nothash")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("POSTERN_UI_USERS: line 1, entry 1"), "{e}");
        assert!(!e.contains("SMTP"), "{e}");
        assert!(
            Config::from_vars(Vec::<(String, String)>::new())
                .unwrap()
                .console
                .users
                .is_empty()
        );
    }
}
