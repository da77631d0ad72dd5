//! Swagger UI, served from the binary: the `/docs` page FastAPI writes (its
//! `get_swagger_ui_html`), with the viewer's assets under `/docs/` instead of a CDN, so the page
//! works offline.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, Response, StatusCode, header};

use crate::body::Body;
use crate::error;

/// What a path below the docs' base (`{base}/docs...`) asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DocsRequest<'a> {
    /// `{base}/openapi.json`.
    OpenApi,
    /// `{base}/docs`: the viewer's page.
    Page,
    /// `{base}/docs/`: FastAPI's redirect to the path without the slash.
    Redirect,
    /// `{base}/docs/oauth2-redirect`: where Swagger UI's OAuth2 flow lands.
    OAuth2Redirect,
    /// `{base}/docs/{file}`: one of the viewer's assets.
    Asset(&'a str),
}

impl<'a> DocsRequest<'a> {
    /// What `rest` (the path below the base) asks for, if it is a docs path.
    pub(crate) fn of(rest: &'a str) -> Option<Self> {
        match rest {
            "/openapi.json" => Some(DocsRequest::OpenApi),
            "/docs" => Some(DocsRequest::Page),
            "/docs/" => Some(DocsRequest::Redirect),
            "/docs/oauth2-redirect" => Some(DocsRequest::OAuth2Redirect),
            _ => rest
                .strip_prefix("/docs/")
                .filter(|file| !file.contains('/'))
                .map(DocsRequest::Asset),
        }
    }
}

/// The methods the docs paths answer, as FastAPI's `GET` routes (Starlette adds `HEAD`).
pub(crate) const ALLOW: &str = "GET, HEAD";

/// Whether `method` reads a docs path (else a 405 with [`ALLOW`]).
pub(crate) fn is_read(method: &Method) -> bool {
    method == Method::GET || method == Method::HEAD
}

/// The viewer's page for the document at `openapi_url`, titled `{title} - Swagger UI`, its
/// assets under `docs_url/` (all absolute paths, so the page works behind any prefix).
pub(crate) fn page(title: &str, openapi_url: &str, docs_url: &str) -> Response<Body> {
    let assets = html_escape(docs_url);
    let html = format!(
        r##"<!DOCTYPE html>
<html>
<head>
<meta charset="utf-8">
<link type="text/css" rel="stylesheet" href="{assets}/swagger-ui.css">
<link rel="shortcut icon" href="{assets}/favicon-32x32.png">
<title>{title} - Swagger UI</title>
</head>
<body>
<div id="swagger-ui">
</div>
<script src="{assets}/swagger-ui-bundle.js" charset="UTF-8"></script>
<script>
const ui = SwaggerUIBundle({{
    url: {openapi_url},
    dom_id: "#swagger-ui",
    layout: "BaseLayout",
    deepLinking: true,
    showExtensions: true,
    showCommonExtensions: true,
    oauth2RedirectUrl: window.location.origin + {redirect_url},
    presets: [
        SwaggerUIBundle.presets.apis,
        SwaggerUIBundle.SwaggerUIStandalonePreset
    ],
}})
</script>
</body>
</html>
"##,
        title = html_escape(title),
        openapi_url = js_string(openapi_url),
        redirect_url = js_string(&format!("{docs_url}/oauth2-redirect")),
    );
    with_type(Bytes::from(html), "text/html; charset=utf-8")
}

/// The viewer's asset `file` (`swagger-ui.css`, `swagger-ui-bundle.js`, ...), or `None` when
/// there is no such file. `index.html` and its `swagger-initializer.js` work too, pointed at
/// `openapi_url`.
pub(crate) fn asset(file: &str, openapi_url: &str) -> Option<Response<Body>> {
    let config = Arc::new(utoipa_swagger_ui::Config::new([openapi_url.to_owned()]));
    let found = match utoipa_swagger_ui::serve(file, config) {
        Ok(Some(found)) => found,
        Ok(None) => return None,
        Err(e) => {
            tracing::warn!(file, error = %e, "a Swagger UI asset could not be served");
            return Some(error::detail(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal Server Error",
            ));
        }
    };
    let content_type = match found.content_type.as_str() {
        t if t.starts_with("text/") && !t.contains("charset") => format!("{t}; charset=utf-8"),
        "application/javascript" => "text/javascript; charset=utf-8".to_owned(),
        t => t.to_owned(),
    };
    let bytes = Bytes::from(found.bytes.into_owned());
    let mut resp = with_type(bytes, "application/octet-stream");
    if let Ok(value) = HeaderValue::from_str(&content_type) {
        resp.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    Some(resp)
}

/// Swagger UI's OAuth2 landing page.
pub(crate) fn oauth2_redirect(openapi_url: &str) -> Response<Body> {
    asset("oauth2-redirect.html", openapi_url).unwrap_or_else(error::not_found)
}

/// The answer to a docs request other than the document itself, for a page at `docs_url`
/// showing the document at `openapi_url`: the page, its redirect, an asset or a 404.
pub(crate) fn answer(
    request: DocsRequest<'_>,
    title: &str,
    openapi_url: &str,
    docs_url: &str,
    query: Option<&str>,
) -> Response<Body> {
    match request {
        DocsRequest::OpenApi => error::not_found(),
        DocsRequest::Page => page(title, openapi_url, docs_url),
        DocsRequest::Redirect => error::redirect(&match query {
            Some(query) => format!("{docs_url}?{query}"),
            None => docs_url.to_owned(),
        }),
        DocsRequest::OAuth2Redirect => oauth2_redirect(openapi_url),
        DocsRequest::Asset(file) => asset(file, openapi_url).unwrap_or_else(error::not_found),
    }
}

fn with_type(bytes: Bytes, content_type: &'static str) -> Response<Body> {
    let mut resp = Response::new(Body::full(bytes));
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// `text` safe inside HTML text and attribute values.
fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
    out
}

/// `text` as a JavaScript string literal that cannot end the `<script>` element it is in.
fn js_string(text: &str) -> String {
    serde_json::to_string(text)
        .unwrap_or_else(|_| "\"\"".to_owned())
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docs_paths_are_recognised() {
        assert_eq!(DocsRequest::of("/openapi.json"), Some(DocsRequest::OpenApi));
        assert_eq!(DocsRequest::of("/docs"), Some(DocsRequest::Page));
        assert_eq!(DocsRequest::of("/docs/"), Some(DocsRequest::Redirect));
        assert_eq!(
            DocsRequest::of("/docs/swagger-ui.css"),
            Some(DocsRequest::Asset("swagger-ui.css"))
        );
        assert_eq!(DocsRequest::of("/docs/a/b.js"), None);
        assert_eq!(DocsRequest::of("/chat"), None);
        assert_eq!(DocsRequest::of("/docsx"), None);
    }

    #[test]
    fn the_page_escapes_what_it_embeds() {
        assert_eq!(
            html_escape(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#x27;"
        );
        assert_eq!(js_string("</script>"), r#""\u003c/script\u003e""#);
    }

    #[test]
    fn the_bundled_assets_are_in_the_binary() {
        for (file, content_type) in [
            ("swagger-ui.css", "text/css; charset=utf-8"),
            ("swagger-ui-bundle.js", "text/javascript; charset=utf-8"),
            ("favicon-32x32.png", "image/png"),
        ] {
            let resp = asset(file, "/openapi.json").unwrap_or_else(|| panic!("{file}"));
            assert_eq!(resp.headers()[header::CONTENT_TYPE], content_type, "{file}");
        }
        assert!(asset("nope.js", "/openapi.json").is_none());
    }
}
