//! What comes from the environment: the state directory and the API keys.

use super::*;

/// The state directory: `$STATE_DIRECTORY` when systemd sets it (the first of several), else
/// `--state-dir`, else `state.dir` from the config, else `$XDG_STATE_HOME/traderd`, else
/// `~/.local/state/traderd`.
pub fn resolve_state_dir(
    cli: Option<&Path>,
    configured: &str,
    env: impl Fn(&str) -> Option<String>,
) -> Result<PathBuf, String> {
    if let Some(dir) = env("STATE_DIRECTORY").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir.split(':').next().unwrap_or(&dir)));
    }
    if let Some(dir) = cli {
        return Ok(dir.to_path_buf());
    }
    if !configured.is_empty() {
        return Ok(PathBuf::from(configured));
    }
    if let Some(xdg) = env("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(xdg).join("traderd"));
    }
    match env("HOME").filter(|h| !h.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".local/state/traderd")),
        None => Err("no state directory: set --state-dir, state.dir, or run under systemd with StateDirectory=".into()),
    }
}

/// Names of the systemd credentials holding the keys.
pub const CREDENTIAL_KEY_ID: &str = "apca_api_key_id";
pub const CREDENTIAL_SECRET: &str = "apca_api_secret_key";

/// API keys from `APCA_API_KEY_ID` / `APCA_API_SECRET_KEY`, else from files in
/// `$CREDENTIALS_DIRECTORY` (systemd `LoadCredential=`). `Ok(None)` when neither is set.
/// Errors name the variable or file, never the value.
pub fn load_credentials(
    env: impl Fn(&str) -> Option<String>,
) -> Result<Option<Credentials>, String> {
    let key = env("APCA_API_KEY_ID").filter(|v| !v.trim().is_empty());
    let secret = env("APCA_API_SECRET_KEY").filter(|v| !v.trim().is_empty());
    match (key, secret) {
        (Some(k), Some(s)) => {
            return Ok(Some(Credentials {
                key_id: k.trim().to_string(),
                secret: Secret::new(s.trim()),
            }));
        }
        (Some(_), None) => {
            return Err("APCA_API_KEY_ID is set but APCA_API_SECRET_KEY is not".into());
        }
        (None, Some(_)) => {
            return Err("APCA_API_SECRET_KEY is set but APCA_API_KEY_ID is not".into());
        }
        (None, None) => {}
    }
    let Some(dir) = env("CREDENTIALS_DIRECTORY").filter(|d| !d.is_empty()) else {
        return Ok(None);
    };
    let dir = PathBuf::from(dir);
    let read = |name: &str| -> Result<Option<String>, String> {
        let path = dir.join(name);
        match std::fs::read_to_string(&path) {
            Ok(v) if v.trim().is_empty() => {
                Err(format!("credential file {} is empty", path.display()))
            }
            Ok(v) => Ok(Some(v.trim().to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!(
                "cannot read credential file {}: {e}",
                path.display()
            )),
        }
    };
    match (read(CREDENTIAL_KEY_ID)?, read(CREDENTIAL_SECRET)?) {
        (Some(k), Some(s)) => Ok(Some(Credentials {
            key_id: k,
            secret: Secret::new(s),
        })),
        (None, None) => Ok(None),
        _ => Err(format!(
            "$CREDENTIALS_DIRECTORY must hold both {CREDENTIAL_KEY_ID} and {CREDENTIAL_SECRET}"
        )),
    }
}
