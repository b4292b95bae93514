//! `snapward schema`: print the JSON Schema.

use crate::exit::Exit;

pub fn run() -> Exit {
    print!("{}", crate::policy::schema::generate_pretty());
    Exit::Success
}
