//! `snapward completions SHELL` and `snapward man`: generated from the
//! clap definitions, so they never drift from `--help`.

use clap::CommandFactory;

use crate::cli::Cli;
use crate::exit::Exit;

/// The completion script for `shell`, on stdout.
pub fn completions(shell: clap_complete::Shell) -> Exit {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "snapward", &mut out);
    super::emit(&String::from_utf8_lossy(&out), Exit::Success)
}

/// The man page (roff), with one section per subcommand, on stdout.
pub fn man() -> Exit {
    let cmd = Cli::command();
    let mut out = Vec::new();
    if let Err(e) = clap_mangen::Man::new(cmd.clone()).render(&mut out) {
        super::print_stderr(&format!("error: cannot render the man page: {e}"));
        return Exit::Usage;
    }
    for sub in cmd.get_subcommands() {
        let page = sub
            .clone()
            .display_name(format!("snapward-{}", sub.get_name()));
        if let Err(e) = clap_mangen::Man::new(page).render(&mut out) {
            super::print_stderr(&format!("error: cannot render the man page: {e}"));
            return Exit::Usage;
        }
    }
    super::emit(&String::from_utf8_lossy(&out), Exit::Success)
}
