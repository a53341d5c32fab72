//! Reaching PostgreSQL: `postgres://` URLs with libpq's TLS settings (`sslmode`,
//! `sslrootcert`), TLS through rustls (aws-lc-rs) with the system's roots plus an optional CA
//! file, and the connection pool.
//!
//! `sslmode` means what it means to libpq: `disable`; `prefer` (the default) and `require`
//! encrypt without checking the certificate unless `sslrootcert` is given (then the chain is
//! checked, as libpq does); `verify-ca` checks the chain; `verify-full` checks the chain and that
//! the certificate names the host. tokio-postgres knows only the first three and no
//! `sslrootcert`, so the URL is read here and handed on without them.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

/// How much of the server's certificate is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verify {
    /// Encrypted, certificate unchecked (`prefer`, `require` without `sslrootcert`).
    Nothing,
    /// The chain up to a trusted root (`verify-ca`; `prefer` and `require` with `sslrootcert`).
    Chain,
    /// The chain, and the host name (`verify-full`).
    Full,
}

/// A database to connect to, from its URL.
#[derive(Clone)]
pub struct Target {
    pub config: tokio_postgres::Config,
    pub tls: MakeRustlsConnect,
    /// The database without its password, for messages: `postgres://user@host:port/db`.
    pub place: String,
    pub verify: Verify,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Target({})", self.place)
    }
}

/// Reads a `postgres://` (or `postgresql://`) URL.
pub fn target(url: &str) -> Result<Target, String> {
    let url = url.trim();
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err("expected a URL of the form postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?sslmode=...]".into());
    }
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut kept = Vec::new();
    let mut mode = "prefer".to_string();
    let mut root_cert: Option<PathBuf> = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "sslmode" => mode = percent_decode(value),
            "sslrootcert" => root_cert = Some(PathBuf::from(percent_decode(value))),
            _ => kept.push(pair),
        }
    }
    let (pg_mode, verify) = match (mode.as_str(), &root_cert) {
        ("disable", _) => ("disable", Verify::Nothing),
        ("allow" | "prefer", None) => ("prefer", Verify::Nothing),
        ("allow" | "prefer", Some(_)) => ("prefer", Verify::Chain),
        ("require", None) => ("require", Verify::Nothing),
        ("require", Some(_)) | ("verify-ca", _) => ("require", Verify::Chain),
        ("verify-full", _) => ("require", Verify::Full),
        (other, _) => {
            return Err(format!(
                "sslmode `{other}` is not one of disable, allow, prefer, require, verify-ca, verify-full"
            ));
        }
    };
    kept.push(match pg_mode {
        "disable" => "sslmode=disable",
        "prefer" => "sslmode=prefer",
        _ => "sslmode=require",
    });
    let rebuilt = format!("{base}?{}", kept.join("&"));
    let mut config: tokio_postgres::Config = rebuilt.parse().map_err(|e| format!("not a PostgreSQL URL: {e}"))?;
    if config.get_application_name().is_none() {
        config.application_name("marginalia");
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(5));
    }
    let place = place(&config);
    let tls = MakeRustlsConnect::new(tls_config(verify, root_cert.as_deref())?);
    Ok(Target { config, tls, place, verify })
}

/// `postgres://user@host:port/db`, never the password.
fn place(config: &tokio_postgres::Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .zip(config.get_ports().iter().chain(std::iter::repeat(&5432)))
        .map(|(h, port)| match h {
            tokio_postgres::config::Host::Tcp(name) => format!("{name}:{port}"),
            #[cfg(unix)]
            tokio_postgres::config::Host::Unix(path) => format!("{}:{port}", path.display()),
        })
        .collect();
    let user = config.get_user().map(|u| format!("{u}@")).unwrap_or_default();
    format!("postgres://{user}{}/{}", hosts.join(","), config.get_dbname().unwrap_or(""))
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok())) {
            (b'%', Some(hex)) if u8::from_str_radix(hex, 16).is_ok() => {
                out.push(u8::from_str_radix(hex, 16).expect("checked"));
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The TLS settings for one `sslmode`: the system's roots plus `root_cert` (PEM, one or more
/// certificates).
fn tls_config(verify: Verify, root_cert: Option<&std::path::Path>) -> Result<ClientConfig, String> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?;
    if verify == Verify::Nothing {
        let algorithms = provider.signature_verification_algorithms;
        return Ok(builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unchecked { algorithms }))
            .with_no_client_auth());
    }
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    if let Some(path) = root_cert {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect::<Result<_, _>>())
            .map_err(|e| format!("cannot read sslrootcert {}: {e}", path.display()))?;
        if certs.is_empty() {
            return Err(format!("sslrootcert {} holds no certificate", path.display()));
        }
        for cert in certs {
            roots.add(cert).map_err(|e| format!("sslrootcert {}: {e}", path.display()))?;
        }
    }
    if roots.is_empty() {
        return Err("no trusted certificates: the system has none, and no sslrootcert was given".into());
    }
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| format!("TLS setup: {e}"))?;
    let verifier: Arc<dyn ServerCertVerifier> =
        if verify == Verify::Full { webpki } else { Arc::new(ChainOnly(webpki)) };
    Ok(builder.dangerous().with_custom_certificate_verifier(verifier).with_no_client_auth())
}

/// `verify-ca`: the chain is checked, the name is not.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.0.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `prefer` and `require` as libpq reads them: encrypted, but whoever answers is believed. The
/// handshake's signature is still checked against the certificate presented.
#[derive(Debug)]
struct Unchecked {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// How long a request waits for a pooled connection, and for a new one to be made, before it is
/// answered 503: a database that does not answer is told quickly rather than hung on.
const WAIT: Duration = Duration::from_secs(5);

/// A pool of up to `size` connections. Connections are made when first needed; one the server
/// closed (a restart) is dropped when it comes back to the pool and replaced by a new one.
pub fn pool(target: &Target, size: usize) -> Result<Pool, String> {
    let manager = Manager::from_config(
        target.config.clone(),
        target.tls.clone(),
        ManagerConfig { recycling_method: RecyclingMethod::Fast },
    );
    Pool::builder(manager)
        .max_size(size.max(1))
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(WAIT))
        .create_timeout(Some(WAIT))
        .recycle_timeout(Some(WAIT))
        .build()
        .map_err(|e| format!("cannot make a connection pool: {e}"))
}

/// How many of a pool's `size` connections point reads share (`Db::shared`): two (enough for
/// PostgreSQL to run reads on two cores while each lane carries a pipeline), fewer in a small
/// pool, so at least three are always left for transactions and scans.
pub fn lanes(size: usize) -> usize {
    (size / 4).min(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_keep_their_settings_and_lose_their_password_in_messages() {
        let t =
            target("postgres://app:s3cret@db.example:6543/marginalia?sslmode=verify-full&connect_timeout=2").unwrap();
        assert_eq!(t.place, "postgres://app@db.example:6543/marginalia");
        assert_eq!(t.verify, Verify::Full);
        assert_eq!(t.config.get_ssl_mode(), tokio_postgres::config::SslMode::Require);
        assert_eq!(t.config.get_connect_timeout(), Some(&Duration::from_secs(2)));
        assert_eq!(t.config.get_password(), Some(&b"s3cret"[..]));

        let t = target("postgresql://localhost/m").unwrap();
        assert_eq!((t.verify, t.config.get_ssl_mode()), (Verify::Nothing, tokio_postgres::config::SslMode::Prefer));
        assert_eq!(t.place, "postgres://localhost:5432/m");
        let t = target("postgres://localhost/m?sslmode=disable").unwrap();
        assert_eq!(t.config.get_ssl_mode(), tokio_postgres::config::SslMode::Disable);

        assert!(target("mysql://x/y").unwrap_err().contains("postgres://"));
        assert!(target("postgres://x/y?sslmode=sometimes").unwrap_err().contains("sometimes"));
        let missing = target("postgres://x/y?sslmode=require&sslrootcert=%2Fno%2Fsuch.pem").unwrap_err();
        assert!(missing.contains("/no/such.pem"), "{missing}");
    }
}
