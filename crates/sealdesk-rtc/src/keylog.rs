//! **Insecure, test-only**: writes this process's DTLS record keys and SRTP keying material
//! to a file, so a test can prove that what it captured on the wire is this session's
//! ciphertext — by decrypting it and finding the canaries — and that none of those keys
//! crossed the wire.
//!
//! Compiled only with the `insecure-keylog` feature, which a release build refuses to
//! compile (`compile_error!` without `debug_assertions`), and active only when
//! `SEALDESK_INSECURE_KEYLOG` names a file. [`crate::INSECURE_FEATURES`] says whether it is
//! compiled in, so `sealdesk --version` and `sealdesk audit` can report it.
//!
//! How: str0m and dimpl take pluggable crypto providers. [`install_from_env`] installs, as
//! the process defaults, the usual aws-lc-rs providers with two thin wrappers: dimpl's DTLS
//! 1.2 cipher suites, whose ciphers log their key and fixed IV on first use, and str0m's
//! DTLS instance, which logs the exported SRTP keying material as it passes by. Nothing
//! else changes — the same ciphers do the work.
//!
//! Lines in the file (hex):
//! ```text
//! dtls12 suite=c02b key=… iv=…        one per record cipher (each direction, each side)
//! srtp profile=… material=…          RFC 5764 exporter output: keys, then salts
//! ```

#[cfg(not(debug_assertions))]
compile_error!(
    "the insecure-keylog feature writes session keys to a file; it exists for tests and \
     cannot be compiled into a release build"
);

use std::fmt;
use std::io::Write as _;
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use dimpl::crypto::{Aad, Buf, Cipher, Nonce, SupportedDtls12CipherSuite, TmpBuf};
use str0m::crypto::dtls::{
    DtlsCert, DtlsImplError, DtlsInstance, DtlsOutput, DtlsProvider, DtlsVersion, ProtocolVersion,
};
use zeroize::Zeroizing;

/// The variable naming the key log file.
pub const ENV: &str = "SEALDESK_INSECURE_KEYLOG";

static SINK: OnceLock<Option<Mutex<std::fs::File>>> = OnceLock::new();

/// Installs the logging providers if [`ENV`] names a file (created 0600, appended to).
/// Idempotent; must run before the first `Rtc` is built, which [`crate::Session`] ensures.
pub(crate) fn install_from_env() {
    SINK.get_or_init(|| {
        let path = std::env::var_os(ENV)?;
        let file = open(std::path::Path::new(&path))
            .map_err(|e| tracing::error!("cannot open the insecure key log: {e}"))
            .ok()?;
        tracing::warn!(
            "INSECURE: writing session keys to {}",
            path.to_string_lossy()
        );
        install();
        Some(Mutex::new(file))
    });
}

/// Installs the logging providers writing to `path` (as if [`ENV`] named it), unless a
/// key log is already set up. For `sealdesk audit` in a test build: it searches the wire
/// for the keys. Must run before the first `Rtc` is built. Returns whether this call set it.
pub fn install_to(path: &std::path::Path) -> bool {
    let mut set = false;
    SINK.get_or_init(|| {
        let file = open(path)
            .map_err(|e| tracing::error!("cannot open the insecure key log: {e}"))
            .ok()?;
        tracing::warn!("INSECURE: writing session keys to {}", path.display());
        install();
        set = true;
        Some(Mutex::new(file))
    });
    set
}

fn open(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

fn install() {
    let base = dimpl::crypto::aws_lc_rs::default_provider();
    let suites: Vec<&'static dyn SupportedDtls12CipherSuite> = base
        .cipher_suites
        .iter()
        .map(|inner| -> &'static dyn SupportedDtls12CipherSuite {
            Box::leak(Box::new(LoggedSuite { inner: *inner }))
        })
        .collect();
    dimpl::crypto::CryptoProvider::install_default(dimpl::crypto::CryptoProvider {
        cipher_suites: Box::leak(suites.into_boxed_slice()),
        ..base
    });

    let str0m_base = str0m::crypto::from_feature_flags();
    let inner = str0m_base.dtls_provider;
    str0m::crypto::CryptoProvider {
        dtls_provider: Box::leak(Box::new(LoggedDtls { inner })),
        ..str0m_base
    }
    .install_process_default();
}

fn log_line(line: &str) {
    let Some(Some(sink)) = SINK.get() else { return };
    if let Ok(mut file) = sink.lock() {
        if let Err(e) = writeln!(file, "{line}") {
            tracing::error!("cannot write the insecure key log: {e}");
        }
    }
}

fn hex(bytes: &[u8]) -> Zeroizing<String> {
    let mut s = Zeroizing::new(String::with_capacity(bytes.len() * 2));
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

struct LoggedSuite {
    inner: &'static dyn SupportedDtls12CipherSuite,
}

impl fmt::Debug for LoggedSuite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoggedSuite").finish_non_exhaustive()
    }
}

impl SupportedDtls12CipherSuite for LoggedSuite {
    fn suite(&self) -> dimpl::crypto::Dtls12CipherSuite {
        self.inner.suite()
    }
    fn hash_algorithm(&self) -> dimpl::crypto::HashAlgorithm {
        self.inner.hash_algorithm()
    }
    fn key_lengths(&self) -> (usize, usize, usize) {
        self.inner.key_lengths()
    }
    fn explicit_nonce_len(&self) -> usize {
        self.inner.explicit_nonce_len()
    }
    fn tag_len(&self) -> usize {
        self.inner.tag_len()
    }
    fn min_protected_fragment_len(&self) -> usize {
        self.inner.min_protected_fragment_len()
    }
    fn create_cipher(&self, key: &[u8]) -> Result<Box<dyn Cipher>, dimpl::CryptoError> {
        let (_, _, iv_len) = self.inner.key_lengths();
        Ok(Box::new(LoggedCipher {
            inner: self.inner.create_cipher(key)?,
            suite: self.inner.suite().as_u16(),
            key: Zeroizing::new(key.to_vec()),
            iv_len,
            logged: false,
        }))
    }
}

/// Logs its key with the fixed IV (the nonce's first `iv_len` bytes) on first use.
struct LoggedCipher {
    inner: Box<dyn Cipher>,
    suite: u16,
    key: Zeroizing<Vec<u8>>,
    iv_len: usize,
    logged: bool,
}

impl fmt::Debug for LoggedCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoggedCipher").finish_non_exhaustive()
    }
}

impl LoggedCipher {
    fn log(&mut self, nonce: &Nonce) {
        if self.logged {
            return;
        }
        self.logged = true;
        let iv = nonce.0.get(..self.iv_len).unwrap_or(&nonce.0);
        let line = Zeroizing::new(format!(
            "dtls12 suite={:04x} key={} iv={}",
            self.suite,
            *hex(&self.key),
            *hex(iv)
        ));
        log_line(&line);
    }
}

impl Cipher for LoggedCipher {
    fn encrypt(
        &mut self,
        plaintext: &mut Buf,
        aad: Aad,
        nonce: Nonce,
    ) -> Result<(), dimpl::CryptoError> {
        self.log(&nonce);
        self.inner.encrypt(plaintext, aad, nonce)
    }

    fn decrypt(
        &mut self,
        ciphertext: &mut TmpBuf<'_>,
        aad: Aad,
        nonce: Nonce,
    ) -> Result<(), dimpl::CryptoError> {
        self.log(&nonce);
        self.inner.decrypt(ciphertext, aad, nonce)
    }
}

struct LoggedDtls {
    inner: &'static dyn DtlsProvider,
}

impl fmt::Debug for LoggedDtls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoggedDtls").finish_non_exhaustive()
    }
}

impl DtlsProvider for LoggedDtls {
    fn generate_certificate(&self) -> Option<DtlsCert> {
        self.inner.generate_certificate()
    }

    fn new_dtls(
        &self,
        cert: &DtlsCert,
        now: Instant,
        dtls_version: DtlsVersion,
        mtu: Option<usize>,
    ) -> Result<Box<dyn DtlsInstance>, str0m::crypto::CryptoError> {
        let inner = self.inner.new_dtls(cert, now, dtls_version, mtu)?;
        Ok(Box::new(LoggedInstance { inner }))
    }

    fn is_test(&self) -> bool {
        self.inner.is_test()
    }
}

struct LoggedInstance {
    inner: Box<dyn DtlsInstance>,
}

impl fmt::Debug for LoggedInstance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoggedInstance").finish_non_exhaustive()
    }
}

impl DtlsInstance for LoggedInstance {
    fn set_active(&mut self, active: bool) {
        self.inner.set_active(active);
    }
    fn handle_packet(&mut self, packet: &[u8]) -> Result<(), DtlsImplError> {
        self.inner.handle_packet(packet)
    }
    fn poll_output<'a>(&mut self, buf: &'a mut [u8]) -> DtlsOutput<'a> {
        let out = self.inner.poll_output(buf);
        if let DtlsOutput::KeyingMaterial(material, profile) = &out {
            let line = Zeroizing::new(format!(
                "srtp profile={profile:?} material={}",
                *hex(material)
            ));
            log_line(&line);
        }
        out
    }
    fn handle_timeout(&mut self, now: Instant) -> Result<(), DtlsImplError> {
        self.inner.handle_timeout(now)
    }
    fn send_application_data(&mut self, data: &[u8]) -> Result<usize, DtlsImplError> {
        self.inner.send_application_data(data)
    }
    fn is_active(&self) -> bool {
        self.inner.is_active()
    }
    fn protocol_version(&self) -> Option<ProtocolVersion> {
        self.inner.protocol_version()
    }
    fn is_closing(&self) -> bool {
        self.inner.is_closing()
    }
    fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }
    fn close(&mut self) -> Result<(), DtlsImplError> {
        self.inner.close()
    }
}
