//! Which code host and repository a checkout's remotes name, and where that host's API is.
//!
//! Known without configuration: github.com, gitlab.com and bitbucket.org (and their ssh
//! aliases `ssh.github.com`, `altssh.gitlab.com`, `altssh.bitbucket.org`). A self-hosted GitHub
//! Enterprise Server or GitLab host is named in the settings, one key per host:
//!
//! ```text
//! providers.host:git.corp.example     = github-enterprise                       (API at https://git.corp.example/api/v3)
//! providers.host:gitlab.example.com   = gitlab https://gitlab.example.com/api/v4
//! ```
//!
//! The value is the kind, then optionally the API's base URL (otherwise the kind's usual path on
//! that host). `marginalia auth login gitlab --host gitlab.example.com` writes it.
//!
//! Each provider's API base can be replaced for every host with `MARGINALIA_GITHUB_API`,
//! `MARGINALIA_GITLAB_API` or `MARGINALIA_BITBUCKET_API` (tests, proxies, mirrors). Plain
//! `http://` is refused except to loopback. A replaced base has its own keychain account
//! (`github:http://127.0.0.1:8080`), so a token stored for the real host never goes to it.

use serde::Serialize;

use super::{Provider, ProviderError};

/// The settings key prefix of self-hosted hosts.
pub const HOST_SETTING_PREFIX: &str = "providers.host:";

/// A repository on a code host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RepoRef {
    pub provider: Provider,
    /// The host people know (`github.com`, `gitlab.example.com`).
    pub host: String,
    /// The API's base URL, without a trailing `/` (`https://api.github.com`,
    /// `https://gitlab.example.com/api/v4`, `https://api.bitbucket.org/2.0`).
    pub api_base: String,
    /// GitHub's owner, GitLab's namespace (`group/subgroup`), Bitbucket's workspace.
    pub owner: String,
    pub name: String,
    /// The OS keychain account its token is kept under: `<provider>:<host>`, or
    /// `<provider>:<API origin>` when the API base is replaced by an environment variable.
    pub account: String,
    /// The API base comes from `MARGINALIA_<PROVIDER>_API`.
    pub overridden: bool,
    /// The git remote it was read from, when it was.
    pub remote: Option<String>,
}

impl RepoRef {
    /// `acme/shop`, `group/sub/project`.
    pub fn slug(&self) -> String {
        format!("{}/{}", self.owner, self.name)
    }

    /// `github:acme/shop#42`, `gitlab:group/project!7`, or without a number `github:acme/shop`.
    pub fn subject(&self, pr: Option<u64>) -> String {
        let mut s = format!("{}:{}", self.provider, self.slug());
        if let Some(n) = pr {
            s.push_str(&self.provider.pr_ref(n));
        }
        s
    }

    /// A host without a repository (checking a token).
    pub fn bare(provider: Provider, host: &str, api_base: &str) -> Result<RepoRef, ProviderError> {
        let api_base = check_api_base(api_base)?;
        Ok(RepoRef {
            provider,
            host: host.to_owned(),
            account: format!("{provider}:{host}"),
            api_base,
            owner: String::new(),
            name: String::new(),
            overridden: false,
            remote: None,
        })
    }
}

/// A self-hosted host from the settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostConfig {
    pub host: String,
    pub provider: Provider,
    /// The API's base URL; the kind's usual one on that host when `None`.
    pub api_base: Option<String>,
}

impl HostConfig {
    /// Reads one setting (`providers.host:HOST` = `KIND [URL]`).
    pub fn parse(key: &str, value: &str) -> Result<HostConfig, String> {
        let host = key.strip_prefix(HOST_SETTING_PREFIX).unwrap_or(key).trim().to_ascii_lowercase();
        let mut words = value.split_whitespace();
        let kind = words.next().ok_or_else(|| format!("setting {key} is empty"))?;
        let provider = match kind.to_ascii_lowercase().as_str() {
            "github" | "github-enterprise" | "ghes" => Provider::GitHub,
            "gitlab" => Provider::GitLab,
            other => {
                return Err(format!(
                    "setting {key} names `{other}`: a self-hosted host is github-enterprise or gitlab (Bitbucket \
                     Cloud is bitbucket.org only)"
                ));
            }
        };
        let api_base = words.next().map(str::to_owned);
        Ok(HostConfig { host, provider, api_base })
    }

    /// The setting's key and value.
    pub fn to_setting(&self) -> (String, String) {
        let kind = match self.provider {
            Provider::GitHub => "github-enterprise",
            _ => self.provider.as_str(),
        };
        let value = match &self.api_base {
            Some(api) => format!("{kind} {api}"),
            None => kind.to_owned(),
        };
        (format!("{HOST_SETTING_PREFIX}{}", self.host), value)
    }
}

/// Self-hosted hosts from the settings (`Store::settings_under(HOST_SETTING_PREFIX)`); a
/// setting that cannot be read is skipped with a warning.
pub fn hosts_from_settings(settings: &[(String, String)]) -> Vec<HostConfig> {
    settings
        .iter()
        .filter_map(|(k, v)| match HostConfig::parse(k, v) {
            Ok(h) => Some(h),
            Err(e) => {
                tracing::warn!("{e}");
                None
            }
        })
        .collect()
}

/// The name of the environment variable that replaces a provider's API base.
pub fn api_env(provider: Provider) -> &'static str {
    match provider {
        Provider::GitHub => "MARGINALIA_GITHUB_API",
        Provider::GitLab => "MARGINALIA_GITLAB_API",
        Provider::Bitbucket => "MARGINALIA_BITBUCKET_API",
    }
}

/// What detection reads besides the remotes: self-hosted hosts and API bases replaced by the
/// environment.
#[derive(Clone, Debug, Default)]
pub struct Config {
    pub hosts: Vec<HostConfig>,
    /// Replaced API bases, by provider.
    pub overrides: Vec<(Provider, String)>,
}

impl Config {
    /// The hosts from `settings` and the overrides from the process environment.
    pub fn from_env(settings: &[(String, String)]) -> Config {
        let overrides = Provider::ALL
            .into_iter()
            .filter_map(|p| std::env::var(api_env(p)).ok().filter(|v| !v.trim().is_empty()).map(|v| (p, v)))
            .collect();
        Config { hosts: hosts_from_settings(settings), overrides }
    }

    fn override_of(&self, p: Provider) -> Option<&str> {
        self.overrides.iter().find(|(q, _)| *q == p).map(|(_, v)| v.as_str())
    }

    /// The provider of `host`, and its API base as configured (before overrides).
    pub fn provider_of(&self, host: &str) -> Option<(Provider, String)> {
        let host = host.to_ascii_lowercase();
        match host.as_str() {
            "github.com" | "ssh.github.com" | "www.github.com" => {
                return Some((Provider::GitHub, "https://api.github.com".into()));
            }
            "gitlab.com" | "altssh.gitlab.com" | "www.gitlab.com" => {
                return Some((Provider::GitLab, "https://gitlab.com/api/v4".into()));
            }
            "bitbucket.org" | "altssh.bitbucket.org" | "www.bitbucket.org" => {
                return Some((Provider::Bitbucket, "https://api.bitbucket.org/2.0".into()));
            }
            _ => {}
        }
        let h = self.hosts.iter().find(|h| h.host == host)?;
        let api = h.api_base.clone().unwrap_or_else(|| match h.provider {
            Provider::GitHub => format!("https://{host}/api/v3"),
            _ => format!("https://{host}/api/v4"),
        });
        Some((h.provider, api))
    }

    /// A host without a repository (for `auth`): its API base (replaced by the environment when
    /// set) and keychain account.
    pub fn host_ref(&self, provider: Provider, host: &str) -> Result<RepoRef, ProviderError> {
        let host = canonical_host(host);
        let Some((p, api)) = self.provider_of(&host) else {
            return Err(ProviderError::Setup(format!(
                "{host} is not a host marginalia knows: add it with `marginalia auth login github|gitlab --host {host}`"
            )));
        };
        if p != provider {
            return Err(ProviderError::Setup(format!("{host} is a {} host, not {}", p.title(), provider.title())));
        }
        let (api_base, overridden) = match self.override_of(provider) {
            Some(o) => (check_api_base(o)?, true),
            None => (check_api_base(&api)?, false),
        };
        let account =
            if overridden { format!("{provider}:{}", origin(&api_base)) } else { format!("{provider}:{host}") };
        Ok(RepoRef {
            provider,
            host,
            api_base,
            owner: String::new(),
            name: String::new(),
            account,
            overridden,
            remote: None,
        })
    }

    /// The repository a remote URL names, when its host is a known code host.
    pub fn repo_of_url(&self, url: &str) -> Result<Option<RepoRef>, ProviderError> {
        let Some((host, path)) = split_remote(url) else { return Ok(None) };
        let Some((provider, api)) = self.provider_of(&host) else { return Ok(None) };
        let host = canonical_host(&host);
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let (owner, name) = match (provider, segments.as_slice()) {
            (Provider::GitLab, [ns @ .., name]) if !ns.is_empty() => (ns.join("/"), (*name).to_owned()),
            (_, [owner, name, ..]) => ((*owner).to_owned(), (*name).to_owned()),
            _ => return Ok(None),
        };
        let (api_base, overridden) = match self.override_of(provider) {
            Some(o) => (check_api_base(o)?, true),
            None => (check_api_base(&api)?, false),
        };
        let account =
            if overridden { format!("{provider}:{}", origin(&api_base)) } else { format!("{provider}:{host}") };
        Ok(Some(RepoRef { provider, host, api_base, owner, name, account, overridden, remote: None }))
    }

    /// The repository of a checkout: the remote named `prefer` when given, else `upstream`
    /// (the usual name of the repository a fork's pull requests go to), else `origin`, else the
    /// first remote on a known host.
    pub fn detect(&self, remotes: &[(String, String)], prefer: Option<&str>) -> Result<RepoRef, ProviderError> {
        if let Some(name) = prefer {
            let Some((_, url)) = remotes.iter().find(|(n, _)| n == name) else {
                return Err(ProviderError::Setup(format!(
                    "this repository has no remote `{name}` (it has: {})",
                    list_remotes(remotes)
                )));
            };
            return match self.repo_of_url(url)? {
                Some(mut r) => {
                    r.remote = Some(name.to_owned());
                    Ok(r)
                }
                None => Err(ProviderError::Setup(format!(
                    "remote `{name}` ({}) is not on a code host marginalia knows. {}",
                    redact_url(url),
                    KNOWN_HOSTS
                ))),
            };
        }
        let rank = |n: &str| match n {
            "upstream" => 0,
            "origin" => 1,
            _ => 2,
        };
        let mut order: Vec<&(String, String)> = remotes.iter().collect();
        order.sort_by_key(|(n, _)| rank(n));
        for (name, url) in order {
            if let Some(mut r) = self.repo_of_url(url)? {
                r.remote = Some(name.clone());
                return Ok(r);
            }
        }
        if remotes.is_empty() {
            return Err(ProviderError::Setup(format!("this repository has no remote. {KNOWN_HOSTS}")));
        }
        Err(ProviderError::Setup(format!(
            "no remote of this repository is on a code host marginalia knows (remotes: {}). {KNOWN_HOSTS}",
            list_remotes(remotes)
        )))
    }
}

/// The branch the current branch is pushed to (its upstream's name, else its own), and the
/// owner of the repository it is pushed to when that is not `target`'s owner (a fork). Errors
/// when HEAD is not on a branch.
pub fn head_branch(repo: &crate::git::Repo, target: &RepoRef) -> Result<(String, Option<String>), ProviderError> {
    let Some(branch) = repo.branch() else {
        return Err(ProviderError::Setup(
            "HEAD is not on a branch (detached): check out the pull request's branch, or name the pull request by \
             number"
                .into(),
        ));
    };
    let Some((remote, name)) = repo.upstream_of(&branch) else { return Ok((branch, None)) };
    let owner = repo
        .remotes()
        .iter()
        .find(|(n, _)| *n == remote)
        .and_then(|(_, url)| split_remote(url))
        .and_then(|(_, path)| path.split('/').next().map(str::to_owned))
        .filter(|o| !o.is_empty() && !o.eq_ignore_ascii_case(&target.owner));
    Ok((name, owner))
}

const KNOWN_HOSTS: &str = "github.com, gitlab.com and bitbucket.org are known; add a self-hosted GitHub Enterprise \
                           or GitLab host with `marginalia auth login github|gitlab --host HOST [--api URL]`";

fn list_remotes(remotes: &[(String, String)]) -> String {
    if remotes.is_empty() {
        return "none".into();
    }
    remotes.iter().map(|(n, u)| format!("{n} → {}", redact_url(u))).collect::<Vec<_>>().join(", ")
}

/// A remote URL without any password it carries (`https://user:secret@host` happens).
fn redact_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('@') {
            Some((userinfo, host)) if userinfo.contains(':') && !userinfo.contains('/') => {
                let user = userinfo.split(':').next().unwrap_or("");
                format!("{scheme}://{user}:…@{host}")
            }
            _ => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// The public name of an ssh alias host.
fn canonical_host(host: &str) -> String {
    let h = host.to_ascii_lowercase();
    match h.as_str() {
        "ssh.github.com" | "www.github.com" => "github.com".into(),
        "altssh.gitlab.com" | "www.gitlab.com" => "gitlab.com".into(),
        "altssh.bitbucket.org" | "www.bitbucket.org" => "bitbucket.org".into(),
        _ => h,
    }
}

/// The host (lowercase, no user or port) and the path (case kept, no `.git`, no slashes at the
/// ends) of a remote URL: `https`, `ssh://`, `git://` and scp-like `user@host:path` forms.
/// `None` for local paths and `file://`.
pub fn split_remote(url: &str) -> Option<(String, String)> {
    let url = url.trim();
    let (authority, path) = if let Some((scheme, rest)) = url.split_once("://") {
        if scheme.eq_ignore_ascii_case("file") {
            return None;
        }
        rest.split_once('/').unwrap_or((rest, ""))
    } else {
        let colon = url.find(':')?;
        let slash = url.find('/').unwrap_or(usize::MAX);
        if colon >= slash || colon <= 1 {
            return None;
        }
        (&url[..colon], &url[colon + 1..])
    };
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match host.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => host,
    };
    if host.is_empty() {
        return None;
    }
    let path = path.split(['?', '#']).next().unwrap_or("").trim_matches('/');
    let path = path.strip_suffix(".git").unwrap_or(path).trim_end_matches('/');
    Some((host.to_ascii_lowercase(), path.to_owned()))
}

/// Checks an API base URL and gives its canonical form (no trailing `/`): `https://`, or
/// `http://` to this machine only, so tokens and code never cross a network in the clear.
pub fn check_api_base(s: &str) -> Result<String, ProviderError> {
    crate::transport::check_url(s)
        .map_err(|why| ProviderError::Setup(format!("`{s}` is not an API address to use: {why}")))
}

pub use crate::transport::{is_loopback, origin};

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config {
            hosts: vec![
                HostConfig::parse("providers.host:git.corp.example", "github-enterprise").unwrap(),
                HostConfig::parse("providers.host:gitlab.example.com", "gitlab https://gitlab.example.com:8443/api/v4")
                    .unwrap(),
            ],
            overrides: Vec::new(),
        }
    }

    fn repo(url: &str) -> Option<RepoRef> {
        config().repo_of_url(url).unwrap()
    }

    #[test]
    fn the_public_hosts_in_every_url_form() {
        for url in [
            "git@github.com:Acme/Shop.git",
            "https://github.com/Acme/Shop",
            "https://user:secret@github.com/Acme/Shop.git/",
            "ssh://git@ssh.github.com:443/Acme/Shop.git",
            "git://github.com/Acme/Shop.git",
        ] {
            let r = repo(url).unwrap_or_else(|| panic!("{url}"));
            assert_eq!((r.provider, r.host.as_str(), r.slug().as_str()), (Provider::GitHub, "github.com", "Acme/Shop"));
            assert_eq!(r.api_base, "https://api.github.com");
            assert_eq!(r.account, "github:github.com");
            assert_eq!(r.subject(Some(42)), "github:Acme/Shop#42");
        }
        let gl = repo("git@gitlab.com:group/sub/project.git").unwrap();
        assert_eq!((gl.owner.as_str(), gl.name.as_str()), ("group/sub", "project"));
        assert_eq!(gl.api_base, "https://gitlab.com/api/v4");
        assert_eq!(gl.subject(Some(7)), "gitlab:group/sub/project!7");
        let bb = repo("https://alice@bitbucket.org/team-ws/repo-slug.git").unwrap();
        assert_eq!((bb.provider, bb.owner.as_str(), bb.name.as_str()), (Provider::Bitbucket, "team-ws", "repo-slug"));
        assert_eq!(bb.api_base, "https://api.bitbucket.org/2.0");
    }

    #[test]
    fn self_hosted_hosts_come_from_the_settings() {
        let ghes = repo("git@git.corp.example:platform/api.git").unwrap();
        assert_eq!((ghes.provider, ghes.api_base.as_str()), (Provider::GitHub, "https://git.corp.example/api/v3"));
        assert_eq!(ghes.account, "github:git.corp.example");
        let gl = repo("https://gitlab.example.com/a/b/c").unwrap();
        assert_eq!(gl.api_base, "https://gitlab.example.com:8443/api/v4");
        assert_eq!(repo("git@unknown.example:a/b.git"), None);
        assert_eq!(repo("/srv/git/repo.git"), None);
        assert!(HostConfig::parse("providers.host:x", "bitbucket").is_err());
        let (k, v) = config().hosts[1].to_setting();
        assert_eq!(
            (k.as_str(), v.as_str()),
            ("providers.host:gitlab.example.com", "gitlab https://gitlab.example.com:8443/api/v4")
        );
    }

    #[test]
    fn an_override_must_be_https_or_loopback_and_has_its_own_keychain_account() {
        let mut c = config();
        c.overrides.push((Provider::GitHub, "http://127.0.0.1:8080/".into()));
        let r = c.repo_of_url("git@github.com:acme/shop.git").unwrap().unwrap();
        assert_eq!(r.api_base, "http://127.0.0.1:8080");
        assert_eq!(r.account, "github:http://127.0.0.1:8080");
        assert!(r.overridden);
        c.overrides[0].1 = "http://api.example.com".into();
        let e = c.repo_of_url("git@github.com:acme/shop.git").unwrap_err().to_string();
        assert!(e.contains("plain http:// is refused"), "{e}");
    }

    #[test]
    fn upstream_then_origin_then_any_known_remote() {
        let c = config();
        let remotes = vec![
            ("mine".to_owned(), "git@example.org:x/y.git".to_owned()),
            ("origin".to_owned(), "git@github.com:me/shop.git".to_owned()),
            ("upstream".to_owned(), "git@github.com:acme/shop.git".to_owned()),
        ];
        assert_eq!(c.detect(&remotes, None).unwrap().owner, "acme");
        assert_eq!(c.detect(&remotes, Some("origin")).unwrap().owner, "me");
        let e = c.detect(&remotes, Some("mine")).unwrap_err().to_string();
        assert!(e.contains("not on a code host"), "{e}");
        let e = c.detect(&remotes[..1], None).unwrap_err().to_string();
        assert!(e.contains("mine → git@example.org:x/y.git") && e.contains("--host"), "{e}");
        let secret = vec![("origin".to_owned(), "https://bob:hunter2@example.org/x/y".to_owned())];
        let e = c.detect(&secret, None).unwrap_err().to_string();
        assert!(!e.contains("hunter2"), "{e}");
    }
}
