//! `marginalia auth login | logout | status`: provider tokens in the OS keychain. A token is
//! read from the terminal without echo (or from stdin), checked with one cheap authenticated
//! call, and only then kept; it is never printed, logged or written to a file or the store.

use std::io::{IsTerminal, Read};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::git::Repo;
use crate::providers::auth::{self, SecretStore, Sources, Token};
use crate::providers::detect::{Config, HOST_SETTING_PREFIX, HostConfig};
use crate::providers::http::scope_hint;
use crate::providers::{Http, HttpOptions, Provider, ProviderError, RepoRef, whoami};
use crate::store::Store;

use super::pr::{exit_for, keychain, runtime};

#[derive(Args)]
pub struct AuthArgs {
    #[command(subcommand)]
    verb: Verb,
}

#[derive(Subcommand)]
enum Verb {
    /// Keep a provider token in the OS keychain, after checking it.
    #[command(after_help = r#"Examples:
  marginalia auth login github                      # paste the token when asked (it is not echoed)
  gh auth token | marginalia auth login github      # or pipe it in
  marginalia auth login gitlab --host gitlab.example.com
  marginalia auth login github --host git.corp.example --api https://git.corp.example/api/v3
  marginalia auth login bitbucket                   # an Atlassian API token as EMAIL:TOKEN, or an access token

Minimal scopes: GitHub `repo` (`public_repo` for public repositories only), or for a
fine-grained token read and write access to pull requests (and read to contents); GitLab
`api` (`read_api` to read only); Bitbucket `read:pullrequest:bitbucket`,
`write:pullrequest:bitbucket` and `read:repository:bitbucket`.

--host names a self-hosted GitHub Enterprise Server or GitLab host; it is remembered in the
settings (`providers.host:HOST`, not a secret) so its repositories are recognised."#)]
    Login {
        /// github, gitlab or bitbucket.
        provider: Provider,
        /// The host (github.com, gitlab.com or bitbucket.org by default).
        #[arg(long, value_name = "HOST")]
        host: Option<String>,
        /// The API's base URL for a self-hosted host (`https://HOST/api/v3` for GitHub Enterprise,
        /// `https://HOST/api/v4` for GitLab by default).
        #[arg(long, value_name = "URL")]
        api: Option<String>,
    },
    /// Forget a provider token kept in the keychain.
    Logout {
        provider: Provider,
        #[arg(long, value_name = "HOST")]
        host: Option<String>,
    },
    /// Where each provider's token comes from (never the token itself).
    #[command(after_help = "Tokens are looked for in this order: the OS keychain (`auth login`), the environment \
                            (GITHUB_TOKEN, GH_TOKEN; GH_ENTERPRISE_TOKEN, GITHUB_ENTERPRISE_TOKEN for an Enterprise \
                            host; GITLAB_TOKEN, GITLAB_ACCESS_TOKEN; BITBUCKET_TOKEN, BITBUCKET_ACCESS_TOKEN with \
                            BITBUCKET_EMAIL), then `gh auth token` or `glab config get token`. --check asks each \
                            host whose token it is.")]
    Status {
        provider: Option<Provider>,
        #[arg(long, value_name = "HOST")]
        host: Option<String>,
        /// Check each token with one authenticated call (recorded in the egress ledger).
        #[arg(long)]
        check: bool,
        #[arg(long)]
        json: bool,
    },
}

pub fn run(args: AuthArgs) -> Result<ExitCode> {
    exit_for(match args.verb {
        Verb::Login { provider, host, api } => login(provider, host, api),
        Verb::Logout { provider, host } => logout(provider, host),
        Verb::Status { provider, host, check, json } => status(provider, host, check, json),
    })
}

/// The settings' hosts, plus `extra` (a host being added).
fn config(store: &Store, extra: Option<HostConfig>) -> Result<Config> {
    let mut c = Config::from_env(&store.settings_under(HOST_SETTING_PREFIX)?);
    if let Some(h) = extra {
        c.hosts.retain(|x| x.host != h.host);
        c.hosts.push(h);
    }
    Ok(c)
}

/// A host named on the command line that is not a public one: a self-hosted host to add.
fn new_host(provider: Provider, host: Option<&str>, api: Option<String>) -> Result<Option<HostConfig>> {
    let Some(host) = host.map(|h| h.trim().to_ascii_lowercase()) else {
        if api.is_some() {
            bail!("--api is for a self-hosted host: give --host too");
        }
        return Ok(None);
    };
    if Provider::ALL.iter().any(|p| p.public_host() == host) {
        if api.is_some() {
            bail!("--api is for a self-hosted host, not {host}");
        }
        return Ok(None);
    }
    if provider == Provider::Bitbucket {
        bail!("Bitbucket is bitbucket.org only (Bitbucket Data Center is not supported)");
    }
    if let Some(a) = &api {
        crate::providers::detect::check_api_base(a)?;
    }
    Ok(Some(HostConfig { host, provider, api_base: api }))
}

fn login(provider: Provider, host: Option<String>, api: Option<String>) -> Result<ExitCode> {
    let store = Store::open_default()?;
    let added = new_host(provider, host.as_deref(), api)?;
    let config = config(&store, added.clone())?;
    let host = host.unwrap_or_else(|| provider.public_host().to_owned());
    let target = config.host_ref(provider, &host)?;
    // The keychain first: a token is not asked for when there is nowhere to keep it.
    let keychain = keychain().map_err(|e| {
        anyhow::anyhow!(
            "nowhere to keep the token: {e}. Headless runs give it in the environment instead ({})",
            auth::env_vars(provider, &target.host).join(" or ")
        )
    })?;
    let token = read_token(provider, &target)?;
    let http = Http::new(Arc::new(Mutex::new(store)), HttpOptions::from_env())?;
    let who = runtime()?.block_on(whoami(&target, &http, &token)).map_err(|e| match e {
        ProviderError::BadToken { host, message, .. } => anyhow::anyhow!(
            "{host} does not accept this token ({message}): it is wrong, expired or revoked. Nothing was kept; check \
             that it was copied whole"
        ),
        other => other.into(),
    })?;
    auth::store_token(&keychain, &target, &token)?;
    if let Some(h) = added {
        let (k, v) = h.to_setting();
        Store::open_default()?.set_setting(&k, Some(&v))?;
        eprintln!("{} is now known as a {} host ({v})", h.host, provider.title());
    }
    let user = who.user.map(|u| format!(" as {u}")).unwrap_or_default();
    let scopes = who.scopes.filter(|s| !s.trim().is_empty()).map(|s| format!(" (scopes: {s})")).unwrap_or_default();
    eprintln!("logged in to {}{user}{scopes}; the token is kept in {}", target.host, keychain.name());
    if let Some(n) = who.note {
        eprintln!("note: {n}");
    }
    Ok(ExitCode::SUCCESS)
}

/// The token, from the terminal without echo, or from stdin.
fn read_token(provider: Provider, target: &RepoRef) -> Result<Token> {
    let what = match provider {
        Provider::Bitbucket => "an Atlassian API token as EMAIL:TOKEN, or an access token",
        _ => "a token",
    };
    let text = if std::io::stdin().is_terminal() {
        eprintln!("{} token for {} (it needs {}).", provider.title(), target.host, scope_hint(provider, true));
        rpassword::prompt_password(format!("Paste {what} (not shown): ")).context("reading the token")?
    } else {
        let mut s = String::new();
        std::io::stdin().take(64 << 10).read_to_string(&mut s).context("reading the token from stdin")?;
        s
    };
    let token = Token::new(text);
    if token.expose().is_empty() {
        bail!("no token given: paste one when asked, or pipe it in");
    }
    if token.expose().contains(char::is_whitespace) {
        bail!("that is not a token (it has spaces or several lines); nothing was kept");
    }
    Ok(token)
}

fn logout(provider: Provider, host: Option<String>) -> Result<ExitCode> {
    let store = Store::open_default()?;
    let config = config(&store, None)?;
    let host = host.unwrap_or_else(|| provider.public_host().to_owned());
    let target = config.host_ref(provider, &host)?;
    let keychain = keychain().map_err(|e| anyhow::anyhow!("no keychain to remove a token from: {e}"))?;
    if auth::forget_token(&keychain, &target)? {
        eprintln!("forgot the token for {} ({})", target.host, keychain.name());
    } else {
        eprintln!("{} holds no token for {}", keychain.name(), target.host);
    }
    let still: Vec<&str> = auth::env_vars(provider, &target.host)
        .into_iter()
        .filter(|v| std::env::var(v).is_ok_and(|t| !t.is_empty()))
        .collect();
    if !still.is_empty() {
        eprintln!("note: {} is still set in this environment and will be used", still.join(" and "));
    }
    Ok(ExitCode::SUCCESS)
}

fn status(provider: Option<Provider>, host: Option<String>, check: bool, json_out: bool) -> Result<ExitCode> {
    let store = Store::open_default()?;
    let config = config(&store, None)?;
    let mut targets: Vec<RepoRef> = Vec::new();
    let mut push = |r: RepoRef| {
        if !targets.iter().any(|t| t.account == r.account) {
            targets.push(r);
        }
    };
    match (provider, &host) {
        (Some(p), Some(h)) => push(config.host_ref(p, h)?),
        (Some(p), None) => push(config.host_ref(p, p.public_host())?),
        (None, Some(h)) => {
            let (p, _) = config.provider_of(h).with_context(|| format!("{h} is not a host marginalia knows"))?;
            push(config.host_ref(p, h)?)
        }
        (None, None) => {
            // This checkout's host first, then the public hosts and those in the settings.
            if let Ok(repo) = Repo::discover(std::path::Path::new("."))
                && let Ok(r) = config.detect(&repo.remotes(), None)
            {
                push(r);
            }
            for p in Provider::ALL {
                push(config.host_ref(p, p.public_host())?);
            }
            for h in &config.hosts {
                push(config.host_ref(h.provider, &h.host)?);
            }
        }
    }
    let keychain = keychain();
    let env = |k: &str| std::env::var(k).ok();
    let sources = Sources {
        keychain: keychain.as_ref().map(|k| k as &dyn SecretStore).map_err(Clone::clone),
        env: &env,
        cli: true,
    };
    let rt = if check { Some(runtime()?) } else { None };
    let http = if check { Some(Http::new(Arc::new(Mutex::new(store)), HttpOptions::from_env())?) } else { None };
    let mut rows: Vec<Value> = Vec::new();
    for t in &targets {
        let found = auth::find_token(t, &sources);
        let mut row = json!({
            "provider": t.provider, "host": t.host, "api": t.api_base, "account": t.account,
            "source": found.as_ref().ok().map(|(_, s)| s.to_string()),
        });
        if let Err(e) = &found {
            row["missing"] = json!(e.to_string());
        }
        if let (Some(rt), Some(http), Ok((token, _))) = (&rt, &http, &found) {
            match rt.block_on(whoami(t, http, token)) {
                Ok(w) => {
                    row["user"] = json!(w.user);
                    row["scopes"] = json!(w.scopes);
                    row["ok"] = json!(true);
                }
                Err(e) => {
                    row["ok"] = json!(false);
                    row["error"] = json!(e.to_string());
                }
            }
        }
        rows.push(row);
    }
    if json_out {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    if let Err(e) = &keychain {
        println!("(no keychain: {e})");
    }
    for (t, r) in targets.iter().zip(&rows) {
        let from = match r["source"].as_str() {
            Some(s) => format!("token from {s}"),
            None => format!(
                "no token: `marginalia auth login {}{}`, or set {}",
                t.provider,
                if t.host == t.provider.public_host() || t.overridden {
                    String::new()
                } else {
                    format!(" --host {}", t.host)
                },
                auth::env_vars(t.provider, &t.host)[0]
            ),
        };
        let checked = match (r["ok"].as_bool(), r["user"].as_str(), r["error"].as_str()) {
            (Some(true), Some(u), _) => format!(" · works, as {u}"),
            (Some(true), None, _) => " · works".to_owned(),
            (Some(false), _, Some(e)) => format!(" · refused: {e}"),
            _ => String::new(),
        };
        println!("{:<10} {:<24} {from}{checked}", t.provider.as_str(), t.host);
    }
    Ok(ExitCode::SUCCESS)
}
