//! What a spawn worker is asked to do, and what it answers: length-prefixed JSON over a unix
//! stream socket (the reply socket), so both sides block on each other instead of polling.

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

/// One mount of the container's root filesystem, as containerd's snapshotter gives it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RootfsMount {
    pub fs_type: String,
    pub source: String,
    pub options: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum Job {
    /// Mount `rootfs` onto `<bundle>/rootfs`, then `lifecycle::create` the container.
    Create { id: String, bundle: PathBuf, state_root: PathBuf, rootfs: Vec<RootfsMount> },
    /// `lifecycle::exec` of `process` (an OCI runtime-spec Process) in container `id`.
    Exec { id: String, state_root: PathBuf, process: serde_json::Value },
}

#[derive(Debug, Serialize, Deserialize)]
pub enum Reply {
    /// The container's init (create) or the exec'd process.
    Pid(i32),
    Error(String),
}

/// Messages are small (a spec's process at most); a bigger length is a broken peer.
const MAX_MESSAGE: usize = 16 << 20;

pub fn write_message<T: Serialize>(mut stream: &UnixStream, value: &T) -> io::Result<()> {
    let body = serde_json::to_vec(value).map_err(io::Error::other)?;
    let mut msg = Vec::with_capacity(4 + body.len());
    msg.extend_from_slice(&(body.len() as u32).to_le_bytes());
    msg.extend_from_slice(&body);
    stream.write_all(&msg)
}

pub fn read_message<T: DeserializeOwned>(mut stream: &UnixStream) -> io::Result<T> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => io::Error::new(e.kind(), "the worker exited without answering"),
        _ => e,
    })?;
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_MESSAGE {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("message of {len} bytes")));
    }
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body)?;
    serde_json::from_slice(&body).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        let (a, b) = UnixStream::pair().unwrap();
        let job = Job::Create {
            id: "c1".into(),
            bundle: "/b".into(),
            state_root: "/b/.strata".into(),
            rootfs: vec![RootfsMount {
                fs_type: "overlay".into(),
                source: "overlay".into(),
                options: vec!["ro".into()],
            }],
        };
        write_message(&a, &job).unwrap();
        match read_message::<Job>(&b).unwrap() {
            Job::Create { id, rootfs, .. } => {
                assert_eq!(id, "c1");
                assert_eq!(rootfs[0].options, ["ro"]);
            }
            other => panic!("{other:?}"),
        }
        drop(a);
        let e = read_message::<Reply>(&b).unwrap_err();
        assert!(e.to_string().contains("without answering"), "{e}");
    }
}
