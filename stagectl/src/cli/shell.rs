//! `stagectl completions SHELL` and `stagectl man`: generated from the clap definition at run
//! time, so they always match the binary that prints them.

use std::io::Write;

use clap::CommandFactory;

use super::Cli;
use crate::error::{Error, Result};

/// The shells `stagectl completions` writes a script for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

/// Writes the completion script for `shell` to `out`.
pub fn completions(shell: Shell, out: &mut dyn Write) {
    let mut cmd = Cli::command();
    let generator = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    clap_complete::generate(generator, &mut cmd, "stagectl", out);
}

/// Writes the man page (roff, section 1) to `out`: the top-level page with every subcommand.
pub fn man(out: &mut dyn Write) -> Result<()> {
    let cmd = Cli::command();
    let page = clap_mangen::Man::new(cmd.clone());
    let failed = |e: std::io::Error| Error::Usage(format!("cannot write the man page: {e}"));
    page.render(out).map_err(failed)?;
    // One section per subcommand, so `man stagectl` documents every verb and its options.
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = sub.get_name().to_uppercase();
        writeln!(out, ".SH \"STAGECTL {name}\"").map_err(failed)?;
        let sub_page = clap_mangen::Man::new(sub.clone().bin_name(format!("stagectl {}", sub.get_name())));
        sub_page.render_synopsis_section(out).map_err(failed)?;
        sub_page.render_description_section(out).map_err(failed)?;
        if sub.get_arguments().any(|a| !a.is_hide_set()) {
            sub_page.render_options_section(out).map_err(failed)?;
        }
    }
    Ok(())
}
