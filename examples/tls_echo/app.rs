//! The TLS echo example itself (see `main.rs`).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls::{self, pki_types};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use xev::compat::Compat;
use xev::net::{TcpListener, TcpStream};

const CERT_FILE: &str = "/tmp/xev-tls-echo.pem";

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn tls_err(e: impl std::error::Error + Send + Sync + 'static) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// A server config with a new self-signed certificate for `localhost`, and that
/// certificate (PEM) for clients to trust.
fn server_config() -> io::Result<(TlsAcceptor, String)> {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).map_err(tls_err)?;
    let key = pki_types::PrivateKeyDer::Pkcs8(ck.key_pair.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(tls_err)?
        .with_no_client_auth()
        .with_single_cert(vec![ck.cert.der().clone()], key)
        .map_err(tls_err)?;
    Ok((TlsAcceptor::from(Arc::new(config)), ck.cert.pem()))
}

/// A client config that trusts the certificates in `pem`.
fn client_config(pem: &str) -> io::Result<TlsConnector> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pem(pem)? {
        roots.add(cert).map_err(tls_err)?;
    }
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(tls_err)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

/// The certificates of a PEM text.
fn rustls_pem(pem: &str) -> io::Result<Vec<pki_types::CertificateDer<'static>>> {
    use pki_types::pem::PemObject;
    pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(tls_err)
}

/// Echo every connection of `listener` over TLS, each in its own task.
async fn serve(listener: TcpListener, acceptor: TlsAcceptor) {
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                eprintln!("tls_echo: accept: {e}");
                xev::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        xev::spawn(async move {
            let res = async {
                let tls = acceptor.accept(Compat::new(stream)).await?;
                let (mut r, mut w) = tokio::io::split(tls);
                tokio::io::copy(&mut r, &mut w).await?;
                w.shutdown().await
            };
            if let Err(e) = res.await {
                eprintln!("tls_echo: connection: {e}");
            }
        });
    }
}

/// Connect to `addr` over TLS, send each message and read its echo; returns the echoes.
async fn client(
    addr: SocketAddr,
    connector: &TlsConnector,
    msgs: &[Vec<u8>],
) -> io::Result<Vec<Vec<u8>>> {
    let stream = TcpStream::connect(addr).await?;
    let name = pki_types::ServerName::try_from("localhost").map_err(tls_err)?;
    let mut tls = connector.connect(name, Compat::new(stream)).await?;
    let mut echoes = Vec::new();
    for m in msgs {
        tls.write_all(m).await?;
        tls.flush().await?;
        let mut back = vec![0u8; m.len()];
        tls.read_exact(&mut back).await?;
        echoes.push(back);
    }
    tls.shutdown().await?;
    // The server closes its side after our close_notify.
    let mut rest = Vec::new();
    tls.read_to_end(&mut rest).await?;
    if !rest.is_empty() {
        return Err(io::Error::other("unexpected bytes after the echoes"));
    }
    Ok(echoes)
}

/// Server and client in one runtime: echo a few messages and a MiB, verify.
async fn self_test() -> io::Result<()> {
    let (acceptor, pem) = server_config()?;
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let server = xev::spawn(serve(listener, acceptor));
    let connector = client_config(&pem)?;
    let mut msgs: Vec<Vec<u8>> = ["hello", "over", "TLS"]
        .iter()
        .map(|m| m.as_bytes().to_vec())
        .collect();
    msgs.push((0..1 << 20).map(|i: u32| (i % 251) as u8).collect());
    for round in 0..3 {
        let echoes = xev::time::timeout(Duration::from_secs(20), client(addr, &connector, &msgs))
            .await
            .map_err(io::Error::from)??;
        if echoes != msgs {
            return Err(io::Error::other(format!("round {round}: echoes differ")));
        }
    }
    server.abort();
    println!(
        "tls_echo self-test passed: 3 connections, {} messages each echoed",
        msgs.len()
    );
    Ok(())
}

fn usage() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "usage: tls_echo --self-test | server PORT | client PORT CERT.pem MESSAGE...",
    )
}

fn port(arg: Option<&String>) -> io::Result<u16> {
    arg.and_then(|p| p.parse().ok()).ok_or_else(usage)
}

pub fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("--self-test") => xev::block_on(self_test()),
        Some("server") => {
            let port = port(args.get(1))?;
            let (acceptor, pem) = server_config()?;
            std::fs::write(CERT_FILE, &pem)?;
            xev::block_on(async move {
                let listener = TcpListener::bind(("127.0.0.1", port))?;
                println!(
                    "tls_echo: listening on {} (certificate for localhost in {CERT_FILE})",
                    listener.local_addr()?
                );
                serve(listener, acceptor).await;
                Ok(())
            })
        }
        Some("client") => {
            let port = port(args.get(1))?;
            let pem = std::fs::read_to_string(args.get(2).ok_or_else(usage)?)?;
            let msgs: Vec<Vec<u8>> = args[3..].iter().map(|m| m.as_bytes().to_vec()).collect();
            xev::block_on(async move {
                let connector = client_config(&pem)?;
                let addr = SocketAddr::from(([127, 0, 0, 1], port));
                for echo in client(addr, &connector, &msgs).await? {
                    println!("{}", String::from_utf8_lossy(&echo));
                }
                Ok(())
            })
        }
        _ => Err(usage()),
    }
}
