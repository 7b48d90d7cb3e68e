//! The control socket: newline-delimited JSON over a unix socket, one
//! request and one answer per line. Owns the listener, the peer check and
//! the wire format; what a request does is the daemon's business. `status`
//! is read from the published snapshot without asking the loop.
use std::{
    io,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{bail, Context as _, Result};
use tokio::{
    io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader},
    net::{UnixListener, UnixStream},
    sync::{mpsc, oneshot},
};

use crate::{
    protocol::{Request, Response},
    snapshot::Reader,
};

/// Longest request line accepted.
const MAX_REQUEST: usize = 64 * 1024;
/// A client has this long to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const SHUTTING_DOWN: &str = "the daemon is shutting down";

/// Who sent a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    /// A client of the control socket, as the kernel vouches for it
    /// (SO_PEERCRED).
    Socket { uid: u32, pid: Option<u32> },
    /// A holder of the web token, at this address.
    Web(std::net::SocketAddr),
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Socket { uid, pid } => {
                write!(f, "uid {uid}")?;
                if let Some(pid) = pid {
                    write!(f, ", pid {pid}")?;
                }
                f.write_str(" over the control socket")
            }
            Self::Web(address) => write!(f, "{address} on the web page"),
        }
    }
}

/// A request on its way to the daemon, with who sent it and where its
/// answer goes.
pub struct Incoming {
    pub request: Request,
    pub from: Peer,
    pub reply: oneshot::Sender<Response>,
}

/// Counts answers not yet written, so the daemon can let them out before
/// it exits (the answer to `quit` and `terminate` among them).
#[derive(Clone, Default)]
pub struct InFlight {
    count: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    done: std::sync::Arc<tokio::sync::Notify>,
}

impl InFlight {
    fn begin(&self) {
        self.count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    fn end(&self) {
        self.count.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        self.done.notify_waiters();
    }

    /// Waits, at most `limit`, until every answer has been written.
    pub async fn drain(&self, limit: Duration) {
        let _ = tokio::time::timeout(limit, async {
            while self.count.load(std::sync::atomic::Ordering::SeqCst) > 0 {
                let notified = self.done.notified();
                if self.count.load(std::sync::atomic::Ordering::SeqCst) == 0 {
                    break;
                }
                notified.await;
            }
        })
        .await;
    }
}

/// One request line, as a client sent it.
pub fn decode(line: &[u8]) -> Result<Request, String> {
    serde_json::from_slice::<Request>(line).map_err(|e| format!("bad request: {e}"))
}

/// Binds the socket (mode 0600) and serves it until the daemon exits.
/// `status` is answered from `snapshot`; every other request goes to the
/// loop through `tx`.
pub fn serve(
    path: &Path,
    tx: mpsc::UnboundedSender<Incoming>,
    snapshot: Reader,
    feed: crate::events::Feed,
) -> Result<InFlight> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    // Held while serving: of two daemons started at once on one socket,
    // the second stops here instead of replacing the first one's socket.
    let lock = lock_socket(path)?;
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => bail!(
            "{} is in use: another supervisor is running there",
            path.display()
        ),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            // A socket left by a daemon that died: safe to replace.
            std::fs::remove_file(path)
                .with_context(|| format!("removing stale {}", path.display()))?;
        }
        Err(_) => {}
    }
    let listener =
        UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("chmod 0600 {}", path.display()))?;
    let own_uid = nix::unistd::geteuid().as_raw();
    let in_flight = InFlight::default();
    let tracker = in_flight.clone();
    let clients = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let max_clients = (crate::limits::nofile_limit() / 8).clamp(4, 1024) as usize;
    tokio::spawn(async move {
        let _lock = lock;
        let mut pause = ACCEPT_PAUSE_MIN;
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => {
                    pause = ACCEPT_PAUSE_MIN;
                    stream
                }
                // Out of fds (EMFILE, ENFILE) or memory: the client waits
                // in the backlog while the daemon goes on restarting its
                // watches; spinning on the error would stop them.
                Err(e) => {
                    if pause == ACCEPT_PAUSE_MIN {
                        log::warn!("control socket: accept: {e}; refusing clients for now");
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(ACCEPT_PAUSE_MAX);
                    continue;
                }
            };
            // Each client holds an fd: past the cap, one is told so and
            // let go, so that clients can never take the fds a restart
            // needs.
            let Some(slot) = ClientSlot::take(&clients, max_clients) else {
                let _ = stream.try_write(&line(&Response::error(format!(
                    "too many clients (at most {max_clients} at once); try again"
                ))));
                continue;
            };
            let tx = tx.clone();
            let tracker = tracker.clone();
            let snapshot = snapshot.clone();
            let feed = feed.clone();
            tokio::spawn(async move {
                let _slot = slot;
                if let Err(e) = serve_one(stream, own_uid, tx, snapshot, feed, tracker).await {
                    log::debug!("control connection: {e:#}");
                }
            });
        }
    });
    Ok(in_flight)
}

/// One of the connections served at once, given back when dropped.
struct ClientSlot(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl ClientSlot {
    fn take(count: &std::sync::Arc<std::sync::atomic::AtomicUsize>, max: usize) -> Option<Self> {
        use std::sync::atomic::Ordering;
        count
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Self(count.clone()))
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

const ACCEPT_PAUSE_MIN: Duration = Duration::from_millis(10);
const ACCEPT_PAUSE_MAX: Duration = Duration::from_secs(1);

/// Takes `<socket>.lock` (never through a symlink), or says who holds it.
fn lock_socket(path: &Path) -> Result<std::fs::File> {
    use std::os::{fd::AsRawFd as _, unix::fs::OpenOptionsExt as _};
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    let lock_path = PathBuf::from(name);
    let lock = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&lock_path)
        .with_context(|| format!("opening {}", lock_path.display()))?;
    if !lock.metadata()?.is_file() {
        bail!("{} is not a regular file", lock_path.display());
    }
    // SAFETY: flock on an fd this function owns.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        bail!(
            "{} is in use: another supervisor is starting or running there ({} is locked)",
            path.display(),
            lock_path.display()
        );
    }
    Ok(lock)
}

async fn serve_one(
    stream: UnixStream,
    own_uid: u32,
    tx: mpsc::UnboundedSender<Incoming>,
    mut snapshot: Reader,
    feed: crate::events::Feed,
    in_flight: InFlight,
) -> Result<()> {
    let peer = stream.peer_cred().context("reading peer credentials")?;
    let from = Peer::Socket {
        uid: peer.uid(),
        pid: peer.pid().and_then(|p| u32::try_from(p).ok()),
    };
    let (read, mut write) = stream.into_split();
    if peer.uid() != 0 && peer.uid() != own_uid {
        let answer = Response::error(format!(
            "permission denied: uid {} may not control this supervisor (only root and uid {own_uid})",
            peer.uid()
        ));
        write.write_all(&line(&answer)).await?;
        return Ok(());
    }
    let mut reader = BufReader::new(read).take(MAX_REQUEST as u64 + 1);
    loop {
        let mut buf = Vec::new();
        let n =
            match tokio::time::timeout(REQUEST_TIMEOUT, reader.read_until(b'\n', &mut buf)).await {
                Ok(read) => read?,
                Err(_) => {
                    write
                        .write_all(&line(&Response::error("request timed out")))
                        .await?;
                    return Ok(());
                }
            };
        if n == 0 {
            return Ok(());
        }
        if buf.len() > MAX_REQUEST || !buf.ends_with(b"\n") && reader.limit() == 0 {
            write
                .write_all(&line(&Response::error(format!(
                    "request longer than {MAX_REQUEST} bytes"
                ))))
                .await?;
            return Ok(());
        }
        let answer = match decode(&buf) {
            Err(e) => Response::error(e),
            Ok(Request::Status { target }) => match snapshot.settled().await {
                Some(now) => now.status(target.as_deref(), std::time::SystemTime::now()),
                None => Response::error(SHUTTING_DOWN),
            },
            Ok(Request::Events { target, since_secs }) => {
                // Subscribed first: nothing between the snapshot and the
                // first live event is missed.
                let live = feed.subscribe();
                let now = snapshot.latest();
                let since = match since_secs.map(std::time::Duration::try_from_secs_f64) {
                    Some(Err(_)) => {
                        let answer = Response::error("since_secs: not a duration");
                        write.write_all(&line(&answer)).await?;
                        return Ok(());
                    }
                    Some(Ok(d)) => Some(d),
                    None => None,
                };
                let known = now.status(target.as_deref(), std::time::SystemTime::now());
                let failed = !known.ok;
                write
                    .write_all(&line(&Response {
                        watches: Vec::new(),
                        summary: None,
                        ..known
                    }))
                    .await?;
                if failed {
                    return Ok(());
                }
                let streamed =
                    crate::events::stream(&mut write, &now, live, target.as_deref(), since);
                // A reader that closes its end is gone even while no event
                // comes to find that out.
                let mut byte = [0u8; 1];
                return tokio::select! {
                    done = streamed => done,
                    _ = reader.read(&mut byte) => Ok(()),
                };
            }
            Ok(request) => {
                let (reply, answer) = oneshot::channel();
                in_flight.begin();
                if tx
                    .send(Incoming {
                        request,
                        from,
                        reply,
                    })
                    .is_err()
                {
                    in_flight.end();
                    return Ok(());
                }
                let answer = answer
                    .await
                    .unwrap_or_else(|_| Response::error(SHUTTING_DOWN));
                let written = write.write_all(&line(&answer)).await;
                in_flight.end();
                written?;
                reader.set_limit(MAX_REQUEST as u64 + 1);
                continue;
            }
        };
        write.write_all(&line(&answer)).await?;
        reader.set_limit(MAX_REQUEST as u64 + 1);
    }
}

fn line(response: &Response) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(response).unwrap_or_else(|_| b"{\"ok\":false}".to_vec());
    bytes.push(b'\n');
    bytes
}

/// Sends one request and waits for its answer (commands answer when done).
pub async fn request(path: &Path, request: &Request) -> Result<Response> {
    Ok(exchange(path, request).await?.response)
}

/// A request answered, and the connection it came on: the rest of what
/// the daemon sends (a stream's lines) is in `read`. Dropping it closes
/// the connection, which ends a stream.
pub struct Exchange {
    pub response: Response,
    pub read: BufReader<tokio::net::unix::OwnedReadHalf>,
    _write: tokio::net::unix::OwnedWriteHalf,
}

/// Sends `request` and reads its answer.
pub async fn exchange(path: &Path, request: &Request) -> Result<Exchange> {
    let stream = UnixStream::connect(path)
        .await
        .map_err(|e| match e.kind() {
            io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => {
                anyhow::anyhow!("no supervisor is running at {} ({e})", path.display())
            }
            io::ErrorKind::PermissionDenied => {
                anyhow::anyhow!(
                    "permission denied on {}: only root and the daemon's user may use it",
                    path.display()
                )
            }
            _ => anyhow::anyhow!("connecting to {}: {e}", path.display()),
        })?;
    // Whoever bound the path answers: a local user who squatted it in a
    // shared folder must not be believed (or told anything).
    let server = stream
        .peer_cred()
        .context("reading the server's credentials")?;
    let own_uid = nix::unistd::geteuid().as_raw();
    if server.uid() != 0 && server.uid() != own_uid {
        bail!(
            "the server on {} runs as uid {}, neither root nor you: it is no supervisor of yours, refusing to talk to it",
            path.display(),
            server.uid()
        );
    }
    let (read, mut write) = stream.into_split();
    let mut bytes = serde_json::to_vec(request)?;
    bytes.push(b'\n');
    // A refused client is answered at once and the connection closed: the
    // answer says why, so a failed write is not the error to report.
    let sent = write.write_all(&bytes).await;
    let mut answer = String::new();
    let mut read = BufReader::new(read);
    read.read_line(&mut answer).await?;
    if answer.is_empty() {
        sent.context("sending the request")?;
        bail!("the supervisor closed the connection without answering");
    }
    let response = serde_json::from_str(&answer)
        .with_context(|| format!("bad answer from the supervisor: {answer}"))?;
    Ok(Exchange {
        response,
        read,
        _write: write,
    })
}
