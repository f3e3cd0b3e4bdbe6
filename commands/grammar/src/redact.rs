//! Secret redaction for anything that leaves the cluster for chat: log lines,
//! crash output, command text in the history.
//!
//! What is masked: bearer tokens, JWTs, passwords in URLs
//! (`postgres://user:pass@host`), `password=`/`secret=`/`token=`/`api_key=`
//! style assignments (also `DB_PASSWORD=…` and JSON `"password": "…"`), AWS
//! access key ids, and private key blocks (PEM, whether on one line or across
//! lines). Masking is conservative: a false positive hides a harmless value,
//! a false negative leaks a secret into a channel.

use std::sync::OnceLock;

use regex::{Regex, RegexSet};

struct Rules {
    /// Every rule's pattern in one automaton: a line none of them can match
    /// (nearly every line) is answered by one scan instead of seven.
    any: RegexSet,
    pem_inline: Regex,
    bearer: Regex,
    jwt: Regex,
    url_password: Regex,
    assignment: Regex,
    aws_key: Regex,
    basic_auth: Regex,
}

const PEM_INLINE: &str = r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----";
const BEARER: &str = r"(?i)\b(bearer)\s+[A-Za-z0-9\-._~+/]+=*";
const JWT: &str = r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}";
const URL_PASSWORD: &str = r"([a-zA-Z][a-zA-Z0-9+.\-]*://[^\s:/@]+):([^\s@/]+)@";
const ASSIGNMENT: &str = r#"(?i)([a-z0-9_.\-]*(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key|credentials?)[a-z0-9_.\-]*)("?'?\s*[=:]\s*)("[^"]*"|'[^']*'|[^\s,;&"'}]+)"#;
const AWS_KEY: &str = r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b";
const BASIC_AUTH: &str = r"(?i)\b(basic)\s+[A-Za-z0-9+/]{8,}=*";

fn rules() -> &'static Rules {
    static RULES: OnceLock<Rules> = OnceLock::new();
    RULES.get_or_init(|| {
        let all = [
            PEM_INLINE,
            BEARER,
            JWT,
            URL_PASSWORD,
            ASSIGNMENT,
            AWS_KEY,
            BASIC_AUTH,
        ];
        Rules {
            // The set's word boundaries are ASCII ones, which its DFA
            // handles on any text. Every `\b` above sits next to an ASCII
            // word character, where an ASCII boundary is found wherever a
            // Unicode one is: the set matches at least where a rule does.
            any: RegexSet::new(all.map(|p| p.replace(r"\b", r"(?-u:\b)"))).unwrap(),
            pem_inline: Regex::new(PEM_INLINE).unwrap(),
            bearer: Regex::new(BEARER).unwrap(),
            jwt: Regex::new(JWT).unwrap(),
            url_password: Regex::new(URL_PASSWORD).unwrap(),
            assignment: Regex::new(ASSIGNMENT).unwrap(),
            aws_key: Regex::new(AWS_KEY).unwrap(),
            basic_auth: Regex::new(BASIC_AUTH).unwrap(),
        }
    })
}

pub const MASK: &str = "[REDACTED]";

/// Masks the secrets in one line.
pub fn redact_line(line: &str) -> String {
    let r = rules();
    if !r.any.is_match(line) {
        return line.to_owned();
    }
    redact_each_rule(line)
}

/// Every rule applied in turn (what [`redact_line`] does once its check
/// found one that may match).
fn redact_each_rule(line: &str) -> String {
    let r = rules();
    let out = r.pem_inline.replace_all(line, "[REDACTED PRIVATE KEY]");
    let out = r.jwt.replace_all(&out, "[REDACTED JWT]");
    let out = r.bearer.replace_all(&out, "$1 [REDACTED]");
    let out = r.basic_auth.replace_all(&out, "$1 [REDACTED]");
    let out = r.url_password.replace_all(&out, "$1:[REDACTED]@");
    let out = r.aws_key.replace_all(&out, "[REDACTED AWS KEY]");
    let out = r.assignment.replace_all(&out, |c: &regex::Captures| {
        // Leave already-masked values alone.
        if c[3].contains("[REDACTED") {
            c[0].to_string()
        } else {
            format!("{}{}{MASK}", &c[1], &c[2])
        }
    });
    out.into_owned()
}

/// Masks a sequence of lines, including private key blocks that span lines.
pub fn redact_lines<'a>(lines: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_key = false;
    for line in lines {
        if in_key {
            if line.contains("-----END") && line.contains("PRIVATE KEY-----") {
                in_key = false;
            }
            continue;
        }
        if line.contains("-----BEGIN")
            && line.contains("PRIVATE KEY-----")
            && !line.contains("-----END")
        {
            in_key = true;
            let before = line.split("-----BEGIN").next().unwrap_or("");
            out.push(format!("{}[REDACTED PRIVATE KEY]", redact_line(before)));
            continue;
        }
        out.push(redact_line(line));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_of_secret_is_masked() {
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
        let table = [
            (
                "GET /api Authorization: Bearer abc.def-123_XYZ",
                "Authorization: Bearer [REDACTED]",
                "abc.def",
            ),
            (
                &format!("token {jwt} accepted") as &str,
                "token [REDACTED JWT] accepted",
                "eyJzdWIi",
            ),
            (
                "connecting to postgres://app:s3cr3t@db:5432/app",
                "postgres://app:[REDACTED]@db:5432/app",
                "s3cr3t",
            ),
            (
                "login password=hunter2 user=bob",
                "password=[REDACTED] user=bob",
                "hunter2",
            ),
            ("DB_PASSWORD=hunter2", "DB_PASSWORD=[REDACTED]", "hunter2"),
            (
                "client_secret: abcdef123",
                "client_secret: [REDACTED]",
                "abcdef123",
            ),
            (
                r#"{"user":"bob","password":"hunter2"}"#,
                r#""password":[REDACTED]"#,
                "hunter2",
            ),
            ("secret=xyz&next=1", "secret=[REDACTED]&next=1", "xyz"),
            (
                "aws key AKIAIOSFODNN7EXAMPLE used",
                "aws key [REDACTED AWS KEY] used",
                "AKIAIOSFODNN7EXAMPLE",
            ),
            (
                "aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                "aws_secret_access_key=[REDACTED]",
                "wJalrXUtnFEMI",
            ),
            (
                "key: -----BEGIN RSA PRIVATE KEY-----MIIEow-----END RSA PRIVATE KEY-----",
                "key: [REDACTED PRIVATE KEY]",
                "MIIEow",
            ),
            (
                "Authorization: Basic dXNlcjpwYXNzd29yZA==",
                "Authorization: Basic [REDACTED]",
                "dXNlcjpw",
            ),
            ("api_key=sk_live_1234", "api_key=[REDACTED]", "sk_live_1234"),
        ];
        for (input, expected, leaked) in table {
            let out = redact_line(input);
            assert!(out.contains(expected), "{input} → {out}");
            assert!(!out.contains(leaked), "{input} leaked {leaked}: {out}");
        }
    }

    #[test]
    fn ordinary_lines_are_untouched() {
        for line in [
            "level=info msg=\"GET /health\" status=200 duration=0.4ms",
            "connected to database pool_size=10",
            "https://example.com/path?x=1",
            "tokenizer started",
        ] {
            assert_eq!(redact_line(line), line);
        }
    }

    #[test]
    fn the_one_scan_check_lets_through_only_lines_no_rule_matches() {
        let r = rules();
        // Word boundaries beside letters outside ASCII, where ASCII and
        // Unicode boundaries differ.
        for line in [
            "éBearer abcdef",
            "é Bearer abcdef",
            "xAKIAIOSFODNN7EXAMPLE",
            "éAKIAIOSFODNN7EXAMPLEé",
            "AKIAIOSFODNN7EXAMPLE é",
            "ébasic dXNlcjpwYXNzd29yZA==",
            "éeyJhbGciOi.eyJzdWIiO.dozjgNryP4",
            "日本 token=日本",
            "passwörd=x",
        ] {
            let matched = [
                &r.pem_inline,
                &r.bearer,
                &r.jwt,
                &r.url_password,
                &r.assignment,
                &r.aws_key,
                &r.basic_auth,
            ]
            .iter()
            .any(|rule| rule.is_match(line));
            assert!(!matched || r.any.is_match(line), "{line}");
            assert_eq!(redact_line(line), redact_each_rule(line), "{line}");
        }
    }

    proptest::proptest! {
        #[test]
        fn redaction_is_the_same_with_or_without_the_check(
            line in "(?:[a-zA-Z0-9 =:_./@\"'-]|é|日|Bearer |Basic |AKIA|eyJ|password|://){0,24}"
        ) {
            proptest::prop_assert_eq!(redact_line(&line), redact_each_rule(&line));
        }
    }

    #[test]
    fn private_key_blocks_across_lines() {
        let lines = [
            "loading key",
            "-----BEGIN PRIVATE KEY-----",
            "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC",
            "BKcwggSjAgEAAoIBAQC7",
            "-----END PRIVATE KEY-----",
            "key loaded",
        ];
        let out = redact_lines(lines);
        assert_eq!(
            out,
            vec!["loading key", "[REDACTED PRIVATE KEY]", "key loaded"]
        );
    }
}
