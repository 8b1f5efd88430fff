//! Leaf types every stage shares; nothing here imports another module of
//! the crate.

pub mod clock;
pub mod users;
