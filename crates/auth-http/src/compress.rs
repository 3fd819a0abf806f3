//! Response compression (gzip or br, as `Accept-Encoding` allows) for answers of 1 KiB or more,
//! except answers that carry `Cache-Control: no-store`.
//!
//! Answers marked no-store hold tokens or secrets. Compressing a secret in the same body as
//! text an attacker chooses lets the compressed length reveal it, byte by byte, over TLS
//! (BREACH), so those go out as they are whatever their size. Below 1 KiB compression saves
//! too little to be worth the CPU. actix-web's `Compress` middleware has no such rules (it
//! compresses every body, and answers 406 when no coding is acceptable), so this middleware
//! decides and hands only the chosen answers to actix-http's encoder; the others are not
//! touched at all (no `Content-Encoding: identity`).

use actix_http::encoding::Encoder;
use actix_web::HttpMessage as _;
use actix_web::body::{BodySize, EitherBody, MessageBody};
use actix_web::dev::{ResponseHead, ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, AcceptEncoding, ContentEncoding, Encoding, HeaderValue};
use actix_web::middleware::Next;

/// Smallest body that is compressed, in bytes.
pub const MIN_COMPRESS_BYTES: u64 = 1024;

/// The codings offered, most preferred first when the client ranks them equally.
const OFFERED: [Encoding; 3] = [Encoding::brotli(), Encoding::gzip(), Encoding::identity()];

/// The coding to use for a request: `None` when the client sent no `Accept-Encoding` or
/// accepts none of ours (the answer then goes out plain, never as a 406).
fn negotiate(req: &ServiceRequest) -> Option<ContentEncoding> {
    let accept = req.get_header::<AcceptEncoding>()?;
    match accept.negotiate(OFFERED.iter())? {
        Encoding::Known(ContentEncoding::Identity) | Encoding::Unknown(_) => None,
        Encoding::Known(coding) => Some(coding),
    }
}

/// Whether an answer may be compressed at all: large enough, no secret, not already encoded,
/// a type that compresses and that is not read as a stream.
fn compressible(head: &ResponseHead, size: BodySize) -> bool {
    let large = match size {
        BodySize::None => false,
        BodySize::Sized(n) => n >= MIN_COMPRESS_BYTES,
        BodySize::Stream => true,
    };
    if !large {
        return false;
    }
    let headers = head.headers();
    let no_store = headers.get_all(header::CACHE_CONTROL).any(|v| {
        v.to_str()
            .is_ok_and(|v| v.to_ascii_lowercase().contains("no-store"))
    });
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let binary = (content_type.starts_with("image/") && !content_type.starts_with("image/svg"))
        || content_type.starts_with("video/")
        || content_type.starts_with("audio/")
        // Events must reach the client as they happen, not when a compressor's block fills.
        || content_type.starts_with("text/event-stream");
    !no_store && !binary && !headers.contains_key(header::CONTENT_ENCODING)
}

/// Middleware applying the rules above.
///
/// # Errors
/// Passes through errors of the inner service.
pub async fn middleware<B: MessageBody + 'static>(
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<EitherBody<Encoder<B>, B>>, actix_web::Error> {
    let coding = negotiate(&req);
    let res = next.call(req).await?;
    Ok(res.map_body(|head, body| {
        if !compressible(head, body.size()) {
            return EitherBody::right(body);
        }
        // The answer depends on Accept-Encoding, whichever coding this client got.
        match coding {
            // The encoder adds `Content-Encoding` and `Vary: accept-encoding` itself.
            Some(coding) => EitherBody::left(Encoder::response(coding, head, body)),
            None => {
                head.headers_mut()
                    .append(header::VARY, HeaderValue::from_static("accept-encoding"));
                EitherBody::right(body)
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::StatusCode;

    fn head(headers: &[(&'static str, &'static str)]) -> ResponseHead {
        let mut head = ResponseHead::new(StatusCode::OK);
        for (name, value) in headers {
            head.headers_mut().insert(
                header::HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        head
    }

    #[test]
    fn rules() {
        let json = [("content-type", "application/json")];
        assert!(compressible(&head(&json), BodySize::Sized(1024)));
        assert!(!compressible(&head(&json), BodySize::Sized(1023)));
        assert!(!compressible(&head(&json), BodySize::None));
        assert!(compressible(&head(&json), BodySize::Stream));
        for secret in ["no-store", "private, No-Store"] {
            let h = head(&[
                ("content-type", "application/json"),
                ("cache-control", secret),
            ]);
            assert!(!compressible(&h, BodySize::Sized(100_000)), "{secret}");
        }
        let cached = head(&[("cache-control", "public, max-age=300")]);
        assert!(compressible(&cached, BodySize::Sized(4096)));
        let encoded = head(&[("content-encoding", "gzip")]);
        assert!(!compressible(&encoded, BodySize::Sized(4096)));
        for binary in ["image/png", "video/mp4", "text/event-stream"] {
            let h = head(&[("content-type", binary)]);
            assert!(!compressible(&h, BodySize::Sized(4096)), "{binary}");
        }
        let svg = head(&[("content-type", "image/svg+xml")]);
        assert!(compressible(&svg, BodySize::Sized(4096)));
    }
}
