//! Text from outside printed safely: [`Printable`] shows a string with every character that could
//! forge a line or drive a terminal escaped, so event text in a log line or in `aos poison list`
//! stays one inert piece of text (design 2.6, the edge).
//!
//! Escaped: control characters (C0 with `\n`, `\r`, `\t`, ESC and BEL; DEL; C1 with NEL),
//! whitespace other than the plain space (line and paragraph separators, no-break spaces), and
//! invisible format characters (bidirectional overrides and isolates, zero-width characters,
//! the byte-order mark), which can make a line read differently from what it holds.
//! `tracing-subscriber` escapes ESC and C1 in log fields itself, but not line breaks.

use std::borrow::Cow;
use std::fmt;

/// Whether `c` is escaped when printed (see the module documentation).
pub fn needs_escape(c: char) -> bool {
    if c.is_ascii() {
        // In ASCII the three classes below reduce to the controls (`\t`, `\n`, `\r` and the
        // other C0 whitespace are controls; no format character is ASCII): the common case, on
        // every webhook, decided without the Unicode tables.
        return c.is_ascii_control();
    }
    c.is_control() || c.is_whitespace() || is_invisible_format(c)
}

/// Bidirectional controls and zero-width characters (Unicode category Cf as used for spoofing).
fn is_invisible_format(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{061C}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
}

/// `text` with every character of [`needs_escape`] escaped (`\n`, `\r`, `\t`, else `\u{…}`);
/// borrowed back when there is none, which is the common case.
pub fn printable(text: &str) -> Cow<'_, str> {
    if text.bytes().all(|b| (b' '..b'\x7f').contains(&b)) || !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(Printable(text).to_string())
}

/// A string shown with [`needs_escape`] characters escaped: for log fields (`field = %Printable(x)`)
/// and printed lines.
#[derive(Clone, Copy, Debug)]
pub struct Printable<'a>(pub &'a str);

impl fmt::Display for Printable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Runs of plain characters are written as one slice each (a character at a time cost a
        // formatter call per character of every logged event id).
        let mut plain_from = 0;
        for (at, c) in self.0.char_indices() {
            if !needs_escape(c) {
                continue;
            }
            f.write_str(&self.0[plain_from..at])?;
            plain_from = at + c.len_utf8();
            match c {
                '\n' => f.write_str("\\n")?,
                '\r' => f.write_str("\\r")?,
                '\t' => f.write_str("\\t")?,
                c => write!(f, "{}", c.escape_unicode())?,
            }
        }
        f.write_str(&self.0[plain_from..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_breaks_escapes_and_invisible_characters_are_escaped() {
        assert_eq!(
            printable("a\nb\r\nc\td\u{1b}[31m\u{7}\u{85}e\u{2028}f\u{202e}g\u{a0}h\u{7f}"),
            "a\\nb\\r\\nc\\td\\u{1b}[31m\\u{7}\\u{85}e\\u{2028}f\\u{202e}g\\u{a0}h\\u{7f}"
        );
    }

    #[test]
    fn ordinary_text_is_borrowed_unchanged() {
        for text in [
            "https://ttd.apps.altinn.no/ttd/a/instances/1/x",
            "søknad æøå.pdf",
            "a b",
        ] {
            assert!(matches!(printable(text), Cow::Borrowed(t) if t == text));
        }
    }

    #[test]
    fn the_ascii_shortcut_agrees_with_the_unicode_definition() {
        for c in (0..=0x10FFFFu32).filter_map(char::from_u32) {
            let full = c.is_control() || (c.is_whitespace() && c != ' ') || is_invisible_format(c);
            assert_eq!(needs_escape(c), full, "{c:?}");
        }
    }

    #[test]
    fn the_result_never_holds_a_character_that_needs_escaping() {
        let all: String = (0..0x3000u32).filter_map(char::from_u32).collect();
        assert!(!printable(&all).chars().any(needs_escape));
    }
}
