//! The dashboard: one page, its stylesheet and its script, embedded in the binary. The script
//! polls the JSON API; nothing is fetched from elsewhere and nothing is built.

use axum::http::header;
use axum::response::{Html, IntoResponse};

const PAGE: &str = include_str!("index.html");
const STYLE: &str = include_str!("dashboard.css");
const SCRIPT: &str = include_str!("dashboard.js");

pub(crate) async fn page() -> Html<&'static str> {
    Html(PAGE)
}

pub(crate) async fn style() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE)
}

pub(crate) async fn script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        SCRIPT,
    )
}
