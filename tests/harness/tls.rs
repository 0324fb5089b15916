//! TLS for the tests: a throwaway self-signed certificate ([`self_signed`]) and a rustls
//! client that trusts only it ([`trusting`], [`trusting_alpn`] to offer protocols by ALPN).

use std::path::PathBuf;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;

use super::LogFile;

/// A throwaway self-signed certificate for `localhost` and `127.0.0.1`, written as
/// `{prefix}cert.pem` and `{prefix}key.pem` next to the log; returns both paths and the
/// certificate.
pub fn self_signed(log: &LogFile, prefix: &str) -> (PathBuf, PathBuf, CertificateDer<'static>) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("generate a self-signed certificate");
    let cert = log.write_sibling(&format!("{prefix}cert.pem"), ck.cert.pem().as_bytes());
    let key = log.write_sibling(
        &format!("{prefix}key.pem"),
        ck.signing_key.serialize_pem().as_bytes(),
    );
    (cert, key, ck.cert.der().clone())
}

/// A rustls client configuration (ring) trusting only `cert`, offering no ALPN protocol
/// (so the server speaks HTTP/1.1).
pub fn trusting(cert: CertificateDer<'static>) -> Arc<rustls::ClientConfig> {
    trusting_alpn(cert, &[])
}

/// [`trusting`], offering `protocols` by ALPN (`b"h2"`, `b"http/1.1"`).
pub fn trusting_alpn(
    cert: CertificateDer<'static>,
    protocols: &[&[u8]],
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).expect("add the test certificate");
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = protocols.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}
