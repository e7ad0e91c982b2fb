//! `GET` that follows redirects itself, judging every hop like the first: the scheme and a literal
//! address before sending, the name's addresses when it resolves (the client never follows a
//! redirect on its own). For documents a person names by URL (knowledge bases).

use url::Url;

use crate::{FetchError, SafeFetcher};

/// A fetched document: where it ended up, what it says it is, and its bounded body.
pub struct FetchedDocument {
    /// The URL of the last hop (after redirects).
    pub url: Url,
    /// `Content-Type` as sent (empty when absent).
    pub content_type: String,
    pub body: Vec<u8>,
}

impl SafeFetcher {
    /// `GET url`, following at most `max_redirects` redirects (each target checked as above), expecting
    /// 200 and at most `max_body_bytes`; the time limit covers every hop.
    pub async fn get_following(
        &self,
        url: &Url,
        accept: &str,
        max_redirects: usize,
    ) -> Result<FetchedDocument, FetchError> {
        let started = std::time::Instant::now();
        let work = async {
            let mut current = url.clone();
            for _ in 0..=max_redirects {
                self.check_target(&current)?;
                let mut res = self
                    .client
                    .get(current.clone())
                    .header(reqwest::header::ACCEPT, accept)
                    .send()
                    .await
                    .map_err(|e| self.classify(&current, e))?;
                let status = res.status();
                if status.is_redirection() {
                    let next = res
                        .headers()
                        .get(reqwest::header::LOCATION)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|l| current.join(l).ok())
                        .ok_or(FetchError::Redirect(status.as_u16()))?;
                    current = next;
                    continue;
                }
                if status != reqwest::StatusCode::OK {
                    return Err(FetchError::Status(status.as_u16()));
                }
                let content_type = res
                    .headers()
                    .get(reqwest::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                let body = self.read_body(&current, &mut res).await?;
                return Ok(FetchedDocument { url: current, content_type, body });
            }
            Err(FetchError::TooManyRedirects(max_redirects))
        };
        match tokio::time::timeout(self.policy.timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(FetchError::Timeout(started.elapsed().as_millis())),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::FetchPolicy;

    /// A one-route HTTP server on loopback answering every request with `answer`.
    async fn serve(answer: String) -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let answer = answer.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 2048];
                    let _ = s.read(&mut buf).await;
                    let _ = s.write_all(answer.as_bytes()).await;
                });
            }
        });
        port
    }

    fn dev() -> SafeFetcher {
        SafeFetcher::new(FetchPolicy {
            allow_private_addresses: true,
            allow_http_loopback: true,
            extra_roots_pem: None,
            timeout: Duration::from_secs(3),
            max_body_bytes: 1024,
        })
        .unwrap()
    }

    #[tokio::test]
    async fn security_every_redirect_target_is_checked_again() {
        // Even where loopback is allowed, a redirect to plain http elsewhere (a private network,
        // a metadata endpoint) is refused before anything is sent there.
        for target in ["http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/", "file:///etc/passwd"] {
            let port = serve(format!(
                "HTTP/1.1 302 Found\r\nLocation: {target}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            ))
            .await;
            let url = Url::parse(&format!("http://127.0.0.1:{port}/start")).unwrap();
            let e = dev().get_following(&url, "*/*", 3).await.err().unwrap();
            assert!(matches!(e, FetchError::NotHttps), "{target}: {e}");
        }
    }

    #[tokio::test]
    async fn redirects_are_followed_a_bounded_number_of_times() {
        let port = serve(
            "HTTP/1.1 302 Found\r\nLocation: /again\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_owned(),
        )
        .await;
        let url = Url::parse(&format!("http://127.0.0.1:{port}/start")).unwrap();
        let e = dev().get_following(&url, "*/*", 2).await.err().unwrap();
        assert!(matches!(e, FetchError::TooManyRedirects(2)), "{e}");
        let port = serve(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"
                .to_owned(),
        )
        .await;
        let url = Url::parse(&format!("http://127.0.0.1:{port}/doc")).unwrap();
        let d = dev().get_following(&url, "*/*", 2).await.unwrap();
        assert_eq!((d.content_type.as_str(), d.body.as_slice()), ("text/plain", b"hello".as_slice()));
    }
}
