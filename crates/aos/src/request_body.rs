//! Reading a request body with a cap (the webhook in both runtimes, and every invocation the
//! Functions host posts to `aos serve`): keep at most `cap` bytes, and read a larger body on to
//! its end (up to `drain`) and drop it chunk by chunk instead of answering in the middle of the
//! upload. A server that answers and closes while the client is
//! still sending makes the kernel reset the connection, and the client then often sees a reset
//! instead of the answer; read to its end, the body costs time, never memory.

use axum::body::{Body, Bytes};
use futures::StreamExt as _;

/// What [`read_capped`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Capped {
    /// The whole body, at most `cap` bytes.
    Whole(Bytes),
    /// A body over `cap`: how many bytes were read before it ended or `drain` was passed.
    TooLarge { read: usize },
}

/// Reads `body`, keeping it if it is at most `cap` bytes; a larger one is read on and dropped
/// until it ends or more than `drain` bytes were read.
pub async fn read_capped(body: Body, cap: usize, drain: usize) -> Result<Capped, axum::Error> {
    let mut stream = body.into_data_stream();
    let mut kept = Vec::new();
    let mut read = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        read = read.saturating_add(chunk.len());
        if read <= cap {
            kept.extend_from_slice(&chunk);
        } else if read > drain {
            break;
        } else if !kept.is_empty() {
            kept = Vec::new();
        }
    }
    Ok(if read <= cap {
        Capped::Whole(Bytes::from(kept))
    } else {
        Capped::TooLarge { read }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body_of(chunks: &[&'static [u8]]) -> Body {
        let chunks: Vec<Result<Bytes, std::io::Error>> =
            chunks.iter().map(|c| Ok(Bytes::from_static(c))).collect();
        Body::from_stream(futures::stream::iter(chunks))
    }

    #[tokio::test]
    async fn a_body_over_the_cap_is_read_on_and_only_measured() {
        let read = read_capped(body_of(&[b"abc", b"def"]), 6, 100)
            .await
            .unwrap();
        assert_eq!(read, Capped::Whole(Bytes::from_static(b"abcdef")));
        let read = read_capped(body_of(&[b"abc", b"def", b"g", b"h"]), 6, 100)
            .await
            .unwrap();
        assert_eq!(read, Capped::TooLarge { read: 8 });
    }

    #[tokio::test]
    async fn draining_stops_past_its_limit() {
        let read = read_capped(body_of(&[b"abc", b"def", b"ghi", b"jkl"]), 2, 5)
            .await
            .unwrap();
        assert_eq!(read, Capped::TooLarge { read: 6 });
    }
}
