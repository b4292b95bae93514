//! `snapward schema`: print the JSON Schema.

use crate::exit::Exit;

pub fn run() -> Exit {
    super::emit(&crate::policy::schema::generate_pretty(), Exit::Success)
}
