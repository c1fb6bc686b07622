//! `stagectl completions SHELL` and `stagectl man`: generated from the clap definition at run
//! time, so they always match the binary that prints them.

use std::io::Write;

use clap::CommandFactory;

use super::Cli;

/// The shells `stagectl completions` writes a script for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

/// The completion script for `shell`.
pub fn completions(shell: Shell) -> Vec<u8> {
    let mut cmd = Cli::command();
    let generator = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    // Into memory: the generator panics on a failed write (a closed pipe); the caller's
    // writer does not.
    let mut buf = Vec::new();
    clap_complete::generate(generator, &mut cmd, "stagectl", &mut buf);
    buf
}

/// The man page (roff, section 1): the top-level page, then a section per subcommand with
/// its synopsis, description and options.
pub fn man() -> Vec<u8> {
    let cmd = Cli::command();
    let mut buf = Vec::new();
    // Writes into a Vec cannot fail.
    let _ = clap_mangen::Man::new(cmd.clone()).render(&mut buf);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let _ = writeln!(buf, ".SH \"STAGECTL {}\"", sub.get_name().to_uppercase());
        let page = clap_mangen::Man::new(sub.clone().bin_name(format!("stagectl {}", sub.get_name())));
        let _ = page.render_synopsis_section(&mut buf);
        let _ = page.render_description_section(&mut buf);
        if sub.get_arguments().any(|a| !a.is_hide_set()) {
            let _ = page.render_options_section(&mut buf);
        }
    }
    buf
}
