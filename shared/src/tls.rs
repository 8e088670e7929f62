//! One rustls configuration per process for every outbound TLS connection (the
//! database, and the HTTP client that Sentry, Resend, PostHog and the JWKS fetch share):
//! the roots compiled in (`webpki-roots`: no file read at cold start, unlike the
//! system's CA bundle) plus `DATABASE_CA_CERT`, with aws-lc.

use std::sync::{Arc, OnceLock};

use anyhow::{Context, Result};

/// Environment variable holding extra PEM root certificates (Supabase signs its
/// Postgres certificates with its own CA).
pub const CA_CERT_VAR: &str = "DATABASE_CA_CERT";

/// The configuration, built on first use and shared from then on.
pub fn client_config() -> Result<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    if let Some(config) = CONFIG.get() {
        return Ok((**config).clone());
    }
    let config = Arc::new(build()?);
    Ok((**CONFIG.get_or_init(|| config)).clone())
}

fn build() -> Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Ok(pem) = std::env::var(CA_CERT_VAR) {
        use rustls::pki_types::{CertificateDer, pem::PemObject};
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            let cert = cert.with_context(|| format!("{CA_CERT_VAR} is not PEM"))?;
            roots
                .add(cert)
                .with_context(|| format!("{CA_CERT_VAR} holds a bad certificate"))?;
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
