//! A page that stays open in headless Chromium, read while it runs: the
//! browser driven over the DevTools protocol on a pipe
//! (`--remote-debugging-pipe`: commands on its fd 3, answers on its fd 4,
//! each a JSON message ended by a NUL byte). [`crate::browser`]'s
//! one-shot loads advance the page's clock only while no request is
//! pending, so a page that streams (the dashboard's live tap) never
//! settles there; here the page runs in real time and the test reads its
//! document whenever it likes.

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader, Write as _};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::oneshot;

/// How long one command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// A page open in a headless Chromium, closed with it when dropped.
#[derive(Debug)]
pub struct LivePage {
    child: std::process::Child,
    commands: std::io::PipeWriter,
    waiting: std::sync::Arc<std::sync::Mutex<HashMap<u64, oneshot::Sender<Value>>>>,
    next_id: u64,
    session: String,
    _profile: tempfile::TempDir,
}

impl Drop for LivePage {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl LivePage {
    /// Starts `binary` headless and opens `url` in it.
    pub async fn open(binary: &std::path::Path, url: &str) -> anyhow::Result<Self> {
        let profile = tempfile::tempdir()?;
        let (browser_reads, commands) = std::io::pipe()?;
        let (answers, browser_writes) = std::io::pipe()?;
        // The shell moves the pipe's ends from its stdin and stdout to
        // fds 3 and 4, where Chromium expects them, and becomes Chromium.
        let mut command = std::process::Command::new("sh");
        command
            .arg("-c")
            .arg(r#"exec "$0" "$@" 3<&0 4>&1 </dev/null >/dev/null"#)
            .arg(binary)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--remote-debugging-pipe",
                "--window-size=1280,1100",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(browser_reads.try_clone()?)
            .stdout(browser_writes.try_clone()?)
            .stderr(std::process::Stdio::null());
        let child = command
            .spawn()
            .map_err(|e| anyhow::anyhow!("starting {}: {e}", binary.display()))?;
        drop((browser_reads, browser_writes));
        let waiting = std::sync::Arc::new(std::sync::Mutex::new(HashMap::<
            u64,
            oneshot::Sender<Value>,
        >::new()));
        let routing = waiting.clone();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(answers);
            let mut message = Vec::new();
            while reader.read_until(0, &mut message).is_ok_and(|n| n > 0) {
                message.pop();
                if let Ok(value) = serde_json::from_slice::<Value>(&message)
                    && let Some(id) = value["id"].as_u64()
                    && let Some(answer) = routing.lock().ok().and_then(|mut w| w.remove(&id))
                {
                    let _ = answer.send(value);
                }
                message.clear();
            }
            // The browser is gone: whoever waits hears so now.
            if let Ok(mut waiting) = routing.lock() {
                waiting.clear();
            }
        });
        let mut page = Self {
            child,
            commands,
            waiting,
            next_id: 0,
            session: String::new(),
            _profile: profile,
        };
        let target = page
            .command("Target.createTarget", json!({ "url": url }))
            .await?;
        let target_id = target["targetId"].as_str().unwrap_or_default().to_owned();
        let attached = page
            .command(
                "Target.attachToTarget",
                json!({ "targetId": target_id, "flatten": true }),
            )
            .await?;
        page.session = attached["sessionId"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        anyhow::ensure!(
            !page.session.is_empty(),
            "Chromium attached no session to {url}: {attached}"
        );
        Ok(page)
    }

    /// Sends one command (to the page once attached) and waits for its
    /// result.
    async fn command(&mut self, method: &str, params: Value) -> anyhow::Result<Value> {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({ "id": id, "method": method, "params": params });
        if !self.session.is_empty() {
            message["sessionId"] = json!(self.session);
        }
        let (answer_tx, answer_rx) = oneshot::channel();
        self.waiting
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?
            .insert(id, answer_tx);
        let mut bytes = serde_json::to_vec(&message)?;
        bytes.push(0);
        self.commands
            .write_all(&bytes)
            .map_err(|e| anyhow::anyhow!("Chromium stopped reading commands ({method}): {e}"))?;
        let answer = tokio::time::timeout(COMMAND_TIMEOUT, answer_rx)
            .await
            .map_err(|_| {
                anyhow::anyhow!("Chromium did not answer {method} in {COMMAND_TIMEOUT:?}")
            })?
            .map_err(|_| anyhow::anyhow!("Chromium exited before answering {method}"))?;
        if let Some(error) = answer.get("error") {
            anyhow::bail!("Chromium refused {method}: {error}");
        }
        Ok(answer["result"].clone())
    }

    /// The page's document as it is now.
    pub async fn dom(&mut self) -> anyhow::Result<String> {
        let result = self
            .command(
                "Runtime.evaluate",
                json!({ "expression": "document.documentElement.outerHTML", "returnByValue": true }),
            )
            .await?;
        result["result"]["value"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow::anyhow!("the page gave no document: {result}"))
    }

    /// The document once `ready` says it is what the test waits for,
    /// polled each second for at most `timeout`; `what` names it in the
    /// error, which ends with the document as it last was.
    pub async fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        ready: impl Fn(&str) -> bool,
    ) -> anyhow::Result<String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // While the page navigates, its document may not be there
            // yet: a failed read is tried again.
            let seen = match self.dom().await {
                Ok(dom) if ready(&dom) => return Ok(dom),
                Ok(dom) => dom,
                Err(e) => format!("(no document: {e:#})"),
            };
            if tokio::time::Instant::now() > deadline {
                anyhow::bail!(
                    "the page did not show {what} within {timeout:?}; it showed:\n{seen}"
                );
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// A PNG of the page as it is now, written to `path`.
    pub async fn screenshot(&mut self, path: &std::path::Path) -> anyhow::Result<()> {
        let result = self
            .command("Page.captureScreenshot", json!({ "format": "png" }))
            .await?;
        let png = base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            result["data"].as_str().unwrap_or_default(),
        )?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, png)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    const PAGE: &str = "<!doctype html><div id=out></div><script>\
        (async () => { const r = await fetch('/stream'); const reader = r.body.getReader();\
        const text = new TextDecoder(); for (;;) { const { value, done } = await reader.read();\
        if (done) break; document.getElementById('out').append(text.decode(value)); } })();\
        </script>";

    /// A page whose stream never ends is read while it runs: what
    /// arrived so far is in its document (a one-shot load would wait
    /// for the stream to end).
    #[tokio::test]
    async fn a_page_that_streams_is_read_while_it_runs() {
        let chromium = crate::browser::Chromium::find().expect("Chromium");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port");
        let address = listener.local_addr().expect("an address");
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    let mut request = vec![0; 4096];
                    let n = stream.read(&mut request).await.unwrap_or(0);
                    let request = String::from_utf8_lossy(&request[..n]).into_owned();
                    if request.starts_with("GET /stream") {
                        let head = "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n";
                        let _ = stream.write_all(head.as_bytes()).await;
                        for i in 0.. {
                            let chunk = format!("event{i} ");
                            let framed = format!("{:x}\r\n{chunk}\r\n", chunk.len());
                            if stream.write_all(framed.as_bytes()).await.is_err() {
                                return;
                            }
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                    } else {
                        let answer = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\n\r\n{PAGE}",
                            PAGE.len()
                        );
                        let _ = stream.write_all(answer.as_bytes()).await;
                    }
                });
            }
        });
        let mut page = chromium
            .open(&format!("http://{address}/"))
            .await
            .expect("the page");
        let dom = page
            .wait_for("the fifth event", Duration::from_secs(60), |dom| {
                dom.contains("event4 ")
            })
            .await
            .expect("events");
        assert!(dom.contains("event0 event1 event2 event3 event4"), "{dom}");
    }
}
