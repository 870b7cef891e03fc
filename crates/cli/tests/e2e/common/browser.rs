//! The console's browser tests' harness: a chromedriver, headless Chromium
//! sessions, and steps (fill, submit and wait for the next page, read),
//! each page checked with axe-core before its screenshot is kept.

use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};

use super::require;

/// A chromedriver on a free loopback port, stopped when dropped.
pub struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    pub fn start() -> Self {
        require("chromium", "chromium");
        require("chromedriver", "chromium-driver");
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // Its own process group, so that dropping the driver also ends
        // every Chromium it started (a browser a failed test did not close,
        // and helper processes that outlive a closed one).
        let child = Command::new("chromedriver")
            .process_group(0)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    /// A new browser (its own profile: its own cookies).
    pub async fn browser(&self) -> Client {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-dev-shm-usage", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--window-size=1280,900"
                ]
            }),
        );
        ClientBuilder::rustls()
            .expect("rustls")
            .capabilities(caps)
            .connect(&self.url)
            .await
            .expect("a browser session from chromedriver")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where the screenshots go.
pub fn shots() -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console");
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// axe-core's script (npm; .ci/run installs it under
/// `~/.cache/coffer/axe`, or set `COFFER_AXE_DIR`).
pub fn axe_source() -> String {
    let dir = std::env::var("COFFER_AXE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/coffer/axe")
        });
    let path = dir.join("node_modules/axe-core/axe.min.js");
    std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}: this test needs axe-core: (cd {} && npm install axe-core@4.14.1), as .ci/run does",
            path.display(),
            dir.display()
        )
    })
}

/// Run axe-core in the page (WCAG 2 A and AA rules); fail on any serious
/// or critical violation, naming it and where.
pub async fn accessible(b: &Client, page: &str) {
    static AXE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let src = AXE.get_or_init(axe_source);
    b.execute(&format!("{src}\n;return null;"), vec![])
        .await
        .expect("load axe-core into the page");
    let found = b
        .execute_async(
            "const done = arguments[arguments.length - 1];
             axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}})
               .then(r => done(r.violations
                 .filter(v => v.impact === 'serious' || v.impact === 'critical')
                 .map(v => v.impact + ' ' + v.id + ': ' + v.help + ' at ' + v.nodes.map(n => n.target.join(' ')).join(', '))))
               .catch(e => done(['axe failed: ' + e]));",
            vec![],
        )
        .await
        .expect("axe-core ran");
    let found: Vec<String> = serde_json::from_value(found).unwrap();
    assert!(
        found.is_empty(),
        "{page}: accessibility violations:\n{}",
        found.join("\n")
    );
}

pub async fn shot(b: &Client, name: &str) {
    accessible(b, name).await;
    let png = b.screenshot().await.expect("screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    std::fs::write(shots().join(format!("{name}.png")), png).unwrap();
}

pub async fn text(b: &Client, css: &str) -> String {
    match find(b, css).await {
        Ok(e) => e.text().await.unwrap(),
        Err(e) => {
            let url = b.current_url().await.unwrap();
            let page = b.find(Locator::Css("body")).await.unwrap().text().await;
            panic!("no {css} on {url}: {e}\n{page:?}")
        }
    }
}

/// The element, waited for (a click that submits a form returns before
/// the next page has loaded).
pub async fn find(
    b: &Client,
    css: &str,
) -> Result<fantoccini::elements::Element, fantoccini::error::CmdError> {
    b.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css(css))
        .await
}

pub async fn fill(b: &Client, css: &str, value: &str) {
    let e = find(b, css)
        .await
        .unwrap_or_else(|e| panic!("no {css} on the page: {e}"));
    e.clear().await.unwrap();
    e.send_keys(value).await.unwrap();
}

/// Click a control that loads another page (a form's button, a link), and
/// wait until the next page is there: a click returns before it loads.
pub async fn submit(b: &Client, css: &str) {
    b.execute("window.__left = true; return null;", vec![])
        .await
        .unwrap();
    click(b, css).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = b
            .execute("return window.__left === true;", vec![])
            .await
            .ok();
        if left == Some(serde_json::Value::Bool(false)) {
            break;
        }
        assert!(Instant::now() < deadline, "{css} did not load a page");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn click(b: &Client, css: &str) {
    find(b, css)
        .await
        .unwrap_or_else(|e| panic!("no {css} on the page: {e}"))
        .click()
        .await
        .unwrap();
}

/// Wait (10 s at most) until the browser is at a path starting with
/// `prefix`; the path.
pub async fn at(b: &Client, prefix: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let path = b.current_url().await.unwrap().path().to_string();
        if path.starts_with(prefix) {
            return path;
        }
        assert!(
            Instant::now() < deadline,
            "still at {path}, not at {prefix}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn body(b: &Client) -> String {
    text(b, "body").await
}

pub async fn sign_in(b: &Client, api: &str, token: &str) {
    b.goto(&format!("{api}/console/")).await.unwrap();
    let url = b.current_url().await.unwrap();
    assert!(
        url.path() == "/console/sign-in",
        "a browser without a session is sent to sign in: {url}"
    );
    fill(b, "#token", token).await;
    submit(b, "button[type=submit]").await;
    assert_eq!(at(b, "/console/").await, "/console/");
}

/// The session cookie the browser holds (WebDriver sees HttpOnly cookies).
pub async fn session_cookie(b: &Client) -> String {
    let cookies = b.get_all_cookies().await.unwrap();
    let c = cookies
        .iter()
        .find(|c| c.name() == "coffer_session")
        .expect("a session cookie");
    assert_eq!(c.http_only(), Some(true), "the session cookie is HttpOnly");
    assert_eq!(
        format!("{:?}", c.same_site()),
        "Some(Strict)",
        "the session cookie is SameSite=Strict"
    );
    format!("coffer_session={}", c.value())
}
