//! The SMTP credential store: the `POSTERN_SMTP_USERS` user database and
//! argon2id password hashing/verification. A leaf type: config parses it at
//! start-up and hands it to the SMTP AUTH phase (`smtp::auth`), so config
//! never imports smtp.
//!
//! Password verification is deliberately slow (argon2id); callers must run
//! [`Users::verify`] on a blocking thread, never on the async executor.

use std::collections::HashMap;
use std::fmt;

use argon2::password_hash::{
    PasswordHash, PasswordHashString, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::{Algorithm, Argon2, Params, Version};

/// Errors from parsing the user database.
///
/// Messages are safe to log: they name the problem but never echo a hash.
#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    /// An entry of `POSTERN_SMTP_USERS` is invalid.
    #[error("POSTERN_SMTP_USERS line {line}, entry {entry}: {reason}")]
    InvalidUserEntry {
        /// 1-based line number in the configuration text.
        line: usize,
        /// 1-based entry number counted over the whole text.
        entry: usize,
        /// What is wrong with the entry (never contains the hash itself).
        reason: String,
    },
}

/// The user database.
///
/// `POSTERN_SMTP_USERS` is a list of `user:<argon2id PHC hash>` entries
/// separated by whitespace or newlines. Commas do *not* separate entries
/// because PHC strings contain commas (`m=19456,t=2,p=1`). Blank lines and
/// `#` comments (a token starting with `#` up to the end of its line) are
/// ignored, so a `POSTERN_SMTP_USERS_FILE` can be annotated.
///
/// Each hash must be a PHC string of argon2id with a salt and an output;
/// argon2i/argon2d are refused because only argon2id resists both
/// side-channel and GPU attacks. Duplicate users are refused rather than
/// "last one wins" so a typo cannot silently shadow an account. User names
/// must be non-empty and contain no `:`, whitespace or control characters.
#[derive(Clone)]
pub struct Users {
    users: HashMap<String, PasswordHashString>,
    /// Hash verified for unknown users so their rejection costs as much as a
    /// wrong password. It is created with the parameters of the first entry
    /// so the timing matches real accounts (a fixed default-parameter dummy
    /// would be distinguishable when operators pick other parameters).
    dummy: Option<PasswordHashString>,
}

impl fmt::Debug for Users {
    // Hand-written so hashes never reach logs: offline cracking of a leaked
    // hash is exactly what argon2 only slows down, not prevents.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&str> = self.users.keys().map(String::as_str).collect();
        names.sort_unstable();
        f.debug_struct("Users").field("users", &names).finish()
    }
}

impl Users {
    /// Parses the `POSTERN_SMTP_USERS` text. The error names the 1-based
    /// line and entry and the reason.
    pub fn parse(text: &str) -> Result<Users, UsersError> {
        let mut users = HashMap::new();
        let mut first_params: Option<Params> = None;
        let mut entry = 0;

        for (line_idx, line) in text.lines().enumerate() {
            let line_no = line_idx + 1;
            for token in line.split_whitespace() {
                if token.starts_with('#') {
                    break;
                }
                entry += 1;
                let err = |reason: String| UsersError::InvalidUserEntry {
                    line: line_no,
                    entry,
                    reason,
                };

                let (user, hash) = token
                    .split_once(':')
                    .ok_or_else(|| err("expected user:<argon2id PHC hash>".into()))?;
                validate_username(user).map_err(|r| err(r.into()))?;
                let (phc, params) = parse_argon2id(hash).map_err(err)?;
                if users.contains_key(user) {
                    return Err(err(format!("duplicate user {user:?}")));
                }
                first_params.get_or_insert(params);
                users.insert(user.to_owned(), phc);
            }
        }

        let dummy = first_params.map(make_dummy_hash);
        Ok(Users { users, dummy })
    }

    /// True when no users are configured.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Number of configured users.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Checks `password` for `user`.
    ///
    /// Constant-time with respect to the password via argon2's verify (the
    /// final comparison is constant-time). For an unknown user a dummy hash
    /// is verified anyway, so timing does not reveal which users exist.
    /// Slow by design (tens of ms): callers run it on a blocking thread.
    pub fn verify(&self, user: &str, password: &str) -> bool {
        match (self.users.get(user), &self.dummy) {
            (Some(hash), _) => check_password(hash, password),
            (None, Some(dummy)) => {
                // Result ignored on purpose: the dummy only burns the same
                // CPU time as a real check; the answer is always "no".
                let _ = check_password(dummy, password);
                false
            }
            // No users at all: nothing exists to be enumerated.
            (None, None) => false,
        }
    }
}

fn check_password(hash: &PasswordHashString, password: &str) -> bool {
    // The algorithm/version/params come from the stored hash; `default()`
    // only supplies the (absent) secret.
    Argon2::default()
        .verify_password(password.as_bytes(), &hash.password_hash())
        .is_ok()
}

fn validate_username(user: &str) -> Result<(), &'static str> {
    if user.is_empty() {
        return Err("empty user name");
    }
    // ':' would be ambiguous with the separator; whitespace/control chars
    // cannot be typed reliably by clients and make logs misleading.
    if user
        .chars()
        .any(|c| c == ':' || c.is_whitespace() || c.is_control())
    {
        return Err("user name contains ':', whitespace or a control character");
    }
    Ok(())
}

/// Validates a PHC string fully up front so misconfiguration fails at start-up
/// rather than as mysterious login failures later.
fn parse_argon2id(hash: &str) -> Result<(PasswordHashString, Params), String> {
    let parsed = PasswordHash::new(hash).map_err(|e| format!("malformed PHC hash: {e}"))?;
    match Algorithm::try_from(parsed.algorithm) {
        Ok(Algorithm::Argon2id) => {}
        Ok(other) => {
            return Err(format!(
                "hash uses {other}, only argon2id is accepted (re-hash with `postern hash-password`)"
            ));
        }
        Err(_) => {
            return Err(format!(
                "hash algorithm {:?} is not argon2id",
                parsed.algorithm.as_str()
            ));
        }
    }
    if let Some(v) = parsed.version {
        Version::try_from(v).map_err(|_| format!("unsupported argon2 version {v}"))?;
    }
    if parsed.salt.is_none() {
        return Err("hash has no salt".into());
    }
    if parsed.hash.is_none() {
        return Err("hash has no output".into());
    }
    let params =
        Params::try_from(&parsed).map_err(|e| format!("invalid argon2 parameters: {e}"))?;
    Ok((parsed.serialize(), params))
}

fn make_dummy_hash(params: Params) -> PasswordHashString {
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    // A random password nobody knows, so the dummy can never match.
    let mut secret = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut secret);
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    argon
        .hash_password(&secret, &salt)
        .expect("params were validated from an existing hash")
        .serialize()
}

/// Hashes a password for `postern hash-password`: argon2id with the crate's
/// default (OWASP-recommended) parameters and a random salt, as a PHC string.
pub fn hash_password(password: &str) -> String {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("default argon2 parameters with a generated salt cannot fail")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cheap argon2 hash so tests do not spend seconds in the KDF.
    fn fast_hash(password: &str, algorithm: Algorithm) -> String {
        let params = Params::new(8, 1, 1, None).unwrap();
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        Argon2::new(algorithm, Version::V0x13, params)
            .hash_password(password.as_bytes(), &salt)
            .unwrap()
            .to_string()
    }
    #[test]
    fn parse_good_entries_with_comments_and_blank_lines() {
        let text = format!(
            "# Postern SMTP users\n\nalice:{}   bob:{}  # trailing comment\n   \n  # indented comment\ncarol:{}\n",
            fast_hash("a", Algorithm::Argon2id),
            fast_hash("b", Algorithm::Argon2id),
            fast_hash("c", Algorithm::Argon2id),
        );
        let users = Users::parse(&text).unwrap();
        assert_eq!(users.len(), 3);
        assert!(!users.is_empty());
        assert!(users.verify("alice", "a"));
        assert!(users.verify("bob", "b"));
        assert!(users.verify("carol", "c"));
    }

    #[test]
    fn parse_empty_text() {
        for text in ["", "\n\n", "# only a comment\n"] {
            let users = Users::parse(text).unwrap();
            assert!(users.is_empty());
            assert_eq!(users.len(), 0);
            assert!(!users.verify("alice", "a"));
        }
    }

    #[test]
    fn parse_bad_entries() {
        let good = fast_hash("x", Algorithm::Argon2id);
        let argon2i = fast_hash("x", Algorithm::Argon2i);
        let argon2d = fast_hash("x", Algorithm::Argon2d);
        // (text, line, entry, expected fragment of the reason)
        let cases: Vec<(String, usize, usize, &str)> = vec![
            (format!("alice:{argon2i}"), 1, 1, "only argon2id"),
            (format!("alice:{argon2d}"), 1, 1, "only argon2id"),
            ("alice:$argon2id$v=19$garbage".into(), 1, 1, "no output"),
            (
                "alice:$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$not*base64*".into(),
                1,
                1,
                "malformed PHC",
            ),
            ("alice:not-a-hash".into(), 1, 1, "malformed PHC"),
            ("alice:$bcrypt$xyz".into(), 1, 1, "malformed PHC"),
            (
                "alice:$pbkdf2-sha256$i=1000$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA".into(),
                1,
                1,
                "not argon2id",
            ),
            (
                "alice:$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ".into(),
                1,
                1,
                "no output",
            ),
            (
                "alice:$argon2id$v=19$m=1,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA".into(),
                1,
                1,
                "invalid argon2 parameters",
            ),
            (format!("alice{good}"), 1, 1, "expected user:"),
            (format!(":{good}"), 1, 1, "empty user name"),
            (
                format!("# c\nalice:{good}\n\nalice:{good}"),
                4,
                2,
                "duplicate user",
            ),
            (format!("a:{good} b:{good}\nbad"), 2, 3, "expected user:"),
            (format!("a:{good}, b:{good}"), 1, 1, "malformed PHC"),
        ];
        for (text, line, entry, fragment) in cases {
            match Users::parse(&text) {
                Err(e @ UsersError::InvalidUserEntry { .. }) => {
                    let UsersError::InvalidUserEntry {
                        line: l, entry: n, ..
                    } = &e;
                    assert_eq!((*l, *n), (line, entry), "{text}: {e}");
                    let msg = e.to_string();
                    assert!(msg.contains(fragment), "{text}: {msg}");
                    assert!(
                        msg.contains(&format!("line {line}, entry {entry}")),
                        "{msg}"
                    );
                    assert!(!msg.contains("$argon2"), "hash leaked: {msg}");
                }
                other => panic!("{text}: expected InvalidUserEntry, got {other:?}"),
            }
        }
    }

    #[test]
    fn verify_right_wrong_unknown() {
        let users = Users::parse(&format!(
            "alice:{}\nbob:{}",
            fast_hash("correct horse", Algorithm::Argon2id),
            fast_hash("battery staple", Algorithm::Argon2id)
        ))
        .unwrap();
        assert!(users.verify("alice", "correct horse"));
        assert!(!users.verify("alice", "battery staple"));
        assert!(!users.verify("alice", ""));
        assert!(!users.verify("Alice", "correct horse"));
        assert!(!users.verify("mallory", "correct horse"));
        assert!(!users.verify("", ""));
    }

    #[test]
    fn dummy_hash_uses_first_entry_params() {
        let users =
            Users::parse(&format!("alice:{}", fast_hash("x", Algorithm::Argon2id))).unwrap();
        let dummy = users.dummy.as_ref().unwrap();
        let params = Params::try_from(&dummy.password_hash()).unwrap();
        assert_eq!(
            (params.m_cost(), params.t_cost(), params.p_cost()),
            (8, 1, 1)
        );
        assert_eq!(dummy.algorithm().as_str(), "argon2id");
    }

    #[test]
    fn debug_shows_names_not_hashes() {
        let users = Users::parse(&format!(
            "bob:{} alice:{}",
            fast_hash("x", Algorithm::Argon2id),
            fast_hash("y", Algorithm::Argon2id)
        ))
        .unwrap();
        let dbg = format!("{users:?}");
        assert!(!dbg.contains("$argon2"), "{dbg}");
        assert!(dbg.contains("alice") && dbg.contains("bob"), "{dbg}");
        let alt = format!("{users:#?}");
        assert!(!alt.contains("$argon2"), "{alt}");
    }

    #[test]
    fn hash_password_is_default_argon2id_and_verifies() {
        let phc = hash_password("s3cret");
        let parsed = PasswordHash::new(&phc).unwrap();
        assert_eq!(parsed.algorithm.as_str(), "argon2id");
        let params = Params::try_from(&parsed).unwrap();
        let default = Params::default();
        assert_eq!(
            (params.m_cost(), params.t_cost(), params.p_cost()),
            (default.m_cost(), default.t_cost(), default.p_cost())
        );
        let users = Users::parse(&format!("alice:{phc}")).unwrap();
        assert!(users.verify("alice", "s3cret"));
        assert!(!users.verify("alice", "S3cret"));
        // Random salt: hashing twice gives different strings.
        assert_ne!(phc, hash_password("s3cret"));
    }
}
