//! The one redaction layer: every text that leaves the process (the CLI's error line, log lines,
//! the Functions host's `Logs`, failure records in `aos-state`) passes [`redact`] first, so a
//! credential that slipped into an error's text never reaches an output (design 2.6).
//!
//! What is masked (the value becomes `REDACTED`, the name stays so the line still reads):
//! - the query parameters of a storage SAS (`sv ss srt sp se st spr sig si sr sdd`, and the
//!   user-delegation `sk…`/`s…oid` ones) and function keys (`code=`), after `?` or `&`;
//! - anywhere, `name=value` where the name is a credential's: `AccountKey`, `SharedAccessKey`,
//!   `SharedAccessSignature`, `Password`, `Pwd`, `assertion`, or a name ending in `key`
//!   (`AccountKey`, `apikey`, `x-functions-key`), `secret`, `password` or `token`
//!   (`client_secret`, `access_token`, `AltinnApplicationOwnerSystemSettings__AltinnToken`);
//! - the same names as JSON members, `"name": "value"` (a token response, a grant body, a
//!   settings file quoted in an error), also escaped once (`\"name\":\"value\"`, a JSON body
//!   quoted inside a JSON log line); a string value is masked to its closing quote;
//! - `Bearer <token>`, and any JWT (`eyJ…` with two dots: a Maskinporten assertion, a token);
//! - **exactly, wherever they stand**, the secret values registered at start-up
//!   ([`register_secret`]: the webhook secret, a fixed Altinn token, account keys, connection
//!   strings, the certificate password, the Key Vault secret holding the Maskinporten key), so a
//!   configured secret is masked even in a form no pattern knows (a bare value in a message, a
//!   key pasted into the wrong setting). Values shorter than [`MIN_EXACT_LEN`] are not
//!   registered: masking every occurrence of a short word would garble ordinary text.
//!
//! It is a bottom module (it imports nothing from the crate but the escaping rule of
//! [`crate::domain::Printable`], for log lines), cheap when there is nothing to do (one pass
//! over the bytes looking for `=`, `:`, `Bearer` and `eyJ`, and one Aho-Corasick pass for the
//! registered values; the text is borrowed back unchanged), since it runs on every log line of
//! the webhook path. Every pass is linear in the text, whatever it repeats.

use std::borrow::Cow;
use std::fmt;
use std::io;
use std::sync::RwLock;

use aho_corasick::{AhoCorasick, MatchKind};

use tracing_subscriber::fmt::MakeWriter;

use crate::domain::needs_escape;

/// What a masked value becomes.
pub const MASK: &str = "REDACTED";

/// `text` with every credential in it masked; borrowed back when there is none.
pub fn redact(text: &str) -> Cow<'_, str> {
    let mut spans = Vec::new();
    key_values(text, &mut spans);
    json_members(text, &mut spans);
    bearer_tokens(text, &mut spans);
    exact_values(text, &mut spans);
    jwts(text, &mut spans);
    if spans.is_empty() {
        return Cow::Borrowed(text);
    }
    spans.sort_unstable();
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (start, end) in spans {
        if start < at {
            // Overlaps the span just masked (a JWT inside `assertion=`): mask to the later end.
            at = at.max(end);
            continue;
        }
        out.push_str(&text[at..start]);
        out.push_str(MASK);
        at = end;
    }
    out.push_str(&text[at..]);
    Cow::Owned(out)
}

/// The shortest secret value [`register_secret`] takes.
pub const MIN_EXACT_LEN: usize = 8;

/// The registered secret values and one automaton finding any of them.
struct Exact {
    values: Vec<String>,
    matcher: Option<AhoCorasick>,
}

static EXACT: RwLock<Exact> = RwLock::new(Exact {
    values: Vec::new(),
    matcher: None,
});

/// Masks `value` exactly, wherever it appears in any later text, for the rest of the process.
/// Called at start-up for every configured secret (and when the Key Vault secret is read);
/// registering a value twice is harmless. Blank and short values are ignored (see the module
/// documentation).
pub fn register_secret(value: &str) {
    let value = value.trim();
    if value.len() < MIN_EXACT_LEN || value == MASK {
        return;
    }
    let mut exact = EXACT.write().unwrap_or_else(|p| p.into_inner());
    if exact.values.iter().any(|v| v == value) {
        return;
    }
    exact.values.push(value.to_string());
    // Leftmost-longest: a secret that contains another (a connection string and its key) is
    // masked whole.
    exact.matcher = AhoCorasick::builder()
        .match_kind(MatchKind::LeftmostLongest)
        .build(&exact.values)
        .ok();
}

fn exact_values(text: &str, spans: &mut Vec<(usize, usize)>) {
    let exact = EXACT.read().unwrap_or_else(|p| p.into_inner());
    if let Some(matcher) = &exact.matcher {
        spans.extend(matcher.find_iter(text).map(|m| (m.start(), m.end())));
    }
}

/// An error (or anything displayable) shown redacted: its `{:#}` text — for an
/// `anyhow::Error` the whole cause chain — through [`redact`].
pub struct Redacted<E>(pub E);

impl<E: fmt::Display> fmt::Display for Redacted<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact(&format!("{:#}", self.0)))
    }
}

/// A `tracing_subscriber` writer that redacts every formatted line before it is written: the
/// one place all logs pass, whatever field or message carried the credential.
pub struct RedactingWriter<M>(pub M);

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for RedactingWriter<M> {
    type Writer = RedactingWrite<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        RedactingWrite(self.0.make_writer())
    }
}

/// One event's output. The formatter writes each event with a single `write_all` of the whole
/// formatted line, so each `write` sees a whole line and can redact it — and make it inert
/// ([`one_line`]): a line break or terminal control inside it (from any field: event text, an
/// error from outside) is escaped, so no log line can be forged and no field can drive the
/// terminal. `tracing-subscriber` escapes ESC only in the `message` field.
pub struct RedactingWrite<W>(W);

impl<W: io::Write> io::Write for RedactingWrite<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        self.0.write_all(one_line(&redact(&text)).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// `line` made inert: every character of [`needs_escape`] escaped (line breaks, terminal
/// controls, invisible characters) except one line break at its end and the formatter's own
/// colour codes (SGR sequences, `ESC [ digits ; … m`, which only colour text); borrowed when
/// there is nothing to escape.
fn one_line(line: &str) -> Cow<'_, str> {
    let body = line.strip_suffix('\n').unwrap_or(line);
    let colours = |from: usize| sgr_len(&body[from..]);
    let clean = body
        .char_indices()
        .all(|(i, c)| !needs_escape(c) || colours(i) > 0);
    if clean {
        return Cow::Borrowed(line);
    }
    let mut out = String::with_capacity(line.len() + 16);
    let mut at = 0;
    for (i, c) in body.char_indices() {
        if i < at {
            continue;
        }
        let sgr = colours(i);
        if sgr > 0 {
            out.push_str(&body[i..i + sgr]);
            at = i + sgr;
            continue;
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) => out.extend(c.escape_unicode()),
            c => out.push(c),
        }
        at = i + c.len_utf8();
    }
    if body.len() < line.len() {
        out.push('\n');
    }
    Cow::Owned(out)
}

/// The length of the SGR sequence (`ESC [ [0-9;]* m`) `text` starts with, or 0.
fn sgr_len(text: &str) -> usize {
    let Some(rest) = text.strip_prefix("\u{1b}[") else {
        return 0;
    };
    let params = rest
        .bytes()
        .take_while(|b| b.is_ascii_digit() || *b == b';')
        .count();
    if rest.as_bytes().get(params) == Some(&b'm') {
        2 + params + 1
    } else {
        0
    }
}

/// SAS and function-key parameters: masked only as query parameters (after `?` or `&`), since
/// names this short occur in ordinary text.
const QUERY_NAMES: &[&str] = &[
    "sv", "ss", "srt", "sp", "se", "st", "spr", "sig", "si", "sr", "sdd", "skoid", "sktid", "skt",
    "ske", "sks", "skv", "saoid", "suoid", "scid", "code",
];

/// Credential names masked wherever they stand before `=`.
const NAMES: &[&str] = &[
    "sig",
    "sharedaccesssignature",
    "pwd",
    "assertion",
    "client_assertion",
];

/// Name endings masked wherever they stand before `=`.
const SUFFIXES: &[&str] = &["key", "secret", "password", "token"];

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// Where a value that starts at `from` ends: at a separator, a quote, a bracket or whitespace.
fn value_end(bytes: &[u8], from: usize) -> usize {
    bytes[from..]
        .iter()
        .position(|&b| {
            b.is_ascii_whitespace()
                || matches!(
                    b,
                    b'&' | b';'
                        | b'"'
                        | b'\''
                        | b'<'
                        | b'>'
                        | b'('
                        | b')'
                        | b'['
                        | b']'
                        | b'{'
                        | b'}'
                        | b','
                        | b'\\'
                )
        })
        .map_or(bytes.len(), |n| from + n)
}

fn ends_with_ignore_case(name: &str, suffix: &str) -> bool {
    name.len() >= suffix.len()
        && name.as_bytes()[name.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
}

fn key_values(text: &str, spans: &mut Vec<(usize, usize)>) {
    let bytes = text.as_bytes();
    // Masked up to here: an `=` inside a masked value is not looked at again, so a hostile
    // `key=key=key=…` costs one pass, not one pass per `=`.
    let mut covered = 0;
    for (eq, _) in text.match_indices('=') {
        if eq < covered {
            continue;
        }
        let start = bytes[..eq]
            .iter()
            .rposition(|&b| !is_name_byte(b))
            .map_or(0, |i| i + 1);
        let name = &text[start..eq];
        if name.is_empty() {
            continue;
        }
        let after_query = start > 0 && matches!(bytes[start - 1], b'?' | b'&');
        let sensitive = (after_query && QUERY_NAMES.iter().any(|n| n.eq_ignore_ascii_case(name)))
            || is_credential_name(name);
        if !sensitive {
            continue;
        }
        let end = value_end(bytes, eq + 1);
        if end > eq + 1 && &text[eq + 1..end] != MASK {
            spans.push((eq + 1, end));
        }
        covered = end;
    }
}

/// A credential's name, wherever it stands (`NAMES`, or a name ending in one of `SUFFIXES`).
fn is_credential_name(name: &str) -> bool {
    NAMES.iter().any(|n| n.eq_ignore_ascii_case(name))
        || SUFFIXES.iter().any(|s| ends_with_ignore_case(name, s))
}

/// `"name": value` members whose name is a credential's, plain or escaped once.
fn json_members(text: &str, spans: &mut Vec<(usize, usize)>) {
    let bytes = text.as_bytes();
    let blank = |b: u8| b == b' ' || b == b'\t';
    // As in `key_values`: a `:` inside a value already masked is not looked at again.
    let mut covered = 0;
    for (colon, _) in text.match_indices(':') {
        if colon < covered {
            continue;
        }
        let mut quote = colon;
        while quote > 0 && blank(bytes[quote - 1]) {
            quote -= 1;
        }
        if quote == 0 || bytes[quote - 1] != b'"' {
            continue;
        }
        let escaped = quote >= 2 && bytes[quote - 2] == b'\\';
        let name_end = if escaped { quote - 2 } else { quote - 1 };
        let name_start = bytes[..name_end]
            .iter()
            .rposition(|&b| !is_name_byte(b))
            .map_or(0, |i| i + 1);
        let opened = if escaped {
            name_start >= 2 && &bytes[name_start - 2..name_start] == b"\\\""
        } else {
            name_start >= 1 && bytes[name_start - 1] == b'"'
        };
        if !opened || name_start == name_end || !is_credential_name(&text[name_start..name_end]) {
            continue;
        }
        let mut at = colon + 1;
        while at < bytes.len() && blank(bytes[at]) {
            at += 1;
        }
        let (start, end) = if escaped && bytes[at..].starts_with(b"\\\"") {
            let start = at + 2;
            let end = text[start..]
                .find("\\\"")
                .map_or(bytes.len(), |n| start + n);
            (start, end)
        } else if !escaped && bytes.get(at) == Some(&b'"') {
            (at + 1, string_end(bytes, at + 1))
        } else {
            (at, value_end(bytes, at))
        };
        if end > start && &text[start..end] != MASK {
            spans.push((start, end));
        }
        covered = end.max(colon + 1);
    }
}

/// Where a JSON string whose content starts at `from` ends: its closing quote (an escaped
/// quote does not close it), or the end of the text.
fn string_end(bytes: &[u8], from: usize) -> usize {
    let mut i = from;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return i,
            _ => i += 1,
        }
    }
    bytes.len()
}

fn bearer_tokens(text: &str, spans: &mut Vec<(usize, usize)>) {
    const BEARER: &[u8] = b"bearer ";
    let bytes = text.as_bytes();
    let mut from = 0;
    while let Some(found) = bytes[from..]
        .windows(BEARER.len())
        .position(|w| w.eq_ignore_ascii_case(BEARER))
    {
        let value = from + found + BEARER.len();
        let end = value_end(bytes, value);
        if end > value && &text[value..end] != MASK {
            spans.push((value, end));
        }
        from = end.max(value);
    }
}

fn jwts(text: &str, spans: &mut Vec<(usize, usize)>) {
    let bytes = text.as_bytes();
    // A run of token characters is read once: an `eyJ` inside a run already read is part of it.
    let mut read_to = 0;
    for (start, _) in text.match_indices("eyJ") {
        if start < read_to {
            continue;
        }
        let len = bytes[start..]
            .iter()
            .position(|&b| !(b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')))
            .unwrap_or(bytes.len() - start);
        let token = &bytes[start..start + len];
        if token.iter().filter(|&&b| b == b'.').count() >= 2 {
            spans.push((start, start + len));
        }
        read_to = start + len;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KEY: &str =
        "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

    /// Repeated triggers from a hostile client (an event `type` of `key=key=…` or `eyJeyJ…`)
    /// are masked in one pass: the runs are masked whole, and nothing past them is lost.
    #[test]
    fn repeated_triggers_are_masked_whole() {
        let keys = "key=".repeat(20_000);
        let line = format!("type {keys} end");
        let redacted = redact(&line);
        assert!(redacted.starts_with("type key="), "{}", &redacted[..40]);
        assert!(redacted.ends_with(" end"));
        assert!(redacted.len() < 100, "{} bytes", redacted.len());
        let run = format!("a {}.b.c z", "eyJ".repeat(20_000));
        assert_eq!(redact(&run), format!("a {MASK} z"));
    }

    #[test]
    fn a_storage_sas_loses_every_parameter_value_and_keeps_the_rest() {
        let line = "error sending request for url (http://127.0.0.1:1/acct/q/messages?\
                    numofmessages=32&sv=2022-11-02&ss=bq&srt=sco&sp=rwdlacup&st=2026-12-01T18%3A26Z\
                    &se=2026-12-01T20%3A31Z&spr=https%2Chttp&sig=abc%2Bdef%3D): refused";
        assert_eq!(
            redact(line),
            "error sending request for url (http://127.0.0.1:1/acct/q/messages?\
             numofmessages=32&sv=REDACTED&ss=REDACTED&srt=REDACTED&sp=REDACTED&st=REDACTED\
             &se=REDACTED&spr=REDACTED&sig=REDACTED): refused"
        );
    }

    #[test]
    fn user_delegation_keys_and_function_keys_are_masked() {
        let url =
            "https://a.blob.core.windows.net/c/b?skoid=o&sktid=t&skt=1&ske=2&sks=b&skv=v&sig=s";
        let out = redact(url);
        assert!(!out.contains("=o") && !out.contains("=s"), "{out}");
        assert_eq!(
            redact("POST /api/EventsReceiver?code=hunter2 401"),
            "POST /api/EventsReceiver?code=REDACTED 401"
        );
    }

    #[test]
    fn connection_strings_settings_and_tokens_are_masked() {
        let cs = format!(
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={KEY};BlobEndpoint=http://x/"
        );
        assert_eq!(
            redact(&cs),
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=REDACTED;BlobEndpoint=http://x/"
        );
        assert_eq!(
            redact(
                "AltinnApplicationOwnerSystemSettings__AltinnToken=abc WebhookSecret=s3 Password=p"
            ),
            "AltinnApplicationOwnerSystemSettings__AltinnToken=REDACTED WebhookSecret=REDACTED Password=REDACTED"
        );
        assert_eq!(
            redact("authorization: Bearer abc.def-ghi, next"),
            "authorization: Bearer REDACTED, next"
        );
        let jwt = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJ4In0.c2lnbmF0dXJl";
        assert_eq!(
            redact(&format!("grant_type=x&assertion={jwt}")),
            "grant_type=x&assertion=REDACTED"
        );
        assert_eq!(
            redact(&format!("token {jwt} refused")),
            "token REDACTED refused"
        );
    }

    /// Credentials as JSON members: a token response, a grant body echoed in an error, a
    /// settings file; plain and escaped once (a JSON body quoted inside a JSON log line).
    #[test]
    fn json_members_named_like_credentials_are_masked() {
        assert_eq!(
            redact(r#"{"access_token":"at-123","expires_in":120,"token_type":"Bearer"}"#),
            r#"{"access_token":"REDACTED","expires_in":120,"token_type":"Bearer"}"#
        );
        assert_eq!(
            redact(r#"body {"password" : "p@ss word", "user":"u"} end"#),
            r#"body {"password" : "REDACTED", "user":"u"} end"#
        );
        assert_eq!(
            redact(r#"{"client_secret":"cs\"q","assertion":"a.b.c","AccountKey":"k=="}"#),
            r#"{"client_secret":"REDACTED","assertion":"REDACTED","AccountKey":"REDACTED"}"#
        );
        assert_eq!(
            redact(r#"{"message":"refused {\"password\":\"hunter2\",\"n\":1}"}"#),
            r#"{"message":"refused {\"password\":\"REDACTED\",\"n\":1}"}"#
        );
        assert_eq!(redact(r#"{"apiKey": 12345}"#), r#"{"apiKey": REDACTED}"#);
        // Not credentials: left alone and borrowed.
        for text in [
            r#"{"message":"instance archived","elements":3,"token_type":"Bearer"}"#,
            r#"{"timestamp":"2026-12-01T20:12:46Z","keyCount":2}"#,
        ] {
            assert!(matches!(redact(text), Cow::Borrowed(_)), "{text}");
        }
        // Hostile repetition stays one pass and loses nothing past it.
        let run = format!("a {}, z", r#""password":"#.repeat(100_000));
        let out = redact(&run);
        assert!(
            out.starts_with(r#"a "password":"#) && out.ends_with(", z"),
            "{}",
            &out[..60]
        );
        assert!(!out.contains(r#":"password":"password""#), "{}", &out[..60]);
    }

    /// A registered secret is masked in any form no pattern knows; short values are not
    /// registered, and a secret containing another is masked whole.
    #[test]
    fn registered_secret_values_are_masked_wherever_they_stand() {
        let webhook = "wh-Secret-7f3a9c1e";
        let key = "QUNDT1VOVEtFWS1leGFjdC12YWx1ZQ==";
        let connection = format!("AccountName=a;AccountKey={key};X=1");
        register_secret(webhook);
        register_secret(&format!("  {key}\n"));
        register_secret(&connection);
        register_secret("short");
        register_secret("");
        assert_eq!(
            redact(&format!("the secret {webhook}, again:{webhook}/x")),
            "the secret REDACTED, again:REDACTED/x"
        );
        assert_eq!(
            redact(&format!("key {key} in a message")),
            "key REDACTED in a message"
        );
        assert_eq!(redact(&format!("cs {connection} end")), "cs REDACTED end");
        assert!(matches!(redact("a short word"), Cow::Borrowed(_)));
        let many = format!("{webhook} ").repeat(10_000);
        assert_eq!(redact(&many), "REDACTED ".repeat(10_000));
    }

    #[test]
    fn ordinary_text_is_borrowed_unchanged() {
        for text in [
            "reconcile summary: found 5, queued 0",
            "query instances (org=ttd&process.isComplete=true&size=100)",
            "instance=1337/abc status=503 step=process",
            "a base64 message eyJhIjoxfQ== stays",
            "",
        ] {
            assert!(matches!(redact(text), Cow::Borrowed(_)), "{text}");
        }
    }

    #[test]
    fn the_sdk_own_mask_is_left_alone_and_redaction_is_idempotent() {
        assert!(matches!(redact("x?sig=REDACTED"), Cow::Borrowed(_)));
        let once = redact("u?sv=1&sig=2 Bearer t AccountKey=k").into_owned();
        assert_eq!(redact(&once), once);
    }

    #[test]
    fn redacted_shows_the_whole_chain_masked() {
        let e = anyhow::anyhow!("connect refused for http://h/c?sv=1&sig=SECRET")
            .context("blob storage");
        let shown = Redacted(&e).to_string();
        assert!(
            shown.starts_with("blob storage: connect refused"),
            "{shown}"
        );
        assert!(!shown.contains("SECRET"), "{shown}");
    }

    #[test]
    fn the_writer_masks_each_line() {
        use std::io::Write;
        let mut out = Vec::new();
        RedactingWrite(&mut out)
            .write_all(b"WARN url=http://h/q?sig=SECRET done\n")
            .unwrap();
        assert_eq!(out, b"WARN url=http://h/q?sig=REDACTED done\n");
    }

    #[test]
    fn the_writer_keeps_each_line_one_line() {
        use std::io::Write;
        let mut out = Vec::new();
        RedactingWrite(&mut out)
            .write_all("WARN reason=evil\nFORGED\r\u{2028}x\n".as_bytes())
            .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "WARN reason=evil\\nFORGED\\r\\u{2028}x\n"
        );
        assert!(matches!(one_line("plain\n"), Cow::Borrowed(_)));
        assert_eq!(one_line("no end\nhere"), "no end\\nhere");
        // The formatter's colours stay; any other escape sequence is shown, not run.
        let coloured = "\u{1b}[2m2026\u{1b}[0m \u{1b}[33mWARN\u{1b}[0m x\n";
        assert!(matches!(one_line(coloured), Cow::Borrowed(_)));
        assert_eq!(
            one_line("\u{1b}[33mWARN\u{1b}[0m r=\u{1b}[2J\u{1b}]0;t\u{7}\u{202e}\n"),
            "\u{1b}[33mWARN\u{1b}[0m r=\\u{1b}[2J\\u{1b}]0;t\\u{7}\\u{202e}\n"
        );
    }

    proptest! {
        /// Whatever surrounds it, a secret put into a credential's place never comes out.
        #[test]
        fn a_secret_in_any_credential_place_never_survives(
            before in "[ -~]{0,40}",
            after in "[ -~&;]{0,40}",
            secret in "[A-Za-z0-9_]{8,40}",
            place in 0usize..8,
        ) {
            let around = match place {
                0 => format!("http://h/c/b?sv=2022&sig={secret}"),
                1 => format!("http://h/c/b?x=1&sp={secret}"),
                2 => format!("AccountName=a;AccountKey={secret}=="),
                3 => format!("Bearer {secret}"),
                4 => format!("/api/EventsReceiver?code={secret}"),
                5 => format!("client_secret={secret}"),
                6 => format!("assertion=eyJ{secret}.{secret}.{secret}"),
                _ => format!("Password={secret}"),
            };
            let text = format!("{before} {around}\n{after}");
            let out = redact(&text);
            prop_assert!(
                !out.contains(&secret) || before.contains(&secret) || after.contains(&secret),
                "{}", out
            );
        }

        /// Redaction never panics, is idempotent, and leaves text without `=`, `:`, `Bearer` or a
        /// JWT as it was.
        #[test]
        fn redaction_is_total_and_idempotent(text in "\\PC{0,200}") {
            let once = redact(&text).into_owned();
            prop_assert_eq!(redact(&once).into_owned(), once.clone());
            if !text.contains('=') && !text.contains(':') && !text.to_ascii_lowercase().contains("bearer ") && !text.contains("eyJ") {
                prop_assert_eq!(once, text);
            }
        }
    }
}
