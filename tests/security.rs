//! Security defects of issue 12 (items 5–8, 10, 21), each pinned by a test named after it:
//! headers and redirects that leave the configured origin, SSRF through redirects and OPML,
//! raw names from OPML, non-http(s) links in exports, the lock file, dismissed matches in
//! exports.

use std::time::Duration;

use crate::support::Project;

const NCA_RULE: &str = "[[rules]]\nname = \"nca\"\nquery = 'NCA'\n";

// ---------------------------------------------------------------------------------------------
// Item 10: a symlinked `<db>.lock` was followed and its target truncated.

#[test]
fn symlinked_db_lock_is_not_followed_nor_its_target_truncated() {
    let project = Project::new(NCA_RULE);
    let precious = project.path("precious.txt");
    std::fs::write(&precious, "do not truncate me").unwrap();
    std::os::unix::fs::symlink(&precious, project.path("newswatch.db.lock")).unwrap();
    let out = project
        .cmd(&["run"])
        .timeout(Duration::from_secs(20))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("newswatch.db.lock") && err.contains("symbolic link"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(&precious).unwrap(),
        "do not truncate me"
    );

    // A dangling link is not followed either: nothing is created at its target.
    let project = Project::new(NCA_RULE);
    let target = project.path("created-by-link");
    std::os::unix::fs::symlink(&target, project.path("newswatch.db.lock")).unwrap();
    let (code, _, err) = project.run(&["run"]);
    assert_eq!(code, 1, "{err}");
    assert!(!target.exists(), "the link's target was created");
}

#[test]
fn db_lock_that_is_a_fifo_or_hard_link_is_refused() {
    let project = Project::new(NCA_RULE);
    let lock = project.path("newswatch.db.lock");
    let status = std::process::Command::new("mkfifo")
        .arg(&lock)
        .status()
        .unwrap();
    assert!(status.success());
    let (code, _, err) = project.run(&["run"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("not a regular file"), "{err}");

    let project = Project::new(NCA_RULE);
    let other = project.path("other.txt");
    std::fs::write(&other, "keep").unwrap();
    std::fs::hard_link(&other, project.path("newswatch.db.lock")).unwrap();
    let (code, _, err) = project.run(&["run"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("hard links"), "{err}");
    assert_eq!(std::fs::read_to_string(&other).unwrap(), "keep");
}
