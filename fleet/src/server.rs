//! HTTPS for the API: rustls with the service's certificate; a client certificate of the fleet's
//! CA is asked for but optional (rooms present theirs, people and scripts their API token), and
//! its name is handed to the handlers as [`Peer`].

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio::net::TcpListener;
use tower::ServiceExt;

use crate::api::Peer;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("TLS: {0}")]
    Tls(String),
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: String, reason: String },
}

/// The server's TLS: its chain and key (PEM), clients verified against `ca_pem` when they offer
/// a certificate.
#[allow(deprecated)] // ring's provider, as huisd's.
pub fn tls_config(chain_pem: &[u8], key_pem: &[u8], ca_pem: &[u8]) -> Result<Arc<rustls::ServerConfig>, ServerError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| ServerError::Tls(e.to_string()))?;
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| ServerError::Tls(e.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(c.map_err(|e| ServerError::Tls(e.to_string()))?).map_err(|e| ServerError::Tls(e.to_string()))?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| ServerError::Tls(e.to_string()))?;
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ServerError::Tls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| ServerError::Tls(e.to_string()))?;
    Ok(Arc::new(cfg))
}

/// Serves `app` on `addr` until the process ends.
pub async fn serve(addr: &str, tls: Arc<rustls::ServerConfig>, app: Router) -> Result<(), ServerError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| ServerError::Listen { addr: addr.to_owned(), reason: e.to_string() })?;
    tracing::info!(addr = %addr, "HTTPS listening");
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    // Bounded: connections beyond this wait in the kernel's backlog.
    let slots = Arc::new(tokio::sync::Semaphore::new(512));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else { return Ok(()) };
        let (tcp, from) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, app) = (acceptor.clone(), app.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                Ok(Ok(t)) => t,
                Ok(Err(e)) => {
                    tracing::debug!(from = %from, "TLS handshake failed: {e}");
                    return;
                }
                Err(_) => return,
            };
            let peer = Peer(
                tls.get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .and_then(|c| crate::pki::common_name(c.as_ref())),
            );
            let svc = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(peer.clone());
                app.clone().oneshot(req.map(axum::body::Body::new))
            });
            let conn = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            if let Err(e) = conn.serve_connection(TokioIo::new(tls), svc).await {
                tracing::debug!(from = %from, "connection: {e}");
            }
        });
    }
}
