//! The self-signed QUIC certificate of `--http3` without `--tls-cert`, and
//! its renewal.
//!
//! Browsers accept a certificate no CA signed only for WebTransport, and
//! only by its hash (`serverCertificateHashes`), with rules of their own
//! (W3C WebTransport, "custom certificate requirements"): an X.509v3
//! certificate, ECDSA P-256 (RSA is refused), valid for **at most 14 days**
//! with now inside its validity. So this module makes one such certificate
//! at start ([`SelfSigned::generate`]): a fresh P-256 key, valid from an hour
//! ago (clock skew) for [`VALIDITY`] in all, SANs `localhost`, `127.0.0.1`,
//! `::1` and the bound address when it is a specific one. Its SHA-256 (of
//! the DER) is what `GET /wt-cert-hash` serves ([`CertHash`]).
//!
//! [`renew`] replaces it every [`RENEW_EVERY`] (well before it expires) with
//! a new one, and swaps it into the running endpoint with
//! [`quinn::Endpoint::set_server_config`]: connections already open keep the
//! certificate they were made with; new ones get the new one. There is no
//! polling: one sleep until the renewal instant, then the next. A page that
//! fetched the hash just before a renewal and connects just after fails
//! once and fetches it again (the viewer does so on every connect).
//!
//! Nothing here is used with `--tls-cert`: that certificate is the
//! operator's, for QUIC and TCP alike, and `/wt-cert-hash` answers 404.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_util::sync::CancellationToken;

use crate::error::Error;

/// The whole validity of a certificate (from [`BACKDATE`] before it was made):
/// under the browsers' 14-day limit, with an hour to spare.
pub const VALIDITY: Duration = Duration::from_secs((14 * 24 - 1) * 3600);

/// How far before its making a certificate's validity starts, for clocks a
/// little behind ours.
pub const BACKDATE: Duration = Duration::from_secs(3600);

/// How often a new certificate replaces the current one: less than half the
/// validity, so the one in use always has a week left.
pub const RENEW_EVERY: Duration = Duration::from_secs(6 * 24 * 3600);

/// One generated certificate with its key, and its SHA-256.
pub struct Generated {
    pub cert: CertificateDer<'static>,
    pub key: PrivateKeyDer<'static>,
    /// SHA-256 of `cert`, 64 lowercase hex digits.
    pub hash: String,
}

/// The current certificate's hash, shared by the renewal and `/wt-cert-hash`.
#[derive(Clone, Default)]
pub struct CertHash(Arc<RwLock<String>>);

impl CertHash {
    /// The SHA-256 of the certificate new QUIC connections get, 64 lowercase
    /// hex digits.
    pub fn current(&self) -> String {
        match self.0.read() {
            Ok(hash) => hash.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn set(&self, hash: String) {
        match self.0.write() {
            Ok(mut current) => *current = hash,
            Err(poisoned) => *poisoned.into_inner() = hash,
        }
    }
}

/// The self-signed certificate in use, what it was made for, and its hash.
pub struct SelfSigned {
    /// Names and addresses it is valid for.
    names: Vec<String>,
    pub hash: CertHash,
    ping_interval: Duration,
}

impl SelfSigned {
    /// Makes the first certificate for a server bound to `bind`; returns it
    /// with the QUIC configuration that serves it.
    pub fn generate(
        bind: SocketAddr,
        ping_interval: Duration,
    ) -> Result<(SelfSigned, quinn::ServerConfig), Error> {
        let names = names_for(bind.ip());
        let generated = generate(&names)?;
        let hash = CertHash::default();
        hash.set(generated.hash.clone());
        let config = super::h3::quic_config_for(generated.cert, generated.key, ping_interval)?;
        Ok((
            SelfSigned {
                names,
                hash,
                ping_interval,
            },
            config,
        ))
    }
}

/// `localhost`, `127.0.0.1`, `::1`, and `ip` when it is a specific address.
fn names_for(ip: IpAddr) -> Vec<String> {
    let mut names = vec!["localhost".to_string(), "127.0.0.1".into(), "::1".into()];
    let ip = ip.to_string();
    if !ip.parse::<IpAddr>().is_ok_and(|ip| ip.is_unspecified()) && !names.contains(&ip) {
        names.push(ip);
    }
    names
}

/// A new ECDSA P-256 certificate for `names`, valid from [`BACKDATE`] ago
/// for [`VALIDITY`].
pub fn generate(names: &[String]) -> Result<Generated, Error> {
    let failed = |err: rcgen::Error| {
        Error::Tls(rustls::Error::General(format!(
            "generating the self-signed QUIC certificate: {err}"
        )))
    };
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(failed)?;
    let mut params = rcgen::CertificateParams::new(names.to_vec()).map_err(failed)?;
    let now = time::OffsetDateTime::now_utc();
    let backdate = time::Duration::try_from(BACKDATE).unwrap_or(time::Duration::HOUR);
    let validity = time::Duration::try_from(VALIDITY).unwrap_or(time::Duration::DAY);
    params.not_before = now - backdate;
    params.not_after = now - backdate + validity;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "logtail-ws (self-signed)");
    let cert = params.self_signed(&key).map_err(failed)?;
    let cert = cert.der().clone();
    let hash = hex(ring::digest::digest(&ring::digest::SHA256, &cert).as_ref());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    Ok(Generated { cert, key, hash })
}

/// Lowercase hex.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Renews `cert` every `every` ([`RENEW_EVERY`]) into `endpoint`, until
/// `cancel`. A renewal that fails is logged and tried again in a minute:
/// the certificate in use still has days left.
pub async fn renew(
    endpoint: quinn::Endpoint,
    cert: SelfSigned,
    every: Duration,
    cancel: CancellationToken,
) {
    let mut wait = every;
    loop {
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = cancel.cancelled() => return,
        }
        let renewed = generate(&cert.names).and_then(|generated| {
            let config =
                super::h3::quic_config_for(generated.cert, generated.key, cert.ping_interval)?;
            Ok((config, generated.hash))
        });
        match renewed {
            Ok((config, hash)) => {
                endpoint.set_server_config(Some(config));
                tracing::info!(sha256 = %hash, "renewed the self-signed QUIC certificate");
                cert.hash.set(hash);
                wait = every;
            }
            Err(err) => {
                tracing::warn!("renewing the self-signed QUIC certificate: {err}");
                wait = Duration::from_secs(60);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validity_fits_the_browsers_limit_and_renewal_comes_first() {
        assert!(VALIDITY <= Duration::from_secs(14 * 24 * 3600));
        assert!(RENEW_EVERY + BACKDATE < VALIDITY / 2 + VALIDITY / 4);
    }

    #[test]
    fn names_include_a_specific_bind_address_only() {
        assert_eq!(
            names_for("0.0.0.0".parse().unwrap()),
            ["localhost", "127.0.0.1", "::1"]
        );
        assert_eq!(names_for("127.0.0.1".parse().unwrap()).len(), 3);
        assert_eq!(names_for("10.1.2.3".parse().unwrap())[3], "10.1.2.3");
    }

    #[test]
    fn the_hash_is_the_sha256_of_the_der() {
        let generated = generate(&names_for("127.0.0.1".parse().unwrap())).unwrap();
        assert_eq!(generated.hash.len(), 64);
        assert!(
            generated
                .hash
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );
        let again = hex(ring::digest::digest(&ring::digest::SHA256, &generated.cert).as_ref());
        assert_eq!(generated.hash, again);
        // P-256 with SHA-256: the ecdsa-with-SHA256 OID 1.2.840.10045.4.3.2 is in it.
        let oid = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
        assert!(generated.cert.windows(oid.len()).any(|w| w == oid));
        let other = generate(&["localhost".into()]).unwrap();
        assert_ne!(other.hash, generated.hash, "a fresh key each time");
    }

    /// Accepts every server certificate, recording the SHA-256 of each end-entity one.
    #[derive(Debug)]
    struct Record(std::sync::Mutex<Vec<String>>);

    impl rustls::client::danger::ServerCertVerifier for Record {
        fn verify_server_cert(
            &self,
            end_entity: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &rustls::pki_types::ServerName<'_>,
            _: &[u8],
            _: rustls::pki_types::UnixTime,
        ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
            let hash = hex(ring::digest::digest(&ring::digest::SHA256, end_entity).as_ref());
            self.0.lock().unwrap().push(hash);
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
        }
        fn verify_tls13_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            rustls::crypto::ring::default_provider()
                .signature_verification_algorithms
                .supported_schemes()
        }
    }

    /// The SHA-256 of the certificate a new QUIC handshake with `addr` presents.
    async fn presented(addr: SocketAddr) -> String {
        let record = Arc::new(Record(Default::default()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(record.clone())
            .with_no_client_auth();
        tls.alpn_protocols = vec![b"h3".to_vec()];
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
        let mut client = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        client.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
        let conn = client.connect(addr, "localhost").unwrap().await.unwrap();
        conn.close(0u32.into(), b"");
        let hashes = record.0.lock().unwrap().clone();
        assert_eq!(hashes.len(), 1);
        hashes[0].clone()
    }

    /// Each renewal swaps a new certificate into the running endpoint: a new handshake
    /// presents the one whose hash [`CertHash`] gives; cancelling stops the renewals.
    #[tokio::test]
    async fn renewal_swaps_the_certificate_new_handshakes_get() {
        let bind: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let (cert, config) = SelfSigned::generate(bind, Duration::from_secs(5)).unwrap();
        let hash = cert.hash.clone();
        let endpoint = quinn::Endpoint::server(config, bind).unwrap();
        let addr = endpoint.local_addr().unwrap();
        let server = endpoint.clone();
        tokio::spawn(async move {
            while let Some(incoming) = server.accept().await {
                tokio::spawn(async move {
                    if let Ok(conn) = incoming.await {
                        let _ = conn.closed().await;
                    }
                });
            }
        });
        let first = hash.current();
        assert_eq!(presented(addr).await, first);
        let cancel = CancellationToken::new();
        let renewing = tokio::spawn(renew(
            endpoint.clone(),
            cert,
            Duration::from_millis(50),
            cancel.clone(),
        ));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while hash.current() == first {
            assert!(tokio::time::Instant::now() < deadline, "no renewal");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        cancel.cancel();
        tokio::time::timeout(Duration::from_secs(5), renewing)
            .await
            .expect("renewal stops on cancel")
            .unwrap();
        // Stopped after a swap and its hash: a new handshake presents exactly that one.
        let renewed = hash.current();
        assert_ne!(renewed, first);
        assert_eq!(presented(addr).await, renewed);
        endpoint.close(0u32.into(), b"");
    }
}
