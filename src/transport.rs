//! What every connection this machine opens shares, the sync server's and the code hosts':
//! `https://` only, plain `http://` to this machine alone (a server in dev mode, a stand-in in a
//! test), addresses without credentials in them, and extra certificate authorities from
//! `MARGINALIA_CA_CERT`. The callers ([`crate::sync::client`], [`crate::providers`]) wrap the
//! messages in their own errors.

use std::net::IpAddr;

/// Extra certificate authorities to trust (a PEM file), for a server with a private CA.
pub const CA_ENV: &str = "MARGINALIA_CA_CERT";

/// Checks an address and gives its canonical form (no trailing `/`), or why it is refused,
/// in words that finish "`ADDRESS` is not ... to use: ...".
pub fn check_url(s: &str) -> Result<String, String> {
    let url = reqwest::Url::parse(s.trim()).map_err(|e| e.to_string())?;
    let host = url.host_str().ok_or("it has no host")?;
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(host) => {}
        "http" => {
            return Err(
                "plain http:// is refused except to this machine (127.0.0.1, ::1, localhost); use https://".into()
            );
        }
        other => return Err(format!("the scheme is `{other}`; use https://")),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("it carries a user name or password; the token is the credential".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("it has a query or fragment".into());
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// Whether `host` is this machine.
pub fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost") || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// `scheme://host:port` of an address, for the egress ledger.
pub fn origin(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => format!("{}://{}:{}", u.scheme(), u.host_str().unwrap_or(""), u.port_or_known_default().unwrap_or(0)),
        Err(_) => url.to_owned(),
    }
}

/// Adds the certificate authorities of `MARGINALIA_CA_CERT`, when set, to those the system
/// trusts; why not, when the file cannot be used.
pub fn with_extra_roots(b: reqwest::ClientBuilder) -> Result<reqwest::ClientBuilder, String> {
    let Some(path) = std::env::var_os(CA_ENV).filter(|p| !p.is_empty()) else { return Ok(b) };
    let shown = std::path::Path::new(&path).display().to_string();
    let pem = std::fs::read(&path).map_err(|e| format!("cannot read {CA_ENV} ({shown}): {e}"))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| format!("{CA_ENV} ({shown}) holds no PEM certificate: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{CA_ENV} ({shown}) holds no PEM certificate"));
    }
    Ok(b.tls_certs_merge(certs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_or_plain_http_to_this_machine() {
        assert_eq!(check_url("https://team.example.com/").unwrap(), "https://team.example.com");
        assert_eq!(
            check_url("https://team.example.com:8443/marginalia/").unwrap(),
            "https://team.example.com:8443/marginalia"
        );
        for ok in ["http://127.0.0.1:8080", "http://localhost:3000", "http://[::1]:9000", "http://127.8.9.1"] {
            assert!(check_url(ok).is_ok(), "{ok}");
        }
        for (bad, says) in [
            ("http://team.example.com", "plain http:// is refused"),
            ("http://10.0.0.5:8080", "plain http:// is refused"),
            ("ftp://team.example.com", "scheme is `ftp`"),
            ("https://bob:secret@team.example.com", "user name or password"),
            ("https://team.example.com/?token=x", "query"),
            ("team.example.com", "relative URL"),
        ] {
            let e = check_url(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn the_ledger_names_the_origin_with_its_port() {
        assert_eq!(origin("https://team.example.com/x"), "https://team.example.com:443");
        assert_eq!(origin("http://127.0.0.1:8080"), "http://127.0.0.1:8080");
    }
}
