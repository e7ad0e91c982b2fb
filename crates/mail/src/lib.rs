//! Sending mail: verification links, password-reset links and security notices.
//!
//! Two deliveries. **SMTP** (`email.smtp_url`) through lettre: `smtps://host` (TLS from the first
//! byte), `smtp://host?tls=required` (STARTTLS, refused if the server cannot), or plain `smtp://`
//! only to a loopback host (a local relay or a test sink): a password or a reset link never crosses
//! a network in clear. **Outbox** (the embedded default, no SMTP configured): each message is
//! written as an `.eml` file, readable only by the server's user, into a directory under the data
//! directory, and the log says that it was (recipient and subject, never the body: the body holds
//! single-use links that sign a person in).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use lettre::message::{Mailbox, header::ContentType};
use lettre::transport::smtp::AsyncSmtpTransport;
use lettre::{AsyncTransport, Message, Tokio1Executor};

/// One message: plain text (no HTML to render, nothing for a mail client to load).
#[derive(Clone, Debug)]
pub struct Email {
    pub to: String,
    pub subject: String,
    pub text: String,
}

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("email.smtp_url: {0}")]
    Config(String),
    #[error("email.from: {0:?} is not a mailbox such as \"Bridgekeeper <no-reply@example.com>\"")]
    From(String),
    #[error("the address {0:?} cannot receive mail")]
    To(String),
    #[error("building the message: {0}")]
    Build(String),
    #[error("SMTP delivery failed: {0}")]
    Smtp(String),
    #[error("writing to the outbox {0}: {1}")]
    Outbox(PathBuf, std::io::Error),
}

enum Delivery {
    Smtp { transport: AsyncSmtpTransport<Tokio1Executor>, shown: String },
    Outbox { dir: PathBuf },
}

pub struct Mailer {
    delivery: Delivery,
    from: Mailbox,
    sent: AtomicU64,
    failed: AtomicU64,
}

impl Mailer {
    /// SMTP when `smtp_url` is set, else the outbox directory. Checks the URL and the sender now, so
    /// that a mistake is a start-up error rather than a lost message later.
    pub fn new(smtp_url: Option<&str>, from: &str, outbox: &Path) -> Result<Self, MailError> {
        let from: Mailbox = from.parse().map_err(|_| MailError::From(from.to_owned()))?;
        let delivery = match smtp_url {
            Some(raw) => {
                let shown = check_smtp_url(raw)?;
                let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(raw)
                    .map_err(|e| MailError::Config(e.to_string()))?
                    .timeout(Some(std::time::Duration::from_secs(20)))
                    .build();
                Delivery::Smtp { transport, shown }
            }
            None => Delivery::Outbox { dir: outbox.to_owned() },
        };
        Ok(Self { delivery, from, sent: AtomicU64::new(0), failed: AtomicU64::new(0) })
    }

    /// What the start-up log says about mail.
    pub fn describe(&self) -> String {
        match &self.delivery {
            Delivery::Smtp { shown, .. } => format!("email is sent through {shown}"),
            Delivery::Outbox { dir } => format!(
                "email is NOT sent (log-only mode: no email.smtp_url): each message is written to {} instead; set \
                 email.smtp_url to deliver verification and password-reset links",
                dir.display()
            ),
        }
    }

    pub fn is_outbox(&self) -> bool {
        matches!(self.delivery, Delivery::Outbox { .. })
    }

    /// Messages delivered and failed since start (for `/metrics`).
    pub fn counts(&self) -> (u64, u64) {
        (self.sent.load(Ordering::Relaxed), self.failed.load(Ordering::Relaxed))
    }

    pub async fn send(&self, email: &Email) -> Result<(), MailError> {
        // `.invalid` is reserved (RFC 6761 §6.4): an account without an address (a wallet's) has a
        // placeholder there, and nothing is ever sent to it.
        if email.to.rsplit_once('@').is_some_and(|(_, domain)| domain.eq_ignore_ascii_case("invalid")) {
            tracing::debug!(subject = %email.subject, "no email sent: the account has no address");
            return Ok(());
        }
        let r = self.deliver(email).await;
        match &r {
            Ok(()) => self.sent.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.failed.fetch_add(1, Ordering::Relaxed),
        };
        r
    }

    /// Sends in a task of its own: the request that caused the message answers at once (and in the
    /// same time whether or not a message was due); a failure is logged without the body.
    pub fn send_later(self: &Arc<Self>, email: Email) {
        let mailer = self.clone();
        tokio::spawn(async move {
            if let Err(e) = mailer.send(&email).await {
                tracing::error!(error = %e, to = %email.to, subject = %email.subject, "email not delivered");
            }
        });
    }

    async fn deliver(&self, email: &Email) -> Result<(), MailError> {
        let to: Mailbox = email.to.parse().map_err(|_| MailError::To(email.to.clone()))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(email.subject.clone())
            .header(ContentType::TEXT_PLAIN)
            .body(email.text.clone())
            .map_err(|e| MailError::Build(e.to_string()))?;
        match &self.delivery {
            Delivery::Smtp { transport, .. } => {
                transport.send(message).await.map_err(|e| MailError::Smtp(e.to_string()))?;
                tracing::info!(to = %email.to, subject = %email.subject, "email sent");
            }
            Delivery::Outbox { dir } => {
                let path = write_outbox(dir, &message.formatted()).await?;
                tracing::info!(
                    to = %email.to, subject = %email.subject, file = %path.display(),
                    "email not sent (log-only mode): written to the outbox"
                );
            }
        }
        Ok(())
    }
}

/// Writes one message into the outbox, readable by the server's user only (it holds sign-in links).
/// The message is written beside the outbox first and then renamed into it, so whoever reads the
/// outbox (a person, a test) never finds a message half written.
async fn write_outbox(dir: &Path, bytes: &[u8]) -> Result<PathBuf, MailError> {
    let err = |e| MailError::Outbox(dir.to_owned(), e);
    let partial = dir.with_file_name(".outbox-partial");
    tokio::fs::create_dir_all(dir).await.map_err(err)?;
    tokio::fs::create_dir_all(&partial).await.map_err(err)?;
    let name = format!("{}.eml", uuid::Uuid::now_v7());
    let (writing, path) = (partial.join(&name), dir.join(&name));
    let mut options = tokio::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options.open(&writing).await.map_err(err)?;
    tokio::io::AsyncWriteExt::write_all(&mut file, bytes).await.map_err(err)?;
    // tokio hands writes to a blocking thread: flush so the bytes are in the file before the rename.
    tokio::io::AsyncWriteExt::flush(&mut file).await.map_err(err)?;
    drop(file);
    tokio::fs::rename(&writing, &path).await.map_err(err)?;
    Ok(path)
}

/// Checks an SMTP URL and returns it as it may be shown (no credentials). Plain SMTP is refused
/// except to a loopback host.
fn check_smtp_url(raw: &str) -> Result<String, MailError> {
    let url = url::Url::parse(raw).map_err(|e| MailError::Config(format!("not a URL ({e})")))?;
    let host = url.host_str().filter(|h| !h.is_empty()).ok_or_else(|| MailError::Config("no host".into()))?;
    let tls = url.query_pairs().find(|(k, _)| k == "tls").map(|(_, v)| v.into_owned());
    let loopback = host == "localhost"
        || host.trim_matches(['[', ']']).parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    match (url.scheme(), tls.as_deref()) {
        ("smtps", None) | ("smtp", Some("required")) => {}
        ("smtp", None) if loopback => {}
        ("smtp", None) | ("smtp", Some("opportunistic")) => {
            return Err(MailError::Config(format!(
                "plain SMTP to {host} would send sign-in links (and the SMTP password) in clear; use smtps://{host} \
                 or smtp://{host}?tls=required (plain smtp:// is accepted only to a loopback relay)"
            )));
        }
        (scheme, tls) => {
            return Err(MailError::Config(format!(
                "unsupported scheme {scheme:?} or tls={tls:?}: use smtps://, smtp://…?tls=required or smtp://localhost"
            )));
        }
    }
    let mut shown = url.clone();
    let _ = shown.set_password(None);
    let _ = shown.set_username("");
    Ok(shown.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp_urls_that_would_send_in_clear_are_refused() {
        for ok in [
            "smtps://mail.example.com",
            "smtp://mail.example.com:587?tls=required",
            "smtp://127.0.0.1:2525",
            "smtp://localhost",
            "smtp://[::1]:25",
        ] {
            check_smtp_url(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            "smtp://mail.example.com",
            "smtp://mail.example.com?tls=opportunistic",
            "http://mail.example.com",
            "smtp://",
            "not a url",
            "smtp://10.0.0.1:25",
        ] {
            assert!(check_smtp_url(bad).is_err(), "{bad}");
        }
    }

    /// (The SMTP pool needs the runtime: the server builds its mailer inside it.)
    #[tokio::test]
    async fn the_shown_url_has_no_credentials() {
        let shown = check_smtp_url("smtps://user:s3cret@mail.example.com:465").unwrap();
        assert_eq!(shown, "smtps://mail.example.com:465");
        assert!(
            !Mailer::new(Some("smtps://user:s3cret@mail.example.com"), "a@b.co", Path::new("/x"))
                .unwrap()
                .describe()
                .contains("s3cret")
        );
    }

    #[test]
    fn a_bad_sender_is_a_start_up_error() {
        assert!(matches!(Mailer::new(None, "not a mailbox", Path::new("/x")), Err(MailError::From(_))));
        assert!(Mailer::new(None, "Bridgekeeper <no-reply@example.com>", Path::new("/x")).is_ok());
    }

    #[tokio::test]
    async fn the_outbox_keeps_each_message_private() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = dir.path().join("outbox");
        let mailer = Mailer::new(None, "Bridgekeeper <no-reply@example.com>", &outbox).unwrap();
        assert!(mailer.is_outbox());
        assert!(mailer.describe().contains("NOT sent"), "{}", mailer.describe());
        let email = Email { to: "a@b.co".into(), subject: "Verify".into(), text: "Open https://x/verify?t=abc".into() };
        mailer.send(&email).await.unwrap();
        assert!(matches!(
            mailer.send(&Email { to: "no at sign".into(), ..email.clone() }).await,
            Err(MailError::To(_))
        ));
        // An account without an address (`…@invalid`) is never written to.
        mailer.send(&Email { to: "wallet-acc_1@invalid".into(), ..email.clone() }).await.unwrap();
        assert_eq!(mailer.counts(), (1, 1));
        let files: Vec<_> = std::fs::read_dir(&outbox).unwrap().map(|e| e.unwrap().path()).collect();
        assert_eq!(files.len(), 1);
        let text = std::fs::read_to_string(&files[0]).unwrap();
        assert!(
            text.contains("To: a@b.co") && text.contains("Subject: Verify") && text.contains("verify?t=abc"),
            "{text}"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&files[0]).unwrap().permissions().mode() & 0o777, 0o600);
        }
    }
}
