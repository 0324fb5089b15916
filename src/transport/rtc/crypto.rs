//! The crypto str0m runs on: pure Rust, and nothing more than a data channel needs.
//!
//! Why not str0m's own `rust-crypto` feature (the `str0m-rust-crypto` crate): it turns on
//! `dimpl`'s `rcgen` feature for the DTLS certificate, and that pulls in `aws-lc-rs`, a
//! C crypto library built from source, next to the ring the server already uses. So the
//! provider is assembled here from the same parts without that one:
//!
//! - DTLS: `dimpl` with its RustCrypto backend only (as `str0m-rust-crypto` does it);
//! - the DTLS certificate (ECDSA P-256, self-signed): `rcgen` on ring, as the rest of
//!   the server signs;
//! - STUN's HMAC-SHA1 and the fingerprint's SHA-256: RustCrypto's `hmac`, `sha1`, `sha2`
//!   (already in the tree for WebSocket handshakes and DTLS);
//! - SRTP: none. `/rtc` answers only offers without audio or video, so no RTP flows; the
//!   ciphers str0m asks for once DTLS is up refuse to work (an error, never a panic).

use std::sync::Arc;
use std::time::Instant;

use hmac::{Hmac, Mac};
use sha2::Digest;
use str0m::crypto::dtls::{
    DtlsCert, DtlsImplError, DtlsInstance, DtlsOutput, DtlsProvider, ProtocolVersion,
};
use str0m::crypto::{
    AeadAes128Gcm, AeadAes128GcmCipher, AeadAes256Gcm, AeadAes256GcmCipher, Aes128CmSha1_80Cipher,
    CryptoError, CryptoProvider, Sha1HmacProvider, Sha256Provider, SrtpProvider,
    SupportedAeadAes128Gcm, SupportedAeadAes256Gcm, SupportedAes128CmSha1_80,
};

/// The provider every `Rtc` of the server (and of the tests' peer) is built with.
pub fn provider() -> Arc<CryptoProvider> {
    static SRTP: NoSrtp = NoSrtp;
    static SHA1_HMAC: HmacSha1 = HmacSha1;
    static SHA256: Sha256 = Sha256;
    static DTLS: Dimpl = Dimpl;
    Arc::new(CryptoProvider {
        srtp_provider: &SRTP,
        sha1_hmac_provider: &SHA1_HMAC,
        sha256_provider: &SHA256,
        dtls_provider: &DTLS,
    })
}

/// A self-signed ECDSA P-256 certificate for DTLS (its SHA-256 is the `a=fingerprint` of
/// every answer); `None` if it cannot be made.
pub fn certificate() -> Option<DtlsCert> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).ok()?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).ok()?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "logtail-ws WebRTC");
    // Unique serial numbers: Firefox refuses a repeated one (str0m issue 517).
    let mut serial = [0u8; 16];
    getrandom::fill(&mut serial).ok()?;
    serial[0] &= 0x7f;
    params.serial_number = Some(rcgen::SerialNumber::from(serial.to_vec()));
    let cert = params.self_signed(&key).ok()?;
    Some(DtlsCert {
        certificate: cert.der().to_vec(),
        private_key: key.serialize_der(),
    })
}

#[derive(Debug)]
struct HmacSha1;

impl Sha1HmacProvider for HmacSha1 {
    fn sha1_hmac(&self, key: &[u8], payloads: &[&[u8]]) -> [u8; 20] {
        // HMAC takes a key of any length: `new_from_slice` cannot fail for it.
        let Ok(mut mac) = Hmac::<sha1::Sha1>::new_from_slice(key) else {
            return [0; 20];
        };
        for payload in payloads {
            mac.update(payload);
        }
        mac.finalize().into_bytes().into()
    }
}

#[derive(Debug)]
struct Sha256;

impl Sha256Provider for Sha256 {
    fn sha256(&self, data: &[u8]) -> [u8; 32] {
        sha2::Sha256::digest(data).into()
    }
}

#[derive(Debug)]
struct Dimpl;

impl DtlsProvider for Dimpl {
    fn generate_certificate(&self) -> Option<DtlsCert> {
        certificate()
    }

    fn new_dtls(
        &self,
        cert: &DtlsCert,
        now: Instant,
        version: str0m::config::DtlsVersion,
        mtu: Option<usize>,
    ) -> Result<Box<dyn DtlsInstance>, CryptoError> {
        // ICE has proved the peer's address before DTLS: no cookie exchange needed.
        let mut builder = dimpl::Config::builder().use_server_cookie(false);
        if let Some(mtu) = mtu {
            builder = builder.mtu(mtu);
        }
        let config = Arc::new(
            builder
                .build()
                .map_err(|e| CryptoError::Other(format!("dimpl config: {e}")))?,
        );
        let cert = cert.clone();
        let dtls = match version {
            str0m::config::DtlsVersion::Dtls12 => dimpl::Dtls::new_12(config, cert, now),
            str0m::config::DtlsVersion::Dtls13 => dimpl::Dtls::new_13(config, cert, now),
            str0m::config::DtlsVersion::Auto => dimpl::Dtls::new_auto(config, cert, now),
            other => return Err(CryptoError::Other(format!("DTLS version {other}"))),
        };
        Ok(Box::new(Dtls(dtls)))
    }
}

struct Dtls(dimpl::Dtls);

impl std::fmt::Debug for Dtls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Dtls")
    }
}

impl DtlsInstance for Dtls {
    fn set_active(&mut self, active: bool) {
        self.0.set_active(active);
    }
    fn handle_packet(&mut self, packet: &[u8]) -> Result<(), DtlsImplError> {
        self.0.handle_packet(packet)
    }
    fn poll_output<'a>(&mut self, buf: &'a mut [u8]) -> DtlsOutput<'a> {
        self.0.poll_output(buf)
    }
    fn handle_timeout(&mut self, now: Instant) -> Result<(), DtlsImplError> {
        self.0.handle_timeout(now)
    }
    fn send_application_data(&mut self, data: &[u8]) -> Result<(), DtlsImplError> {
        self.0.send_application_data(data)
    }
    fn is_active(&self) -> bool {
        self.0.is_active()
    }
    fn protocol_version(&self) -> Option<ProtocolVersion> {
        self.0.protocol_version()
    }
    fn is_closing(&self) -> bool {
        self.0.is_closing()
    }
    fn is_closed(&self) -> bool {
        self.0.is_closed()
    }
    fn close(&mut self) -> Result<(), DtlsImplError> {
        self.0.close()
    }
}

/// SRTP for a server that carries no media: every cipher refuses.
#[derive(Debug)]
struct NoSrtp;

#[derive(Debug)]
struct Refuse;

fn no_media() -> CryptoError {
    CryptoError::Other("no media on /rtc: SRTP is not available".into())
}

impl SrtpProvider for NoSrtp {
    fn aes_128_cm_sha1_80(&self) -> &'static dyn SupportedAes128CmSha1_80 {
        &Refuse
    }
    fn aead_aes_128_gcm(&self) -> &'static dyn SupportedAeadAes128Gcm {
        &Refuse
    }
    fn aead_aes_256_gcm(&self) -> &'static dyn SupportedAeadAes256Gcm {
        &Refuse
    }
    fn srtp_aes_128_ecb_round(&self, _key: &[u8], _input: &[u8], output: &mut [u8]) {
        output.fill(0);
    }
    fn srtp_aes_256_ecb_round(&self, _key: &[u8], _input: &[u8], output: &mut [u8]) {
        output.fill(0);
    }
}

impl SupportedAes128CmSha1_80 for Refuse {
    fn create_cipher(&self, _key: [u8; 16], _encrypt: bool) -> Box<dyn Aes128CmSha1_80Cipher> {
        Box::new(Refuse)
    }
}

impl SupportedAeadAes128Gcm for Refuse {
    fn create_cipher(&self, _key: [u8; 16], _encrypt: bool) -> Box<dyn AeadAes128GcmCipher> {
        Box::new(Refuse)
    }
}

impl SupportedAeadAes256Gcm for Refuse {
    fn create_cipher(&self, _key: [u8; 32], _encrypt: bool) -> Box<dyn AeadAes256GcmCipher> {
        Box::new(Refuse)
    }
}

impl Aes128CmSha1_80Cipher for Refuse {
    fn encrypt(&mut self, _: &[u8; 16], _: &[u8], _: &mut [u8]) -> Result<(), CryptoError> {
        Err(no_media())
    }
    fn decrypt(&mut self, _: &[u8; 16], _: &[u8], _: &mut [u8]) -> Result<(), CryptoError> {
        Err(no_media())
    }
}

impl AeadAes128GcmCipher for Refuse {
    fn encrypt(
        &mut self,
        _: &[u8; AeadAes128Gcm::IV_LEN],
        _: &[u8],
        _: &[u8],
        _: &mut [u8],
    ) -> Result<(), CryptoError> {
        Err(no_media())
    }
    fn decrypt(
        &mut self,
        _: &[u8; AeadAes128Gcm::IV_LEN],
        _: &[&[u8]],
        _: &[u8],
        _: &mut [u8],
    ) -> Result<usize, CryptoError> {
        Err(no_media())
    }
}

impl AeadAes256GcmCipher for Refuse {
    fn encrypt(
        &mut self,
        _: &[u8; AeadAes256Gcm::IV_LEN],
        _: &[u8],
        _: &[u8],
        _: &mut [u8],
    ) -> Result<(), CryptoError> {
        Err(no_media())
    }
    fn decrypt(
        &mut self,
        _: &[u8; AeadAes256Gcm::IV_LEN],
        _: &[&[u8]],
        _: &[u8],
        _: &mut [u8],
    ) -> Result<usize, CryptoError> {
        Err(no_media())
    }
}
