//! Registry credentials in docker's config.json format (`{"auths": {"host": {"auth":
//! base64(user:pass)}}}`), so `strata login` and `docker login` share one file.
//!
//! Location, first that is set: `--authfile`, `$REGISTRY_AUTH_FILE` (podman's),
//! `$DOCKER_CONFIG/config.json`, `~/.docker/config.json`. Other keys in the file are kept.

use crate::fsutil::write_atomic;
use base64::Engine as _;
use serde_json::{Map, Value};
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("cannot read credentials from {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot write credentials to {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("{path} is not valid JSON: {source}")]
    Parse { path: PathBuf, source: serde_json::Error },
    #[error("credentials for {registry} in {path} are malformed (expected base64 of user:password)")]
    Malformed { registry: String, path: PathBuf },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

#[derive(Debug, Clone)]
pub struct AuthFile {
    path: PathBuf,
}

/// The key a registry is stored under (docker hub keeps its historical URL).
fn key_for(registry: &str) -> String {
    match registry {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB_KEY.to_string(),
        other => other.to_string(),
    }
}

/// `https://host/v2/` and `host` name the same registry.
fn normalise_key(key: &str) -> String {
    let k = key.strip_prefix("https://").or_else(|| key.strip_prefix("http://")).unwrap_or(key);
    let k = k.split('/').next().unwrap_or(k);
    match k {
        "index.docker.io" | "registry-1.docker.io" | "docker.io" => DOCKER_HUB_KEY.to_string(),
        other => other.to_string(),
    }
}

impl AuthFile {
    pub fn locate(explicit: Option<&Path>) -> AuthFile {
        let path = explicit
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("REGISTRY_AUTH_FILE").map(PathBuf::from))
            .or_else(|| std::env::var_os("DOCKER_CONFIG").map(|d| PathBuf::from(d).join("config.json")))
            .unwrap_or_else(|| {
                let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/root"));
                home.join(".docker/config.json")
            });
        AuthFile { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read(&self) -> Result<Map<String, Value>, AuthError> {
        match fs::read(&self.path) {
            Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => Ok(Map::new()),
            Ok(bytes) => match serde_json::from_slice::<Value>(&bytes) {
                Ok(Value::Object(map)) => Ok(map),
                Ok(_) => Ok(Map::new()),
                Err(source) => Err(AuthError::Parse { path: self.path.clone(), source }),
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Map::new()),
            Err(source) => Err(AuthError::Read { path: self.path.clone(), source }),
        }
    }

    fn write(&self, map: Map<String, Value>) -> Result<(), AuthError> {
        let err = |source| AuthError::Write { path: self.path.clone(), source };
        if let Some(dir) = self.path.parent() {
            fs::create_dir_all(dir).map_err(err)?;
        }
        let bytes = serde_json::to_vec_pretty(&Value::Object(map)).expect("json serialises");
        // Through a symlink to the file it names, as docker's CLI writes: replacing the link
        // would leave the credentials a logout removes in the real file.
        let target = fs::canonicalize(&self.path).unwrap_or_else(|_| self.path.clone());
        write_atomic(&target, &bytes).map_err(err)?;
        fs::set_permissions(&target, fs::Permissions::from_mode(0o600)).map_err(err)
    }

    /// Credentials for a registry host (as in a reference: `docker.io`, `host:port`).
    pub fn get(&self, registry: &str) -> Result<Option<Credentials>, AuthError> {
        let map = self.read()?;
        let Some(Value::Object(auths)) = map.get("auths") else { return Ok(None) };
        let wanted = key_for(registry);
        let Some((_, entry)) = auths.iter().find(|(k, _)| normalise_key(k) == normalise_key(&wanted)) else {
            return Ok(None);
        };
        let malformed = || AuthError::Malformed { registry: registry.to_string(), path: self.path.clone() };
        if let (Some(Value::String(u)), Some(Value::String(p))) = (entry.get("username"), entry.get("password")) {
            return Ok(Some(Credentials { username: u.clone(), password: p.clone() }));
        }
        let Some(Value::String(encoded)) = entry.get("auth") else { return Ok(None) };
        let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).map_err(|_| malformed())?;
        let decoded = String::from_utf8(decoded).map_err(|_| malformed())?;
        let (u, p) = decoded.split_once(':').ok_or_else(malformed)?;
        Ok(Some(Credentials { username: u.to_string(), password: p.to_string() }))
    }

    pub fn set(&self, registry: &str, creds: &Credentials) -> Result<(), AuthError> {
        let mut map = self.read()?;
        let auths = map.entry("auths").or_insert_with(|| Value::Object(Map::new()));
        if !auths.is_object() {
            *auths = Value::Object(Map::new());
        }
        let auths = auths.as_object_mut().expect("object");
        let key = key_for(registry);
        auths.retain(|k, _| normalise_key(k) != normalise_key(&key));
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", creds.username, creds.password));
        auths.insert(key, serde_json::json!({ "auth": encoded }));
        self.write(map)
    }

    /// Forget a registry's credentials; false if there were none.
    pub fn remove(&self, registry: &str) -> Result<bool, AuthError> {
        let mut map = self.read()?;
        let Some(Value::Object(auths)) = map.get_mut("auths") else { return Ok(false) };
        let key = normalise_key(&key_for(registry));
        let before = auths.len();
        auths.retain(|k, _| normalise_key(k) != key);
        if auths.len() == before {
            return Ok(false);
        }
        self.write(map)?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_docker_compat() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        fs::write(&path, r#"{"auths":{"https://index.docker.io/v1/":{"auth":"dXNlcjpwYXNz"}},"credsStore":"x"}"#)
            .unwrap();
        let file = AuthFile::locate(Some(&path));
        assert_eq!(
            file.get("docker.io").unwrap(),
            Some(Credentials { username: "user".into(), password: "pass".into() })
        );
        assert_eq!(file.get("127.0.0.1:5000").unwrap(), None);
        let c = Credentials { username: "a".into(), password: "b:c".into() };
        file.set("127.0.0.1:5000", &c).unwrap();
        assert_eq!(file.get("127.0.0.1:5000").unwrap(), Some(c));
        let raw: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        assert_eq!(raw["credsStore"], "x", "other keys are kept");
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(file.remove("127.0.0.1:5000").unwrap());
        assert!(!file.remove("127.0.0.1:5000").unwrap());
        assert!(file.get("docker.io").unwrap().is_some());
    }

    #[test]
    fn a_symlinked_file_is_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("secrets/real.json");
        fs::create_dir_all(real.parent().unwrap()).unwrap();
        fs::write(&real, r#"{"auths":{"127.0.0.1:5000":{"auth":"dTpw"}}}"#).unwrap();
        let link = dir.path().join("docker/config.json");
        fs::create_dir_all(link.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert!(AuthFile::locate(Some(&link)).remove("127.0.0.1:5000").unwrap());
        assert!(fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "the link stays");
        assert!(!fs::read_to_string(&real).unwrap().contains("dTpw"), "the credentials are gone from the real file");
    }

    #[test]
    fn malformed_entries_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        fs::write(&path, r#"{"auths":{"r.example":{"auth":"!!!"}}}"#).unwrap();
        let err = AuthFile::locate(Some(&path)).get("r.example").unwrap_err().to_string();
        assert!(err.contains("r.example") && err.contains("malformed"), "{err}");
        fs::write(&path, "{not json").unwrap();
        assert!(AuthFile::locate(Some(&path)).get("r.example").is_err());
    }
}
