//! One file per subcommand. Edge code: may print, may use miette reports.

pub mod lint;
pub mod list;
pub mod plan;
pub mod run;
pub mod schema;
pub mod verify;
