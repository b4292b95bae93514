//! snapward (being assembled).

pub mod retention;
pub mod snapshot;
