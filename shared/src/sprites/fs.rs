//! The filesystem API (§6 of the reference): how files reach a Sprite without a shell, so
//! secrets and user text never pass through a command line.

use bytes::Bytes;
use http::header;

use super::types::FsListing;
use super::{FsEntry, FsWritten, SpritesClient, SpritesError};

/// A file to write. Paths are used as given; relative ones resolve against `working_dir`.
#[derive(Debug, Clone)]
pub struct WriteFile {
    pub path: String,
    pub contents: Bytes,
    /// Permission bits, e.g. `0o600` for secrets.
    pub mode: u32,
    pub mkdir_parents: bool,
    pub working_dir: String,
}

impl WriteFile {
    pub fn new(path: impl Into<String>, contents: impl Into<Bytes>) -> Self {
        WriteFile {
            path: path.into(),
            contents: contents.into(),
            mode: 0o644,
            mkdir_parents: true,
            working_dir: "/".into(),
        }
    }

    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = mode;
        self
    }
}

/// A 404 that means "no such path" (as opposed to "no such Sprite").
fn is_missing_path(err: &SpritesError) -> bool {
    matches!(err, SpritesError::NotFound { code: Some(code), .. } if code == "ENOENT")
}

impl SpritesClient {
    pub async fn write_file(&self, sprite: &str, file: &WriteFile) -> Result<FsWritten, SpritesError> {
        let url = self.sprite_url(sprite, &["fs", "write"]);
        let query = [
            ("path", file.path.clone()),
            ("workingDir", file.working_dir.clone()),
            ("mode", format!("{:04o}", file.mode & 0o7777)),
            ("mkdirParents", file.mkdir_parents.to_string()),
        ];
        self.call(self.call_for("fs.write", Some(sprite)), |http| {
            http.put(url.clone())
                .query(&query)
                .header(header::CONTENT_TYPE, "application/octet-stream")
                .body(file.contents.clone())
        })
        .await?
        .json()
    }

    /// The file's bytes, or `None` when the path does not exist.
    pub async fn read_file(&self, sprite: &str, path: &str) -> Result<Option<Bytes>, SpritesError> {
        let url = self.sprite_url(sprite, &["fs", "read"]);
        let query = [("path", path), ("workingDir", "/")];
        match self
            .call(self.call_for("fs.read", Some(sprite)), |http| http.get(url.clone()).query(&query))
            .await
        {
            Ok(reply) => Ok(Some(reply.body)),
            Err(err) if is_missing_path(&err) => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// A directory's entries (a file lists as itself), or `None` when the path does not exist.
    pub async fn list_dir(&self, sprite: &str, path: &str) -> Result<Option<Vec<FsEntry>>, SpritesError> {
        let url = self.sprite_url(sprite, &["fs", "list"]);
        let query = [("path", path), ("workingDir", "/")];
        match self
            .call(self.call_for("fs.list", Some(sprite)), |http| http.get(url.clone()).query(&query))
            .await
        {
            Ok(reply) => Ok(Some(reply.json::<FsListing>()?.entries)),
            Err(err) if is_missing_path(&err) => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// Removes a path; `Ok(false)` when it did not exist.
    pub async fn delete_path(&self, sprite: &str, path: &str, recursive: bool) -> Result<bool, SpritesError> {
        let url = self.sprite_url(sprite, &["fs", "delete"]);
        let query =
            [("path", path.to_string()), ("workingDir", "/".into()), ("recursive", recursive.to_string())];
        let result = self
            .call(self.call_for("fs.delete", Some(sprite)), |http| http.delete(url.clone()).query(&query))
            .await;
        super::removed(result, is_missing_path)
    }
}
