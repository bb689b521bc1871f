//! The guardian's one web page (withdrawal lookup and network status), embedded in the binary.
//! It loads nothing from elsewhere (the machine may be offline): plain HTML, CSS and JavaScript
//! calling `/v1/withdrawals…` and `/v1/status` with `fetch`.

/// The page.
pub const INDEX_HTML: &str = include_str!("index.html");
/// Its script.
pub const APP_JS: &str = include_str!("app.js");
/// Its style sheet.
pub const STYLE_CSS: &str = include_str!("style.css");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_nothing_from_elsewhere() {
        for text in [INDEX_HTML, APP_JS, STYLE_CSS] {
            assert!(!text.contains("http://") && !text.contains("https://"), "external URL in the page");
            assert!(!text.contains("//cdn"), "CDN reference in the page");
        }
        assert!(INDEX_HTML.contains("src=\"/web/app.js\""));
        assert!(INDEX_HTML.contains("href=\"/web/style.css\""));
        assert!(INDEX_HTML.contains("name=\"viewport\""), "readable on a phone");
        // No inline script: the CSP forbids it.
        assert!(!INDEX_HTML.contains("<script>"));
    }
}
