//! Response bodies: whole (small answers) or streamed in chunks (files,
//! spooled listings, job data), so that no answer of unbounded size is
//! ever built whole in memory.
//!
//! A streamed body is made one chunk at a time, only when the connection
//! asks for the next one: a client that reads slowly holds one chunk, not
//! the whole answer, and nothing else (no database connection, no lock)
//! while it dawdles.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;

use crate::daemon::Daemon;

/// Why a streamed body stopped early; the connection is closed then, so
/// the client sees a cut answer rather than a wrong one.
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

pub type Body = UnsyncBoxBody<Bytes, BodyError>;

/// How many bytes a file chunk holds.
const FILE_CHUNK: usize = 64 * 1024;

/// About how many bytes a page of a listing holds: a page ends at the
/// first row past this size.
pub const PAGE_BYTES: usize = 64 * 1024;

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

pub fn empty() -> Body {
    full(Bytes::new())
}

/// `bytes` sent in chunks of [`FILE_CHUNK`]: the connection takes the next
/// one only as it drains, so the body (and what goes with it) lives until
/// the client has nearly all of it.
pub fn in_chunks(bytes: Bytes) -> Body {
    let chunks = futures_util::stream::unfold(bytes, |mut rest| async move {
        if rest.is_empty() {
            return None;
        }
        let chunk = rest.split_to(rest.len().min(FILE_CHUNK));
        Some((Ok(Frame::data(chunk)), rest))
    });
    StreamBody::new(chunks).boxed_unsync()
}

/// A body written page by page: `write_page` appends the next page of the
/// answer to the buffer it is given and says whether more follow. Each
/// page is written on the blocking pool (it reads the store), when the
/// connection is ready for it.
pub fn paged<S, F>(daemon: Arc<Daemon>, state: S, mut write_page: F) -> Body
where
    S: Send + 'static,
    F: FnMut(&Daemon, &mut S, &mut String) -> Result<bool, String> + Send + 'static,
{
    paged_bytes(daemon, state, move |daemon, state, out: &mut Vec<u8>| {
        // The buffer is empty: written as text, in the same allocation.
        let mut text = String::from_utf8(std::mem::take(out)).unwrap_or_default();
        let more = write_page(daemon, state, &mut text);
        *out = text.into_bytes();
        more
    })
}

/// [`paged`] for answers that are bytes (msgpack, gzip) rather than text.
///
/// The next page is written while the connection sends the one before
/// (two cores do both at once): a listing holds two pages, and still no
/// thread while its client dawdles.
pub fn paged_bytes<S, F>(daemon: Arc<Daemon>, state: S, write_page: F) -> Body
where
    S: Send + 'static,
    F: FnMut(&Daemon, &mut S, &mut Vec<u8>) -> Result<bool, String> + Send + 'static,
{
    let first = next_page(daemon, state, write_page);
    let pages = futures_util::stream::unfold(Some(first), |step| async move {
        let written = step?.await;
        Some(match written {
            Ok((Ok(more), page, (daemon, state, write_page))) => {
                let following = more.then(|| next_page(daemon, state, write_page));
                (Ok(Frame::data(Bytes::from(page))), following)
            }
            Ok((Err(error), _, _)) => (Err(BodyError::from(error)), None),
            Err(error) => (Err(BodyError::from(error.to_string())), None),
        })
    });
    StreamBody::new(pages).boxed_unsync()
}

/// What a page's writing hands back: whether more follow, the page, and
/// what the next page is written with.
type WrittenPage<S, F> = (Result<bool, String>, Vec<u8>, (Arc<Daemon>, S, F));

/// Starts writing the next page on the blocking pool.
fn next_page<S, F>(
    daemon: Arc<Daemon>,
    mut state: S,
    mut write_page: F,
) -> tokio::task::JoinHandle<WrittenPage<S, F>>
where
    S: Send + 'static,
    F: FnMut(&Daemon, &mut S, &mut Vec<u8>) -> Result<bool, String> + Send + 'static,
{
    tokio::task::spawn_blocking(move || {
        let mut page = Vec::with_capacity(PAGE_BYTES + PAGE_BYTES / 4);
        let more = write_page(&daemon, &mut state, &mut page);
        (more, page, (daemon, state, write_page))
    })
}

/// `length` bytes of an open file from `start`, read a chunk at a time.
pub fn file_range(file: tokio::fs::File, start: u64, length: u64) -> Body {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let begin = Some((file, start, length, true));
    let chunks = futures_util::stream::unfold(begin, |step| async move {
        let (mut file, start, left, first) = step?;
        if left == 0 {
            return None;
        }
        if first && let Err(error) = file.seek(std::io::SeekFrom::Start(start)).await {
            return Some((Err(BodyError::from(error)), None));
        }
        let mut chunk = Vec::with_capacity(FILE_CHUNK.min(left as usize));
        let read = (&mut file)
            .take(left.min(FILE_CHUNK as u64))
            .read_to_end(&mut chunk)
            .await;
        Some(match read {
            // The file shrank under us: what was promised cannot be sent.
            Ok(0) => (
                Err(BodyError::from("the file was truncated while it was sent")),
                None,
            ),
            Ok(count) => (
                Ok(Frame::data(Bytes::from(chunk))),
                Some((file, start, left - count as u64, false)),
            ),
            Err(error) => (Err(BodyError::from(error)), None),
        })
    });
    StreamBody::new(chunks).boxed_unsync()
}
