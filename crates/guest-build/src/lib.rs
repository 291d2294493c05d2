//! Builds a guest crate (a routing component) for `wasm32-wasip2` with a
//! nested `cargo build`: the one recipe used by `host/build.rs` (the embedded
//! component) and by the tests (`examples/flat-layout`, the hostile fixture).
//!
//! The nested build always uses the release profile (a component is tested as
//! it ships) and its own target directory, so it never waits on the lock the
//! outer build or `cargo test` holds on `target/`. The outer cargo's
//! environment is for the host, not the guest; what would leak into the
//! nested build is removed (see [`SCRUBBED`]).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// The target every guest is built for.
pub const TARGET: &str = "wasm32-wasip2";

/// Variables of the outer cargo that must not reach the nested build: the
/// host's compiler flags and target, its target directory, its jobserver
/// (the nested cargo would wait on tokens the outer one hands out), and its
/// wrapper.
pub const SCRUBBED: &[&str] = &[
    "CARGO_ENCODED_RUSTFLAGS",
    "RUSTFLAGS",
    "CARGO_BUILD_TARGET",
    "CARGO_TARGET_DIR",
    "CARGO_MAKEFLAGS",
    "MAKEFLAGS",
    "MFLAGS",
    "RUSTC_WORKSPACE_WRAPPER",
];

/// Prefixes of the variables a build script sees for its own package's
/// features and target cfgs (`CARGO_FEATURE_*`, `CARGO_CFG_*`): cargo sets
/// the guest's own, and the host's must not linger beside them.
const SCRUBBED_PREFIXES: &[&str] = &["CARGO_FEATURE_", "CARGO_CFG_"];

/// One guest crate to build.
#[derive(Debug, Clone)]
pub struct GuestBuild {
    manifest_path: PathBuf,
    artifact: String,
    features: Vec<String>,
    target_dir: PathBuf,
    quiet: bool,
}

impl GuestBuild {
    /// The package `package` whose manifest is `crate_dir/Cargo.toml`, built
    /// into `target_dir` (its own, not the outer build's).
    pub fn new(crate_dir: &Path, package: &str, target_dir: &Path) -> Self {
        Self {
            manifest_path: crate_dir.join("Cargo.toml"),
            artifact: package.replace('-', "_"),
            features: Vec::new(),
            target_dir: target_dir.to_path_buf(),
            quiet: false,
        }
    }

    /// Enables a cargo feature of the guest.
    pub fn feature(mut self, feature: &str) -> Self {
        self.features.push(feature.to_string());
        self
    }

    /// Passes `--quiet` (tests: only errors are printed).
    pub fn quiet(mut self) -> Self {
        self.quiet = true;
        self
    }

    /// Where the component lands. A build with other features overwrites it:
    /// copy it away (or use [`GuestBuild::build_to`]) to keep several.
    pub fn artifact(&self) -> PathBuf {
        self.target_dir
            .join(TARGET)
            .join("release")
            .join(format!("{}.wasm", self.artifact))
    }

    /// The nested `cargo build` command, environment scrubbed.
    pub fn command(&self) -> Command {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut command = Command::new(cargo);
        command
            .args(["build", "--release", "--target", TARGET])
            .arg("--manifest-path")
            .arg(&self.manifest_path)
            .arg("--target-dir")
            .arg(&self.target_dir);
        if let Some(dir) = self.manifest_path.parent() {
            command.current_dir(dir);
        }
        if self.quiet {
            command.arg("--quiet");
        }
        if !self.features.is_empty() {
            command.arg("--features").arg(self.features.join(","));
        }
        for var in SCRUBBED {
            command.env_remove(var);
        }
        let prefixed: Vec<OsString> = std::env::vars_os()
            .map(|(name, _)| name)
            .filter(|name| {
                name.to_str()
                    .is_some_and(|n| SCRUBBED_PREFIXES.iter().any(|p| n.starts_with(p)))
            })
            .collect();
        for var in prefixed {
            command.env_remove(var);
        }
        command
    }

    /// Builds the guest; the path of the component.
    pub fn build(&self) -> Result<PathBuf, String> {
        let what = match self.features.as_slice() {
            [] => self.manifest_path.display().to_string(),
            features => format!(
                "{} --features {}",
                self.manifest_path.display(),
                features.join(",")
            ),
        };
        let status = self
            .command()
            .status()
            .map_err(|e| format!("cannot run cargo to build {what}: {e}"))?;
        if !status.success() {
            return Err(format!(
                "building {what} for {TARGET} failed ({status}); is the target installed? \
                 Run `rustup target add {TARGET}` (or `scripts/setup.sh`)."
            ));
        }
        let artifact = self.artifact();
        if !artifact.is_file() {
            return Err(format!(
                "building {what} did not produce {}",
                artifact.display()
            ));
        }
        Ok(artifact)
    }

    /// Builds the guest and copies the component to `out` (so that builds
    /// with other features do not overwrite it); returns `out`. One at a time
    /// in this process: two variants share one artifact path until copied.
    pub fn build_to(&self, out: &Path) -> Result<PathBuf, String> {
        static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
        let _guard = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
        let built = self.build()?;
        if let Some(dir) = out.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        std::fs::copy(&built, out)
            .map_err(|e| format!("cannot copy {} to {}: {e}", built.display(), out.display()))?;
        Ok(out.to_path_buf())
    }
}

/// `examples/flat-layout` (another layout, same contract), built into
/// `target/examples/` and copied to `target/examples/flat-layout.wasm`.
pub fn flat_layout(workspace: &Path) -> Result<PathBuf, String> {
    let target_dir = workspace.join("target").join("examples");
    GuestBuild::new(
        &workspace.join("examples").join("flat-layout"),
        "audit-archiver-flat-layout",
        &target_dir,
    )
    .quiet()
    .build_to(&target_dir.join("flat-layout.wasm"))
}

/// `examples/flat-layout` built against contract 1.0.0 as released (feature
/// `wit-1-0`: no `route-queue`), copied to `target/examples/flat-layout-1.0.wasm`.
pub fn flat_layout_1_0(workspace: &Path) -> Result<PathBuf, String> {
    let target_dir = workspace.join("target").join("examples");
    GuestBuild::new(
        &workspace.join("examples").join("flat-layout"),
        "audit-archiver-flat-layout",
        &target_dir,
    )
    .feature("wit-1-0")
    .quiet()
    .build_to(&target_dir.join("flat-layout-1.0.wasm"))
}

/// One variant (a cargo feature) of `tests/fixtures/hostile-router`, the
/// fixture for every way a component must be refused or contained, copied to
/// `target/fixtures/{variant}.wasm`.
pub fn hostile_router(workspace: &Path, variant: &str) -> Result<PathBuf, String> {
    let fixtures = workspace.join("target").join("fixtures");
    GuestBuild::new(
        &workspace
            .join("tests")
            .join("fixtures")
            .join("hostile-router"),
        "hostile-router",
        &fixtures.join("hostile-router"),
    )
    .feature(variant)
    .quiet()
    .build_to(&fixtures.join(format!("{variant}.wasm")))
}
