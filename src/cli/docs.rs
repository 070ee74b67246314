//! `completions` and `man`: generated from the clap definitions.
//!
//! The man page is one page, `newswatch(1)`: clap_mangen's own subcommand section refers to a
//! `newswatch-run(1)` page per command, which nobody installs, so the commands and their flags
//! are rendered here into this page, followed by the rule language, the configuration and the
//! exit codes.

use std::io::Write;

use anyhow::Result;

use super::*;

/// `newswatch completions SHELL`.
pub fn completions(args: &CompletionsArgs, out: &mut dyn Write) -> Result<()> {
    use clap::CommandFactory;
    clap_complete::generate(args.shell, &mut Cli::command(), "newswatch", out);
    Ok(())
}

/// Escape text for roff: backslashes, hyphens (so they stay ASCII), and a leading `.` or `'`
/// (which roff would read as a request).
fn roff(s: &str) -> String {
    let mut out = String::new();
    for line in s.lines() {
        if !out.is_empty() {
            out.push('\n');
        }
        if line.starts_with(['.', '\'']) {
            out.push_str("\\&");
        }
        out.push_str(&line.replace('\\', "\\e").replace('-', "\\-"));
    }
    out
}

/// The commands, each with its flags: `prefix` is "newswatch" or "newswatch feeds".
fn render_commands(cmd: &clap::Command, prefix: &str, out: &mut dyn Write) -> Result<()> {
    for sub in cmd.get_subcommands() {
        if sub.get_name() == "help" {
            continue;
        }
        let name = format!("{prefix} {}", sub.get_name());
        writeln!(out, ".TP\n\\fB{}\\fR", roff(&name))?;
        if let Some(about) = sub.get_about() {
            writeln!(out, "{}", roff(&about.to_string()))?;
        }
        for arg in sub.get_arguments().filter(|a| !a.is_global_set()) {
            let Some(long) = arg.get_long() else {
                // A positional argument.
                if let Some(help) = arg.get_help() {
                    let value = arg
                        .get_value_names()
                        .and_then(|v| v.first().map(|s| s.to_string()))
                        .unwrap_or_else(|| arg.get_id().to_string().to_uppercase());
                    writeln!(
                        out,
                        ".br\n\\fI{}\\fR: {}",
                        roff(&value),
                        roff(&help.to_string())
                    )?;
                }
                continue;
            };
            let value = match arg.get_value_names() {
                Some(v) if arg.get_action().takes_values() => v
                    .first()
                    .map(|s| format!(" \\fI{}\\fR", roff(s)))
                    .unwrap_or_default(),
                _ => String::new(),
            };
            let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            writeln!(
                out,
                ".br\n\\fB\\-\\-{}\\fR{value}: {}",
                roff(long),
                roff(&help)
            )?;
        }
        if sub.has_subcommands() {
            render_commands(sub, &name, out)?;
        }
    }
    Ok(())
}

const RULES: &str = r#"A rule is a query over an item's title, summary and content.
GCHQ: the word (whole tokens only: NCA never matches NCAA).
"Joint Operations Cell": the words in sequence.
NCA OR "National Crime Agency": either. NCA raid, NCA AND raid: both.
NCA -NCAA, "dark web" NOT film: without. (GCHQ OR NCSC) cyber: grouping; NOT binds tighter than AND, AND tighter than OR.
surveil*: any word starting so (only a trailing * is a wildcard; ? and ~ are refused, and * does not work inside quotes).
title:NCA, title:(JOC OR GCHQ): in the title only.
Case and accents are ignored, except that a term written in capitals (NCA, G7) is an acronym and matches only text in capitals.
Operators must be upper case: a lower-case or/and/not between terms is an ordinary word (newswatch check warns about it)."#;

const CONFIG: &str = r#"newswatch reads ./newswatch.toml, or the file named by --config or NEWSWATCH_CONFIG, else a built-in default config; newswatch check prints what a config resolves to.
Sections: [storage] path; [schedule] poll (crontab line), timezone; [http] concurrency, per_host, connect_timeout, timeout, max_redirects, max_body_bytes, user_agent, proxy, headers; [[feeds]] name, url, schedule, proxy, user_agent, headers, timeout, tags; [[rules]] name, query; [output] atom, json_feed; [digest] schedule, dir, formats, backlog, max_per_rule, attempts, retry_delay, [digest.email] host, port, security, from, to, username, password_env, password_file, timeout, [digest.webhook] url, timeout; [[alerts]] name, rules, one of webhook (with secret_env), ntfy (with priority), slack, matrix, email, command, and update_at, min_interval, quiet_hours, max_per_hour, timeout, give_up_after; feeds_opml.
Relative paths resolve against the config file's folder; files newswatch writes (digest dir, [output] files) resolve against $STATE_DIRECTORY when systemd sets it."#;

const EXIT: &str = "0 success; 1 runtime error (database, I/O); 2 usage or config error.";

/// `newswatch man`: the man page, roff, generated from the same definitions as `--help`.
pub fn man(out: &mut dyn Write) -> Result<()> {
    use clap::CommandFactory;
    let cmd = Cli::command();
    let man = clap_mangen::Man::new(cmd.clone());
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    man.render_options_section(out)?;
    writeln!(out, ".SH COMMANDS")?;
    render_commands(&cmd, "newswatch", out)?;
    for (title, text) in [
        ("RULE LANGUAGE", RULES),
        ("CONFIGURATION", CONFIG),
        ("EXIT STATUS", EXIT),
    ] {
        writeln!(out, ".SH \"{title}\"")?;
        for para in text.lines() {
            writeln!(out, ".PP\n{}", roff(para))?;
        }
    }
    man.render_version_section(out)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn man_page_refers_to_no_missing_pages_and_explains_rules_and_config() {
        let mut buf = Vec::new();
        man(&mut buf).unwrap();
        let page = String::from_utf8(buf).unwrap();
        assert!(
            !page.contains("newswatch\\-run(1)") && !page.contains("(1)\n"),
            "{page}"
        );
        for want in [
            ".SH COMMANDS",
            ".SH \"RULE LANGUAGE\"",
            ".SH \"CONFIGURATION\"",
            "\\fBnewswatch feeds import\\fR",
            "\\-\\-published\\-since",
            "max_per_rule",
        ] {
            assert!(page.contains(want), "missing {want:?}");
        }
        // No line of feed-independent text starts a roff request by accident.
        assert!(page.lines().all(|l| !l.starts_with('\'')));
    }
}
