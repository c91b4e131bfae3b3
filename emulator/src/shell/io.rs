//! Where a command's output goes and where its input comes from: the exec stream, a buffer
//! (`$(…)`), a pipe to the next pipeline stage, a file on the Sprite, or nowhere.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

use crate::state::App;

/// Output chunks are cut to this size so multi-MB output goes out as many frames.
pub const CHUNK: usize = 64 * 1024;

/// What a running command produces, in order.
#[derive(Debug)]
pub enum Event {
    Stdout(Bytes),
    Stderr(Bytes),
    Exit(u8),
    /// The environment restarted under the command: no exit status to report.
    Ended,
}

#[derive(Debug)]
pub enum StdinMsg {
    Data(Bytes),
    Eof,
}

/// A file on a Sprite that output is appended to as it is written (`>`/`>>`), so a reader
/// sees it grow the way it would on a real disk.
#[derive(Clone)]
pub struct FileSink {
    pub app: App,
    pub sprite: String,
    pub sprite_id: String,
    pub path: String,
}

#[derive(Clone)]
pub enum Sink {
    Channel(UnboundedSender<Event>, bool),
    Buffer(Arc<Mutex<Vec<u8>>>),
    /// The write end of a pipe; the reader sees EOF once every clone is dropped.
    Pipe(UnboundedSender<StdinMsg>),
    File(Arc<FileSink>),
    Null,
}

impl Sink {
    pub fn stdout(tx: UnboundedSender<Event>) -> Self {
        Sink::Channel(tx, false)
    }
    pub fn stderr(tx: UnboundedSender<Event>) -> Self {
        Sink::Channel(tx, true)
    }

    pub fn write(&self, data: Bytes) {
        if data.is_empty() {
            return;
        }
        match self {
            Sink::Channel(tx, is_err) => {
                let mut rest = data;
                while !rest.is_empty() {
                    let chunk = rest.split_to(rest.len().min(CHUNK));
                    // A gone receiver means the client left; the command runs on regardless.
                    let _ = tx.send(if *is_err { Event::Stderr(chunk) } else { Event::Stdout(chunk) });
                }
            }
            Sink::Buffer(buf) => buf.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(&data),
            // A reader that stopped reading (`head`) is not an error for the writer.
            Sink::Pipe(tx) => {
                let _ = tx.send(StdinMsg::Data(data));
            }
            Sink::File(f) => {
                let mut world = f.app.world();
                if let Some(sprite) = world.sprite_if(&f.sprite, &f.sprite_id) {
                    // The file was opened (created/truncated) when the redirection was set
                    // up; if it vanished since, the bytes go nowhere, as with an unlinked file.
                    let _ = sprite.fs.append(&f.path, &data);
                }
            }
            Sink::Null => {}
        }
    }
}

pub enum Input {
    Live(UnboundedReceiver<StdinMsg>),
    Buffered(Option<Bytes>),
    Closed,
    /// Bytes a reader took but did not use (`read` stops at a newline), then the rest.
    Partial(Bytes, Box<Input>),
}

impl Input {
    pub async fn next_chunk(&mut self) -> Option<Bytes> {
        match self {
            Input::Live(rx) => loop {
                match rx.recv().await {
                    Some(StdinMsg::Data(b)) if b.is_empty() => continue,
                    Some(StdinMsg::Data(b)) => return Some(b),
                    Some(StdinMsg::Eof) | None => {
                        *self = Input::Closed;
                        return None;
                    }
                }
            },
            Input::Buffered(data) => data.take().filter(|b| !b.is_empty()),
            Input::Closed => None,
            Input::Partial(..) => {
                let Input::Partial(head, rest) = std::mem::replace(self, Input::Closed) else {
                    unreachable!("matched Partial above");
                };
                *self = *rest;
                Some(head)
            }
        }
    }

    pub async fn read_all(&mut self) -> Vec<u8> {
        let mut all = Vec::new();
        while let Some(chunk) = self.next_chunk().await {
            all.extend_from_slice(&chunk);
        }
        all
    }

    /// One line without its newline; None at end of input. The flag says whether the line
    /// ended with a newline (a last line without one still counts, as for `read`).
    pub async fn read_line(&mut self) -> Option<(Vec<u8>, bool)> {
        let mut line = Vec::new();
        loop {
            let Some(chunk) = self.next_chunk().await else {
                return if line.is_empty() { None } else { Some((line, false)) };
            };
            match chunk.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    line.extend_from_slice(&chunk[..i]);
                    let rest = chunk.slice(i + 1..);
                    if !rest.is_empty() {
                        let tail = std::mem::replace(self, Input::Closed);
                        *self = Input::Partial(rest, Box::new(tail));
                    }
                    return Some((line, true));
                }
                None => line.extend_from_slice(&chunk),
            }
        }
    }
}
