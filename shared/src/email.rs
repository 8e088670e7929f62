//! Transactional email: through Resend (resend-rs) when `RESEND_API_KEY` is set;
//! otherwise (local development) written to a mailbox folder, never to the log.

use std::path::PathBuf;

use secrecy::ExposeSecret;

use crate::config::Config;

/// One email to send.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Email {
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// Where emails go.
pub enum Mailer {
    Resend {
        client: resend_rs::Resend,
        from: String,
    },
    /// A folder with one JSON file per email (`MAILBOX_DIR`).
    Mailbox(PathBuf),
}

/// What became of an email.
#[derive(Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Accepted by Resend.
    Sent,
    /// Written to the local mailbox (Resend not configured).
    Mailbox(PathBuf),
}

impl Mailer {
    /// From the configuration: Resend with a key, the mailbox folder without one.
    pub fn new(config: &Config, http: reqwest::Client) -> anyhow::Result<Self> {
        Ok(match &config.resend_api_key {
            Some(key) => {
                let mut builder = resend_rs::ConfigBuilder::new(key.expose_secret()).client(http);
                if let Some(base) = &config.resend_base_url {
                    builder = builder.base_url(base.parse()?);
                }
                Mailer::Resend {
                    client: resend_rs::Resend::with_config(builder.build()),
                    from: config.resend_from.clone(),
                }
            }
            None => Mailer::Mailbox(config.mailbox_dir.clone()),
        })
    }

    /// Sends one email (or files it in the local mailbox).
    pub async fn send(&self, email: &Email) -> anyhow::Result<Delivery> {
        match self {
            Mailer::Resend { client, from } => {
                let options = resend_rs::types::CreateEmailBaseOptions::new(
                    from,
                    [email.to.as_str()],
                    &email.subject,
                )
                .with_text(&email.text)
                .with_html(&email.html);
                // Resend's error text may quote the address: only a masked one goes on
                // to the log and Sentry.
                client.emails.send(options).await.map_err(|e| {
                    anyhow::anyhow!(
                        "Resend did not take the email: {}",
                        mask_addresses(&e.to_string())
                    )
                })?;
                Ok(Delivery::Sent)
            }
            Mailer::Mailbox(dir) => {
                tokio::fs::create_dir_all(dir).await?;
                let path = dir.join(format!("{}.json", uuid::Uuid::new_v4()));
                tokio::fs::write(&path, serde_json::to_vec_pretty(email)?).await?;
                Ok(Delivery::Mailbox(path))
            }
        }
    }
}

/// `text` with every email address in it masked (`ab***@domain.com`).
pub fn mask_addresses(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        if word.contains('@') {
            out.push_str(&crate::telemetry::mask_email(word));
        } else {
            out.push_str(word);
        }
        word.clear();
    };
    for c in text.chars() {
        if c.is_whitespace() || "\"'<>,;:()[]{}`".contains(c) {
            flush(&mut word, &mut out);
            out.push(c);
        } else {
            word.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

/// Text for a header such as the subject: control characters (a CR/LF could start a
/// header of its own) become spaces.
pub fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Escapes text for HTML (family names are user input).
pub fn escape_html(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '<' => "&lt;".to_owned(),
            '>' => "&gt;".to_owned(),
            '&' => "&amp;".to_owned(),
            '"' => "&quot;".to_owned(),
            '\'' => "&#39;".to_owned(),
            c => c.to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_in_an_error_are_masked_and_the_rest_is_kept() {
        let text =
            r#"422: Invalid `to` field: "grandma.rosa@example.com" (also <tio@example.org>)"#;
        assert_eq!(
            mask_addresses(text),
            r#"422: Invalid `to` field: "gr***@example.com" (also <ti***@example.org>)"#
        );
    }

    #[test]
    fn no_user_text_can_start_a_header_of_its_own() {
        let subject = one_line("The Smiths\r\nBcc: everyone@example.com\u{0}");
        assert!(!subject.contains(['\r', '\n', '\u{0}']), "{subject:?}");
        assert_eq!(subject, "The Smiths  Bcc: everyone@example.com ");
    }
}
