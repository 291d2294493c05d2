//! Digest signing keys made as `docs/proving.md` tells users to: with `openssl`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// An Ed25519 key pair in `dir`: (`NAME.pem` private, `NAME.pub.pem` public).
pub fn openssl_keys(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let private = dir.join(format!("{name}.pem"));
    let public = dir.join(format!("{name}.pub.pem"));
    let run = |args: &[&str]| {
        let status = Command::new("openssl")
            .args(args)
            .status()
            .expect("openssl (scripts/setup.sh installs it)");
        assert!(status.success(), "openssl {args:?}");
    };
    run(&["genpkey", "-algorithm", "ed25519", "-out", path(&private)]);
    run(&[
        "pkey",
        "-in",
        path(&private),
        "-pubout",
        "-out",
        path(&public),
    ]);
    (private, public)
}

/// A new empty directory under the system's temporary directory.
pub fn temp_dir(prefix: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(crate::unique(prefix));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn path(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 temporary path")
}
