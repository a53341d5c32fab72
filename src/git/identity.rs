//! Repository identity: which clones are the same repository, so teammates' codemarks meet.
//!
//! A repository is named by its primary remote (`origin`, else the first), normalised so that
//! the ssh and https forms of one URL are equal (case, credentials, ports and a `.git` suffix
//! ignored), plus its root commits. Two clones are the **same** when their primary remotes
//! match, or, with no remotes, when they share a root commit. A fork shares root commits (and
//! often lists the original as another remote) under a different primary remote: **related**
//! but distinct. A shallow clone cannot see its roots, so it is judged by remotes alone.

use git2::Repository;

use super::{GitError, read_err};

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RepoIdentity {
    /// Normalised URL of the primary remote, if any.
    pub primary: Option<String>,
    /// Normalised URLs of every remote, sorted.
    pub remotes: Vec<String>,
    /// Root commits reachable from HEAD along first parents (hex); empty in a shallow clone.
    pub roots: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Relation {
    Same,
    /// Shares history (a fork, or a mirror under another name) but is not the same repository.
    Related,
    Unrelated,
}

impl RepoIdentity {
    pub fn relation(&self, other: &RepoIdentity) -> Relation {
        let shared_root = self.roots.iter().any(|r| other.roots.contains(r));
        match (&self.primary, &other.primary) {
            (Some(a), Some(b)) if a == b => Relation::Same,
            (Some(a), Some(b)) => {
                let knows = other.remotes.contains(a) || self.remotes.contains(b);
                if shared_root || knows { Relation::Related } else { Relation::Unrelated }
            }
            (None, None) if shared_root => Relation::Same,
            _ if shared_root => Relation::Related,
            _ => Relation::Unrelated,
        }
    }
}

pub(super) fn read(repo: &Repository) -> Result<RepoIdentity, GitError> {
    let names = repo.remotes().map_err(|e| read_err("the remotes", e))?;
    let mut named: Vec<(String, String)> = Vec::new();
    for name in names.iter().flatten().flatten() {
        if let Ok(remote) = repo.find_remote(name)
            && let Some(url) = remote.url().ok().and_then(normalize_remote_url)
        {
            named.push((name.to_owned(), url));
        }
    }
    let primary = named.iter().find(|(n, _)| n == "origin").or(named.first()).map(|(_, u)| u.clone());
    let mut remotes: Vec<String> = named.into_iter().map(|(_, u)| u).collect();
    remotes.sort();
    remotes.dedup();
    let roots = if repo.is_shallow() { Vec::new() } else { first_parent_roots(repo) };
    Ok(RepoIdentity { primary, remotes, roots })
}

fn first_parent_roots(repo: &Repository) -> Vec<String> {
    let Ok(mut walk) = repo.revwalk() else { return Vec::new() };
    if walk.push_head().is_err() || walk.simplify_first_parent().is_err() {
        return Vec::new();
    }
    let mut roots = Vec::new();
    for oid in walk.flatten() {
        if let Ok(c) = repo.find_commit(oid)
            && c.parent_count() == 0
        {
            roots.push(oid.to_string());
        }
    }
    roots
}

/// `git@github.com:Owner/Repo.git`, `ssh://git@github.com:22/owner/repo`,
/// `https://user:token@GitHub.com/owner/repo/` all become `github.com/owner/repo`.
/// Local paths become `file:` plus the path. `None` for an empty URL.
pub fn normalize_remote_url(url: &str) -> Option<String> {
    let url = url.trim();
    if url.is_empty() {
        return None;
    }
    let (host, path) = if let Some((scheme, rest)) = url.split_once("://") {
        if scheme.eq_ignore_ascii_case("file") {
            return Some(format!("file:{}", clean_path(rest)));
        }
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        (authority, path)
    } else if let Some((authority, path)) = scp_like(url) {
        (authority, path)
    } else {
        return Some(format!("file:{}", clean_path(url)));
    };
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    let host = match host.rsplit_once(':') {
        // A port (ssh 22 or 2222, https 443 ...): one repository is reachable on several.
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => host,
    };
    Some(format!("{}/{}", host.to_ascii_lowercase(), clean_path(path)))
}

/// `user@host:path` (scp syntax): a colon before any slash, and not a Windows drive letter.
fn scp_like(url: &str) -> Option<(&str, &str)> {
    let colon = url.find(':')?;
    let slash = url.find('/').unwrap_or(usize::MAX);
    (colon < slash && colon > 1).then(|| (&url[..colon], &url[colon + 1..]))
}

fn clean_path(path: &str) -> String {
    let path = path.trim_matches('/');
    let path = path.strip_suffix(".git").unwrap_or(path).trim_end_matches('/');
    path.to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_https_and_scp_forms_of_one_repository_are_equal() {
        let forms = [
            "git@github.com:Owner/Repo.git",
            "ssh://git@github.com/owner/repo",
            "ssh://git@github.com:22/owner/repo.git",
            "https://github.com/owner/repo",
            "https://user:secret@GitHub.com/Owner/Repo.git/",
            "git://github.com/owner/repo.git",
            "git+ssh://git@github.com/owner/repo",
        ];
        for f in forms {
            assert_eq!(normalize_remote_url(f).as_deref(), Some("github.com/owner/repo"), "{f}");
        }
    }

    #[test]
    fn different_repositories_and_hosts_stay_apart() {
        assert_ne!(normalize_remote_url("git@github.com:a/repo"), normalize_remote_url("git@github.com:b/repo"));
        assert_ne!(normalize_remote_url("git@github.com:a/repo"), normalize_remote_url("git@gitlab.com:a/repo"));
        assert_eq!(
            normalize_remote_url("https://gitlab.example.com/group/sub/project.git").as_deref(),
            Some("gitlab.example.com/group/sub/project")
        );
    }

    #[test]
    fn local_paths_are_file_urls() {
        assert_eq!(normalize_remote_url("/srv/git/Repo.git").as_deref(), Some("file:srv/git/repo"));
        assert_eq!(normalize_remote_url("file:///srv/git/repo").as_deref(), Some("file:srv/git/repo"));
        assert_eq!(normalize_remote_url("  "), None);
    }

    fn id(primary: Option<&str>, remotes: &[&str], roots: &[&str]) -> RepoIdentity {
        RepoIdentity {
            primary: primary.map(str::to_owned),
            remotes: remotes.iter().map(|s| s.to_string()).collect(),
            roots: roots.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn clones_are_the_same_forks_are_related_strangers_are_unrelated() {
        let a = id(Some("github.com/o/r"), &["github.com/o/r"], &["r1"]);
        let clone = id(Some("github.com/o/r"), &["github.com/o/r"], &["r1"]);
        let shallow_clone = id(Some("github.com/o/r"), &["github.com/o/r"], &[]);
        let fork = id(Some("github.com/me/r"), &["github.com/me/r", "github.com/o/r"], &["r1"]);
        let stranger = id(Some("github.com/x/y"), &["github.com/x/y"], &["r9"]);
        assert_eq!(a.relation(&clone), Relation::Same);
        assert_eq!(a.relation(&shallow_clone), Relation::Same);
        assert_eq!(a.relation(&fork), Relation::Related);
        assert_eq!(fork.relation(&a), Relation::Related);
        assert_eq!(a.relation(&stranger), Relation::Unrelated);
        let local = id(None, &[], &["r1"]);
        assert_eq!(local.relation(&id(None, &[], &["r1"])), Relation::Same);
        assert_eq!(local.relation(&a), Relation::Related);
    }
}
