//! TLS for the listeners (rustls through tokio-rustls, ring as crypto provider: the one
//! reqwest already compiles in). One [`Tls`] is shared by every listener: its certificate
//! and key are re-read when their files change (polled every [`RELOAD_INTERVAL`]), so new
//! connections get the new certificate without a restart; a file that does not load keeps
//! the old certificate in force and is logged once per version.
//!
//! The handshake runs in the connection's own task (`crate::serve`), never in the accept
//! loop, and must finish within [`crate::limits::TLS_HANDSHAKE_TIMEOUT`]. ALPN offers
//! `h2` and `http/1.1` on HTTP listeners, `h2` alone on gRPC ones.
//!
//! The client CA file (mutual TLS) is reloaded the same way: connections accepted after
//! the change verify client certificates against the new CAs; connections already open
//! keep the CAs they were verified against. A CA file that does not load keeps the CAs in
//! force.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, SystemTime};

use tokio_rustls::rustls;
use tokio_rustls::TlsAcceptor;
use tracing::{error, info};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;

use crate::Protocol;

/// How often the certificate and key files are checked for changes.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(1);

/// Where a listener's certificate comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM: the certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM: the private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// PEM: CA certificates; when set, clients must present a certificate they issued.
    pub client_ca_file: Option<PathBuf>,
}

/// Why TLS could not be set up; names the file.
#[derive(Debug)]
pub struct TlsError {
    pub file: PathBuf,
    pub reason: String,
}

impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.file.display(), self.reason)
    }
}

impl std::error::Error for TlsError {}

/// The server side of TLS, shared by every listener.
pub struct Tls {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    resolver: Arc<Reloading>,
    /// Modification times (and lengths) of the files last loaded.
    seen: Mutex<Stamp>,
    /// The rustls configuration per protocol (its ALPN list), rebuilt when the client CA
    /// file changes; each connection's handshake takes the one in force when it starts.
    configs: RwLock<Configs>,
}

type ClientVerifier = Arc<dyn rustls::server::danger::ClientCertVerifier>;

struct Configs {
    http: Arc<rustls::ServerConfig>,
    grpc: Arc<rustls::ServerConfig>,
}

impl Tls {
    /// Loads the files (an error names the one that failed) and starts the task that
    /// reloads them on change; the task ends when the last `Arc<Tls>` is dropped.
    /// Must be called inside a tokio runtime.
    pub fn load(files: TlsFiles) -> Result<Arc<Tls>, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = load_key(&files, &provider)?;
        let client_verifier = match &files.client_ca_file {
            None => None,
            Some(path) => Some(client_verifier(path, &provider)?),
        };
        let resolver = Arc::new(Reloading {
            current: RwLock::new(Arc::new(key)),
        });
        let configs = RwLock::new(configs(&provider, &resolver, client_verifier));
        let tls = Arc::new(Tls {
            seen: Mutex::new(stamp(&files)),
            files,
            provider,
            resolver,
            configs,
        });
        tokio::spawn(reload_loop(Arc::downgrade(&tls)));
        Ok(tls)
    }

    /// A TLS acceptor for one connection to a listener speaking `protocol`, with the
    /// configuration in force now.
    pub(crate) fn acceptor(&self, protocol: Protocol) -> TlsAcceptor {
        let configs = self.configs.read().expect("not poisoned");
        TlsAcceptor::from(match protocol {
            Protocol::Http => configs.http.clone(),
            Protocol::Grpc => configs.grpc.clone(),
        })
    }

    /// Re-reads the certificate and key if either file changed since the last look, and
    /// the client CA file if it changed.
    fn reload_if_changed(&self) {
        let now = stamp(&self.files);
        let before = {
            let mut seen = self.seen.lock().expect("not poisoned");
            if *seen == now {
                return;
            }
            std::mem::replace(&mut *seen, now)
        };
        if before[..2] != now[..2] {
            match load_key(&self.files, &self.provider) {
                Ok(key) => {
                    *self.resolver.current.write().expect("not poisoned") = Arc::new(key);
                    info!(cert_file = %self.files.cert_file.display(), "reloaded the TLS certificate");
                }
                Err(error) => {
                    error!(%error, "failed to reload the TLS certificate; keeping the one in use")
                }
            }
        }
        if let (Some(path), true) = (&self.files.client_ca_file, before[2] != now[2]) {
            match client_verifier(path, &self.provider) {
                Ok(verifier) => {
                    let configs = configs(&self.provider, &self.resolver, Some(verifier));
                    *self.configs.write().expect("not poisoned") = configs;
                    info!(client_ca_file = %path.display(), "reloaded the TLS client CAs");
                }
                Err(error) => {
                    error!(%error, "failed to reload the TLS client CAs; keeping the ones in use")
                }
            }
        }
    }
}

/// The server configurations of both protocols: same certificate (through the reloading
/// resolver) and client verification, different ALPN lists.
fn configs(
    provider: &Arc<CryptoProvider>,
    resolver: &Arc<Reloading>,
    client_verifier: Option<ClientVerifier>,
) -> Configs {
    let config = |alpn: &[&[u8]]| {
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions");
        let builder = match &client_verifier {
            Some(verifier) => builder.with_client_cert_verifier(verifier.clone()),
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_cert_resolver(resolver.clone());
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    };
    Configs {
        http: config(&[b"h2", b"http/1.1"]),
        grpc: config(&[b"h2"]),
    }
}

async fn reload_loop(tls: Weak<Tls>) {
    loop {
        tokio::time::sleep(RELOAD_INTERVAL).await;
        let Some(tls) = tls.upgrade() else { return };
        // stat and a small read: cheap enough for the reactor once a second, but keep
        // file I/O off it anyway
        let _ = tokio::task::spawn_blocking(move || tls.reload_if_changed()).await;
    }
}

/// The certificate new handshakes get: swapped whole on reload.
#[derive(Debug)]
struct Reloading {
    current: RwLock<Arc<CertifiedKey>>,
}

/// Modification time and length of the certificate, key and client CA files.
type Stamp = [Option<(SystemTime, u64)>; 3];

fn stamp(files: &TlsFiles) -> Stamp {
    let one = |p: &Path| {
        std::fs::metadata(p)
            .ok()
            .and_then(|m| Some((m.modified().ok()?, m.len())))
    };
    [
        one(&files.cert_file),
        one(&files.key_file),
        files.client_ca_file.as_deref().and_then(one),
    ]
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().expect("not poisoned").clone())
    }
}

fn load_key(files: &TlsFiles, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
    let certs = read_certs(&files.cert_file)?;
    let key = PrivateKeyDer::from_pem_file(&files.key_file).map_err(|e| TlsError {
        file: files.key_file.clone(),
        reason: format!("no usable private key: {e}"),
    })?;
    CertifiedKey::from_der(certs, key, provider).map_err(|e| TlsError {
        file: files.key_file.clone(),
        reason: format!("the key does not fit the certificate: {e}"),
    })
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let failed = |reason: String| TlsError {
        file: path.to_path_buf(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| failed(format!("cannot read certificates: {e}")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| failed(format!("bad certificate PEM: {e}")))?;
    if certs.is_empty() {
        return Err(failed("no certificate in the file".into()));
    }
    Ok(certs)
}

fn client_verifier(
    path: &Path,
    provider: &Arc<CryptoProvider>,
) -> Result<ClientVerifier, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in read_certs(path)? {
        roots.add(cert).map_err(|e| TlsError {
            file: path.to_path_buf(),
            reason: format!("not a usable CA certificate: {e}"),
        })?;
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| TlsError {
            file: path.to_path_buf(),
            reason: format!("cannot verify clients with these CAs: {e}"),
        })
}
