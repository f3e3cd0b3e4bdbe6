//! Splits command text into words, the way a shell would for the simple cases
//! people type in chat: whitespace separates words, single quotes keep text
//! literally, double quotes allow `\"` and `\\` escapes.
//!
//! Chat clients turn quotes into typographic ones (“ ” ‘ ’); those are treated
//! as their ASCII counterparts so a pasted command still parses.

use super::ParseError;

pub(crate) fn tokenize(text: &str) -> Result<Vec<String>, ParseError> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut in_word = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match normalize_quote(c) {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next().map(normalize_quote) {
                        Some('\'') => break,
                        Some(c) => current.push(c),
                        None => return Err(ParseError::UnclosedQuote { quote: '\'' }),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\')) => current.push(c),
                            Some(c) => {
                                current.push('\\');
                                current.push(c);
                            }
                            None => return Err(ParseError::UnclosedQuote { quote: '"' }),
                        },
                        Some(c) if normalize_quote(c) == '"' => break,
                        Some(c) => current.push(c),
                        None => return Err(ParseError::UnclosedQuote { quote: '"' }),
                    }
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut current));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                current.push(c);
            }
        }
    }
    if in_word {
        words.push(current);
    }
    Ok(words)
}

fn normalize_quote(c: char) -> char {
    match c {
        '\u{201C}' | '\u{201D}' => '"',
        '\u{2018}' | '\u{2019}' => '\'',
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_and_quotes() {
        let table: &[(&str, &[&str])] = &[
            ("scale backend 5", &["scale", "backend", "5"]),
            ("  scale\tbackend   5 ", &["scale", "backend", "5"]),
            (
                "logs backend --grep 'connection refused'",
                &["logs", "backend", "--grep", "connection refused"],
            ),
            (
                r#"logs backend --grep "say \"hi\"""#,
                &["logs", "backend", "--grep", "say \"hi\""],
            ),
            (
                "logs backend --grep “smart quotes”",
                &["logs", "backend", "--grep", "smart quotes"],
            ),
            ("a '' b", &["a", "", "b"]),
            ("", &[]),
        ];
        for (input, expected) in table {
            assert_eq!(tokenize(input).unwrap(), *expected, "{input}");
        }
    }

    #[test]
    fn open_quotes_are_errors() {
        assert_eq!(
            tokenize("logs 'abc").unwrap_err(),
            ParseError::UnclosedQuote { quote: '\'' }
        );
        assert_eq!(
            tokenize("logs \"abc").unwrap_err(),
            ParseError::UnclosedQuote { quote: '"' }
        );
    }
}
