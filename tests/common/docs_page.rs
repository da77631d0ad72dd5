//! Checks of a Swagger UI page as a browser loads it: the page, every asset it links, and the
//! OpenAPI document it shows (included with `#[path]` by the test binaries that serve docs).

use std::net::SocketAddr;

use http::{Method, StatusCode};
use rayai::Value;

use crate::common::{self, Proto};

/// The content type an asset must be served with, by its file's extension.
fn expected_type(url: &str) -> &'static str {
    match url.rsplit('.').next() {
        Some("css") => "text/css",
        Some("js") => "text/javascript",
        Some("png") => "image/png",
        _ => panic!("an asset of an unexpected kind: {url}"),
    }
}

/// The values of `attr="..."` in `html`, in order.
fn attributes<'a>(html: &'a str, attr: &str) -> Vec<&'a str> {
    let needle = format!("{attr}=\"");
    html.match_indices(&needle)
        .filter_map(|(at, _)| {
            let rest = &html[at + needle.len()..];
            rest.find('"').map(|end| &rest[..end])
        })
        .collect()
}

/// Loads the page at `page` as a browser would: a `200` HTML page titled `title`, whose every
/// stylesheet, icon and script loads with its content type, and whose viewer is pointed at
/// `openapi` (an absolute path), which answers a JSON document. Returns that document.
pub async fn assert_docs_page_loads(
    addr: SocketAddr,
    page: &str,
    title: &str,
    openapi: &str,
) -> Value {
    let reply = common::get(addr, page).await;
    assert_eq!(reply.status, StatusCode::OK, "{page}: {reply:?}");
    assert_eq!(reply.header("content-type"), "text/html; charset=utf-8");
    let html = &reply.body;
    assert!(
        html.contains(&format!("<title>{title} - Swagger UI</title>")),
        "{html}"
    );
    let mut assets: Vec<&str> = attributes(html, "href");
    assets.extend(attributes(html, "src"));
    // The stylesheet, the icon and the bundle, each under the page's own `docs/`.
    assert_eq!(assets.len(), 3, "{html}");
    for asset in assets {
        assert!(
            asset.starts_with(&format!("{page}/")),
            "{asset} is not under {page}/"
        );
        // Read as bytes: the icon is no text.
        let req = common::request(addr, Proto::H1, Method::GET, asset)
            .body(common::full(""))
            .expect("a valid request");
        let mut loaded = common::open(addr, Proto::H1, req).await;
        assert_eq!(loaded.status, StatusCode::OK, "{asset}");
        let content_type = loaded.header("content-type").to_owned();
        assert!(
            content_type.starts_with(expected_type(asset)),
            "{asset} is served as {content_type}"
        );
        let body = loaded.rest(common::EXCHANGE_TIMEOUT).await.concat();
        assert!(body.len() > 100, "{asset} is {} bytes", body.len());
    }
    assert!(
        html.contains(&format!("url: \"{openapi}\"")),
        "the viewer does not load {openapi}: {html}"
    );
    let document = common::get(addr, openapi).await;
    assert_eq!(document.status, StatusCode::OK, "{openapi}: {document:?}");
    assert_eq!(document.header("content-type"), "application/json");
    document.json()
}
