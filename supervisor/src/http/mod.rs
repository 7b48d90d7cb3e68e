//! The daemon's HTTP listener (`[daemon] metrics`): Prometheus's
//! `/metrics`, rendered from the published snapshot off the loop's
//! thread (a blocking task), so that a scrape never waits for the loop
//! and the loop never waits for a scrape.
//!
//! Owns the socket, its limits and the routes; reads only the snapshot.
//! A client cannot make it hold more than `CONNECTIONS` connections, wait
//! longer than `HEADER_TIMEOUT` for headers (slowloris), buffer more than
//! `MAX_HEADERS` of them, or render more than once per version of the
//! snapshot (a flood of scrapes is answered from the last rendering).
use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::{Context as _, Result};
use bytes::Bytes;
use http_body_util::Full;
use hyper::{body::Incoming, header, Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};

use crate::{sampler::Table, snapshot::Reader};

pub mod exposition;
mod metrics;

use exposition::Format;

/// Connections served at once; more are closed as they come.
const CONNECTIONS: usize = 32;
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest a connection may stay open, idle or not.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);
/// hyper's read buffer, and so the most header bytes a request may have.
const MAX_HEADERS: usize = 16 * 1024;

/// The last rendering, by snapshot and sample version, and format.
type Rendered = Mutex<Option<((u64, u64), Format, Bytes)>>;

/// Listens on `addr` and serves until the daemon exits; returns the
/// address it listens on (its port chosen by the kernel for port 0).
pub fn serve(addr: SocketAddr, snapshot: Reader, usage: Table) -> Result<SocketAddr> {
    let listener = std::net::TcpListener::bind(addr)
        .with_context(|| format!("metrics: listening on {addr}"))?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    log::info!("metrics at http://{addr}/metrics");
    let slots = Arc::new(tokio::sync::Semaphore::new(CONNECTIONS));
    let rendered: Arc<Rendered> = Arc::default();
    tokio::spawn(async move {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of fds, most likely: wait rather than spin.
                    log::warn!("metrics: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                log::debug!("metrics: {peer}: too many connections, closed");
                continue;
            };
            let (snapshot, rendered, usage) = (snapshot.clone(), rendered.clone(), usage.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    answer(request, snapshot.clone(), usage.clone(), rendered.clone())
                });
                let connection = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .max_buf_size(MAX_HEADERS)
                    .serve_connection(TokioIo::new(stream), service);
                if let Ok(Err(e)) = tokio::time::timeout(CONNECTION_LIFETIME, connection).await {
                    log::debug!("metrics: {peer}: {e}");
                }
                drop(slot);
            });
        }
    });
    Ok(addr)
}

async fn answer(
    request: Request<Incoming>,
    snapshot: Reader,
    usage: Table,
    rendered: Arc<Rendered>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return Ok(plain(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n"));
    }
    match request.uri().path() {
        "/metrics" => {
            let accept = request
                .headers()
                .get(header::ACCEPT)
                .and_then(|a| a.to_str().ok());
            let format = Format::negotiate(accept);
            let body =
                tokio::task::spawn_blocking(move || render(&snapshot, &usage, &rendered, format))
                    .await
                    .unwrap_or_default();
            let mut response = Response::new(Full::new(body));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static(format.content_type()),
            );
            Ok(response)
        }
        "/" => Ok(plain(StatusCode::OK, "supervisor: metrics at /metrics\n")),
        _ => Ok(plain(StatusCode::NOT_FOUND, "not found\n")),
    }
}

/// The metrics of the latest snapshot and usage sample, rendered once
/// per version of the snapshot and sample.
fn render(snapshot: &Reader, usage: &Table, rendered: &Rendered, format: Format) -> Bytes {
    let snapshot = snapshot.latest();
    let usage = usage.read().unwrap_or_else(|p| p.into_inner()).clone();
    let version = (snapshot.serial(), usage.serial);
    let mut last = rendered.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((v, f, body)) = &*last {
        if *v == version && *f == format {
            return body.clone();
        }
    }
    let body = Bytes::from(exposition::encode(
        &metrics::families(&snapshot, &usage.watches),
        format,
    ));
    *last = Some((version, format, body.clone()));
    body
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
