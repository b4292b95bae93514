//! One file per subcommand. Edge code: may print, may use miette reports.

pub mod alert_rules;
pub mod docs;
pub mod lint;
pub mod list;
pub mod plan;
pub mod run;
pub mod schema;
pub mod test_restore;
pub mod verify;

use crate::exit::Exit;

/// Writes `text` to stdout. `print!` would panic when stdout is gone
/// (`snapward plan | head -1`, a closed pipe, a full disk behind `>`).
pub fn print_stdout(text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()
}

/// Prints an error line on stderr; never panics (stderr may be gone too).
pub fn print_stderr(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// Prints a command's data on stdout and returns `exit`, or — when stdout
/// cannot be written — says so on stderr and returns [`Exit::Usage`]: the
/// caller did not get the output it asked for.
pub fn emit(text: &str, exit: Exit) -> Exit {
    match print_stdout(text) {
        Ok(()) => exit,
        Err(e) => {
            print_stderr(&format!(
                "error: cannot write to stdout: {e} (the output is incomplete)"
            ));
            Exit::Usage
        }
    }
}
