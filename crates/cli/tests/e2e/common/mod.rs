//! Test harness: runs the real `coffer` binary as a server on loopback with
//! its own data dir, root key and HOME (so CLI profiles stay in the test's
//! temp dir), and runs the CLI and real NBD clients against it.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use std::io::{Read, Write};
use std::net::TcpStream;

use serde_json::Value;

/// A user of a new tenant: `name`, Owner of that tenant's account
/// `TENANT-main`, with a token of a day. (account id, principal id, token)
pub fn other_tenant_owner(s: &Server, tenant: &str, name: &str) -> (String, String, String) {
    let id = |v: &Value, p: &str| v.pointer(p).unwrap().as_str().unwrap().to_string();
    let t = id(&s.cli(&["tenant", "create", "--name", tenant]), "/id");
    let acct = id(
        &s.cli(&[
            "account",
            "create",
            "--name",
            &format!("{tenant}-main"),
            "--tenant",
            &t,
        ]),
        "/id",
    );
    let p = id(
        &s.cli(&[
            "principal",
            "create",
            "--name",
            name,
            "--account",
            &acct,
            "--role",
            "Owner",
            "--scope",
            &acct,
        ]),
        "/principal/id",
    );
    let token = id(
        &s.cli(&["token", "create", "--principal", &p, "--expires-in", "1d"]),
        "/secret",
    );
    (acct, p, token)
}

/// Run a future on a runtime of its own (the tests are synchronous).
pub fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// Fail (never skip) when a required tool is missing.
pub fn require(tool: &str, package: &str) {
    let ok = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    let how = if package.starts_with("pip ") {
        package.to_string()
    } else {
        format!("apt-get install {package}")
    };
    assert!(ok, "`{tool}` is required by this test: {how}");
}

/// A running server and the environment to talk to it.
pub struct Server {
    pub dir: tempfile::TempDir,
    pub child: Option<Child>,
    pub api: String,
    pub nbd: String,
    /// The metadata store of this run's backend (SQLite in the data dir, or
    /// a fresh PostgreSQL database): see `coffer-testkit`.
    pub meta: coffer_testkit::TestMetadata,
    /// The object store of this run's backend (data dir, or an S3 bucket).
    pub store: coffer_testkit::TestStore,
    /// Arguments and environment every launch of this server gets.
    pub fixed_args: Vec<String>,
    pub fixed_env: Vec<(String, String)>,
}

impl Server {
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }
    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }
    pub fn root_key(&self) -> PathBuf {
        self.dir.path().join("keys/root.key")
    }
    pub fn scratch(&self) -> PathBuf {
        let p = self.dir.path().join("scratch");
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    /// Start a server on a new data dir.
    pub fn start() -> Self {
        Self::start_with(&[], &[])
    }

    /// Start a server on a new data dir with extra arguments and
    /// environment, kept for every relaunch.
    pub fn start_with(args: &[&str], env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let meta = coffer_testkit::TestMetadata::new(&dir.path().join("data"));
        Self::start_on(dir, meta, args, env)
    }

    /// Start the first node of a deployment that several nodes will share:
    /// its metadata is PostgreSQL in every test pass (SQLite serves one
    /// node), its objects this pass's store.
    pub fn start_first_node(args: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        Self::start_on(dir, coffer_testkit::TestMetadata::postgres(), args, &[])
    }

    /// Start another node of this server's deployment, with its own data
    /// dir, HOME and node name, on the same metadata, object store and root
    /// key (copied, as an operator would give every node the root key).
    pub fn start_peer(&self, args: &[&str]) -> Self {
        assert!(
            self.meta.is_external(),
            "nodes can only share a network metadata store"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::create_dir_all(dir.path().join("keys")).unwrap();
        std::fs::create_dir_all(dir.path().join("home")).unwrap();
        std::fs::copy(self.root_key(), dir.path().join("keys/root.key")).unwrap();
        // The admin token, for this node's CLI profile (the harness's own
        // copy, kept beside the data dir, never in it).
        std::fs::copy(
            self.dir.path().join("admin.token"),
            dir.path().join("admin.token"),
        )
        .unwrap();
        // And the deployment CA its profile trusts, under TLS.
        if let Ok(ca) = std::fs::read(self.dir.path().join("ca.pem")) {
            std::fs::write(dir.path().join("ca.pem"), ca).unwrap();
        }
        let store = match self.store.url() {
            Some(url) => url.to_string(),
            None => self.data_dir().join("objects").display().to_string(),
        };
        let mut fixed_args = vec!["--store".to_string(), store];
        fixed_args.extend(args.iter().map(|a| (*a).to_string()));
        let mut s = Server {
            dir,
            child: None,
            api: String::new(),
            nbd: String::new(),
            meta: coffer_testkit::TestMetadata::shared(self.meta.url()),
            store: coffer_testkit::TestStore::none(),
            fixed_args,
            fixed_env: self
                .store
                .env()
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        s.launch(&[]);
        s
    }

    fn start_on(
        dir: tempfile::TempDir,
        meta: coffer_testkit::TestMetadata,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        std::fs::create_dir_all(dir.path().join("home")).unwrap();
        let store = coffer_testkit::TestStore::new();
        let mut fixed_args: Vec<String> = Vec::new();
        let own_store = args.contains(&"--store");
        if let Some(url) = store.url().filter(|_| !own_store) {
            fixed_args.extend(["--store".to_string(), url.to_string()]);
        }
        fixed_args.extend(args.iter().map(|a| (*a).to_string()));
        let mut fixed_env: Vec<(String, String)> =
            (if own_store { Vec::new() } else { store.env() })
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        fixed_env.extend(
            env.iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string())),
        );
        let mut s = Server {
            dir,
            child: None,
            api: String::new(),
            nbd: String::new(),
            meta,
            store,
            fixed_args,
            fixed_env,
        };
        s.launch(&[]);
        s
    }

    /// The `coffer serve` command a launch runs (output not yet directed).
    pub fn serve_command(&self, extra: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_coffer"));
        cmd.arg("serve").arg("--data-dir").arg(self.data_dir());
        // A server with its root key in an HSM gets no key file (serve
        // refuses both at once).
        if !self.uses_root_key_uri(extra) {
            cmd.arg("--root-key-file").arg(self.root_key());
        }
        cmd.args(["--listen", "127.0.0.1:0", "--nbd-listen", "127.0.0.1:0"])
            .arg("--metadata")
            .arg(self.meta.url())
            .args(&self.fixed_args)
            .args(extra)
            .envs(self.fixed_env.iter().map(|(k, v)| (k, v)))
            .env("HOME", self.home())
            .env("XDG_CONFIG_HOME", self.home().join(".config"))
            .env("XDG_DATA_HOME", self.home().join(".local/share"))
            .env_remove("COFFER_PROFILE")
            .env_remove("COFFER_TOKEN")
            .env_remove("COFFER_ENDPOINT")
            .env_remove("COFFER_ROOT_PASSPHRASE");
        cmd
    }

    /// (Re)start the server process on the same data dir.
    pub fn launch(&mut self, extra: &[&str]) {
        assert!(
            self.child.is_none(),
            "launch: the previous server process is still running; stop() or kill9() it first"
        );
        let mut cmd = self.serve_command(extra);
        cmd.stdout(Stdio::piped()).stderr(Stdio::from(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.dir.path().join("server.log"))
                .unwrap(),
        ));
        let mut child = cmd.spawn().expect("spawn coffer serve");
        let stdout = child.stdout.take().unwrap();
        // The server's stdout is kept too, in `server.out` (its stderr, the
        // log, goes to `server.log`).
        let mut out_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.out"))
            .unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut api = None;
            let mut nbd = None;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = writeln!(out_file, "{line}");
                if let Some(a) = line.strip_prefix("Coffer API listening on ") {
                    api = Some(a.trim().to_string());
                }
                if let Some(a) = line.strip_prefix("NBD listening on ") {
                    nbd = Some(a.trim().to_string());
                }
                if let (Some(a), Some(n)) = (&api, &nbd) {
                    let _ = tx.send((a.clone(), n.clone()));
                    api = None;
                }
            }
        });
        let (api, nbd) = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| {
                panic!(
                    "server did not start; log:\n{}",
                    std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
                )
            });
        if self.meta.is_external() {
            assert!(
                !self.data_dir().join("meta.sqlite").exists(),
                "the server must use the PostgreSQL metadata it was given"
            );
        }
        self.api = api;
        self.nbd = nbd;
        self.child = Some(child);
        // A new deployment's server saves its admin token in a CLI profile
        // and nowhere else: the harness keeps its own copy beside the data
        // dir, then points the default profile at this (possibly new) port.
        let cfg = self.home().join(".config/coffer/config.toml");
        let out = std::fs::read_to_string(self.dir.path().join("server.out")).unwrap_or_default();
        if let Some(profile) = out
            .lines()
            .rev()
            .find_map(|l| l.split("its token is in the CLI profile '").nth(1))
            .and_then(|rest| rest.split('\'').next())
        {
            let text = std::fs::read_to_string(&cfg).expect("the CLI profiles the server wrote");
            let profiles: toml::Table = toml::from_str(&text).unwrap();
            let token = profiles["profiles"][profile]["token"].as_str().unwrap();
            std::fs::write(self.dir.path().join("admin.token"), token).unwrap();
            // The deployment CA the server trusts its CLI with (under TLS).
            if let Some(ca) = profiles["profiles"][profile].get("ca_cert") {
                std::fs::write(self.dir.path().join("ca.pem"), ca.as_str().unwrap()).unwrap();
            }
        }
        let token = self.admin_token();
        std::fs::create_dir_all(cfg.parent().unwrap()).unwrap();
        let mut default = toml::Table::new();
        default.insert("endpoint".into(), self.api.clone().into());
        default.insert("token".into(), token.trim().into());
        if let Ok(ca) = std::fs::read_to_string(self.dir.path().join("ca.pem")) {
            default.insert("ca_cert".into(), ca.into());
        }
        let mut profiles = toml::Table::new();
        profiles.insert("default".into(), default.into());
        let mut top = toml::Table::new();
        top.insert("profiles".into(), profiles.into());
        std::fs::write(&cfg, toml::to_string(&top).unwrap()).unwrap();
    }

    /// Whether this launch names its root key by a PKCS#11 URI.
    pub fn uses_root_key_uri(&self, extra: &[&str]) -> bool {
        self.fixed_args
            .iter()
            .map(String::as_str)
            .chain(extra.iter().copied())
            .any(|a| a == "--root-key-uri" || a.starts_with("--root-key-uri="))
            || self
                .fixed_env
                .iter()
                .any(|(k, _)| k == "COFFER_ROOT_KEY_URI")
    }

    /// kill -9 the server, and check that the kill is what ended it: the
    /// process was still running when the signal came (it had not exited or
    /// crashed on its own), and its log holds no panic.
    pub fn kill9(&mut self) {
        let mut c = self
            .child
            .take()
            .expect("kill9: no server process is running");
        // A process that already exited is a zombie until waited for: the
        // signal then changes nothing and `wait` reports its own exit.
        c.kill().expect("send SIGKILL to the server");
        let status = c.wait().expect("wait for the killed server");
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9),
            "the server was not running when it was killed: it had exited with {status}; log:\n{}",
            self.log_tail()
        );
        self.assert_no_panic();
    }

    /// Whether the server process is still running (not exited).
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => c.try_wait().expect("poll the server process").is_none(),
            None => false,
        }
    }

    /// The server's log (its stderr, across every launch).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// The last lines of the server's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Fail the test if the server's log shows a panic (a task that
    /// panicked leaves the process running, so only its log tells).
    pub fn assert_no_panic(&self) {
        let log = self.log();
        let panics: Vec<&str> = log.lines().filter(|l| l.contains("panicked")).collect();
        assert!(
            panics.is_empty(),
            "the server panicked:\n{}\nlog:\n{}",
            panics.join("\n"),
            self.log_tail()
        );
    }

    /// The deployment admin's token (the harness's copy of what the server
    /// saved in the CLI profile at its first start).
    pub fn admin_token(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("admin.token"))
            .expect("the admin token: the server's first start announces the profile holding it")
            .trim()
            .to_string()
    }

    /// Run the CLI with the test's HOME; returns the output.
    pub fn cli_raw(&self, args: &[&str]) -> Output {
        self.cli_raw_env(args, &[])
    }

    /// Run the CLI with the test's HOME and `env`; returns the output.
    pub fn cli_raw_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_coffer"))
            .args(args)
            .env("HOME", self.home())
            .env("XDG_CONFIG_HOME", self.home().join(".config"))
            .env_remove("COFFER_PROFILE")
            .env_remove("COFFER_TOKEN")
            .env_remove("COFFER_ENDPOINT")
            .env_remove("COFFER_CA_CERT")
            .envs(env.iter().copied())
            .output()
            .expect("run coffer")
    }

    /// Run the CLI with `--output json`, expect success, parse the JSON.
    pub fn cli(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.extend(["--output", "json"]);
        let out = self.cli_raw(&a);
        assert!(
            out.status.success(),
            "coffer {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "coffer {args:?}: bad JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// Run the CLI expecting failure; returns stderr.
    pub fn cli_err(&self, args: &[&str]) -> String {
        let out = self.cli_raw(args);
        assert!(
            !out.status.success(),
            "coffer {args:?} should have failed but printed {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).to_string()
    }

    pub fn create_disk(&self, name: &str, size: &str, zone: &str) -> String {
        self.cli(&[
            "disk", "create", "--name", name, "--size", size, "--zone", zone,
        ])["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// This server's S3 bucket, opened from the test (`None`: local store).
    fn s3(&self) -> Option<coffer_store::S3Store> {
        self.store.url().map(|url| {
            coffer_store::S3Store::open_with(
                coffer_store::S3Location::parse(url).unwrap(),
                Some(coffer_testkit::S3_TEST_KEY),
            )
            .unwrap()
        })
    }

    /// The object store this server uses, opened from the test.
    pub fn object_store(&self) -> std::sync::Arc<dyn coffer_store::ObjectStore> {
        match self.s3() {
            Some(s3) => std::sync::Arc::new(s3),
            None => std::sync::Arc::new(
                // Read-only use from the test: no free-file pool.
                coffer_store::LocalStore::open_with_pool(self.data_dir().join("objects"), 0)
                    .unwrap(),
            ),
        }
    }

    /// Every stored chunk object: (key, bytes).
    pub fn objects(&self) -> Vec<(String, Vec<u8>)> {
        let store = self.object_store();
        block_on(async move {
            let mut out = Vec::new();
            let mut keys = store.list("chunks/").await.unwrap();
            keys.extend(store.list("objects/").await.unwrap());
            for k in keys {
                let b = store.get(&k).await.unwrap();
                out.push((k, b.to_vec()));
            }
            out
        })
    }

    /// Total bytes of stored chunk objects.
    pub fn stored_bytes(&self) -> u64 {
        match self.s3() {
            None => {
                du(&self.data_dir().join("objects/chunks"))
                    + du(&self.data_dir().join("objects/objects"))
            }
            Some(s3) => block_on(async move {
                s3.usage("chunks/").await.unwrap().1 + s3.usage("objects/").await.unwrap().1
            }),
        }
    }

    /// Replace a stored object's bytes behind the server's back (tamper).
    pub fn overwrite_object(&self, key: &str, bytes: Vec<u8>) {
        if self.store.url().is_none() {
            std::fs::write(self.data_dir().join("objects").join(key), bytes).unwrap();
            return;
        }
        let store = self.object_store();
        let key = key.to_string();
        block_on(async move {
            store.delete(&key).await.unwrap();
            store.put(&key, bytes.into()).await.unwrap();
        });
    }

    /// Delete a stored object behind the server's back.
    pub fn delete_object(&self, key: &str) {
        if self.store.url().is_none() {
            std::fs::remove_file(self.data_dir().join("objects").join(key)).unwrap();
            return;
        }
        let store = self.object_store();
        let key = key.to_string();
        block_on(async move { store.delete(&key).await.unwrap() });
    }

    pub fn attach(&self, disk: &str) -> String {
        self.cli(&["disk", "attach", disk])["uri"]
            .as_str()
            .unwrap()
            .to_string()
    }
}

/// How long a server may take to exit after SIGTERM (it flushes every open
/// disk first) before the test fails.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

impl Server {
    /// Stop the server as an operator would (SIGTERM), and check it: it must
    /// exit within [`STOP_TIMEOUT`] with status 0, and its log must hold no
    /// panic. Any of these failing fails the test.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let status = terminate(&mut c, STOP_TIMEOUT);
            assert!(
                status.is_some(),
                "the server did not exit within {STOP_TIMEOUT:?} of SIGTERM (killed); log:\n{}",
                self.log_tail()
            );
            let status = status.unwrap();
            assert!(
                status.success(),
                "the server exited with {status} on SIGTERM, not 0; log:\n{}",
                self.log_tail()
            );
        }
        self.assert_no_panic();
    }
}

/// SIGTERM `c` and wait up to `within` for it to exit; SIGKILL it after
/// that. Returns its exit status, or `None` if it had to be killed.
fn terminate(c: &mut Child, within: Duration) -> Option<std::process::ExitStatus> {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(c.id().to_string())
        .status();
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = c.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = c.kill();
    let _ = c.wait();
    None
}

impl Drop for Server {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // The test already failed: just end the process (a second
            // panic here would abort and hide the first).
            if let Some(mut c) = self.child.take() {
                terminate(&mut c, Duration::from_secs(10));
            }
            return;
        }
        self.stop();
    }
}

/// Run a command, expect success, return stdout.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// SHA-256 of a file, via sha256sum.
pub fn sha256(path: &Path) -> String {
    run(Command::new("sha256sum").arg(path))
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// Write `len` pseudo-random bytes (fixed seed) to `path`.
pub fn random_file(path: &Path, len: u64, seed: u64) {
    use std::io::Write;
    let mut f = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
    let mut x = seed | 1;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        for c in buf.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let b = x.to_le_bytes();
            c.copy_from_slice(&b[..c.len()]);
        }
        let n = usize::try_from(left).map_or(buf.len(), |l| l.min(buf.len()));
        f.write_all(&buf[..n]).unwrap();
        left -= n as u64;
    }
    f.flush().unwrap();
}

/// qemu-img convert a raw or qcow2 file into an NBD URI (raw target).
pub fn qemu_img_in(src: &Path, fmt: &str, uri: &str) {
    run(Command::new("qemu-img")
        .args(["convert", "-n", "-f", fmt, "-O", "raw"])
        .arg(src)
        .arg(uri));
}

/// qemu-img convert an NBD URI out to a raw file.
pub fn qemu_img_out(uri: &str, dst: &Path) {
    run(Command::new("qemu-img")
        .args(["convert", "-f", "raw", "-O", "raw", uri])
        .arg(dst));
}

/// Total bytes of regular files under `dir`.
pub fn du(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        if let Ok(rd) = std::fs::read_dir(&d) {
            for e in rd.flatten() {
                let m = e.metadata().unwrap();
                if m.is_dir() {
                    stack.push(e.path());
                } else {
                    total += m.len();
                }
            }
        }
    }
    total
}

/// A minimal HTTP/1.1 request; returns (status, body as JSON or string).
pub fn http(
    s: &Server,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, Value) {
    let addr = s.api.trim_start_matches("http://");
    let mut c = TcpStream::connect(addr).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(t) = token {
        req += &format!("Authorization: Bearer {t}\r\n");
    }
    if let Some(b) = body {
        req += &format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
            b.len()
        );
    } else {
        req += "Content-Length: 0\r\n\r\n";
    }
    c.write_all(req.as_bytes()).unwrap();
    let mut resp = String::new();
    c.read_to_string(&mut resp).unwrap();
    let status: u16 = resp[9..12].parse().unwrap();
    let body = resp.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
    // Chunked bodies: take the JSON object between the first '{' and last '}'.
    let json = match (body.find('{'), body.rfind('}')) {
        (Some(a), Some(b)) => {
            serde_json::from_str(&body[a..=b]).unwrap_or(Value::String(body.into()))
        }
        _ => Value::String(body.into()),
    };
    (status, json)
}

/// One command's completion in a [`QemuIo`] session.
#[derive(Debug, Clone)]
pub struct Done {
    /// What qemu-io printed for it (empty for a successful `flush`).
    pub output: String,
    /// When the test saw it complete.
    pub at: Instant,
}

impl Done {
    /// Whether qemu-io reported the command failed (`write failed: ...`),
    /// or ended without finishing it.
    pub fn failed(&self) -> bool {
        let o = self.output.to_lowercase();
        o.contains("failed") || o.starts_with("(qemu-io ended)")
    }
}

/// An interactive `qemu-io` on an NBD URI (write cache on: writes are
/// durable only once flushed), fed one command at a time: one
/// NBD connection that lives across commands, so writes can be left
/// unflushed, and the test sees each command complete when it does (qemu-io
/// prints its prompt after every command, and runs them in order).
///
/// Commands sent are queued and written to qemu-io's input one by one, each
/// once the one before has completed: qemu-io reads its input through stdio
/// and only looks again when the descriptor is readable, so lines written
/// ahead would sit in its buffer unread.
pub struct QemuIo {
    child: Child,
    feed: Option<std::sync::mpsc::Sender<String>>,
    rx: std::sync::mpsc::Receiver<Done>,
    /// Commands sent so far.
    pub sent: usize,
    /// Commands seen complete so far, in order.
    pub done: Vec<Done>,
}

const PROMPT: &str = "qemu-io> ";

/// How many commands qemu-io has completed, and whether it has ended.
type Progress = std::sync::Arc<(std::sync::Mutex<(usize, bool)>, std::sync::Condvar)>;

impl QemuIo {
    /// Open `uri` (raw) in a new qemu-io.
    pub fn open(uri: &str) -> Self {
        // stderr joins stdout, so an error lands in its command's output.
        // `-t writeback`: qemu-io's default cache mode is writethrough,
        // which makes every write durable before it is acknowledged (FUA or
        // a flush after it); here writes stay unflushed until a `flush`.
        let mut child = Command::new("sh")
            .arg("-c")
            .arg("exec qemu-io -t writeback -f raw \"$0\" 2>&1")
            .arg(uri)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn qemu-io");
        let mut stdin = child.stdin.take().unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let progress: Progress = std::sync::Arc::default();
        let (tx, rx) = std::sync::mpsc::channel();
        let reader_progress = progress.clone();
        std::thread::spawn(move || {
            let mark = |completed: usize, ended: bool| {
                let (m, cv) = &*reader_progress;
                *m.lock().unwrap() = (completed, ended);
                cv.notify_all();
            };
            let mut text = String::new();
            let mut prompts = 0usize;
            let mut buf = [0u8; 4096];
            loop {
                let n = match stdout.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                text.push_str(&String::from_utf8_lossy(&buf[..n]));
                // Everything between two prompts is one command's output;
                // what precedes the first prompt is start-up noise.
                while let Some(at) = text.find(PROMPT) {
                    let output: String = text[..at].to_string();
                    text.drain(..at + PROMPT.len());
                    prompts += 1;
                    if prompts > 1 {
                        let _ = tx.send(Done {
                            output,
                            at: Instant::now(),
                        });
                        mark(prompts - 1, false);
                    }
                }
            }
            // Output after the last prompt: a command qemu-io did not finish
            // (or start-up failed).
            if !text.trim().is_empty() {
                let _ = tx.send(Done {
                    output: format!("(qemu-io ended) {text}"),
                    at: Instant::now(),
                });
            }
            mark(prompts.saturating_sub(1), true);
        });
        let (feed, commands) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            let (m, cv) = &*progress;
            for (i, cmd) in commands.iter().enumerate() {
                // Wait until command i-1 has completed (or qemu-io ended).
                let mut g = m.lock().unwrap();
                while g.0 < i && !g.1 {
                    g = cv.wait(g).unwrap();
                }
                if g.1 {
                    return;
                }
                drop(g);
                if writeln!(stdin, "{cmd}")
                    .and_then(|()| stdin.flush())
                    .is_err()
                {
                    return;
                }
            }
            // Every command written and the sender dropped: dropping stdin
            // ends qemu-io's input (it reads the EOF after its last command).
        });
        QemuIo {
            child,
            feed: Some(feed),
            rx,
            sent: 0,
            done: Vec::new(),
        }
    }

    /// Queue a command without waiting for it.
    pub fn send(&mut self, cmd: &str) {
        self.feed
            .as_ref()
            .expect("qemu-io input still open")
            .send(cmd.to_string())
            .expect("qemu-io's feeder ended");
        self.sent += 1;
    }

    /// Wait up to `timeout` for the next command to complete.
    pub fn next(&mut self, timeout: Duration) -> Option<&Done> {
        let d = self.rx.recv_timeout(timeout).ok()?;
        self.done.push(d);
        self.done.last()
    }

    /// Take whatever completions have arrived, without waiting.
    pub fn poll(&mut self) {
        while let Ok(d) = self.rx.try_recv() {
            self.done.push(d);
        }
    }

    /// Wait (up to 60 s) until `n` commands have completed.
    pub fn wait_for(&mut self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.done.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                self.next(left).is_some(),
                "qemu-io: only {} of {n} commands completed within 60 s: {:?}",
                self.done.len(),
                self.done.last()
            );
        }
    }

    /// Send a command, wait for it, and expect it to succeed; returns its
    /// output.
    pub fn run(&mut self, cmd: &str) -> String {
        self.send(cmd);
        self.wait_for(self.sent);
        let d = &self.done[self.sent - 1];
        assert!(!d.failed(), "qemu-io `{cmd}` failed: {}", d.output);
        d.output.clone()
    }

    /// Close its input and wait (up to `timeout`) for qemu-io to exit,
    /// collecting every remaining completion. Returns its exit status, or
    /// `None` if it had to be killed (it hung).
    pub fn finish(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        drop(self.feed.take());
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(st) = self.child.try_wait().expect("poll qemu-io") {
                break Some(st);
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        // The reader ends at EOF, which follows the exit.
        while let Ok(d) = self.rx.recv_timeout(Duration::from_secs(5)) {
            self.done.push(d);
        }
        status
    }
}

impl Drop for QemuIo {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Every file under `dir`, recursively (hidden ones too).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

pub mod browser;
pub mod guest;

/// An object store for one region of a test's server, of this pass's
/// backend: a directory, or (S3 pass) a new bucket on the test S3 server,
/// reached directly or through a loopback [`Cut`] proxy that the test can
/// close to make the store unreachable.
pub struct RegionStore {
    /// The region's `store = …` value.
    pub url: String,
    dir: Option<PathBuf>,
    s3: Option<(coffer_testkit::TestS3, String)>,
    proxy: Option<Cut>,
}

impl RegionStore {
    /// A store under `dir` (local pass) or a fresh bucket (S3 pass); with
    /// `cuttable`, an S3 bucket is reached through a proxy [`Self::cut`]
    /// closes.
    pub fn new(dir: &Path, cuttable: bool) -> Self {
        if coffer_testkit::store_is_s3() {
            let server = coffer_testkit::TestS3::start();
            let direct = server.bucket();
            let (url, proxy) = if cuttable {
                let endpoint = server.endpoint().trim_start_matches("http://").to_string();
                let proxy = Cut::start(&endpoint);
                (
                    direct.replace(
                        &format!("endpoint=http://{endpoint}"),
                        &format!("endpoint=http://{}", proxy.addr),
                    ),
                    Some(proxy),
                )
            } else {
                (direct.clone(), None)
            };
            Self {
                url,
                dir: None,
                s3: Some((server, direct)),
                proxy,
            }
        } else {
            std::fs::create_dir_all(dir).unwrap();
            Self {
                url: dir.display().to_string(),
                dir: Some(dir.to_path_buf()),
                s3: None,
                proxy: None,
            }
        }
    }

    /// The store, opened from the test (directly, never through the proxy).
    pub fn open(&self) -> std::sync::Arc<dyn coffer_store::ObjectStore> {
        match (&self.s3, &self.dir) {
            (Some((_, url)), _) => std::sync::Arc::new(
                coffer_store::S3Store::open_with(
                    coffer_store::S3Location::parse(url).unwrap(),
                    Some(coffer_testkit::S3_TEST_KEY),
                )
                .unwrap(),
            ),
            (None, Some(dir)) => {
                std::sync::Arc::new(coffer_store::LocalStore::open_with_pool(dir, 0).unwrap())
            }
            (None, None) => unreachable!(),
        }
    }

    /// The keys of the data objects in the store.
    pub fn object_keys(&self) -> Vec<String> {
        let store = self.open();
        block_on(async move {
            let mut keys = store.list("chunks/").await.unwrap();
            keys.extend(store.list("objects/").await.unwrap());
            keys
        })
    }

    /// Make the store unreachable: its directory moved away and a plain
    /// file put in its place (every path under it fails, for root too), or
    /// its S3 proxy closed (connections refused).
    pub fn cut(&mut self) {
        if let Some(dir) = &self.dir {
            std::fs::rename(dir, dir.with_extension("away")).unwrap();
            std::fs::write(dir, b"not a directory").unwrap();
        }
        if let Some(p) = &mut self.proxy {
            p.close();
        }
    }

    /// Undo [`Self::cut`].
    pub fn restore(&mut self) {
        if let Some(dir) = &self.dir {
            std::fs::remove_file(dir).unwrap();
            std::fs::rename(dir.with_extension("away"), dir).unwrap();
        }
        if let Some(p) = &mut self.proxy {
            p.reopen();
        }
    }
}

/// A loopback TCP proxy to `target` that can be closed (its port then
/// refuses connections and its open connections are cut) and reopened on
/// the same port.
pub struct Cut {
    pub addr: String,
    target: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    conns: std::sync::Arc<std::sync::Mutex<Vec<TcpStream>>>,
    accept: Option<std::thread::JoinHandle<()>>,
}

impl Cut {
    pub fn start(target: &str) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut c = Self {
            addr: listener.local_addr().unwrap().to_string(),
            target: target.to_string(),
            stop: Default::default(),
            conns: Default::default(),
            accept: None,
        };
        c.serve(listener);
        c
    }

    fn serve(&mut self, listener: std::net::TcpListener) {
        use std::sync::atomic::Ordering;
        listener.set_nonblocking(true).unwrap();
        self.stop.store(false, Ordering::SeqCst);
        let (stop, conns, target) = (self.stop.clone(), self.conns.clone(), self.target.clone());
        self.accept = Some(std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let Ok((client, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                client.set_nonblocking(false).unwrap();
                let Ok(server) = TcpStream::connect(&target) else {
                    continue;
                };
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server.try_clone().unwrap(), client.try_clone().unwrap()),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
                let mut c = conns.lock().unwrap();
                c.push(client);
                c.push(server);
            }
        }));
    }

    /// Refuse new connections and cut the open ones.
    pub fn close(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.accept.take() {
            t.join().unwrap();
        }
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Accept again, on the same port.
    pub fn reopen(&mut self) {
        let listener = std::net::TcpListener::bind(&self.addr).unwrap();
        self.serve(listener);
    }
}

impl Drop for Cut {
    fn drop(&mut self) {
        self.close();
    }
}

/// Launch `cmd`, expect it to exit non-zero without ever listening; returns
/// its stderr.
pub fn expect_refused(s: &Server, name: &str, mut cmd: Command) -> String {
    let out_path = s.scratch().join(format!("{name}.out"));
    let err_path = s.scratch().join(format!("{name}.err"));
    let mut child = cmd
        .stdout(Stdio::from(std::fs::File::create(&out_path).unwrap()))
        .stderr(Stdio::from(std::fs::File::create(&err_path).unwrap()))
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{name}: the server did not exit; stdout:\n{}",
                std::fs::read_to_string(&out_path).unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = std::fs::read_to_string(&out_path).unwrap();
    let stderr = std::fs::read_to_string(&err_path).unwrap();
    assert!(!status.success(), "{name}: the server started\n{stdout}");
    assert!(
        !stdout.contains("listening"),
        "{name}: the server listened before failing:\n{stdout}"
    );
    stderr
}

/// The SHA-256 of a disk read whole through NBD (attached, read with
/// `qemu-img convert`, detached).
pub fn disk_sum(s: &Server, disk: &str) -> String {
    let uri = s.attach(disk);
    let out = s.scratch().join(format!("{disk}.raw"));
    qemu_img_out(&uri, &out);
    s.cli(&["disk", "detach", disk]);
    let sum = sha256(&out);
    std::fs::remove_file(&out).unwrap();
    sum
}
