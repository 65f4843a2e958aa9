//! TLS on `clew_net::serve_with` over real sockets: HTTPS with reqwest (rustls), HTTP/2
//! over TLS with ALPN `h2` (hyper's client, as gRPC clients speak it), certificate
//! rotation seen by a new connection, a broken new file keeping the old certificate, a
//! plain-text client refused, a silent client not holding up others, and client
//! certificates when a client CA is configured, and a replaced client CA file applying to new
//! connections. Certificates are made per test with the
//! `openssl` command line.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;
mod support;

use clew_net::{serve_with, Protocol, Tls, TlsFiles};
use support::{client_config, https_client, make_ca, make_leaf};
use tokio::net::TcpListener;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};

/// Replaces `to` by `from`'s bytes in one rename, as a certificate manager does.
fn install(from: &Path, to: &Path) {
    let tmp = to.with_extension("tmp");
    std::fs::copy(from, &tmp).unwrap();
    std::fs::rename(&tmp, to).unwrap();
}

fn der(pem: &Path) -> Vec<u8> {
    CertificateDer::from_pem_file(pem).unwrap().to_vec()
}

struct Server {
    addr: std::net::SocketAddr,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn start(tls: &Arc<Tls>, protocol: Protocol) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().route("/", get(|| async { "ok" }));
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let tls = tls.clone();
    let task = tokio::spawn(async move {
        serve_with("test", listener, protocol, Some(&tls), app, async move {
            let _ = stopped.wait_for(|s| *s).await;
        })
        .await
    });
    Server { addr, stop, task }
}

impl Server {
    async fn stop(self) {
        let _ = self.stop.send(true);
        self.task.await.unwrap().unwrap();
    }
}

/// A new TLS connection: the server's leaf certificate and the ALPN protocol chosen.
async fn handshake(
    addr: std::net::SocketAddr,
    config: rustls::ClientConfig,
) -> (
    Vec<u8>,
    Option<Vec<u8>>,
    tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("TLS handshake");
    let (_, session) = tls.get_ref();
    let leaf = session.peer_certificates().unwrap()[0].to_vec();
    let alpn = session.alpn_protocol().map(<[u8]>::to_vec);
    (leaf, alpn, tls)
}

#[tokio::test]
async fn https_h2_rotation_bad_files_and_plain_text() {
    let dir = tempfile_dir();
    make_ca(dir.path());
    let (first, first_key) = make_leaf(dir.path(), "first");
    let (second, second_key) = make_leaf(dir.path(), "second");
    let (cert_file, key_file) = (dir.path().join("tls.pem"), dir.path().join("tls.key"));
    install(&first, &cert_file);
    install(&first_key, &key_file);
    let ca = dir.path().join("ca.pem");

    let tls = Tls::load(TlsFiles {
        cert_file: cert_file.clone(),
        key_file: key_file.clone(),
        client_ca_file: None,
    })
    .unwrap();
    let http = start(&tls, Protocol::Http).await;
    let grpc = start(&tls, Protocol::Grpc).await;

    // HTTPS (HTTP/1.1) with a real client.
    let client = https_client(&ca, Duration::from_secs(5));
    let url = format!("https://localhost:{}/", http.addr.port());
    let resp = client.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "ok");

    // ALPN: h2 and http/1.1 on HTTP listeners, h2 only on gRPC ones.
    let (leaf, alpn, _) = handshake(http.addr, client_config(&ca, &[b"http/1.1"])).await;
    assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));
    assert_eq!(leaf, der(&first));
    let (_, alpn, stream) = handshake(grpc.addr, client_config(&ca, &[b"h2", b"http/1.1"])).await;
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
    // and a request over HTTP/2 on that connection
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let request = hyper::Request::get(format!("https://localhost:{}/", grpc.addr.port()))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let resp = sender.send_request(request).await.unwrap();
    assert_eq!(resp.status(), 200);

    // A plain-text client on the TLS port gets no answer, and the port keeps serving.
    let plain = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
        .get(format!("http://127.0.0.1:{}/", http.addr.port()))
        .send()
        .await;
    assert!(plain.is_err(), "plain HTTP was answered: {plain:?}");
    // A client that connects and says nothing does not hold up the next one.
    let _silent = tokio::net::TcpStream::connect(http.addr).await.unwrap();
    let started = Instant::now();
    assert_eq!(client.get(&url).send().await.unwrap().status(), 200);
    assert!(started.elapsed() < Duration::from_secs(3));

    // Rotation: a new connection sees the new certificate, without a restart.
    install(&second_key, &key_file);
    install(&second, &cert_file);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (leaf, _, _) = handshake(http.addr, client_config(&ca, &[b"h2"])).await;
        if leaf == der(&second) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the rotated certificate was not served within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(client.get(&url).send().await.unwrap().status(), 200);

    // A broken new certificate file keeps the one in use.
    std::fs::write(&cert_file, "-----BEGIN CERTIFICATE-----\nnot base64\n").unwrap();
    tokio::time::sleep(clew_net::tls::RELOAD_INTERVAL * 3).await;
    let (leaf, _, _) = handshake(http.addr, client_config(&ca, &[b"h2"])).await;
    assert_eq!(leaf, der(&second), "a broken file replaced the certificate");
    assert_eq!(client.get(&url).send().await.unwrap().status(), 200);

    http.stop().await;
    grpc.stop().await;
}

#[tokio::test]
async fn client_certificates_are_required_when_a_client_ca_is_set() {
    let dir = tempfile_dir();
    make_ca(dir.path());
    let (server, server_key) = make_leaf(dir.path(), "server");
    let (client_cert, client_key) = make_leaf(dir.path(), "client");
    let ca = dir.path().join("ca.pem");
    let tls = Tls::load(TlsFiles {
        cert_file: server,
        key_file: server_key,
        client_ca_file: Some(ca.clone()),
    })
    .unwrap();
    let http = start(&tls, Protocol::Http).await;
    let url = format!("https://localhost:{}/", http.addr.port());

    let without = https_client(&ca, Duration::from_secs(5))
        .get(&url)
        .send()
        .await;
    assert!(without.is_err(), "served without a client certificate");

    let with = client_with_identity(&ca, &client_cert, &client_key);
    assert_eq!(with.get(&url).send().await.unwrap().status(), 200);
    http.stop().await;
}

/// A reqwest client presenting `cert`/`key` and trusting `ca` for the server.
fn client_with_identity(ca: &Path, cert: &Path, key: &Path) -> reqwest::Client {
    let mut pem = std::fs::read(cert).unwrap();
    pem.extend(std::fs::read(key).unwrap());
    let ca_cert = reqwest::Certificate::from_pem(&std::fs::read(ca).unwrap()).unwrap();
    reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(ca_cert)
        .identity(reqwest::Identity::from_pem(&pem).unwrap())
        // a new connection per request: each handshake sees the CAs in force
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// Polls until `client` gets a 200 (`want_ok`) or fails to connect (`!want_ok`).
async fn until_accepted(client: &reqwest::Client, url: &str, want_ok: bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let ok = matches!(client.get(url).send().await, Ok(r) if r.status() == 200);
        if ok == want_ok {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test]
async fn a_new_client_ca_file_applies_to_new_connections() {
    // Two CAs: the server's own (which also issues client "old"), and a second one in a
    // subdirectory issuing client "new".
    let dir = tempfile_dir();
    make_ca(dir.path());
    let (server, server_key) = make_leaf(dir.path(), "server");
    let (old_cert, old_key) = make_leaf(dir.path(), "old");
    let second = dir.path().join("second");
    std::fs::create_dir(&second).unwrap();
    make_ca(&second);
    let (new_cert, new_key) = make_leaf(&second, "new");
    let server_ca = dir.path().join("ca.pem");
    let client_ca = dir.path().join("clients.pem");
    install(&server_ca, &client_ca);

    let tls = Tls::load(TlsFiles {
        cert_file: server,
        key_file: server_key,
        client_ca_file: Some(client_ca.clone()),
    })
    .unwrap();
    let http = start(&tls, Protocol::Http).await;
    let url = format!("https://localhost:{}/", http.addr.port());
    let old = client_with_identity(&server_ca, &old_cert, &old_key);
    let new = client_with_identity(&server_ca, &new_cert, &new_key);
    assert_eq!(old.get(&url).send().await.unwrap().status(), 200);
    assert!(
        new.get(&url).send().await.is_err(),
        "a client of an unknown CA was served"
    );

    // The operator replaces the client CA file: the second CA only.
    install(&second.join("ca.pem"), &client_ca);
    assert!(
        until_accepted(&new, &url, true).await,
        "the new client CA was not loaded"
    );
    assert!(
        old.get(&url).send().await.is_err(),
        "the removed CA's client is still served"
    );

    // A broken file keeps the CAs in force.
    std::fs::write(&client_ca, "-----BEGIN CERTIFICATE-----\nnot base64\n").unwrap();
    tokio::time::sleep(clew_net::tls::RELOAD_INTERVAL * 3).await;
    assert_eq!(new.get(&url).send().await.unwrap().status(), 200);
    assert!(old.get(&url).send().await.is_err());
    http.stop().await;
}

#[tokio::test]
async fn bad_files_are_errors_naming_the_file() {
    let dir = tempfile_dir();
    make_ca(dir.path());
    let (cert, key) = make_leaf(dir.path(), "leaf");
    let missing = dir.path().join("missing.pem");
    let err = Tls::load(TlsFiles {
        cert_file: missing.clone(),
        key_file: key.clone(),
        client_ca_file: None,
    })
    .err()
    .expect("a missing certificate file is an error");
    assert_eq!(err.file, missing);
    // the CA's key does not belong to the leaf's certificate
    let err = Tls::load(TlsFiles {
        cert_file: cert,
        key_file: dir.path().join("ca.key"),
        client_ca_file: None,
    })
    .err()
    .expect("a key that does not fit is an error");
    assert!(err.to_string().contains("does not fit"), "{err}");
}

fn tempfile_dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[tokio::test]
async fn a_client_that_never_finishes_its_handshake_is_disconnected() {
    use tokio::io::AsyncReadExt;
    let dir = tempfile_dir();
    make_ca(dir.path());
    let (cert, key) = make_leaf(dir.path(), "leaf");
    let tls = Tls::load(TlsFiles {
        cert_file: cert,
        key_file: key,
        client_ca_file: None,
    })
    .unwrap();
    let http = start(&tls, Protocol::Http).await;
    let mut silent = tokio::net::TcpStream::connect(http.addr).await.unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(
        clew_net::limits::TLS_HANDSHAKE_TIMEOUT + Duration::from_secs(5),
        silent.read(&mut buf),
    )
    .await
    .expect("the silent connection was never closed");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    assert!(started.elapsed() >= clew_net::limits::TLS_HANDSHAKE_TIMEOUT - Duration::from_secs(1));
    http.stop().await;
}
