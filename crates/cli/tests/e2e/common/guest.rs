//! A real Linux guest on a Coffer disk: boots `qemu-system-x86_64` (TCG, no
//! network) with a Debian kernel and a busybox initramfs, the disk at an
//! NBD URI as `/dev/vda`, runs a shell script in the guest and returns what
//! it printed.
//!
//! What it needs comes from `.ci/guest-setup.sh` (run it as root on a fresh
//! machine): qemu-system-x86_64 and the kernel unpacked under
//! `$COFFER_GUEST_DIR` (default `/opt/coffer-guest`), busybox-static and
//! e2fsprogs. A missing piece fails the test (never skips it). Overrides:
//! `COFFER_GUEST_QEMU` (the qemu binary), `COFFER_GUEST_KERNEL` (a vmlinux
//! or vmlinuz; by default the uncompressed `vmlinux-<version>` the setup
//! extracts, booted by its PVH entry, which saves the ~10 s the bzImage
//! spends decompressing itself under TCG), `COFFER_GUEST_MODULES` (its
//! `lib/modules/<version>` dir), `COFFER_GUEST_BUSYBOX` (a statically
//! linked busybox).
//!
//! How a boot goes: the initramfs (written here as cpio "newc", so device
//! nodes need no root) is a base archive (busybox, the modules the disk
//! needs, decompressed, and `/init`), built once per test process and kept
//! in memory, followed by a small per-boot archive holding the caller's
//! script as `/script.sh` and a marker unique to the boot (the kernel
//! unpacks concatenated cpio archives in order); the two are written to
//! the boot's own temp dir. So the script reaches the guest byte for byte,
//! without the quoting and length limits of the kernel command line. `/init` loads the modules, mounts `/dev/vda` (ext4) on
//! `/mnt`, silences the kernel log, prints `<marker> BEGIN`, runs the script
//! with `sh` in `/mnt` (stdin `/dev/null`, stderr joined to stdout), prints
//! `<marker> END <status>`, unmounts, syncs and powers off, so qemu exits by
//! itself (`-no-reboot`, and `panic=-1` turns a kernel panic into an exit
//! too). The guest's console is its first serial port, written by qemu to
//! a file the host reads after qemu exits.
//!
//! The script's output passes through the guest's serial tty: it must be
//! text (`\r` is removed on the way back; print binary as hex or through
//! `sha256sum`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::{require, run};

/// What to run to get the pieces this module needs.
const SETUP: &str = "bash .ci/guest-setup.sh";

/// The modules `/init` loads, in this order: virtio PCI, the virtio block
/// driver, ext4 and what it depends on (all modules in Debian's kernel).
pub const MODULES: &[&str] = &[
    "virtio_ring",
    "virtio",
    "virtio_pci_legacy_dev",
    "virtio_pci_modern_dev",
    "virtio_pci",
    "virtio_blk",
    "crc16",
    "mbcache",
    "jbd2",
    "crc32c_generic",
    "ext4",
];

/// The guest's memory.
const MEMORY: &str = "512M";

/// Where the pieces of a guest are.
#[derive(Debug)]
pub struct GuestTools {
    /// qemu-system-x86_64.
    pub qemu: PathBuf,
    /// Its `-L` firmware and option-ROM dirs (SeaBIOS, iPXE, qemu's own).
    pub firmware: Vec<PathBuf>,
    /// The kernel image.
    pub kernel: PathBuf,
    /// Its modules (`lib/modules/<version>`).
    pub modules: PathBuf,
    /// A statically linked busybox.
    pub busybox: PathBuf,
}

fn missing(what: &str, path: &Path, var: &str) -> ! {
    panic!(
        "the guest tests need {what}, not found at {}: run `{SETUP}` as root \
         (or point {var} at one)",
        path.display()
    )
}

fn env_path(var: &str) -> Option<PathBuf> {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// Locate qemu, the kernel, its modules and busybox (once per process);
/// panics, naming `.ci/guest-setup.sh`, when one is missing.
pub fn tools() -> &'static GuestTools {
    static TOOLS: OnceLock<GuestTools> = OnceLock::new();
    TOOLS.get_or_init(|| {
        let dir = env_path("COFFER_GUEST_DIR").unwrap_or_else(|| "/opt/coffer-guest".into());

        let qemu = env_path("COFFER_GUEST_QEMU")
            .unwrap_or_else(|| dir.join("qemu/usr/bin/qemu-system-x86_64"));
        if !qemu.is_file() {
            missing("qemu-system-x86_64", &qemu, "COFFER_GUEST_QEMU");
        }
        // The unpacked package's own data dir (<prefix>/bin/.. /share/qemu)
        // and the firmware packages it would depend on.
        let own = qemu
            .parent()
            .and_then(Path::parent)
            .map(|p| p.join("share/qemu"));
        let firmware: Vec<PathBuf> = [
            Some(PathBuf::from("/usr/share/seabios")),
            Some(PathBuf::from("/usr/lib/ipxe/qemu")),
            own,
        ]
        .into_iter()
        .flatten()
        .filter(|p| p.is_dir())
        .collect();
        let bios_found = firmware.iter().any(|d| d.join("bios-256k.bin").is_file());
        if !bios_found {
            missing(
                "SeaBIOS (bios-256k.bin)",
                Path::new("/usr/share/seabios"),
                "COFFER_GUEST_QEMU",
            );
        }

        // The uncompressed vmlinux-<version> the setup extracts (booted
        // directly, by its PVH entry) when there is one: under TCG the
        // bzImage's own decompression takes longer than the rest of the
        // boot. Else the vmlinuz-<version>.
        let kernel = env_path("COFFER_GUEST_KERNEL").unwrap_or_else(|| {
            let boot = dir.join("kernel/boot");
            let named = |prefix: &str| {
                let mut found: Vec<PathBuf> = std::fs::read_dir(&boot)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| {
                        p.file_name()
                            .and_then(|n| n.to_str())
                            .is_some_and(|n| n.starts_with(prefix))
                    })
                    .collect();
                found.sort();
                found.pop()
            };
            named("vmlinux-")
                .or_else(|| named("vmlinuz-"))
                .unwrap_or_else(|| {
                    missing("a kernel", &boot.join("vmlinuz-*"), "COFFER_GUEST_KERNEL")
                })
        });
        if !kernel.is_file() {
            missing("a kernel", &kernel, "COFFER_GUEST_KERNEL");
        }
        let modules = env_path("COFFER_GUEST_MODULES").unwrap_or_else(|| {
            let name = kernel.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let version = name
                .strip_prefix("vmlinux-")
                .or_else(|| name.strip_prefix("vmlinuz-"))
                .unwrap_or("");
            dir.join("kernel/lib/modules").join(version)
        });
        if !modules.join("kernel").is_dir() {
            missing("the kernel's modules", &modules, "COFFER_GUEST_MODULES");
        }

        let busybox = env_path("COFFER_GUEST_BUSYBOX").unwrap_or_else(|| "/bin/busybox".into());
        if !busybox.is_file() {
            missing("busybox (busybox-static)", &busybox, "COFFER_GUEST_BUSYBOX");
        }
        // The initramfs has no libc: a dynamically linked busybox (Debian's
        // `busybox` package rather than `busybox-static`) cannot run there.
        let ldd = Command::new("ldd").arg(&busybox).output();
        if let Ok(o) = ldd {
            let text = String::from_utf8_lossy(&o.stdout);
            assert!(
                !o.status.success() || text.contains("statically linked"),
                "{} is dynamically linked; the guest needs busybox-static: run `{SETUP}` as root \
                 (or point COFFER_GUEST_BUSYBOX at a static busybox)",
                busybox.display()
            );
        }

        GuestTools {
            qemu,
            firmware,
            kernel,
            modules,
            busybox,
        }
    })
}

/// Fail now (before a server is started) if a guest cannot be booted here.
pub fn require_guest() {
    tools();
    require("mkfs.ext4", "e2fsprogs");
    require("debugfs", "e2fsprogs");
}

/// A cpio archive in the "newc" format the kernel unpacks as initramfs.
#[derive(Default)]
struct Cpio {
    buf: Vec<u8>,
    ino: u32,
}

impl Cpio {
    fn pad4(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }

    fn entry(&mut self, name: &str, mode: u32, rdev: (u32, u32), data: &[u8]) {
        self.ino += 1;
        let nlink = if mode & 0o170_000 == 0o040_000 { 2 } else { 1 };
        let size = u32::try_from(data.len()).expect("initramfs file under 4 GiB");
        let namesize = u32::try_from(name.len() + 1).unwrap();
        let fields = [
            self.ino, mode, 0, 0, nlink, 0, size, 0, 0, rdev.0, rdev.1, namesize, 0,
        ];
        self.buf.extend_from_slice(b"070701");
        for f in fields {
            self.buf.extend_from_slice(format!("{f:08X}").as_bytes());
        }
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.push(0);
        self.pad4();
        self.buf.extend_from_slice(data);
        self.pad4();
    }

    fn dir(&mut self, name: &str) {
        self.entry(name, 0o040_755, (0, 0), &[]);
    }

    fn file(&mut self, name: &str, mode: u32, data: &[u8]) {
        self.entry(name, 0o100_000 | mode, (0, 0), data);
    }

    fn char_dev(&mut self, name: &str, major: u32, minor: u32) {
        self.entry(name, 0o020_600, (major, minor), &[]);
    }

    /// End the archive (padded to 512 bytes, so another may follow).
    fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, (0, 0), &[]);
        while !self.buf.len().is_multiple_of(512) {
            self.buf.push(0);
        }
        self.buf
    }
}

/// The guest's `/init` (busybox sh). `/marker` and `/script.sh` come from
/// the per-boot archive.
const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mark=$(cat /marker)
fail() {
  echo "$mark FAIL: $*"
  sync
  poweroff -f
  sleep 60
}
for m in $(cat /modules); do
  insmod "/lib/modules/$m.ko" || fail "insmod $m"
done
i=0
while [ ! -b /dev/vda ]; do
  i=$((i + 1))
  [ "$i" -le 30 ] || fail "no /dev/vda after 30 s"
  sleep 1
done
mount -t ext4 /dev/vda /mnt || fail "mount -t ext4 /dev/vda /mnt"
dmesg -n 1
echo "$mark BEGIN"
(cd /mnt && sh /script.sh </dev/null 2>&1)
rc=$?
echo "$mark END $rc"
cd /
umount /mnt || fail "umount /mnt"
sync
poweroff -f
sleep 60
"#;

/// Every module file under `dir`, by name (`ext4` for `ext4.ko.xz`).
fn module_files(dir: &Path) -> HashMap<String, PathBuf> {
    let mut out = HashMap::new();
    for p in super::files_under(dir) {
        let Some(name) = p.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        for ext in [".ko", ".ko.xz", ".ko.zst", ".ko.gz"] {
            if let Some(stem) = name.strip_suffix(ext) {
                out.insert(stem.to_string(), p.clone());
            }
        }
    }
    out
}

/// A module's bytes, decompressed (busybox insmod may not read xz).
fn module_bytes(path: &Path) -> Vec<u8> {
    let name = path.to_string_lossy();
    let tool = if name.ends_with(".xz") {
        "xz"
    } else if name.ends_with(".zst") {
        "zstd"
    } else if name.ends_with(".gz") {
        "gzip"
    } else {
        return std::fs::read(path).unwrap_or_else(|e| panic!("read {name}: {e}"));
    };
    require(tool, tool);
    let out = Command::new(tool)
        .arg("-dc")
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("{tool} -dc {name}: {e}"));
    assert!(
        out.status.success(),
        "{tool} -dc {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The base initramfs (busybox, modules, `/init`), built once per process.
fn base_initramfs() -> &'static [u8] {
    static BASE: OnceLock<Vec<u8>> = OnceLock::new();
    BASE.get_or_init(|| {
        let t = tools();
        let mut c = Cpio::default();
        for d in [
            "bin",
            "sbin",
            "usr",
            "usr/bin",
            "usr/sbin",
            "dev",
            "proc",
            "sys",
            "mnt",
            "tmp",
            "root",
            "etc",
            "lib",
            "lib/modules",
        ] {
            c.dir(d);
        }
        c.char_dev("dev/console", 5, 1);
        c.char_dev("dev/null", 1, 3);
        let busybox = std::fs::read(&t.busybox).unwrap();
        c.file("bin/busybox", 0o755, &busybox);
        c.file("init", 0o755, INIT.as_bytes());

        let files = module_files(&t.modules);
        // A module built into this kernel needs no insmod.
        let builtin =
            std::fs::read_to_string(t.modules.join("modules.builtin")).unwrap_or_default();
        let is_builtin = |m: &str| {
            builtin.lines().any(|l| {
                Path::new(l)
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n == format!("{m}.ko"))
            })
        };
        let mut load = Vec::new();
        for m in MODULES {
            match files.get(*m) {
                Some(p) => {
                    c.file(&format!("lib/modules/{m}.ko"), 0o644, &module_bytes(p));
                    load.push(*m);
                }
                None if is_builtin(m) => {}
                None => panic!(
                    "module {m} is neither in {} nor built into the kernel: run `{SETUP}` as root",
                    t.modules.display()
                ),
            }
        }
        c.file("modules", 0o644, format!("{}\n", load.join(" ")).as_bytes());
        c.finish()
    })
}

/// Build an ext4 filesystem image of `size_mib` MiB in the plain file
/// `path` holding `files` (paths relative to its root; parent directories
/// are made). Uses `mkfs.ext4 -d`, so no root and no mount are needed.
pub fn make_ext4(path: &Path, size_mib: u64, files: &[(&str, &[u8])]) {
    require("mkfs.ext4", "e2fsprogs");
    let stage = tempfile::tempdir().unwrap();
    for (name, bytes) in files {
        let p = stage.path().join(name.trim_start_matches('/'));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, bytes).unwrap();
    }
    let f = std::fs::File::create(path).unwrap();
    f.set_len(size_mib << 20).unwrap();
    drop(f);
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-d"])
        .arg(stage.path())
        .arg(path));
}

/// A running qemu, killed if dropped before it exits (a failed test must
/// not leave a guest behind).
struct Qemu(Child);

impl Drop for Qemu {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Boot a guest with the disk at `nbd_uri` (anything qemu's `-drive file=`
/// takes, so a plain raw file too) as `/dev/vda`, mounted (ext4) on
/// `/mnt`; run `script` there with `sh` and return its exit status and
/// what it printed (stdout and stderr, `\r` removed). Panics, with the
/// guest's serial log, if qemu does not exit within `timeout` (it is
/// killed), the kernel panics, or `/init` fails before the script runs.
pub fn boot_status(nbd_uri: &str, script: &str, timeout: Duration) -> (i32, String) {
    static BOOTS: AtomicU64 = AtomicU64::new(0);
    let t = tools();
    let base = base_initramfs();
    let dir = tempfile::tempdir().unwrap();
    let mark = format!(
        "COFFER-GUEST-{}-{}-{}",
        std::process::id(),
        BOOTS.fetch_add(1, Ordering::Relaxed),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    );
    let mut overlay = Cpio::default();
    overlay.file("marker", 0o644, format!("{mark}\n").as_bytes());
    overlay.file("script.sh", 0o755, script.as_bytes());
    let mut initrd = base.to_vec();
    initrd.extend_from_slice(&overlay.finish());
    let initrd_path = dir.path().join("initrd.cpio");
    std::fs::write(&initrd_path, initrd).unwrap();
    let serial = dir.path().join("serial.log");
    let stderr = dir.path().join("qemu.stderr");

    let mut cmd = Command::new(&t.qemu);
    for fw in &t.firmware {
        cmd.arg("-L").arg(fw);
    }
    cmd.args(["-accel", "tcg", "-m", MEMORY, "-smp", "1"])
        .args(["-nodefaults", "-no-user-config", "-display", "none"])
        .args(["-nic", "none", "-no-reboot"])
        .arg("-serial")
        .arg(format!("file:{}", serial.display()))
        .arg("-kernel")
        .arg(&t.kernel)
        .arg("-initrd")
        .arg(&initrd_path)
        .args(["-append", "console=ttyS0 panic=-1 quiet"])
        .arg("-drive")
        // A comma in an option value is written twice.
        .arg(format!(
            "file={},format=raw,if=virtio,cache=none",
            nbd_uri.replace(',', ",,")
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap());
    let started = Instant::now();
    let mut qemu = Qemu(
        cmd.spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", t.qemu.display())),
    );
    let log = || {
        format!(
            "serial log:\n{}\nqemu stderr:\n{}",
            std::fs::read_to_string(&serial)
                .unwrap_or_default()
                .replace('\r', ""),
            std::fs::read_to_string(&stderr).unwrap_or_default()
        )
    };
    let status = loop {
        if let Some(st) = qemu.0.try_wait().expect("poll qemu") {
            break st;
        }
        if started.elapsed() >= timeout {
            let _ = qemu.0.kill();
            let _ = qemu.0.wait();
            panic!(
                "the guest did not power off within {timeout:?} (qemu killed); {}",
                log()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let text = std::fs::read_to_string(&serial)
        .unwrap_or_default()
        .replace('\r', "");
    assert!(
        !text.contains("Kernel panic"),
        "the guest's kernel panicked; {}",
        log()
    );
    assert!(
        !text.contains(&format!("{mark} FAIL")),
        "the guest's /init failed; {}",
        log()
    );
    let begin = format!("{mark} BEGIN\n");
    let end = format!("{mark} END ");
    let (Some(b), Some(e)) = (text.find(&begin), text.find(&end)) else {
        panic!(
            "the guest ended (qemu {status}) without running the script to its end; {}",
            log()
        )
    };
    let output = text[b + begin.len()..e].to_string();
    let rc: i32 = text[e + end.len()..]
        .lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("no exit status after the end marker; {}", log()));
    assert!(
        status.success(),
        "qemu exited with {status} after the script; {}",
        log()
    );
    (rc, output)
}

/// [`boot_status`], expecting the script to exit 0 (else panics with its
/// output); returns what it printed.
pub fn boot(nbd_uri: &str, script: &str, timeout: Duration) -> String {
    let (rc, output) = boot_status(nbd_uri, script, timeout);
    assert_eq!(
        rc, 0,
        "the guest script exited with {rc}; its output:\n{output}"
    );
    output
}
