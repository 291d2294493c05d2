//! The compile cache: a component compiled once is kept on disk as native code
//! (wasmtime's `serialize`) and loaded back with `deserialize_file` (an mmap)
//! by later runs, so short runs (`run --drain` from cron, `route`) skip the
//! Cranelift compilation.
//!
//! - Key: SHA-256 over the component's bytes, the host's version and the
//!   engine's `precompile_compatibility_hash` (target, CPU features, compiler
//!   flags, tunables, wasm features and wasmtime's own version). Other bytes,
//!   another wasmtime or another configuration give another file: nothing is
//!   ever invalidated in place, a stale entry is simply never read again.
//! - Writes are atomic (a private temporary file, then `rename`) with mode
//!   0600, in a directory created 0700; concurrent hosts each write a whole
//!   file and the last rename wins.
//! - Any failure to read or deserialize an entry recompiles and overwrites it;
//!   any failure to write only costs the next run a compilation.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::Engine;

/// What the cache did for one load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Loaded from an entry: no compilation.
    Hit,
    /// No entry: compiled (and stored, if the directory is usable).
    Miss,
    /// An entry existed but could not be used: compiled and overwritten.
    Replaced,
    /// The directory is not private to this user: compiled, not stored.
    Untrusted,
}

/// The default directory: `$XDG_CACHE_HOME/audit-archiver`, else
/// `$HOME/.cache/audit-archiver`; `None` when neither is set (absolute).
pub fn default_dir() -> Option<PathBuf> {
    let absolute = |var: &str| {
        std::env::var_os(var)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    absolute("XDG_CACHE_HOME")
        .or_else(|| absolute("HOME").map(|home| home.join(".cache")))
        .map(|base| base.join("audit-archiver"))
}

/// Feeds `Hash` output into SHA-256 (stable, unlike `DefaultHasher`).
struct ShaHasher(Sha256);

impl std::hash::Hasher for ShaHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
    fn finish(&self) -> u64 {
        unreachable!("only the digest is used")
    }
}

/// The entry's file name for these bytes in this engine.
pub fn entry_name(engine: &Engine, component: &[u8]) -> String {
    use std::hash::Hash;
    let mut hasher = ShaHasher(Sha256::new());
    hasher.0.update(b"audit-archiver component cache v1\0");
    hasher.0.update(env!("CARGO_PKG_VERSION").as_bytes());
    hasher.0.update(b"\0");
    hasher.0.update(Sha256::digest(component));
    engine.precompile_compatibility_hash().hash(&mut hasher);
    let digest = hasher.0.finalize();
    let hex: String = digest[..20].iter().map(|b| format!("{b:02x}")).collect();
    format!("router-{hex}.cwasm")
}

/// The compiled component, from the cache in `dir` or compiled (then stored).
pub fn load_or_compile(
    engine: &Engine,
    bytes: &[u8],
    dir: &Path,
) -> wasmtime::Result<(Component, Outcome)> {
    if !private_dir(dir) {
        tracing::warn!(
            dir = %dir.display(),
            "compile cache not used: the directory must be owned by this user and not \
             writable by others (--cache-dir, or --no-cache)"
        );
        return Ok((Component::from_binary(engine, bytes)?, Outcome::Untrusted));
    }
    let path = dir.join(entry_name(engine, bytes));
    let outcome = match fs::symlink_metadata(&path) {
        Err(_) => Outcome::Miss,
        Ok(meta) if !private_file(&meta) => Outcome::Replaced,
        Ok(_) => {
            // SAFETY: `deserialize_file` trusts the file to be wasmtime's
            // own output: its native code is mapped and run as is. This
            // file is one this host wrote itself (atomically, mode 0600,
            // a regular file, not a symlink) in a directory owned by this
            // user and writable by no one else (checked above), named by
            // a digest of the component bytes and of this engine's
            // configuration and version. wasmtime also checks its version
            // and configuration header and fails (-> recompile) on any
            // mismatch or truncation.
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(component) => return Ok((component, Outcome::Hit)),
                Err(error) => {
                    tracing::warn!(path = %path.display(), error = %format!("{error:#}"), "unusable compile cache entry; recompiling");
                    Outcome::Replaced
                }
            }
        }
    };
    let component = Component::from_binary(engine, bytes)?;
    match component.serialize() {
        Ok(serialized) => {
            if let Err(error) = write_atomic(dir, &path, &serialized) {
                tracing::debug!(path = %path.display(), %error, "cannot store the compiled component");
            }
        }
        Err(error) => {
            tracing::debug!(error = %format!("{error:#}"), "cannot serialize the compiled component")
        }
    }
    Ok((component, outcome))
}

/// Creates `dir` (0700) if needed; true if it is a directory owned by this
/// user and writable by no one else.
fn private_dir(dir: &Path) -> bool {
    let _ = fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir);
    match fs::metadata(dir) {
        Ok(meta) => meta.is_dir() && meta.mode() & 0o022 == 0 && owned_by_me(&meta),
        Err(_) => false,
    }
}

/// A regular file (not a symlink) of this user, writable by no one else.
fn private_file(meta: &fs::Metadata) -> bool {
    meta.file_type().is_file() && meta.mode() & 0o022 == 0 && owned_by_me(meta)
}

fn owned_by_me(meta: &fs::Metadata) -> bool {
    // `/proc/self` belongs to the process's effective user.
    match fs::metadata("/proc/self") {
        Ok(me) => me.uid() == meta.uid(),
        Err(_) => true,
    }
}

fn write_atomic(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let temp = dir.join(format!(".tmp-{}-{nanos}.cwasm", std::process::id()));
    let written = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temp, path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&temp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn engine() -> Engine {
        super::super::new_engine()
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "audit-archiver-cache-test-{name}-{}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    const BYTES: &[u8] = super::super::EMBEDDED_COMPONENT;

    #[test]
    fn miss_then_hit_with_private_permissions() {
        let dir = temp_dir("hit");
        let engine = engine();
        let (_, first) = load_or_compile(&engine, BYTES, &dir).unwrap();
        assert_eq!(first, Outcome::Miss);
        let entry = dir.join(entry_name(&engine, BYTES));
        let meta = fs::metadata(&entry).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(
            fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let (_, second) = load_or_compile(&engine, BYTES, &dir).unwrap();
        assert_eq!(second, Outcome::Hit);
        // A fresh engine with the same configuration hits too.
        let (_, third) = load_or_compile(&super::super::new_engine(), BYTES, &dir).unwrap();
        assert_eq!(third, Outcome::Hit);
        // No temporary files are left behind.
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn corrupted_entry_is_recompiled_and_overwritten() {
        let dir = temp_dir("corrupt");
        let engine = engine();
        load_or_compile(&engine, BYTES, &dir).unwrap();
        let entry = dir.join(entry_name(&engine, BYTES));
        let good_len = fs::metadata(&entry).unwrap().len();
        for garbage in [&b"not a compiled component"[..], &[][..]] {
            fs::write(&entry, garbage).unwrap();
            let (component, outcome) = load_or_compile(&engine, BYTES, &dir).unwrap();
            assert_eq!(outcome, Outcome::Replaced);
            assert!(component.component_type().exports(&engine).count() > 0);
            assert_eq!(fs::metadata(&entry).unwrap().len(), good_len);
            assert_eq!(
                load_or_compile(&engine, BYTES, &dir).unwrap().1,
                Outcome::Hit
            );
        }
        // Truncated native code fails wasmtime's checks too.
        let full = fs::read(&entry).unwrap();
        fs::write(&entry, &full[..full.len() / 2]).unwrap();
        assert_eq!(
            load_or_compile(&engine, BYTES, &dir).unwrap().1,
            Outcome::Replaced
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn different_bytes_or_engine_give_different_keys() {
        let engine = engine();
        let mut other = BYTES.to_vec();
        // Appending a custom section changes the bytes, not the meaning.
        other.extend_from_slice(&[0, 4, 1, b'x', 0, 0]);
        assert_ne!(entry_name(&engine, BYTES), entry_name(&engine, &other));
        assert_eq!(
            entry_name(&engine, BYTES),
            entry_name(&super::super::new_engine(), BYTES)
        );
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true);
        let different = Engine::new(&config).unwrap();
        assert_ne!(entry_name(&engine, BYTES), entry_name(&different, BYTES));
    }

    #[test]
    fn shared_directory_is_not_trusted() {
        let dir = temp_dir("shared");
        fs::create_dir_all(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
        let (_, outcome) = load_or_compile(&engine(), BYTES, &dir).unwrap();
        assert_eq!(outcome, Outcome::Untrusted);
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 0);
        fs::remove_dir_all(&dir).unwrap();
    }
}
