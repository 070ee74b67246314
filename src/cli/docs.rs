//! `completions` and `man`: generated from the clap definitions.

use std::io::Write;

use anyhow::Result;

use super::*;

/// `newswatch completions SHELL`.
pub fn completions(args: &CompletionsArgs, out: &mut dyn Write) -> Result<()> {
    use clap::CommandFactory;
    clap_complete::generate(args.shell, &mut Cli::command(), "newswatch", out);
    Ok(())
}

/// `newswatch man`: the man page, roff, generated from the same definitions as `--help`.
pub fn man(out: &mut dyn Write) -> Result<()> {
    use clap::CommandFactory;
    clap_mangen::Man::new(Cli::command()).render(out)?;
    Ok(())
}
