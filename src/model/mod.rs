//! Leaf types every stage shares; nothing here imports another module of
//! the crate.

pub mod attachment_url;
pub mod authority;
pub mod brackets;
pub mod clock;
pub mod crlf;
pub mod one_or_many;
pub mod secret;
pub mod sign;
pub mod subaddress;
pub mod throttle;
pub mod users;
