//! A fake registry front for client tests: it speaks just enough HTTP/1.1 to
//! stand between the client and a real (in-process) registry, and can
//! demand a bearer token the way Docker Hub does, or break the first
//! download of every blob half way.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Behaviour {
    /// Require `Authorization: Bearer <token>`, issued at `/token` (which
    /// itself wants the basic credentials `user:pass` when `token_creds`).
    pub(crate) bearer: bool,
    pub(crate) token_creds: bool,
    /// Cut the connection half way through the first GET of each blob.
    pub(crate) break_blobs: bool,
}

/// What the front saw, for assertions.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    pub(crate) token_requests: Vec<String>,
    pub(crate) range_requests: Vec<String>,
    pub(crate) broken: Vec<String>,
}

pub(crate) const TOKEN: &str = "t0ken";

/// Starts the front before `upstream` (`http://host:port`); returns its
/// `host:port` and what it records.
pub(crate) async fn start(upstream: String, behaviour: Behaviour) -> (String, Arc<Mutex<Seen>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let (s, a) = (seen.clone(), addr.clone());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (upstream, seen, addr) = (upstream.clone(), s.clone(), a.clone());
            tokio::spawn(async move {
                let _ = serve(stream, &upstream, behaviour, &seen, &addr).await;
            });
        }
    });
    (addr, seen)
}

/// One request per connection (`Connection: close`), which keeps this simple.
async fn serve(
    stream: TcpStream,
    upstream: &str,
    behaviour: Behaviour,
    seen: &Mutex<Seen>,
    addr: &str,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).await?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let target = parts.next().unwrap_or_default().to_owned();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).await?;
        let h = h.trim_end().to_owned();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
    let get = |k: &str| headers.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let mut body = vec![
        0u8;
        get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    ];
    reader.read_exact(&mut body).await?;
    let mut stream = reader.into_inner();

    if target.starts_with("/token") {
        seen.lock().unwrap().token_requests.push(target.clone());
        let basic_ok = get("authorization").is_some_and(|v| v.starts_with("Basic "));
        if behaviour.token_creds && !basic_ok {
            return respond(&mut stream, 401, &[], b"{}").await;
        }
        let json = format!(r#"{{"token":"{TOKEN}","expires_in":300}}"#);
        return respond(
            &mut stream,
            200,
            &[("Content-Type", "application/json")],
            json.as_bytes(),
        )
        .await;
    }
    if behaviour.bearer && get("authorization").as_deref() != Some(&format!("Bearer {TOKEN}")) {
        let challenge = format!(
            r#"Bearer realm="http://{addr}/token",service="fake-registry",scope="repository:ignored:pull""#
        );
        return respond(
            &mut stream,
            401,
            &[
                ("WWW-Authenticate", &challenge),
                ("Content-Type", "application/json"),
            ],
            br#"{"errors":[{"code":"UNAUTHORIZED","message":"token required"}]}"#,
        )
        .await;
    }

    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut request = client.request(method.parse().unwrap(), format!("{upstream}{target}"));
    for (k, v) in &headers {
        if !matches!(
            k.as_str(),
            "host" | "authorization" | "connection" | "content-length"
        ) {
            request = request.header(k, v);
        }
    }
    let response = request.body(body).send().await.unwrap();
    let status = response.status().as_u16();
    let mut out_headers: Vec<(String, String)> = response
        .headers()
        .iter()
        .filter(|(k, _)| {
            !matches!(
                k.as_str(),
                "content-length" | "connection" | "transfer-encoding"
            )
        })
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let bytes = response.bytes().await.unwrap();
    let is_blob_get = method == "GET" && target.contains("/blobs/sha256:");
    if is_blob_get && let Some(range) = get("range") {
        seen.lock().unwrap().range_requests.push(range);
    }
    if behaviour.break_blobs && is_blob_get && bytes.len() > 1000 {
        let first = {
            let mut s = seen.lock().unwrap();
            let first = !s.broken.contains(&target);
            if first {
                s.broken.push(target.clone());
            }
            first
        };
        if first {
            // Promise everything, send half, hang up.
            out_headers.push(("Content-Length".into(), bytes.len().to_string()));
            let head = head(status, &out_headers);
            stream.write_all(head.as_bytes()).await?;
            stream.write_all(&bytes[..bytes.len() / 2]).await?;
            stream.flush().await?;
            return Ok(());
        }
    }
    let refs: Vec<(&str, &str)> = out_headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    respond(&mut stream, status, &refs, &bytes).await
}

fn head(status: u16, headers: &[(String, String)]) -> String {
    let mut out = format!("HTTP/1.1 {status} X\r\nConnection: close\r\n");
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    out
}

async fn respond(
    stream: &mut TcpStream,
    status: u16,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<()> {
    let mut all: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    all.push(("Content-Length".into(), body.len().to_string()));
    stream.write_all(head(status, &all).as_bytes()).await?;
    stream.write_all(body).await?;
    stream.flush().await
}
