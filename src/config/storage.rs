//! `[storage]`'s choice of database: an SQLite file (`path`, the default) or a PostgreSQL
//! server (`url`, with the password in the URL, in an environment variable or in a file).
//! The password is read when the config is loaded, so a missing one is a config error, and is
//! kept in a [`Secret`] that never prints.

use std::path::{Path, PathBuf};

use toml::Spanned;

/// Which database the config names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    /// `[storage] path`: an SQLite file (the default, `newswatch.db` beside the config).
    Sqlite(PathBuf),
    /// `[storage] url`: a PostgreSQL database.
    Postgres {
        /// `postgres://…`, as written (it may hold the password: print [`Database::describe`]).
        url: Secret,
        /// From `password_env` or `password_file` (`None`: in the URL, or none needed).
        password: Option<Secret>,
    },
}

impl Database {
    /// For people: the file, or `PostgreSQL user@host:port/db` (never a password).
    pub fn describe(&self) -> String {
        match self {
            Database::Sqlite(p) => p.display().to_string(),
            Database::Postgres { url, .. } => format!(
                "PostgreSQL {}",
                crate::store::postgres::describe_url(url.expose())
            ),
        }
    }
}

/// A string that prints as `<redacted>` (a password, or a URL that may hold one).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    /// The value itself, for the one place that needs it (connecting).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// `[storage]`'s keys that choose the database.
pub(super) struct RawChoice<'a> {
    pub path: &'a Option<Spanned<String>>,
    pub url: &'a Option<Spanned<String>>,
    pub password_env: &'a Option<Spanned<String>>,
    pub password_file: &'a Option<Spanned<String>>,
}

/// Validate the choice; errors are `(span, one-line reason)`. `env` looks up environment
/// variables (a parameter so tests need not change the process environment).
pub(super) fn database(
    raw: RawChoice<'_>,
    base: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Database, (Option<std::ops::Range<usize>>, String)> {
    let at = |s: &Spanned<String>| Some(s.span());
    if let (Some(_), Some(u)) = (raw.path, raw.url) {
        return Err((
            at(u),
            "storage.path and storage.url are both set: use one (path for an SQLite file, url for PostgreSQL)".into(),
        ));
    }
    let Some(url) = raw.url else {
        if let Some(key) = raw.password_env.as_ref().or(raw.password_file.as_ref()) {
            return Err((
                at(key),
                "storage.password_env and storage.password_file go with storage.url (PostgreSQL); an SQLite file has no password".into(),
            ));
        }
        return match raw.path {
            Some(p) if p.get_ref().trim().is_empty() => {
                Err((at(p), "storage.path is empty".into()))
            }
            Some(p) => Ok(Database::Sqlite(base.join(p.get_ref()))),
            None => Ok(Database::Sqlite(base.join("newswatch.db"))),
        };
    };
    let config = crate::store::postgres::parse_url(url.get_ref())
        .map_err(|e| (at(url), format!("storage.url: {e}")))?;
    let in_url = config.get_password().is_some();
    let password = match (raw.password_env, raw.password_file) {
        (Some(_), Some(f)) => {
            return Err((
                at(f),
                "storage.password_env and storage.password_file are both set: use one".into(),
            ));
        }
        (Some(k), None) | (None, Some(k)) if in_url => {
            return Err((
                at(k),
                "storage.url already holds a password: drop it from the URL or drop this key"
                    .into(),
            ));
        }
        (Some(var), None) => match env(var.get_ref()) {
            Some(v) if !v.is_empty() => Some(Secret(v)),
            _ => {
                return Err((
                    at(var),
                    format!(
                        "storage.password_env: environment variable {} is not set",
                        var.get_ref()
                    ),
                ));
            }
        },
        (None, Some(file)) => {
            let path = base.join(file.get_ref());
            let text = std::fs::read_to_string(&path).map_err(|e| {
                (
                    at(file),
                    format!("storage.password_file: cannot read {}: {e}", path.display()),
                )
            })?;
            // A trailing newline (as `echo` writes) is not part of the password.
            let pw = text.trim_end_matches(['\n', '\r']);
            if pw.is_empty() {
                return Err((
                    at(file),
                    format!("storage.password_file: {} is empty", path.display()),
                ));
            }
            Some(Secret(pw.to_string()))
        }
        (None, None) => None,
    };
    Ok(Database::Postgres {
        url: Secret(url.get_ref().clone()),
        password,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_str;

    fn load(text: &str) -> Result<crate::config::Settings, crate::config::ConfigError> {
        load_str(text, Some(Path::new("test.toml")), Path::new("/base"))
    }

    fn choose(
        toml_text: &str,
        base: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Database, String> {
        #[derive(serde::Deserialize)]
        struct Raw {
            path: Option<Spanned<String>>,
            url: Option<Spanned<String>>,
            password_env: Option<Spanned<String>>,
            password_file: Option<Spanned<String>>,
        }
        let raw: Raw = toml::from_str(toml_text).unwrap();
        database(
            RawChoice {
                path: &raw.path,
                url: &raw.url,
                password_env: &raw.password_env,
                password_file: &raw.password_file,
            },
            base,
            env,
        )
        .map_err(|(_, m)| m)
    }

    const URL: &str = "url = \"postgres://nw@db.example/news\"\n";

    #[test]
    fn path_is_sqlite_and_url_is_postgres() {
        let none = |_: &str| None;
        assert_eq!(
            choose("path = \"x.db\"", Path::new("/b"), &none).unwrap(),
            Database::Sqlite("/b/x.db".into())
        );
        assert_eq!(
            choose("", Path::new("/b"), &none).unwrap(),
            Database::Sqlite("/b/newswatch.db".into())
        );
        let Database::Postgres { url, password } = choose(URL, Path::new("/b"), &none).unwrap()
        else {
            panic!("not postgres")
        };
        assert_eq!(url.expose(), "postgres://nw@db.example/news");
        assert!(password.is_none());
    }

    #[test]
    fn path_and_url_together_is_an_error_at_the_url_with_file_and_line() {
        let e = load("[storage]\npath = \"x.db\"\nurl = \"postgres://h/d\"\n").unwrap_err();
        assert_eq!(e.origin, "test.toml");
        assert_eq!(e.position, Some((3, 7)));
        assert!(
            e.message
                .contains("storage.path and storage.url are both set"),
            "{e}"
        );
    }

    #[test]
    fn password_from_env_or_file() {
        let env = |k: &str| (k == "NW_PW").then(|| "from-env".to_string());
        let Database::Postgres { password, .. } = choose(
            &format!("{URL}password_env = \"NW_PW\""),
            Path::new("/b"),
            &env,
        )
        .unwrap() else {
            panic!("not postgres")
        };
        assert_eq!(password.unwrap().expose(), "from-env");

        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pw"), "from-file\n").unwrap();
        let Database::Postgres { password, .. } =
            choose(&format!("{URL}password_file = \"pw\""), dir.path(), &env).unwrap()
        else {
            panic!("not postgres")
        };
        assert_eq!(password.unwrap().expose(), "from-file");
    }

    #[test]
    fn missing_password_sources_are_one_line_errors() {
        let none = |_: &str| None;
        let e = choose(
            &format!("{URL}password_env = \"NW_NOPE\""),
            Path::new("/b"),
            &none,
        )
        .unwrap_err();
        assert_eq!(
            e,
            "storage.password_env: environment variable NW_NOPE is not set"
        );
        let e = choose(
            &format!("{URL}password_file = \"missing\""),
            Path::new("/nonexistent-dir"),
            &none,
        )
        .unwrap_err();
        assert!(
            e.starts_with("storage.password_file: cannot read /nonexistent-dir/missing:"),
            "{e}"
        );
        assert!(!e.contains('\n'));
    }

    #[test]
    fn conflicting_or_misplaced_keys_are_errors() {
        let env = |_: &str| Some("x".to_string());
        let both = choose(
            &format!("{URL}password_env = \"A\"\npassword_file = \"f\""),
            Path::new("/b"),
            &env,
        );
        assert!(both.unwrap_err().contains("both set"));
        let twice = choose(
            "url = \"postgres://nw:pw@h/d\"\npassword_env = \"A\"",
            Path::new("/b"),
            &env,
        );
        assert!(twice.unwrap_err().contains("already holds a password"));
        let sqlite = choose("password_env = \"A\"", Path::new("/b"), &env);
        assert!(sqlite.unwrap_err().contains("go with storage.url"));
        let bad = choose("url = \"mysql://h/d\"", Path::new("/b"), &env);
        assert!(
            bad.unwrap_err()
                .starts_with("storage.url: not a postgres://")
        );
    }

    #[test]
    fn postgres_settings_are_refused_by_sqlite_only_code_and_never_print_secrets() {
        let s = load("[storage]\nurl = \"postgres://nw:hunter2@db.example/news\"\n").unwrap();
        assert_eq!(s.backend.describe(), "PostgreSQL nw@db.example:5432/news");
        assert!(!format!("{s:?}").contains("hunter2"));
        let e = s.require_sqlite().unwrap_err();
        assert_eq!(e.position, Some((2, 7)));
        let text = e.to_string();
        assert!(text.starts_with("test.toml:2:7: storage.url:"), "{text}");
        assert!(
            text.contains("newswatch migrate") && !text.contains("hunter2"),
            "{text}"
        );
        assert!(
            load("[storage]\npath = \"x.db\"\n")
                .unwrap()
                .require_sqlite()
                .is_ok()
        );
    }
}
