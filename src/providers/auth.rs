//! Where a provider token comes from, in this order:
//!
//! 1. the OS keychain, where `marginalia auth login PROVIDER` put it (service `marginalia`,
//!    account `<provider>:<host>`, such as `github:github.com`);
//! 2. the environment: `GITHUB_TOKEN` then `GH_TOKEN` for github.com, `GH_ENTERPRISE_TOKEN`
//!    then `GITHUB_ENTERPRISE_TOKEN` for a GitHub Enterprise host, `GITLAB_TOKEN` then
//!    `GITLAB_ACCESS_TOKEN` for any GitLab host, `BITBUCKET_TOKEN` then `BITBUCKET_ACCESS_TOKEN`
//!    for Bitbucket (an Atlassian API token is used with HTTP Basic and the account email: give
//!    it as `email:token`, or set `BITBUCKET_EMAIL` beside it; anything else is a Bearer token);
//! 3. the provider's own command line, when it is installed and logged in: `gh auth token
//!    --hostname HOST` for GitHub, `glab config get token --host HOST` for GitLab.
//!
//! When the API base is replaced (`MARGINALIA_GITHUB_API`, tests), the keychain account is that
//! base's origin and the provider's command line is not asked, so a token for the real host
//! never goes to a stand-in.
//!
//! A token is never logged, never written to a config file or the store, never shown: `Debug`
//! prints `Token(…)`, and `auth status` says where each one comes from, not what it is.

use std::fmt;
use std::time::Duration;

use crate::keychain::Keychain;

use super::{Provider, ProviderError, RepoRef};

/// The keychain service provider tokens are kept under.
pub const KEYCHAIN_SERVICE: &str = "marginalia";
/// Beside `BITBUCKET_TOKEN`: the Atlassian account email an API token goes with.
pub const BITBUCKET_EMAIL_ENV: &str = "BITBUCKET_EMAIL";
/// How long the provider's own command line may take to print a token.
const CLI_TIMEOUT: Duration = Duration::from_secs(5);

/// A provider token. Never printed: `Debug` shows only that there is one.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// A token, trimmed (a pasted token often ends in a newline).
    pub fn new(token: impl Into<String>) -> Token {
        Token(token.into().trim().to_owned())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(…)")
    }
}

/// Where a token came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenSource {
    /// The OS keychain, by the name of its store (`the Linux kernel keyring (keyutils)`).
    Keychain(String),
    /// An environment variable.
    Env(String),
    /// The provider's command line (`gh auth token`).
    Cli(String),
    /// Given to `auth login`, not yet stored.
    Given,
}

impl fmt::Display for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenSource::Keychain(store) => f.write_str(store),
            TokenSource::Env(var) => f.write_str(var),
            TokenSource::Cli(cmd) => write!(f, "`{cmd}`"),
            TokenSource::Given => f.write_str("the token given"),
        }
    }
}

/// The environment variables read for a host, in order.
pub fn env_vars(p: Provider, host: &str) -> Vec<&'static str> {
    match p {
        Provider::GitHub if host == "github.com" => vec!["GITHUB_TOKEN", "GH_TOKEN"],
        Provider::GitHub => vec!["GH_ENTERPRISE_TOKEN", "GITHUB_ENTERPRISE_TOKEN"],
        Provider::GitLab => vec!["GITLAB_TOKEN", "GITLAB_ACCESS_TOKEN"],
        Provider::Bitbucket => vec!["BITBUCKET_TOKEN", "BITBUCKET_ACCESS_TOKEN"],
    }
}

/// Where secrets are kept: the OS keychain, or a stand-in in tests.
pub trait SecretStore {
    fn get(&self, account: &str) -> Result<Option<String>, String>;
    fn set(&self, account: &str, secret: &str) -> Result<(), String>;
    fn delete(&self, account: &str) -> Result<bool, String>;
    /// For people: `the Linux kernel keyring (keyutils)`.
    fn name(&self) -> String;
}

impl SecretStore for Keychain {
    fn get(&self, account: &str) -> Result<Option<String>, String> {
        Keychain::get(self, KEYCHAIN_SERVICE, account).map_err(|e| e.to_string())
    }
    fn set(&self, account: &str, secret: &str) -> Result<(), String> {
        Keychain::set(self, KEYCHAIN_SERVICE, account, secret).map_err(|e| e.to_string())
    }
    fn delete(&self, account: &str) -> Result<bool, String> {
        Keychain::delete(self, KEYCHAIN_SERVICE, account).map_err(|e| e.to_string())
    }
    fn name(&self) -> String {
        self.backend().to_string()
    }
}

/// What the token lookup may read. Blocking (the keychain, a child process).
pub struct Sources<'a> {
    /// The keychain, or why there is none.
    pub keychain: Result<&'a dyn SecretStore, String>,
    pub env: &'a dyn Fn(&str) -> Option<String>,
    /// Whether to ask `gh` / `glab`.
    pub cli: bool,
}

/// The token to use for `repo`, and where it came from; [`ProviderError::NoToken`] lists what
/// was tried and what to do.
pub fn find_token(repo: &RepoRef, sources: &Sources<'_>) -> Result<(Token, TokenSource), ProviderError> {
    let mut tried = Vec::new();
    match &sources.keychain {
        Ok(k) => match k.get(&repo.account) {
            Ok(Some(t)) if !t.trim().is_empty() => return Ok((Token::new(t), TokenSource::Keychain(k.name()))),
            Ok(_) => tried.push(format!("{} has none for {}", k.name(), repo.account)),
            Err(e) => tried.push(format!("the keychain could not be read ({e})")),
        },
        Err(why) => tried.push(format!("no keychain ({why})")),
    }
    let vars = env_vars(repo.provider, &repo.host);
    for var in &vars {
        if let Some(t) = (sources.env)(var).filter(|t| !t.trim().is_empty()) {
            let t = match (repo.provider, (sources.env)(BITBUCKET_EMAIL_ENV)) {
                (Provider::Bitbucket, Some(email)) if !t.contains(':') && !email.trim().is_empty() => {
                    format!("{}:{}", email.trim(), t.trim())
                }
                _ => t,
            };
            return Ok((Token::new(t), TokenSource::Env((*var).to_owned())));
        }
    }
    tried.push(format!("{} {} not set", vars.join(" and "), if vars.len() == 1 { "is" } else { "are" }));
    if sources.cli && !repo.overridden {
        if let Some((cmd, args)) = cli_command(repo.provider, &repo.host) {
            match run_cli(cmd, &args) {
                Ok(Some(t)) => return Ok((Token::new(t), TokenSource::Cli(format!("{cmd} {}", args.join(" "))))),
                Ok(None) => tried.push(format!("`{cmd}` gave no token")),
                Err(why) => tried.push(why),
            }
        }
    } else if repo.overridden {
        tried.push("the provider's command line is not asked for a replaced API address".into());
    }
    let host_flag = if repo.host == repo.provider.public_host() || repo.overridden {
        String::new()
    } else {
        format!(" --host {}", repo.host)
    };
    Err(ProviderError::NoToken(format!(
        "no {} token for {}: {}. Run `marginalia auth login {}{host_flag}`, or set {} (it needs {})",
        repo.provider.title(),
        repo.host,
        tried.join("; "),
        repo.provider,
        vars[0],
        super::http::scope_hint(repo.provider, true)
    )))
}

/// The provider's own command line, where it prints a token.
fn cli_command(p: Provider, host: &str) -> Option<(&'static str, Vec<String>)> {
    match p {
        Provider::GitHub => Some(("gh", vec!["auth".into(), "token".into(), "--hostname".into(), host.to_owned()])),
        Provider::GitLab => {
            Some(("glab", vec!["config".into(), "get".into(), "token".into(), "--host".into(), host.to_owned()]))
        }
        Provider::Bitbucket => None,
    }
}

/// Runs a command that prints a token, for at most [`CLI_TIMEOUT`]; `Ok(None)` when it ran and
/// printed nothing (not logged in), `Err` when it is not installed or failed.
fn run_cli(cmd: &str, args: &[String]) -> Result<Option<String>, String> {
    use std::process::{Command, Stdio};
    let mut child =
        match Command::new(cmd).args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null()).spawn() {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(format!("`{cmd}` is not installed")),
            Err(e) => return Err(format!("`{cmd}` could not be run: {e}")),
        };
    let started = std::time::Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                let mut out = String::new();
                if let Some(mut o) = child.stdout.take() {
                    use std::io::Read;
                    let _ = o.read_to_string(&mut out);
                }
                let t = out.trim();
                return Ok(
                    (status.success() && !t.is_empty() && !t.contains(char::is_whitespace)).then(|| t.to_owned())
                );
            }
            Ok(None) if started.elapsed() < CLI_TIMEOUT => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("`{cmd}` did not answer within {} s", CLI_TIMEOUT.as_secs()));
            }
            Err(e) => return Err(format!("`{cmd}` failed: {e}")),
        }
    }
}

/// Where the token for `repo` would come from, without reading more than needed and without
/// showing it: for `auth status`.
pub fn describe_source(repo: &RepoRef, sources: &Sources<'_>) -> Result<TokenSource, String> {
    find_token(repo, sources).map(|(_, s)| s).map_err(|e| e.to_string())
}

/// Stores a token for `repo`'s account.
pub fn store_token(keychain: &dyn SecretStore, repo: &RepoRef, token: &Token) -> Result<(), ProviderError> {
    keychain
        .set(&repo.account, token.expose())
        .map_err(|e| ProviderError::Setup(format!("the keychain refused the token: {e}")))
}

/// Forgets the token stored for `repo`'s account; `false` when there was none.
pub fn forget_token(keychain: &dyn SecretStore, repo: &RepoRef) -> Result<bool, ProviderError> {
    keychain.delete(&repo.account).map_err(|e| ProviderError::Setup(format!("cannot remove the token: {e}")))
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::HashMap;

    use super::*;

    #[derive(Default)]
    struct Mem(RefCell<HashMap<String, String>>);

    impl SecretStore for Mem {
        fn get(&self, a: &str) -> Result<Option<String>, String> {
            Ok(self.0.borrow().get(a).cloned())
        }
        fn set(&self, a: &str, s: &str) -> Result<(), String> {
            self.0.borrow_mut().insert(a.into(), s.into());
            Ok(())
        }
        fn delete(&self, a: &str) -> Result<bool, String> {
            Ok(self.0.borrow_mut().remove(a).is_some())
        }
        fn name(&self) -> String {
            "a test store".into()
        }
    }

    fn repo(p: Provider, host: &str) -> RepoRef {
        let mut r = RepoRef::bare(p, host, "https://api.example.com").unwrap();
        r.owner = "o".into();
        r.name = "n".into();
        r
    }

    #[test]
    fn the_keychain_comes_first_then_the_environment() {
        let mem = Mem::default();
        let env = |k: &str| (k == "GH_TOKEN").then(|| "gho_from_env\n".to_owned());
        let r = repo(Provider::GitHub, "github.com");
        let sources = Sources { keychain: Ok(&mem), env: &env, cli: false };
        let (t, s) = find_token(&r, &sources).unwrap();
        assert_eq!((t.expose(), s), ("gho_from_env", TokenSource::Env("GH_TOKEN".into())));
        store_token(&mem, &r, &Token::new("ghp_stored")).unwrap();
        let (t, s) = find_token(&r, &sources).unwrap();
        assert_eq!((t.expose(), s.to_string().as_str()), ("ghp_stored", "a test store"));
        assert!(forget_token(&mem, &r).unwrap());
        assert!(!forget_token(&mem, &r).unwrap());
    }

    #[test]
    fn enterprise_hosts_read_their_own_variables_and_no_token_says_what_to_do() {
        let mem = Mem::default();
        let env = |k: &str| (k == "GITHUB_TOKEN").then(|| "ghp_public".to_owned());
        let r = repo(Provider::GitHub, "git.corp.example");
        let e = find_token(&r, &Sources { keychain: Err("none here".into()), env: &env, cli: false }).unwrap_err();
        let e = e.to_string();
        assert!(e.contains("GH_ENTERPRISE_TOKEN and GITHUB_ENTERPRISE_TOKEN are not set"), "{e}");
        assert!(e.contains("marginalia auth login github --host git.corp.example"), "{e}");
        assert!(e.contains("no keychain (none here)"), "{e}");
        let _ = mem;
    }

    #[test]
    fn bitbucket_api_tokens_go_with_the_account_email() {
        let env = |k: &str| match k {
            "BITBUCKET_TOKEN" => Some("ATATT3x".to_owned()),
            "BITBUCKET_EMAIL" => Some("dev@example.com".to_owned()),
            _ => None,
        };
        let r = repo(Provider::Bitbucket, "bitbucket.org");
        let (t, _) = find_token(&r, &Sources { keychain: Err("-".into()), env: &env, cli: false }).unwrap();
        assert_eq!(t.expose(), "dev@example.com:ATATT3x");
        assert_eq!(format!("{t:?}"), "Token(…)");
    }
}
