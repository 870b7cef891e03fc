//! How `coffer disk attach` shows an attachment: the URI and the exact
//! nbdinfo, nbdcopy and qemu arguments that use it — under TLS with the
//! deployment CA written where qemu and libnbd look for it — or all of it
//! in a private file instead of on the terminal.

use std::path::{Path, PathBuf};

use anyhow::Context;
use coffer_wire::Attachment;

use crate::client::Client;
use crate::files::{set_private, write_private};
use crate::output::{Output, View};
use crate::profile::config_dir;

/// The ways to use one attachment.
struct Usage {
    /// For libnbd's tools (nbdinfo, nbdcopy): the URI, with
    /// `?tls-certificates=DIR` under TLS when the CA is known.
    libnbd_uri: String,
    /// qemu's `--object` for TLS credentials, under TLS.
    tls_object: Option<String>,
    /// qemu's `--image-opts`.
    image_opts: String,
}

impl Usage {
    fn new(c: &Client, a: &Attachment) -> anyhow::Result<Self> {
        let uri = a.uri.clone().unwrap_or_default();
        let tls = uri.starts_with("nbds://");
        let ca_dir = match (tls, c.ca_cert()) {
            (true, Some(pem)) => Some(write_ca_dir(pem)?),
            _ => None,
        };
        let dir = ca_dir.as_ref().map_or_else(
            || "DIR_WITH_ca-cert.pem".to_string(),
            |d| d.display().to_string(),
        );
        Ok(Self {
            libnbd_uri: match &ca_dir {
                Some(d) => format!("{uri}?tls-certificates={}", d.display()),
                None => uri,
            },
            tls_object: tls.then(|| format!("tls-creds-x509,id=tls0,dir={dir},endpoint=client")),
            image_opts: a.image_opts.clone().unwrap_or_default(),
        })
    }

    /// The commands, one per line.
    fn commands(&self) -> String {
        let obj = self
            .tls_object
            .as_ref()
            .map(|o| format!("--object {} ", quote(o)))
            .unwrap_or_default();
        let uri = quote(&self.libnbd_uri);
        let opts = quote(&self.image_opts);
        format!(
            "  nbdinfo {uri}\n  nbdcopy image.raw {uri}\n  qemu-img convert -n -f raw {obj}--target-image-opts image.raw {opts}\n  qemu-io {obj}--image-opts {opts} -c 'read 0 4k'"
        )
    }

    /// The private file's content: shell variable assignments (also a
    /// systemd `EnvironmentFile`).
    fn env_file(&self) -> String {
        let mut s = format!(
            "COFFER_NBD_URI={}\nCOFFER_QEMU_IMAGE_OPTS={}\n",
            quote(&self.libnbd_uri),
            quote(&self.image_opts)
        );
        if let Some(o) = &self.tls_object {
            s.push_str(&format!("COFFER_QEMU_TLS_OBJECT={}\n", quote(o)));
        }
        s
    }
}

/// Print the attachment (or write it to `uri_file`, mode 0600, and print
/// it without its secrets).
pub fn show(
    c: &Client,
    out: &Output,
    mut a: Attachment,
    uri_file: Option<&Path>,
) -> anyhow::Result<()> {
    let usage = Usage::new(c, &a)?;
    let disk = a.disk_id.clone();
    match uri_file {
        None => {
            let text = |_: &serde_json::Value| {
                format!(
                    "{}\n\nThe URI above grants read-write access to the disk until `coffer disk detach {disk}`. Use it with, e.g.:\n{}",
                    a.uri.as_deref().unwrap_or_default(),
                    usage.commands()
                )
            };
            out.show(&a, View::Text(&text))
        }
        Some(f) => {
            write_private(f, usage.env_file().as_bytes())?;
            a.uri = None;
            a.image_opts = None;
            let f = f.display();
            let text = |_: &serde_json::Value| {
                format!(
                    "Attached. The URI and qemu's image options are in {f} (mode 0600); they grant read-write access to the disk until `coffer disk detach {disk}`. Use them with, e.g.:\n  . {f} && nbdinfo \"$COFFER_NBD_URI\""
                )
            };
            out.show(&a, View::Text(&text))
        }
    }
}

/// `<config dir>/ca/<fingerprint>/ca-cert.pem`: the directory layout qemu's
/// `tls-creds-x509` and libnbd's `tls-certificates` read a CA from. Public
/// data; one directory per CA.
fn write_ca_dir(pem: &str) -> anyhow::Result<PathBuf> {
    let fp = coffer_crypto::secret::sha256_hex(pem.as_bytes());
    let dir = config_dir().join("ca").join(&fp[..16]);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    set_private(&dir)?;
    let file = dir.join("ca-cert.pem");
    if std::fs::read_to_string(&file).ok().as_deref() != Some(pem) {
        write_private(&file, pem.as_bytes())?;
    }
    Ok(dir)
}

/// `s` as one shell word.
fn quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=,@%+".contains(&b))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::quote;

    #[test]
    fn quoting_keeps_plain_words_and_wraps_the_rest() {
        assert_eq!(quote("nbd://h:1/x"), "nbd://h:1/x");
        assert_eq!(quote("a?b=c d"), "'a?b=c d'");
        assert_eq!(quote("it's"), r"'it'\''s'");
    }
}
