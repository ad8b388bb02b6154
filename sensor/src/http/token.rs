//! The API token: from the configuration, from `http.api_token_file`, or generated.
//!
//! **The token is never printed.** A generated token goes to a file only its owner can
//! read (0600, in a 0700 directory when the sensor chose the place) and the sensor
//! prints the file's path; stderr ends up in the journal, readable by more people than
//! should change alert states.

use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::config::ApiToken;

/// Where the token of this run came from.
#[derive(Debug)]
pub enum TokenSource {
    /// `http.api_token`, or an existing `http.api_token_file`.
    Configured,
    /// Generated and written to this file (the configured `http.api_token_file`).
    Created(PathBuf),
    /// Generated and written to this file in a private directory of its own (removed
    /// when the server stops).
    Temporary { file: PathBuf, dir: PathBuf },
}

/// 128 random bits from the kernel, as hex.
pub fn random_token() -> std::io::Result<String> {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Writes `token` to a new file with mode 0600 (fails if the file exists).
fn write_new(path: &Path, token: &ApiToken) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(token.expose().as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()
}

/// The token to use: `configured` (from `http.api_token` or an existing token file),
/// else a new one written to `file` (`http.api_token_file`, created 0600) or to a
/// private temporary directory.
pub fn resolve(
    configured: Option<ApiToken>,
    file: Option<&Path>,
) -> std::io::Result<(ApiToken, TokenSource)> {
    if let Some(token) = configured {
        return Ok((token, TokenSource::Configured));
    }
    let token = ApiToken::new(random_token()?);
    if let Some(path) = file {
        write_new(path, &token)?;
        return Ok((token, TokenSource::Created(path.to_path_buf())));
    }
    let dir = std::env::temp_dir().join(format!(
        "otsensor-token-{}-{}",
        std::process::id(),
        &random_token()?[..8]
    ));
    std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
    let path = dir.join("api-token");
    if let Err(error) = write_new(&path, &token) {
        let _ = std::fs::remove_dir_all(&dir);
        return Err(error);
    }
    Ok((token, TokenSource::Temporary { file: path, dir }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path)
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or(0)
    }

    #[test]
    fn generated_tokens_go_to_owner_only_files() {
        let (token, source) = resolve(None, None).expect("token");
        let TokenSource::Temporary { file, dir } = source else {
            panic!("expected a temporary file, got {source:?}");
        };
        assert_eq!(mode(&file), 0o600);
        assert_eq!(mode(&dir), 0o700);
        let written = std::fs::read_to_string(&file).expect("read");
        assert_eq!(written.trim(), token.expose());
        assert_eq!(token.expose().len(), 32);
        // The configured file is created 0600 and read back by the config loader.
        let path = dir.join("configured-token");
        let (second, source) = resolve(None, Some(&path)).expect("token");
        assert!(matches!(source, TokenSource::Created(_)));
        assert_eq!(mode(&path), 0o600);
        let read = crate::config::read_secret_file("http.api_token_file", &path)
            .expect("read")
            .expect("exists");
        assert!(read.matches(second.expose()));
        // An existing file is never overwritten.
        assert!(resolve(None, Some(&path)).is_err());
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
