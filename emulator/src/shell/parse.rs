//! Parsing with brush-parser (the parser of the bash-compatible brush shell): programs, the
//! pieces of a word, heredoc bodies and glob patterns, all with bash's default options.

use brush_parser::word::{WordPiece, WordPieceWithSource};
use brush_parser::{ParserOptions, ast};

fn options() -> ParserOptions {
    // extglob is off by default in a non-interactive bash; with it on, `!(…)` and friends
    // would parse as patterns where bash sees a syntax error.
    ParserOptions { enable_extended_globbing: false, ..ParserOptions::default() }
}

pub fn program(src: &str) -> Result<ast::Program, String> {
    let mut parser = brush_parser::Parser::new(std::io::Cursor::new(src.as_bytes()), &options());
    parser.parse_program().map_err(|e| e.to_string())
}

pub fn word(raw: &str) -> Result<Vec<WordPiece>, String> {
    brush_parser::word::parse(raw, &options()).map(strip).map_err(|e| e.to_string())
}

/// A heredoc body whose delimiter was unquoted: `$…` and `` `…` `` expand, quotes are literal.
pub fn heredoc(raw: &str) -> Result<Vec<WordPiece>, String> {
    brush_parser::word::parse_heredoc(raw, &options()).map(strip).map_err(|e| e.to_string())
}

pub fn strip(pieces: Vec<WordPieceWithSource>) -> Vec<WordPiece> {
    pieces.into_iter().map(|p| p.piece).collect()
}

/// A shell pattern (`*.json`, `[ab]?`) as an anchored regex.
pub fn pattern_regex(pattern: &str) -> Result<regex::Regex, String> {
    let body = brush_parser::pattern::pattern_to_regex_str(pattern, false).map_err(|e| e.to_string())?;
    regex::Regex::new(&format!("^(?s:{body})$")).map_err(|e| e.to_string())
}

pub fn has_glob_chars(pattern: &str) -> bool {
    brush_parser::pattern::pattern_has_glob_metacharacters(pattern, false)
}

/// Backslash-escapes the characters that are special in a pattern, for quoted text that must
/// match literally.
pub fn escape_pattern(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_like_bash() {
        let re = pattern_regex("*.json").unwrap();
        assert!(re.is_match("package.json"));
        assert!(!re.is_match("package.json.bak"));
        assert!(pattern_regex(&escape_pattern("a*")).unwrap().is_match("a*"));
        assert!(!pattern_regex(&escape_pattern("a*")).unwrap().is_match("ab"));
        assert!(has_glob_chars("*.md") && !has_glob_chars("plain"));
    }

    #[test]
    fn programs_parse_or_say_why_not() {
        assert!(program("if true; then echo a; fi | cat <<EOF\nx\nEOF\n").is_ok());
        assert!(program("if true; then").is_err());
    }

    #[test]
    fn the_setup_scripts_parse() {
        // What the pool runs on every Sprite must at least be valid bash to this parser.
        program(include_str!("../../../scripts/sprite-setup.sh")).unwrap();
    }
}
