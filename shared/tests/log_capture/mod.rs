//! Every line a logging layer writes, kept in memory: the log tests (secrets_in_logs.rs,
//! story_in_logs.rs) install the layers the processes use and read what they wrote.

use std::io::Write;
use std::sync::{Arc, Mutex};

#[derive(Clone, Default)]
pub struct Capture(Arc<Mutex<Vec<u8>>>);

pub struct CaptureWriter(Arc<Mutex<Vec<u8>>>);

impl Write for CaptureWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Capture {
    /// A `MakeWriter` for a layer: every line goes into this capture.
    pub fn writer(&self) -> impl Fn() -> CaptureWriter + Send + Sync + 'static {
        let buffer = self.0.clone();
        move || CaptureWriter(buffer.clone())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}
