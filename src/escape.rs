//! Client-chosen text on the admin's terminal: user names, HELO and host names, SNI,
//! reasons. An attacker who logs in as `\e]52;c;...\a` would otherwise set the admin's
//! clipboard through `saslguard bans`, retitle the window, hide text or overwrite a line
//! with `\r`. Every text output passes such strings through [`escape`]; JSON output is
//! escaped by its encoder already.

use std::borrow::Cow;
use std::fmt::Write;

/// Characters a terminal acts on or that reorder text: C0 controls (tab included, so
/// table columns hold), DEL, C1 controls (8-bit CSI and OSC) and the Unicode
/// bidirectional overrides and isolates.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `s` with every such character written as `\xHH` or `\u{HHHH}`. Plain text stays as
/// it is and costs no allocation; in text that needed escaping a backslash is doubled,
/// so the client cannot forge what looks like an escape next to a real one.
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            c if needs_escape(c) && (c as u32) < 0x100 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if needs_escape(c) => {
                let _ = write!(out, "\\u{{{:04x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// A whole rendered text for the terminal: every line break stays, everything else
/// [`escape`] would change is escaped. Every text output goes through this last, so no
/// renderer can forget a field.
pub fn terminal(text: &str) -> Cow<'_, str> {
    if !text.chars().any(|c| c != '\n' && needs_escape(c)) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&escape(line));
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::{escape, terminal};

    #[test]
    fn a_rendered_table_keeps_its_lines() {
        assert_eq!(terminal("a\nb\n"), "a\nb\n");
        assert_eq!(terminal("user \u{1b}[8m\nx\r\n"), "user \\x1b[8m\nx\\x0d\n");
    }

    #[test]
    fn terminal_controls_are_made_visible() {
        assert_eq!(escape("alice@example.org"), "alice@example.org");
        assert_eq!(escape("a\u{1b}]52;c;aGk=\u{7}b"), "a\\x1b]52;c;aGk=\\x07b");
        assert_eq!(escape("x\ry"), "x\\x0dy");
        assert_eq!(escape("\u{9b}31m"), "\\x9b31m");
        assert_eq!(escape("evil\u{202e}gpj.exe"), "evil\\u{202e}gpj.exe");
        assert_eq!(escape("tab\there"), "tab\\x09here");
        // Once something is escaped, a backslash is doubled so `\x1b` typed by the
        // client cannot pass for an escaped one.
        assert_eq!(escape("\\x1b\u{1b}"), "\\\\x1b\\x1b");
    }
}
