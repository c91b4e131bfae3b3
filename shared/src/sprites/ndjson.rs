//! Newline-delimited JSON bodies (checkpoint, restore and service streams).

use serde::de::DeserializeOwned;

use super::SpritesError;

/// Every non-blank line decoded as `T`; a line that does not decode is a protocol error,
/// because skipping it could hide an `error` line.
pub(crate) fn parse_lines<T: DeserializeOwned>(body: &[u8]) -> Result<Vec<T>, SpritesError> {
    body.split(|b| *b == b'\n')
        .map(|line| line.trim_ascii())
        .filter(|line| !line.is_empty())
        .map(|line| {
            serde_json::from_slice(line).map_err(|e| {
                SpritesError::Protocol(format!("bad NDJSON line ({e}): {}", String::from_utf8_lossy(line)))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sprites::StreamMessage;

    #[test]
    fn parses_lines_and_skips_blanks() {
        let body = b"{\"type\":\"info\",\"data\":\"a\"}\n\r\n{\"type\":\"complete\",\"data\":\"Checkpoint v8 created\"}\n";
        let lines: Vec<StreamMessage> = parse_lines(body).unwrap();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1].data.as_deref(), Some("Checkpoint v8 created"));
        assert!(parse_lines::<StreamMessage>(b"{\"type\":\"info\"}\nnot json\n").is_err());
    }
}
