//! The PostgreSQL store's plumbing (issue #12): opening the connection pool
//! with TLS ([`connect`]). Used instead of the spool directory when
//! `POSTERN_DATABASE_URL` is set.

pub mod connect;
pub mod migrate;
pub mod settings;
