//! One file per subcommand. Edge code: may print, may use miette reports.

pub mod lint;
pub mod plan;
pub mod schema;
pub mod verify;
