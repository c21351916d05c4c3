//! A real browser for the dashboard's tests: Debian's Chromium, headless
//! (`scripts/setup.sh` installs it for the tests), loading a page, letting
//! its script run, and giving back the document it built or a screenshot.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::process::Command;

/// How long a page's script may run (in the browser's virtual time, so
/// that a page polling every few seconds settles quickly).
const VIRTUAL_TIME_BUDGET_MS: u32 = 15_000;

/// The most one load may take in real time.
const LOAD_TIMEOUT: Duration = Duration::from_secs(120);

/// Headless Chromium.
#[derive(Debug)]
pub struct Chromium {
    binary: PathBuf,
}

impl Chromium {
    /// The Chromium on `PATH`; an error that says how to get one.
    pub fn find() -> anyhow::Result<Self> {
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
            .find(|candidate| candidate.is_file())
            .map(|binary| Self { binary })
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "headless Chromium not found on PATH: the dashboard is tested in a real browser; \
                     `scripts/setup.sh` (without --run) installs Debian's chromium"
                )
            })
    }

    async fn run(&self, extra: &[String], url: &str) -> anyhow::Result<Vec<u8>> {
        let profile = tempfile::tempdir()?;
        let mut args = vec![
            "--headless".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--hide-scrollbars".to_owned(),
            "--no-first-run".to_owned(),
            format!("--user-data-dir={}", profile.path().display()),
            "--window-size=1280,1100".to_owned(),
            format!("--virtual-time-budget={VIRTUAL_TIME_BUDGET_MS}"),
        ];
        args.extend_from_slice(extra);
        args.push(url.to_owned());
        let out = tokio::time::timeout(
            LOAD_TIMEOUT,
            Command::new(&self.binary)
                .args(&args)
                .kill_on_drop(true)
                .output(),
        )
        .await
        .map_err(|_| {
            anyhow::anyhow!("Chromium did not finish loading {url} in {LOAD_TIMEOUT:?}")
        })??;
        anyhow::ensure!(
            out.status.success(),
            "Chromium failed on {url}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(out.stdout)
    }

    /// `url` open in a browser that keeps running it, read while it runs.
    pub async fn open(&self, url: &str) -> anyhow::Result<crate::devtools::LivePage> {
        crate::devtools::LivePage::open(&self.binary, url).await
    }

    /// The document `url`'s script built.
    pub async fn dom(&self, url: &str) -> anyhow::Result<String> {
        let out = self.run(&["--dump-dom".to_owned()], url).await?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    /// A PNG of `url` once its script ran, written to `path`.
    pub async fn screenshot(&self, url: &str, path: &Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        self.run(&[format!("--screenshot={}", path.display())], url)
            .await?;
        let png = std::fs::read(path)
            .map_err(|e| anyhow::anyhow!("no screenshot of {url} at {}: {e}", path.display()))?;
        anyhow::ensure!(
            png.starts_with(b"\x89PNG") && png.len() > 10_000,
            "the screenshot of {url} is no picture ({} bytes)",
            png.len()
        );
        Ok(())
    }
}

/// Where screenshots go: `$MESH_SCREENSHOT_DIR`, else `target/screenshots`.
pub fn screenshot_dir() -> PathBuf {
    std::env::var_os("MESH_SCREENSHOT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join("target")
                .join("screenshots")
        })
}

/// The text of each cell of the table row whose opening tag carries
/// `marker` (`data-workload="deployment/podinfo"`), in order.
pub fn row_cells(dom: &str, marker: &str) -> Option<Vec<String>> {
    let start = dom.find(marker)?;
    let row = &dom[start..start + dom[start..].find("</tr>")?];
    Some(
        row.split("<td")
            .skip(1)
            .map(|cell| {
                let text = cell.split_once('>').map_or("", |(_, rest)| rest);
                let text = text.split("</td>").next().unwrap_or_default();
                strip_tags(text)
            })
            .collect(),
    )
}

fn strip_tags(html: &str) -> String {
    let mut text = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    text.replace("&amp;", "&")
        .replace("&gt;", ">")
        .replace("&lt;", "<")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rows_cells_are_read_as_text() {
        let dom = r#"<tr data-workload="deployment/web"><td>deployment</td><td><a href="x">web</a></td><td class="num ok">99.50%</td></tr><tr data-workload="deployment/db"><td>db</td></tr>"#;
        assert_eq!(
            row_cells(dom, r#"data-workload="deployment/web""#),
            Some(vec!["deployment".into(), "web".into(), "99.50%".into()])
        );
        assert_eq!(row_cells(dom, "data-workload=\"deployment/none\""), None);
    }
}
