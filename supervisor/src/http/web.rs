//! The status page (`[daemon] web`): its files, compiled into the binary;
//! `/api/page`, what the page shows (`view`); `/api/live`, server-sent
//! events carrying a new picture when one is published (at most once a
//! second) and each event as it happens; and, only when `web_token` is
//! set, `POST /api/watches/NAME/{start,stop,restart}`, handed to the loop
//! as a control request from the client's address.
//!
//! An action needs the token in an `Authorization: Bearer` header (never
//! a cookie, so another site's page cannot borrow it), and a browser's
//! `Origin`, when sent, must be this page's. Each refusal is logged with
//! the client's address; the loop logs each action it takes. Owns none of
//! the watches: reads the snapshot and samples, writes only requests.
use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use bytes::Bytes;
use http_body_util::{channel::Channel, Either};
use hyper::{body::Incoming, header, Method, Request, Response, StatusCode};
use serde::Serialize;
use tokio::sync::{broadcast, mpsc, oneshot, Semaphore};

use super::{view, whole, Body};
use crate::{
    config::WebToken,
    control::{self, Peer},
    events::Feed,
    protocol::{self, Command},
    sampler::Table,
    snapshot::Reader,
};

/// How long the live stream runs before it ends itself (the browser
/// reconnects at once, `RETRY` later).
pub const STREAM_LIFETIME: Duration = Duration::from_secs(10 * 60);
/// Live streams at once, of the listener's connections.
const STREAMS: usize = 16;
/// What the browser waits before it reconnects.
const RETRY: Duration = Duration::from_secs(2);
/// How often the live stream may carry a new picture.
const PICTURE_EVERY: Duration = Duration::from_secs(1);
/// How long one message may wait for the client to take it.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an action may take in the loop (a stop waits for
/// `stop_timeout`).
const ACTION_TIMEOUT: Duration = Duration::from_secs(120);

const INDEX: &str = include_str!("page/index.html");
const SCRIPT: &str = include_str!("page/page.js");
const STYLE: &str = include_str!("page/page.css");
/// Nothing but the page's own files; no frame may hold it.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    connect-src 'self'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// The last picture, by snapshot and sample version.
type Picture = Mutex<Option<((u64, u64), Bytes)>>;

pub struct Site {
    token: Option<WebToken>,
    control: mpsc::UnboundedSender<control::Incoming>,
    feed: Feed,
    streams: Arc<Semaphore>,
    picture: Arc<Picture>,
}

impl Site {
    pub fn new(
        token: Option<WebToken>,
        control: mpsc::UnboundedSender<control::Incoming>,
        feed: Feed,
    ) -> Self {
        Self {
            token,
            control,
            feed,
            streams: Arc::new(Semaphore::new(STREAMS)),
            picture: Arc::default(),
        }
    }

    pub(super) fn announce(&self, addr: SocketAddr) {
        let mode = match self.token {
            Some(_) => "start, stop and restart need the web_token",
            None => "read-only: no web_token",
        };
        log::info!("web page at http://{addr}/ ({mode})");
        if !addr.ip().is_loopback() {
            match self.token {
                None => log::warn!(
                    "web page on {addr}, which is not a loopback address, and without a web_token: \
                     read-only, and readable by anyone who can reach it"
                ),
                Some(_) => log::warn!(
                    "web page on {addr}: its token crosses the network in clear over plain HTTP; \
                     put a TLS proxy in front of it"
                ),
            }
        }
    }

    /// The answer to `request` if it is the page's, else `None`.
    pub(super) async fn answer(
        &self,
        request: &Request<Incoming>,
        peer: SocketAddr,
        snapshot: &Reader,
        usage: &Table,
        streaming: &AtomicBool,
    ) -> Option<Response<Body>> {
        let path = request.uri().path();
        if let Some(rest) = path.strip_prefix("/api/watches/") {
            return Some(self.act(request, peer, rest).await);
        }
        if !matches!(
            path,
            "/" | "/index.html" | "/page.js" | "/page.css" | "/api/page" | "/api/live"
        ) {
            return None;
        }
        if request.method() != Method::GET && request.method() != Method::HEAD {
            return Some(refusal(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD"));
        }
        Some(match path {
            "/page.js" => asset("text/javascript; charset=utf-8", SCRIPT),
            "/page.css" => asset("text/css; charset=utf-8", STYLE),
            "/api/page" => json(
                StatusCode::OK,
                picture(snapshot, usage, &self.picture, self.token.is_some()).await,
            ),
            "/api/live" => {
                streaming.store(true, Ordering::Relaxed);
                self.live(snapshot, usage)
            }
            _ => asset("text/html; charset=utf-8", INDEX),
        })
    }

    /// The live stream: a picture now and whenever a new one is published
    /// (at most every `PICTURE_EVERY`), and each event as it comes; ended
    /// with a last `dropped` message when the client falls behind.
    fn live(&self, snapshot: &Reader, usage: &Table) -> Response<Body> {
        let Ok(permit) = self.streams.clone().try_acquire_owned() else {
            return refusal(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many live pages open at once",
            );
        };
        let (mut tx, body) = Channel::<Bytes>::new(4);
        let mut events = self.feed.subscribe();
        let (snapshot, usage, cache) = (snapshot.clone(), usage.clone(), self.picture.clone());
        let actions = self.token.is_some();
        tokio::spawn(async move {
            let _permit = permit;
            let retry = format!("retry: {}\n\n", RETRY.as_millis());
            if !send(&mut tx, Bytes::from(retry)).await {
                return;
            }
            let end = tokio::time::Instant::now() + STREAM_LIFETIME - Duration::from_secs(5);
            let mut tick = tokio::time::interval(PICTURE_EVERY);
            let mut shown = None;
            loop {
                let message = tokio::select! {
                    _ = tick.tick() => {
                        let now = version(&snapshot, &usage);
                        if shown == Some(now) {
                            continue;
                        }
                        shown = Some(now);
                        message("page", &picture(&snapshot, &usage, &cache, actions).await)
                    }
                    event = events.recv() => match event {
                        Ok(event) => message("event", &to_json(&view::event(&event))),
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            let why = format!("this page fell {n} events behind and was dropped: reload it");
                            send(&mut tx, message("dropped", &to_json(&why))).await;
                            return;
                        }
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                    () = tokio::time::sleep_until(end) => return,
                };
                if !send(&mut tx, message).await {
                    return;
                }
            }
        });
        let mut response = Response::new(Either::Right(body));
        headers(
            &mut response,
            &[
                (header::CONTENT_TYPE, "text/event-stream"),
                (header::CACHE_CONTROL, "no-store"),
            ],
        );
        response
    }

    /// `POST /api/watches/NAME/VERB`, where `rest` is `NAME/VERB`.
    async fn act(
        &self,
        request: &Request<Incoming>,
        peer: SocketAddr,
        rest: &str,
    ) -> Response<Body> {
        let refuse = |status: StatusCode, why: String| {
            log::warn!("web: {peer}: POST /api/watches/{rest} refused: {why}");
            refusal(status, &why)
        };
        let Some(token) = &self.token else {
            return refuse(
                StatusCode::FORBIDDEN,
                "actions are off: [daemon] has no web_token".into(),
            );
        };
        let Some((name, verb)) = rest.split_once('/') else {
            return refuse(StatusCode::NOT_FOUND, "no such action".into());
        };
        let command = match verb {
            "start" => Command::Start,
            "stop" => Command::Stop,
            "restart" => Command::Restart,
            _ => return refuse(StatusCode::NOT_FOUND, format!("no action '{verb}'")),
        };
        if request.method() != Method::POST {
            return refuse(StatusCode::METHOD_NOT_ALLOWED, "an action is a POST".into());
        }
        if let Err(why) = same_origin(request) {
            return refuse(StatusCode::FORBIDDEN, why);
        }
        let offered = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "));
        match offered {
            None => {
                let mut answer = refuse(
                    StatusCode::UNAUTHORIZED,
                    "no token: send Authorization: Bearer <web_token>".into(),
                );
                answer.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Bearer realm=\"supervisor\""),
                );
                return answer;
            }
            Some(offered) if !token.matches(offered) => {
                return refuse(StatusCode::UNAUTHORIZED, "wrong token".into());
            }
            Some(_) => {}
        }
        let (reply, answer) = oneshot::channel();
        let incoming = control::Incoming {
            request: protocol::Request::Command {
                command,
                target: Some(name.to_owned()),
            },
            from: Peer::Web(peer),
            reply,
        };
        if self.control.send(incoming).is_err() {
            return refusal(
                StatusCode::SERVICE_UNAVAILABLE,
                "the daemon is shutting down",
            );
        }
        match tokio::time::timeout(ACTION_TIMEOUT, answer).await {
            Ok(Ok(response)) => {
                let status = if response.ok {
                    StatusCode::OK
                } else {
                    StatusCode::CONFLICT
                };
                json(status, to_json(&response))
            }
            Ok(Err(_)) => refusal(
                StatusCode::SERVICE_UNAVAILABLE,
                "the daemon is shutting down",
            ),
            Err(_) => refusal(
                StatusCode::GATEWAY_TIMEOUT,
                "asked; the daemon has not answered yet (see `supervisor status`)",
            ),
        }
    }
}

/// A browser names the page a request comes from in `Origin`: it must be
/// this page (the scheme and the `Host` it was asked for).
fn same_origin(request: &Request<Incoming>) -> Result<(), String> {
    let Some(origin) = request.headers().get(header::ORIGIN) else {
        return Ok(());
    };
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let origin = origin.to_str().unwrap_or_default();
    if origin == format!("http://{host}") {
        Ok(())
    } else {
        Err(format!(
            "Origin '{origin}' is not this page's (http://{host})"
        ))
    }
}

fn version(snapshot: &Reader, usage: &Table) -> (u64, u64) {
    let serial = usage.read().unwrap_or_else(|p| p.into_inner()).serial;
    (snapshot.latest().serial(), serial)
}

/// The page's picture as JSON, rendered off the loop once per version.
async fn picture(snapshot: &Reader, usage: &Table, cache: &Arc<Picture>, actions: bool) -> Bytes {
    let (snapshot, usage, cache) = (snapshot.clone(), usage.clone(), cache.clone());
    tokio::task::spawn_blocking(move || {
        let snapshot = snapshot.latest();
        // Copied out: the sampler writes the table from the loop's thread.
        let (serial, recent) = {
            let table = usage.read().unwrap_or_else(|p| p.into_inner());
            (table.serial, table.recent.clone())
        };
        let version = (snapshot.serial(), serial);
        let mut last = cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((v, body)) = &*last {
            if *v == version {
                return body.clone();
            }
        }
        let body = to_json(&view::page(&snapshot, &recent, actions));
        *last = Some((version, body.clone()));
        body
    })
    .await
    .unwrap_or_default()
}

/// Whether the client took `message` within `WRITE_TIMEOUT`.
async fn send(tx: &mut http_body_util::channel::Sender<Bytes>, message: Bytes) -> bool {
    matches!(
        tokio::time::timeout(WRITE_TIMEOUT, tx.send_data(message)).await,
        Ok(Ok(()))
    )
}

fn message(event: &str, data: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(data.len() + event.len() + 16);
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(event.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

fn to_json<T: Serialize + ?Sized>(value: &T) -> Bytes {
    Bytes::from(serde_json::to_vec(value).unwrap_or_default())
}

fn json(status: StatusCode, body: Bytes) -> Response<Body> {
    let mut answer = whole(status, "application/json", body);
    answer.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    answer
}

fn refusal(status: StatusCode, why: &str) -> Response<Body> {
    #[derive(Serialize)]
    struct Refusal<'a> {
        ok: bool,
        error: &'a str,
    }
    json(
        status,
        to_json(&Refusal {
            ok: false,
            error: why,
        }),
    )
}

fn asset(content_type: &'static str, text: &'static str) -> Response<Body> {
    let mut answer = whole(
        StatusCode::OK,
        content_type,
        Bytes::from_static(text.as_bytes()),
    );
    headers(
        &mut answer,
        &[
            (header::CONTENT_SECURITY_POLICY, POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::X_FRAME_OPTIONS, "DENY"),
        ],
    );
    answer
}

fn headers(response: &mut Response<Body>, all: &[(header::HeaderName, &'static str)]) {
    for (name, value) in all {
        response
            .headers_mut()
            .insert(name.clone(), header::HeaderValue::from_static(value));
    }
}
