//! Headless chromium for the web view's tests: Debian's `chromium` driven over the
//! DevTools protocol (chromiumoxide), with waits, screenshots and the standalone's tokened
//! address. A test that cannot start chromium prints SKIPPED with the reason.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use chromiumoxide::{
    browser::{Browser, BrowserConfig},
    page::ScreenshotParams,
    Page,
};
use futures::StreamExt;
use serde_json::Value;

use super::standalone::Standalone;

/// Debian's chromium (`cargo xtask setup` installs it).
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// Where the screenshots go: `target/tracery-ui-screenshots/`.
pub fn screenshots() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target directory")
        .join("tracery-ui-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A headless chromium and the task that runs its DevTools connection.
pub struct Chrome {
    browser: Browser,
    handler: tokio::task::JoinHandle<()>,
    _profile: PathBuf,
}

impl Chrome {
    /// Starts chromium, or says why it cannot (the caller prints SKIPPED).
    pub async fn launch() -> Result<Self, String> {
        if !std::path::Path::new(CHROMIUM).exists() {
            return Err(format!(
                "{CHROMIUM} is not installed (`cargo xtask setup` installs Debian's chromium)"
            ));
        }
        let profile = std::env::temp_dir().join(format!(
            "tracery-ui-chromium-{}-{}",
            std::process::id(),
            Instant::now().elapsed().as_nanos()
        ));
        let config = BrowserConfig::builder()
            .chrome_executable(CHROMIUM)
            .new_headless_mode()
            // Root cannot use chromium's sandbox; the pages are our own.
            .no_sandbox()
            .user_data_dir(&profile)
            .viewport(None)
            .window_size(1440, 1000)
            .args([
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--hide-scrollbars",
            ])
            .launch_timeout(Duration::from_secs(30))
            .build()?;
        let (browser, mut handler) = Browser::launch(config)
            .await
            .map_err(|e| format!("chromium did not start: {e}"))?;
        let handler = tokio::spawn(async move { while handler.next().await.is_some() {} });
        Ok(Self {
            browser,
            handler,
            _profile: profile,
        })
    }

    pub async fn page(&self, url: &str) -> Page {
        let page = self.browser.new_page(url).await.expect("open a page");
        page.wait_for_navigation().await.expect("page load");
        page
    }

    pub async fn close(mut self) {
        let _ = self.browser.close().await;
        let _ = self.browser.wait().await;
        self.handler.abort();
        let _ = std::fs::remove_dir_all(&self._profile);
    }
}

/// The value of `expr` once it is truthy, polling for up to `within`.
pub async fn wait_js(page: &Page, expr: &str, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let v: Value = page
            .evaluate(expr)
            .await
            .ok()
            .and_then(|r| r.into_value().ok())
            .unwrap_or(Value::Null);
        let truthy =
            !matches!(&v, Value::Null | Value::Bool(false)) && v != Value::String(String::new());
        if truthy {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{expr} still false after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn text(page: &Page, selector: &str) -> String {
    let expr = format!(
        "(document.querySelector({s}) || {{}}).innerText || ''",
        s = serde_json::to_string(selector).unwrap()
    );
    page.evaluate(expr.as_str())
        .await
        .unwrap()
        .into_value()
        .unwrap_or_default()
}

pub async fn shot(page: &Page, name: &str) {
    let path = screenshots().join(format!("{name}.png"));
    page.save_screenshot(ScreenshotParams::builder().full_page(true).build(), &path)
        .await
        .expect("screenshot");
    println!("screenshot: {}", path.display());
}

/// The tokened address the standalone printed: `http://127.0.0.1:PORT/?token=...`.
pub fn ui_url(t: &Standalone) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = std::fs::read_to_string(&t.log).unwrap_or_default();
        if let Some(line) = log
            .lines()
            .find_map(|l| l.strip_prefix("tracery web view: "))
        {
            return line.trim().to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "the standalone printed no web view address: {log}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `http://HOST:PORT` of a tokened address.
pub fn origin(url: &str) -> String {
    url.split('/').take(3).collect::<Vec<_>>().join("/")
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}
