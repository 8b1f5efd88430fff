//! Leaf types every stage shares; nothing here imports another module of
//! the crate.

pub mod authority;
pub mod clock;
pub mod one_or_many;
pub mod secret;
pub mod users;
