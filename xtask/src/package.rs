//! `cargo xtask package`: the Debian package, assembled in a staging tree and built
//! with `dpkg-deb --build` (part of dpkg, so on every Debian machine; no cargo plugin to
//! download). Layout and maintainer scripts live in `deploy/`; docs/OPERATIONS.md says
//! what they do.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// What to package and where.
#[derive(Clone, Debug)]
pub struct PackageOptions {
    /// The workspace root (for `deploy/` and `docs/`).
    pub workspace: PathBuf,
    /// The release binary to ship.
    pub binary: PathBuf,
    /// Where the .deb (and its staging tree) go.
    pub out_dir: PathBuf,
}

/// The workspace root, from this crate's manifest directory.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The package version: the workspace version, from the binary itself so the two can
/// never disagree (`otsensor --version` prints `otsensor X.Y.Z`).
fn binary_version(binary: &Path) -> Result<String> {
    let text = output(Command::new(binary).arg("--version"))?;
    text.split_whitespace()
        .nth(1)
        .map(str::to_owned)
        .with_context(|| format!("{} --version printed {text:?}", binary.display()))
}

fn output(command: &mut Command) -> Result<String> {
    let result = command
        .output()
        .with_context(|| format!("running {command:?}"))?;
    if !result.status.success() {
        bail!(
            "{command:?} failed ({}): {}",
            result.status,
            String::from_utf8_lossy(&result.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&result.stdout).into_owned())
}

/// Copies `from` to `to` (creating the parent) with `mode`.
fn install(from: &Path, to: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent).with_context(|| parent.display().to_string())?;
    }
    std::fs::copy(from, to).with_context(|| format!("{} -> {}", from.display(), to.display()))?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

fn write(to: &Path, text: &str, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent).with_context(|| parent.display().to_string())?;
    }
    std::fs::write(to, text).with_context(|| to.display().to_string())?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// Bytes under `dir`, for Installed-Size (KiB, rounded up).
fn tree_size(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            tree_size(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}

/// Builds `otsensor_<version>_<arch>.deb` in `out_dir` from an already-built binary;
/// returns its path.
pub fn build_deb(options: &PackageOptions) -> Result<PathBuf> {
    let deploy = options.workspace.join("deploy");
    let version = binary_version(&options.binary)?;
    let arch = output(Command::new("dpkg").arg("--print-architecture"))?
        .trim()
        .to_owned();
    let name = format!("otsensor_{version}_{arch}");
    let root = options.out_dir.join(&name);
    if root.exists() {
        std::fs::remove_dir_all(&root).with_context(|| root.display().to_string())?;
    }

    install(&options.binary, &root.join("usr/bin/otsensor"), 0o755)?;
    // The default configuration as the binary prints it, so it always matches the
    // binary's own defaults and field names.
    let config = installed_config(&output(
        Command::new(&options.binary).arg("default-config"),
    )?)?;
    write(&root.join("etc/otsensor/otsensor.yaml"), &config, 0o640)?;
    install(
        &deploy.join("debian/default"),
        &root.join("etc/default/otsensor"),
        0o644,
    )?;
    install(
        &deploy.join("otsensor.service"),
        &root.join("lib/systemd/system/otsensor.service"),
        0o644,
    )?;
    let doc = root.join("usr/share/doc/otsensor");
    for file in ["OPERATIONS.md", "CONFIG.md", "METRICS.md"] {
        let source = options.workspace.join("docs").join(file);
        if source.exists() {
            install(&source, &doc.join(file), 0o644)?;
        }
    }

    let installed_kib = tree_size(&root)?.div_ceil(1024);
    let control = std::fs::read_to_string(deploy.join("debian/control.in"))
        .context("deploy/debian/control.in")?
        .replace("@VERSION@", &version)
        .replace("@ARCH@", &arch)
        .replace("@INSTALLED_SIZE@", &installed_kib.to_string());
    let debian = root.join("DEBIAN");
    write(&debian.join("control"), &control, 0o644)?;
    install(
        &deploy.join("debian/conffiles"),
        &debian.join("conffiles"),
        0o644,
    )?;
    for script in ["postinst", "prerm", "postrm"] {
        install(
            &deploy.join("debian").join(script),
            &debian.join(script),
            0o755,
        )?;
    }

    let deb = options.out_dir.join(format!("{name}.deb"));
    // --root-owner-group: every file root:root in the archive whoever builds it; the
    // service user's ownership is set by postinst. gzip, not dpkg's default xz: every
    // dpkg reads it, and on the 38 MB binary it takes 3 s against xz's 100 s.
    output(
        Command::new("dpkg-deb")
            .args(["--root-owner-group", "-Zgzip", "--build"])
            .arg(&root)
            .arg(&deb),
    )?;
    Ok(deb)
}

/// `cargo xtask package`: builds the release binary, then the .deb.
pub fn package(out_dir: Option<PathBuf>, skip_build: bool) -> Result<PathBuf> {
    let workspace = workspace_root();
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"));
    if !skip_build {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .current_dir(&workspace)
            .args([
                "build",
                "--release",
                "--package",
                "otsensor",
                "--bin",
                "otsensor",
            ])
            .status()
            .context("cargo build")?;
        if !status.success() {
            bail!("cargo build --release failed ({status})");
        }
    }
    let binary = target_dir.join("release/otsensor");
    if !binary.exists() {
        bail!("{} missing: build it first", binary.display());
    }
    let out_dir = out_dir.unwrap_or_else(|| target_dir.join("debian"));
    std::fs::create_dir_all(&out_dir).with_context(|| out_dir.display().to_string())?;
    build_deb(&PackageOptions {
        workspace,
        binary,
        out_dir,
    })
}

/// The packaged configuration: the defaults, with HTTP on (loopback) and its API token in
/// a file of the state directory that the sensor creates (0600) at first start. The
/// unit follows `http.enabled`, so an operator turns HTTP off there.
fn installed_config(defaults: &str) -> Result<String> {
    let mut out = String::with_capacity(defaults.len() + 64);
    let mut in_http = false;
    let (mut enabled, mut token_file) = (false, false);
    for line in defaults.lines() {
        if !line.starts_with(' ') && !line.starts_with('#') && !line.is_empty() {
            in_http = line == "http:";
        }
        let line = match line {
            "  enabled: false" if in_http => {
                enabled = true;
                "  enabled: true"
            }
            "  api_token_file: null" if in_http => {
                token_file = true;
                "  api_token_file: /var/lib/otsensor/api-token"
            }
            other => other,
        };
        out.push_str(line);
        out.push('\n');
    }
    if !(enabled && token_file) {
        anyhow::bail!("default-config has no http.enabled / http.api_token_file to set");
    }
    Ok(out)
}
