//! A Sprite's simulated filesystem: a flat map from absolute path to node, cheap to clone so a
//! checkpoint is a plain copy.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::Serialize;
use time::OffsetDateTime;

pub const HOME: &str = "/home/sprite";

#[derive(Debug, Clone)]
pub enum Node {
    Dir { mode: u32, mtime: OffsetDateTime },
    File { data: Bytes, mode: u32, mtime: OffsetDateTime },
}

impl Node {
    pub fn is_dir(&self) -> bool {
        matches!(self, Node::Dir { .. })
    }
    pub fn mode(&self) -> u32 {
        match self {
            Node::Dir { mode, .. } | Node::File { mode, .. } => *mode,
        }
    }
    pub fn size(&self) -> u64 {
        match self {
            Node::Dir { .. } => 4096,
            Node::File { data, .. } => data.len() as u64,
        }
    }
    pub fn mtime(&self) -> OffsetDateTime {
        match self {
            Node::Dir { mtime, .. } | Node::File { mtime, .. } => *mtime,
        }
    }
}

/// Errno-style failure; `code` is what the fs API puts in its JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsError {
    pub code: &'static str,
    pub path: String,
}

impl FsError {
    fn new(code: &'static str, path: &str) -> Self {
        Self { code, path: path.to_string() }
    }

    pub fn message(&self) -> String {
        let what = match self.code {
            "ENOENT" => "no such file or directory",
            "EEXIST" => "file exists",
            "ENOTDIR" => "not a directory",
            "EISDIR" => "is a directory",
            "ENOTEMPTY" => "directory not empty",
            "EINVAL" => "invalid argument",
            _ => "i/o error",
        };
        format!("{}: {what}", self.path)
    }
}

/// A directory entry in the fs API's camelCase shape.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    pub name: String,
    pub path: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub size: u64,
    pub mode: String,
    #[serde(rename = "modTime")]
    pub mod_time: String,
    #[serde(rename = "isDir")]
    pub is_dir: bool,
}

#[derive(Debug, Clone)]
pub struct Fs {
    nodes: BTreeMap<String, Node>,
}

impl Default for Fs {
    fn default() -> Self {
        Self::new()
    }
}

impl Fs {
    /// A fresh Sprite: the usual top-level directories and an empty home.
    pub fn new() -> Self {
        let now = now();
        let mut nodes = BTreeMap::new();
        for (dir, mode) in [
            ("/", 0o755),
            ("/etc", 0o755),
            ("/home", 0o755),
            (HOME, 0o755),
            ("/root", 0o700),
            ("/tmp", 0o777),
            ("/usr", 0o755),
            ("/usr/bin", 0o755),
            ("/var", 0o755),
        ] {
            nodes.insert(dir.to_string(), Node::Dir { mode, mtime: now });
        }
        Self { nodes }
    }

    /// A filesystem read back from the state file (`persist`), node by node.
    pub fn from_nodes(nodes: impl IntoIterator<Item = (String, Node)>) -> Self {
        Self { nodes: nodes.into_iter().collect() }
    }

    pub fn get(&self, path: &str) -> Option<&Node> {
        self.nodes.get(path)
    }

    pub fn nodes(&self) -> impl Iterator<Item = (&String, &Node)> {
        self.nodes.iter()
    }

    pub fn read(&self, path: &str) -> Result<Bytes, FsError> {
        match self.nodes.get(path) {
            Some(Node::File { data, .. }) => Ok(data.clone()),
            Some(Node::Dir { .. }) => Err(FsError::new("EISDIR", path)),
            None => Err(self.missing(path)),
        }
    }

    /// ENOTDIR when a parent is a file, else ENOENT, as a real kernel would say.
    fn missing(&self, path: &str) -> FsError {
        let mut p = parent(path);
        while let Some(dir) = p {
            if let Some(node) = self.nodes.get(dir) {
                if !node.is_dir() {
                    return FsError::new("ENOTDIR", path);
                }
                break;
            }
            p = parent(dir);
        }
        FsError::new("ENOENT", path)
    }

    fn check_parent(&self, path: &str) -> Result<(), FsError> {
        let Some(dir) = parent(path) else {
            return Ok(());
        };
        match self.nodes.get(dir) {
            Some(node) if node.is_dir() => Ok(()),
            Some(_) => Err(FsError::new("ENOTDIR", path)),
            None => Err(self.missing(path)),
        }
    }

    /// `mkdir -p`: creates every missing directory up to and including `path`.
    pub fn mkdir_all(&mut self, path: &str, mode: u32) -> Result<(), FsError> {
        let mut missing = Vec::new();
        let mut cur = Some(path);
        while let Some(p) = cur {
            match self.nodes.get(p) {
                Some(node) if node.is_dir() => break,
                Some(_) => return Err(FsError::new("ENOTDIR", path)),
                None => missing.push(p.to_string()),
            }
            cur = parent(p);
        }
        let now = now();
        for p in missing.into_iter().rev() {
            self.nodes.insert(p, Node::Dir { mode, mtime: now });
        }
        Ok(())
    }

    /// Plain `mkdir`: the parent must exist and the path must not.
    pub fn mkdir(&mut self, path: &str, mode: u32) -> Result<(), FsError> {
        if self.nodes.contains_key(path) {
            return Err(FsError::new("EEXIST", path));
        }
        self.check_parent(path)?;
        self.nodes.insert(path.to_string(), Node::Dir { mode, mtime: now() });
        Ok(())
    }

    pub fn write(
        &mut self,
        path: &str,
        data: Bytes,
        mode: Option<u32>,
        mkdir_parents: bool,
    ) -> Result<(), FsError> {
        if let Some(Node::Dir { .. }) = self.nodes.get(path) {
            return Err(FsError::new("EISDIR", path));
        }
        if mkdir_parents {
            if let Some(dir) = parent(path) {
                self.mkdir_all(dir, 0o755).map_err(|e| FsError::new(e.code, path))?;
            }
        } else {
            self.check_parent(path)?;
        }
        // Like open(2) with O_TRUNC: an existing file keeps its mode unless one is asked for.
        let mode = mode.unwrap_or_else(|| match self.nodes.get(path) {
            Some(node) => node.mode(),
            None => 0o644,
        });
        self.nodes.insert(path.to_string(), Node::File { data, mode, mtime: now() });
        Ok(())
    }

    pub fn append(&mut self, path: &str, extra: &[u8]) -> Result<(), FsError> {
        let mut data = match self.nodes.get(path) {
            Some(Node::File { data, .. }) => data.to_vec(),
            Some(Node::Dir { .. }) => return Err(FsError::new("EISDIR", path)),
            None => Vec::new(),
        };
        data.extend_from_slice(extra);
        self.write(path, Bytes::from(data), None, false)
    }

    /// `touch`: creates an empty file or bumps the mtime.
    pub fn touch(&mut self, path: &str) -> Result<(), FsError> {
        match self.nodes.get_mut(path) {
            Some(Node::File { mtime, .. }) | Some(Node::Dir { mtime, .. }) => {
                *mtime = now();
                Ok(())
            }
            None => self.write(path, Bytes::new(), Some(0o644), false),
        }
    }

    pub fn chmod(&mut self, path: &str, new_mode: u32) -> Result<(), FsError> {
        match self.nodes.get_mut(path) {
            Some(Node::File { mode, .. }) | Some(Node::Dir { mode, .. }) => {
                *mode = new_mode;
                Ok(())
            }
            None => Err(FsError::new("ENOENT", path)),
        }
    }

    fn descendants(&self, dir: &str) -> Vec<String> {
        let prefix = if dir == "/" { "/".to_string() } else { format!("{dir}/") };
        self.nodes
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter(|(k, _)| k.as_str() != "/")
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Removes a path; a non-empty directory needs `recursive`. Returns the removed paths.
    pub fn remove(&mut self, path: &str, recursive: bool) -> Result<Vec<String>, FsError> {
        let Some(node) = self.nodes.get(path) else {
            return Err(self.missing(path));
        };
        if path == "/" {
            return Err(FsError::new("EINVAL", path));
        }
        let mut removed = Vec::new();
        if node.is_dir() {
            let children = self.descendants(path);
            if !children.is_empty() && !recursive {
                return Err(FsError::new("ENOTEMPTY", path));
            }
            for child in children {
                self.nodes.remove(&child);
                removed.push(child);
            }
        }
        self.nodes.remove(path);
        removed.insert(0, path.to_string());
        Ok(removed)
    }

    pub fn entry(&self, path: &str) -> Option<Entry> {
        self.nodes.get(path).map(|node| Entry {
            name: basename(path).to_string(),
            path: path.to_string(),
            kind: if node.is_dir() { "directory" } else { "file" },
            size: node.size(),
            mode: format!("{:04o}", node.mode()),
            mod_time: crate::clock::rfc3339(node.mtime()),
            is_dir: node.is_dir(),
        })
    }

    /// Directory listing (direct children, or every descendant when `recursive`); a file
    /// lists as itself, which is how the SDKs implement `stat`.
    pub fn list(&self, path: &str, recursive: bool) -> Result<Vec<Entry>, FsError> {
        let Some(node) = self.nodes.get(path) else {
            return Err(self.missing(path));
        };
        if !node.is_dir() {
            return Ok(self.entry(path).into_iter().collect());
        }
        Ok(self
            .descendants(path)
            .into_iter()
            .filter(|p| recursive || parent(p) == Some(path))
            .filter_map(|p| self.entry(&p))
            .collect())
    }
}

pub fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

/// The parent directory of an absolute, normalized path; None for "/".
pub fn parent(path: &str) -> Option<&str> {
    if path == "/" {
        return None;
    }
    match path.rfind('/') {
        Some(0) => Some("/"),
        Some(i) => Some(&path[..i]),
        None => None,
    }
}

pub fn basename(path: &str) -> &str {
    if path == "/" {
        return "/";
    }
    path.rsplit('/').next().unwrap_or(path)
}

/// Resolves `path` against `base` (both may contain `.`/`..`) into a normalized absolute path.
pub fn resolve(base: &str, path: &str) -> String {
    let joined = if path.starts_with('/') { path.to_string() } else { format!("{base}/{path}") };
    let mut parts: Vec<&str> = Vec::new();
    for part in joined.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    if parts.is_empty() { "/".to_string() } else { format!("/{}", parts.join("/")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_paths() {
        assert_eq!(resolve("/home/sprite", "a/b"), "/home/sprite/a/b");
        assert_eq!(resolve("/home/sprite", "/etc/x"), "/etc/x");
        assert_eq!(resolve("/home/sprite", "../x/./y"), "/home/x/y");
        assert_eq!(resolve("/", ".."), "/");
        assert_eq!(resolve("/", ""), "/");
    }

    #[test]
    fn write_list_remove() {
        let mut fs = Fs::new();
        let err = fs.write("/home/sprite/a/b.txt", Bytes::from("x"), None, false).unwrap_err();
        assert_eq!(err.code, "ENOENT");
        fs.write("/home/sprite/a/b.txt", Bytes::from("x"), None, true).unwrap();
        assert_eq!(fs.get("/home/sprite/a").unwrap().mode(), 0o755);
        assert_eq!(fs.get("/home/sprite/a/b.txt").unwrap().mode(), 0o644);
        let names: Vec<_> = fs.list("/home/sprite", false).unwrap().into_iter().map(|e| e.name).collect();
        assert_eq!(names, vec!["a"]);
        assert_eq!(
            fs.write("/home/sprite/a/b.txt/c", Bytes::new(), None, false).unwrap_err().code,
            "ENOTDIR"
        );
        assert_eq!(fs.remove("/home/sprite/a", false).unwrap_err().code, "ENOTEMPTY");
        let removed = fs.remove("/home/sprite/a", true).unwrap();
        assert_eq!(removed.len(), 2);
        assert!(fs.get("/home/sprite/a/b.txt").is_none());
    }
}
