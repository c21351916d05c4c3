//! The dashboard's files, embedded in the binary so that nothing is built
//! or fetched when it runs: the page, its script and style (ours, plain
//! JavaScript without a build step), uPlot 1.6.32 (MIT) for the time
//! series charts and Cytoscape.js 3.35.0 (MIT) for the topology graph
//! (`viz/assets/vendor/*/README.md`).

/// One embedded file.
#[derive(Debug, Clone, Copy)]
pub struct Asset {
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// Its bytes.
    pub body: &'static [u8],
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// The file served at `path`, if any (`/` is the page).
pub fn get(path: &str) -> Option<Asset> {
    let (content_type, body): (&'static str, &'static [u8]) = match path {
        "/" | "/index.html" => (HTML, include_bytes!("../../assets/index.html")),
        "/app.js" => (JS, include_bytes!("../../assets/app.js")),
        "/style.css" => (CSS, include_bytes!("../../assets/style.css")),
        "/vendor/uplot/uPlot.iife.min.js" => (
            JS,
            include_bytes!("../../assets/vendor/uplot/uPlot.iife.min.js"),
        ),
        "/vendor/uplot/uPlot.min.css" => (
            CSS,
            include_bytes!("../../assets/vendor/uplot/uPlot.min.css"),
        ),
        "/vendor/cytoscape/cytoscape.min.js" => (
            JS,
            include_bytes!("../../assets/vendor/cytoscape/cytoscape.min.js"),
        ),
        _ => return None,
    };
    Some(Asset { content_type, body })
}
