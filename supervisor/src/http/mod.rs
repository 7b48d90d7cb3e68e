//! The daemon's HTTP listeners (`[daemon] metrics` and `web`):
//! Prometheus's `/metrics` and the status page, each rendered from the
//! published snapshot off the loop's thread (a blocking task), so that a
//! request never waits for the loop and the loop never waits for one.
//!
//! Owns the sockets, their limits and the routing; reads only the
//! snapshot and the samples (the page's actions go to the loop as control
//! requests, in `web`). A client cannot make it hold more than
//! `CONNECTIONS` connections, wait longer than `HEADER_TIMEOUT` for
//! headers (slowloris), buffer more than `MAX_HEADERS` of them, keep a
//! connection past `CONNECTION_LIFETIME` (`web::STREAM_LIFETIME` for the
//! page's live stream), or render more than once per version of the
//! snapshot (a flood of scrapes is answered from the last rendering).
use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use anyhow::{Context as _, Result};
use bytes::Bytes;
use http_body_util::{channel::Channel, Either, Full};
use hyper::{body::Incoming, header, Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};

use crate::{sampler::Table, snapshot::Reader};

pub mod exposition;
mod metrics;
mod view;
pub mod web;

use exposition::Format;

/// Connections served at once; more are closed as they come.
const CONNECTIONS: usize = 32;
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest a connection may stay open, idle or not, unless it
/// carries the page's live stream.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);
/// hyper's read buffer, and so the most header bytes a request may have.
const MAX_HEADERS: usize = 16 * 1024;

/// A whole answer, or the page's live stream.
pub type Body = Either<Full<Bytes>, Channel<Bytes>>;

/// The last rendering, by snapshot and sample version, and format.
type Rendered = Mutex<Option<((u64, u64), Format, Bytes)>>;

/// What one listener serves.
struct Routes {
    metrics: bool,
    web: Option<web::Site>,
}

/// What every request reads.
#[derive(Clone)]
struct Shared {
    snapshot: Reader,
    usage: Table,
    rendered: Arc<Rendered>,
    web: Option<Arc<web::Site>>,
    metrics: bool,
}

/// Where the daemon serves HTTP.
#[derive(Clone, Copy, Debug, Default)]
pub struct Listening {
    pub metrics: Option<SocketAddr>,
    pub web: Option<SocketAddr>,
}

/// Opens the listeners `[daemon]` asks for: `/metrics` with the page
/// beside it (`web = true`), or the page on an address of its own.
pub fn listen(
    daemon: &crate::config::DaemonConfig,
    snapshot: &Reader,
    usage: impl FnOnce() -> Table,
    control: tokio::sync::mpsc::UnboundedSender<crate::control::Incoming>,
    feed: &crate::events::Feed,
) -> Result<Listening> {
    use crate::config::WebListen;
    if daemon.metrics.is_none() && daemon.web.is_none() {
        return Ok(Listening::default());
    }
    let usage = usage();
    let site =
        |web: &crate::config::Web| web::Site::new(web.token.clone(), control.clone(), feed.clone());
    let mut listening = Listening::default();
    let beside = daemon
        .web
        .as_ref()
        .filter(|w| w.listen == WebListen::Metrics);
    if let Some(addr) = daemon.metrics {
        let routes = Routes {
            metrics: true,
            web: beside.map(site),
        };
        let at = serve(addr, routes, snapshot.clone(), usage.clone()).context("metrics")?;
        listening.metrics = Some(at);
        listening.web = beside.map(|_| at);
    }
    if let Some(
        web @ crate::config::Web {
            listen: WebListen::Own(addr),
            ..
        },
    ) = &daemon.web
    {
        let routes = Routes {
            metrics: false,
            web: Some(site(web)),
        };
        listening.web = Some(serve(*addr, routes, snapshot.clone(), usage).context("web")?);
    }
    Ok(listening)
}

/// Listens on `addr` and serves `routes` until the daemon exits; returns
/// the address it listens on (its port chosen by the kernel for port 0).
fn serve(addr: SocketAddr, routes: Routes, snapshot: Reader, usage: Table) -> Result<SocketAddr> {
    let listener =
        std::net::TcpListener::bind(addr).with_context(|| format!("listening on {addr}"))?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    if routes.metrics {
        log::info!("metrics at http://{addr}/metrics");
    }
    if let Some(site) = &routes.web {
        site.announce(addr);
    }
    let shared = Shared {
        snapshot,
        usage,
        rendered: Arc::default(),
        web: routes.web.map(Arc::new),
        metrics: routes.metrics,
    };
    let slots = Arc::new(tokio::sync::Semaphore::new(CONNECTIONS));
    tokio::spawn(async move {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of fds, most likely: wait rather than spin.
                    log::warn!("http {addr}: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                log::debug!("http {addr}: {peer}: too many connections, closed");
                continue;
            };
            let shared = shared.clone();
            tokio::spawn(async move {
                let streaming = Arc::new(AtomicBool::new(false));
                let flag = streaming.clone();
                let service = hyper::service::service_fn(move |request| {
                    answer(request, peer, shared.clone(), flag.clone())
                });
                let connection = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .max_buf_size(MAX_HEADERS)
                    .serve_connection(TokioIo::new(stream), service);
                tokio::pin!(connection);
                let ended = tokio::select! {
                    ended = &mut connection => Some(ended),
                    () = tokio::time::sleep(CONNECTION_LIFETIME) => None,
                };
                let ended = match ended {
                    Some(ended) => Some(ended),
                    // The live stream ends itself by `STREAM_LIFETIME`.
                    None if streaming.load(Ordering::Relaxed) => {
                        tokio::time::timeout(web::STREAM_LIFETIME, connection)
                            .await
                            .ok()
                    }
                    None => None,
                };
                if let Some(Err(e)) = ended {
                    log::debug!("http {addr}: {peer}: {e}");
                }
                drop(slot);
            });
        }
    });
    Ok(addr)
}

async fn answer(
    request: Request<Incoming>,
    peer: SocketAddr,
    shared: Shared,
    streaming: Arc<AtomicBool>,
) -> Result<Response<Body>, std::convert::Infallible> {
    let path = request.uri().path();
    if shared.metrics && path == "/metrics" {
        if request.method() != Method::GET && request.method() != Method::HEAD {
            return Ok(plain(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n"));
        }
        return Ok(scrape(&request, shared).await);
    }
    if let Some(site) = &shared.web {
        if let Some(answer) = site
            .answer(&request, peer, &shared.snapshot, &shared.usage, &streaming)
            .await
        {
            return Ok(answer);
        }
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return Ok(plain(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n"));
    }
    Ok(match path {
        "/" => plain(StatusCode::OK, "supervisor: metrics at /metrics\n"),
        _ => plain(StatusCode::NOT_FOUND, "not found\n"),
    })
}

async fn scrape(request: &Request<Incoming>, shared: Shared) -> Response<Body> {
    let accept = request
        .headers()
        .get(header::ACCEPT)
        .and_then(|a| a.to_str().ok());
    let format = Format::negotiate(accept);
    let body = tokio::task::spawn_blocking(move || {
        render(&shared.snapshot, &shared.usage, &shared.rendered, format)
    })
    .await
    .unwrap_or_default();
    let mut response = Response::new(Either::Left(Full::new(body)));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(format.content_type()),
    );
    response
}

/// The metrics of the latest snapshot and usage sample, rendered once
/// per version of the snapshot and sample.
fn render(snapshot: &Reader, usage: &Table, rendered: &Rendered, format: Format) -> Bytes {
    let snapshot = snapshot.latest();
    // Copied out: the sampler writes the table from the loop's thread,
    // which must not wait for a rendering.
    let (serial, usage) = {
        let table = usage.read().unwrap_or_else(|p| p.into_inner());
        (table.serial, table.watches.clone())
    };
    let version = (snapshot.serial(), serial);
    let mut last = rendered.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((v, f, body)) = &*last {
        if *v == version && *f == format {
            return body.clone();
        }
    }
    let body = Bytes::from(exposition::encode(
        &metrics::families(&snapshot, &usage),
        format,
    ));
    *last = Some((version, format, body.clone()));
    body
}

/// A whole answer of `content_type`.
fn whole(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Body> {
    let mut response = Response::new(Either::Left(Full::new(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    response
}

fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    whole(
        status,
        "text/plain; charset=utf-8",
        Bytes::from_static(text.as_bytes()),
    )
}
