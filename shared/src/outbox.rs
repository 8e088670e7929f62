//! Emails owed after a change: queued in the change's own transaction (so none is sent
//! for a change that rolled back, and none is lost for one that committed), sent after
//! the commit by the function that made the change, and retried by the maintenance job
//! for whatever that missed (a few times, backing off). The recipient's address is
//! read from their account when the email goes, and never written to the log.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::App;
use crate::db::Tx;
use crate::email::{Email, escape_html, one_line};
use crate::store::families::Language;
use crate::store::outbox::Claim;
use crate::store::{self, StoreError};

/// How many times an email is tried before it is given up (logged, never fatal).
const ATTEMPTS: i32 = 5;

/// An email owed to someone about a family. Names are as `members::name_of` gives
/// them, when the change is made.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", content = "details", rename_all = "snake_case")]
pub enum Mail {
    /// An archive they asked for is ready.
    ArchiveReady {
        #[serde(rename = "archiveId")]
        archive_id: Uuid,
    },
    /// An archive they asked for was withdrawn (a requester was removed): they may ask
    /// again, free that day.
    ArchiveWithdrawn {
        #[serde(rename = "archiveId")]
        archive_id: Uuid,
    },
    /// A keeper (`actor`) removed a keeper (`subject`).
    KeeperRemoved { actor: String, subject: String },
    /// A keeper (`actor`) made a keeper (`subject`) a storyteller.
    KeeperDemoted { actor: String, subject: String },
    /// A keeper deleted the family; it can be restored until `until`.
    FamilyDeleted { actor: String, until: DateTime<Utc> },
    /// Someone who kept the family restored it.
    FamilyRestored { actor: String },
    /// The deleted family is purged for good at `until`, a week from now.
    PurgeReminder { until: DateTime<Utc> },
}

/// The family an email is about, as the recipient knows it.
struct About<'a> {
    id: Uuid,
    name: &'a str,
    spanish: bool,
}

impl Mail {
    fn kind_and_details(&self) -> (String, Value) {
        let value = serde_json::to_value(self).unwrap_or_default();
        let kind = value["kind"].as_str().unwrap_or_default().to_owned();
        (kind, value["details"].clone())
    }

    fn from_row(kind: &str, details: Value) -> Option<Self> {
        serde_json::from_value(serde_json::json!({"kind": kind, "details": details})).ok()
    }

    /// Subject, what happened, what to do about it, and the link to do it: in the
    /// family's language.
    fn words(&self, about: &About<'_>, app_url: &str) -> (String, String, String) {
        let (name, id, es) = (one_line(about.name), about.id, about.spanish);
        let day = |t: &DateTime<Utc>| t.format("%Y-%m-%d").to_string();
        let pick = |en: String, spanish: String| if es { spanish } else { en };
        match self {
            Mail::ArchiveReady { archive_id } => (
                pick(
                    format!("The {name} archive is ready"),
                    format!("El archivo de {name} está listo"),
                ),
                pick(
                    "Every recording of the family, in one file to keep. You can download it \
                     from the app for the next 7 days."
                        .into(),
                    "Todas las grabaciones de la familia, en un archivo para guardar. Puedes \
                     descargarlo desde la app durante 7 días."
                        .into(),
                ),
                format!("{app_url}/archive/{archive_id}"),
            ),
            Mail::ArchiveWithdrawn { .. } => (
                pick(
                    format!("The {name} archive was withdrawn"),
                    format!("El archivo de {name} fue retirado"),
                ),
                pick(
                    "Someone who asked for it is no longer in the family, so the archive was \
                     deleted. You can ask for a new one today; it won't count toward the day's \
                     limit."
                        .into(),
                    "Alguien que lo pidió ya no está en la familia, así que el archivo se \
                     borró. Puedes pedir otro hoy mismo, sin que cuente para el límite del día."
                        .into(),
                ),
                format!("{app_url}/family/{id}/archive"),
            ),
            Mail::KeeperRemoved { actor, subject } => (
                pick(
                    format!("{subject} was removed from {name}"),
                    format!("{subject} fue quitado de {name}"),
                ),
                pick(
                    format!(
                        "{actor} removed {subject}, a keeper of {name}, from the family. If this \
                         wasn't agreed, a keeper can invite {subject} back from the app. If the \
                         family is deleted, anyone who kept it in the last 30 days can restore it."
                    ),
                    format!(
                        "{actor} quitó a {subject}, guardián de {name}, de la familia. Si no estaba \
                         acordado, un guardián puede invitar a {subject} de nuevo desde la app. Si \
                         la familia se borra, cualquiera que la haya guardado en los últimos 30 \
                         días puede restaurarla."
                    ),
                ),
                format!("{app_url}/family/{id}/members"),
            ),
            Mail::KeeperDemoted { actor, subject } => (
                pick(
                    format!("{subject} is no longer a keeper of {name}"),
                    format!("{subject} ya no es guardián de {name}"),
                ),
                pick(
                    format!(
                        "{actor} made {subject} a storyteller of {name}. If this wasn't agreed, a \
                         keeper can make {subject} a keeper again from the app."
                    ),
                    format!(
                        "{actor} hizo a {subject} narrador de {name}. Si no estaba acordado, un \
                         guardián puede volver a hacer a {subject} guardián desde la app."
                    ),
                ),
                format!("{app_url}/family/{id}/members"),
            ),
            Mail::FamilyDeleted { actor, until } => (
                pick(format!("{name} was deleted"), format!("{name} fue borrada")),
                pick(
                    format!(
                        "{actor} deleted {name} and its recordings. Anyone who kept the family in \
                         the last 30 days can restore it, with every recording, until {}.",
                        day(until)
                    ),
                    format!(
                        "{actor} borró {name} y sus grabaciones. Cualquiera que haya guardado la \
                         familia en los últimos 30 días puede restaurarla, con todas sus \
                         grabaciones, hasta el {}.",
                        day(until)
                    ),
                ),
                format!("{app_url}/family/{id}/restore"),
            ),
            Mail::FamilyRestored { actor } => (
                pick(
                    format!("{name} was restored"),
                    format!("{name} fue restaurada"),
                ),
                pick(
                    format!("{actor} restored {name} with its recordings."),
                    format!("{actor} restauró {name} con sus grabaciones."),
                ),
                format!("{app_url}/family/{id}"),
            ),
            Mail::PurgeReminder { until } => (
                pick(
                    format!("{name} will be deleted for good in a week"),
                    format!("{name} se borrará para siempre en una semana"),
                ),
                pick(
                    format!(
                        "{name} was deleted, and on {} it is deleted for good with every \
                         recording. To keep it, restore it before then.",
                        day(until)
                    ),
                    format!(
                        "{name} fue borrada, y el {} se borrará para siempre con todas sus \
                         grabaciones. Para conservarla, restáurala antes.",
                        day(until)
                    ),
                ),
                format!("{app_url}/family/{id}/restore"),
            ),
        }
    }

    /// The email, in the family's language.
    fn render(&self, app: &App, to: &str, about: &About<'_>) -> Email {
        let app_url = app.config.app_url.trim_end_matches('/');
        let (subject, body, link) = self.words(about, app_url);
        let action = if about.spanish {
            "Abrir en la app"
        } else {
            "Open in the app"
        };
        Email {
            to: to.to_owned(),
            text: format!("{subject}\n\n{body}\n\n{action}: {link}\n"),
            html: format!(
                "<p><strong>{}</strong></p><p>{}</p><p><a href=\"{}\">{action}</a></p>",
                escape_html(&subject),
                escape_html(&body),
                escape_html(&link)
            ),
            subject,
        }
    }
}

/// Queues `mail` to each of `users` about `family`, in the caller's transaction;
/// returns the ids, for [`deliver`] once it commits.
pub async fn queue(
    tx: &Tx<'_>,
    family: Uuid,
    users: &[Uuid],
    mail: &Mail,
) -> Result<Vec<Uuid>, StoreError> {
    if users.is_empty() {
        return Ok(Vec::new());
    }
    let (kind, details) = mail.kind_and_details();
    store::outbox::queue(tx, family, users, &kind, &details).await
}

/// How a round of sending went.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Sent {
    pub sent: u64,
    /// Not sent this time (tried again later, or given up after the last try).
    pub failed: u64,
}

/// Sends the emails just queued (after the change committed). Never fails the change:
/// what isn't sent now is retried by the maintenance job.
pub async fn deliver(app: &App, ids: &[Uuid]) -> Sent {
    if ids.is_empty() {
        return Sent::default();
    }
    send(app, Claim::These(ids)).await
}

/// Sends up to `limit` emails that are due (the maintenance job's retries).
pub async fn drain(app: &App, limit: i64) -> Sent {
    send(app, Claim::Due(limit)).await
}

async fn send(app: &App, which: Claim<'_>) -> Sent {
    let mut sent = Sent::default();
    let claimed = app
        .db
        .as_service(async |tx| store::outbox::claim(tx, which).await)
        .await;
    let owed = match claimed {
        Ok(owed) => owed,
        Err(e) => {
            tracing::warn!(error = %e, "the outbox could not be read; a later run sends it");
            return sent;
        }
    };
    for email in owed {
        let outcome = match (
            Mail::from_row(&email.kind, email.details),
            &email.email,
            &email.family_name,
        ) {
            (Some(mail), Some(to), Some(name)) => {
                let about = About {
                    id: email.family_id,
                    name,
                    spanish: email.language == Some(Language::Es),
                };
                app.mailer
                    .send(&mail.render(app, to, &about))
                    .await
                    .map(drop)
            }
            // No address to send to (or nothing we know how to say): no retry helps.
            _ => Err(anyhow::anyhow!(
                "no address or no such email ({})",
                email.kind
            )),
        };
        let (id, kind, attempts) = (email.id, email.kind, email.attempts);
        let result = match outcome {
            Ok(()) => {
                sent.sent += 1;
                app.db
                    .as_service(async |tx| store::outbox::sent(tx, id).await)
                    .await
            }
            Err(error) => {
                sent.failed += 1;
                let last = attempts >= ATTEMPTS;
                tracing::warn!(outbox = %id, kind, attempts, last, error = %error,
                               "an email was not sent");
                // 1, 4, 16, 64 minutes.
                let wait = 4i32.saturating_pow(attempts.clamp(1, 4) as u32 - 1);
                app.db
                    .as_service(async |tx| store::outbox::retry(tx, id, wait, last).await)
                    .await
            }
        };
        if let Err(e) = result {
            tracing::warn!(outbox = %id, error = %e, "the outbox could not be updated");
        }
    }
    sent
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mail_is_stored_as_its_kind_and_details_and_read_back() {
        let mail = Mail::ArchiveReady {
            archive_id: Uuid::nil(),
        };
        let (kind, details) = mail.kind_and_details();
        assert_eq!(kind, "archive_ready");
        assert_eq!(details["archiveId"], Uuid::nil().to_string());
        assert_eq!(Mail::from_row(&kind, details), Some(mail));
    }
}
