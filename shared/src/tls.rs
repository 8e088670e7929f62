//! The roots every outbound TLS connection trusts, built once per process: those
//! compiled in (Mozilla's, through `webpki-roots`: no file read at cold start, unlike
//! the system's CA bundle) plus `DATABASE_CA_CERT`, with aws-lc. The database and the
//! HTTP client that Sentry, Resend, PostHog and the JWKS fetch share take the rustls
//! configuration; the S3 SDK, which takes its trust store only as PEM, the same roots
//! as a PEM bundle.

use std::sync::{Arc, OnceLock};

use anyhow::{Context, Result};
use base64::prelude::{BASE64_STANDARD, Engine};
use rustls::pki_types::{CertificateDer, pem::PemObject};

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

/// The same roots as one PEM bundle (Mozilla's as `webpki-root-certs` ships them, the
/// same set `webpki-roots` derives its anchors from), built when the S3 client is.
pub fn pem_bundle() -> Result<Vec<u8>> {
    let extra = extra_roots()?;
    let roots = webpki_root_certs::TLS_SERVER_ROOT_CERTS
        .iter()
        .chain(&extra);
    let pem: String = roots
        .map(|der| {
            let base64 = BASE64_STANDARD.encode(der);
            format!("-----BEGIN CERTIFICATE-----\n{base64}\n-----END CERTIFICATE-----\n")
        })
        .collect();
    Ok(pem.into_bytes())
}

/// The certificates in `DATABASE_CA_CERT`, if it is set, each checked to be a usable
/// root (the S3 SDK panics on one that is not).
fn extra_roots() -> Result<Vec<CertificateDer<'static>>> {
    let Ok(pem) = std::env::var(CA_CERT_VAR) else {
        return Ok(Vec::new());
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .with_context(|| format!("{CA_CERT_VAR} is not PEM"))?;
    let mut check = rustls::RootCertStore::empty();
    for cert in &certs {
        check
            .add(cert.clone())
            .with_context(|| format!("{CA_CERT_VAR} holds a bad certificate"))?;
    }
    Ok(certs)
}

fn build() -> Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    roots.add_parsable_certificates(extra_roots()?);
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pem_bundle_holds_the_same_roots_as_the_rustls_configuration() {
        let bundle = pem_bundle().expect("the bundle");
        let certs: Vec<_> = CertificateDer::pem_slice_iter(&bundle)
            .collect::<Result<_, _>>()
            .expect("PEM that parses back");
        let mut roots = rustls::RootCertStore::empty();
        for cert in certs {
            // What the S3 SDK does with each, panicking on failure.
            roots.add(cert).expect("a usable root");
        }
        let mut subjects: Vec<_> = roots.roots.iter().map(|r| r.subject.to_vec()).collect();
        let mut expected: Vec<_> = webpki_roots::TLS_SERVER_ROOTS
            .iter()
            .map(|r| r.subject.to_vec())
            .collect();
        subjects.sort();
        expected.sort();
        assert_eq!(subjects, expected);
    }
}
