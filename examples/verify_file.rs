//! Verifies snapshot files with `snapward::snapshot::verify_file` and prints
//! one JSON line per file (`bench/verify.sh` times this until the CLI exists).
//!
//!     cargo run --release --example verify_file -- FILE...

use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut code = ExitCode::SUCCESS;
    for arg in std::env::args_os().skip(1) {
        let path = Path::new(&arg);
        let line = match snapward::snapshot::verify_file(path) {
            Ok(id) => {
                serde_json::json!({ "file": path.display().to_string(), "valid": true, "identity": id })
            }
            Err(e) => {
                code = ExitCode::FAILURE;
                serde_json::json!({ "file": path.display().to_string(), "valid": false, "check": e.check(), "error": e.to_string() })
            }
        };
        println!("{line}");
    }
    code
}
