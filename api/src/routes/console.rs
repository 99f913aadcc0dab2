//! The admin console (`console/`): its built assets, embedded at build time (`build.rs`), served
//! at `/` by the router's fallback, so they are no API route and not in the OpenAPI document.
//!
//! - `/` and `/index.html`: the page, `Cache-Control: no-cache` (revalidated, so a new build is
//!   picked up at once); everything else under `/assets/` carries a content hash in its name and
//!   is `immutable` for a year.
//! - Every answer has a strict Content-Security-Policy: scripts, styles and connections only
//!   from this origin, no inline script or style, no framing, no plugins.
//! - Assets are gzipped at build time and sent so to clients that accept it.
//! - Only `GET` and `HEAD`; any other path falls through to the API's 404.

use axum::body::Body;
use axum::http::header::{
    ACCEPT_ENCODING, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, VARY,
};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;

/// The policy of every console answer. `connect-src 'self'` covers the API and its WebSocket.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; font-src 'self'; connect-src 'self'; \
     manifest-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

const IMMUTABLE: &str = "public, max-age=31536000, immutable";

pub struct Asset {
    pub path: &'static str,
    pub body: &'static [u8],
    pub gzip: Option<&'static [u8]>,
    pub content_type: &'static str,
}

/// Every file of `console/dist`, sorted by path.
pub static ASSETS: &[Asset] = include!(concat!(env!("OUT_DIR"), "/console_assets.rs"));

fn find(path: &str) -> Option<&'static Asset> {
    let path = if path == "/" { "/index.html" } else { path };
    ASSETS.iter().find(|a| a.path == path)
}

fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let mut parts = coding.split(';');
            let name = parts.next().unwrap_or_default().trim();
            // `gzip;q=0` refuses it.
            let refused = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
        })
}

/// The console's answer to `method path`, or `None` when it is not one of its files.
pub fn serve(method: &Method, path: &str, headers: &HeaderMap) -> Option<Response> {
    if method != Method::GET && method != Method::HEAD {
        return None;
    }
    let asset = find(path)?;
    let (body, encoded) = match asset.gzip {
        Some(gz) if accepts_gzip(headers) => (gz, true),
        _ => (asset.body, false),
    };
    let cache = if asset.path.starts_with("/assets/") {
        IMMUTABLE
    } else {
        "no-cache"
    };
    let mut response = Response::new(if method == Method::HEAD {
        Body::empty()
    } else {
        Body::from(body)
    });
    *response.status_mut() = StatusCode::OK;
    let h = response.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    h.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
    h.insert(CACHE_CONTROL, HeaderValue::from_static(cache));
    if asset.gzip.is_some() {
        h.insert(VARY, HeaderValue::from_static("accept-encoding"));
    }
    if encoded {
        h.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    Some(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str, accept: Option<&str>) -> Option<Response> {
        let mut headers = HeaderMap::new();
        if let Some(a) = accept {
            headers.insert(ACCEPT_ENCODING, HeaderValue::from_str(a).expect("header"));
        }
        serve(&Method::GET, path, &headers)
    }

    fn header<'a>(r: &'a Response, name: &str) -> &'a str {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    #[test]
    fn the_built_console_is_embedded() {
        let index = find("/").expect("index.html embedded");
        let html = std::str::from_utf8(index.body).expect("utf-8");
        // Every script and stylesheet the page names is embedded, and none is inline.
        let mut named = 0;
        for part in html.split(['"', '\'']) {
            if part.starts_with("/assets/") {
                assert!(
                    find(part).is_some(),
                    "{part} named by index.html is embedded"
                );
                named += 1;
            }
        }
        assert!(
            named >= 2,
            "index.html names its script and stylesheet: {html}"
        );
        assert!(
            !html.contains("<script>") && !html.contains("<style"),
            "no inline script or style: {html}"
        );
    }

    #[test]
    fn index_is_revalidated_and_hashed_assets_are_immutable() {
        let index = get("/", None).expect("index");
        assert_eq!(index.status(), StatusCode::OK);
        assert_eq!(header(&index, "cache-control"), "no-cache");
        assert_eq!(header(&index, "content-type"), "text/html; charset=utf-8");
        assert_eq!(
            header(&index, "content-security-policy"),
            CONTENT_SECURITY_POLICY
        );
        assert!(CONTENT_SECURITY_POLICY.contains("frame-ancestors 'none'"));
        assert!(!CONTENT_SECURITY_POLICY.contains("unsafe-inline"));
        assert_eq!(header(&index, "x-content-type-options"), "nosniff");

        let script = ASSETS
            .iter()
            .find(|a| a.path.starts_with("/assets/") && a.path.ends_with(".js"))
            .expect("a script");
        let r = get(script.path, None).expect("script");
        assert_eq!(header(&r, "cache-control"), IMMUTABLE);
        assert_eq!(header(&r, "content-type"), "text/javascript; charset=utf-8");
        assert_eq!(header(&r, "content-length"), script.body.len().to_string());
        assert_eq!(header(&r, "content-encoding"), "");
    }

    #[test]
    fn gzip_only_to_clients_that_accept_it() {
        let script = ASSETS
            .iter()
            .find(|a| a.path.ends_with(".js"))
            .expect("a script");
        let gz = script.gzip.expect("a script shrinks");
        for (accept, zipped) in [
            ("gzip, deflate, br", true),
            ("br;q=1, GZIP;q=0.5", true),
            ("*", true),
            ("gzip;q=0", false),
            ("br", false),
        ] {
            let r = get(script.path, Some(accept)).expect("script");
            assert_eq!(header(&r, "vary"), "accept-encoding");
            let want = if zipped { gz.len() } else { script.body.len() };
            assert_eq!(header(&r, "content-length"), want.to_string(), "{accept}");
            assert_eq!(
                header(&r, "content-encoding"),
                if zipped { "gzip" } else { "" },
                "{accept}"
            );
        }
        let mut plain = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(gz), &mut plain)
            .expect("gunzip");
        assert_eq!(plain, script.body);
    }

    #[test]
    fn other_paths_and_methods_are_not_the_consoles() {
        assert!(get("/nope", None).is_none());
        assert!(get("/assets/missing.js", None).is_none());
        assert!(get("/api/v1/health", None).is_none());
        assert!(serve(&Method::POST, "/", &HeaderMap::new()).is_none());
        let head = serve(&Method::HEAD, "/", &HeaderMap::new()).expect("HEAD");
        assert_eq!(head.status(), StatusCode::OK);
        assert_eq!(header(&head, "cache-control"), "no-cache");
    }
}
