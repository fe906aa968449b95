//! The spec's pattern types: `exact`, `substr`, `fnmatch`, `regex`, all
//! case-insensitive (they match addresses, domains and host names).

/// A compiled pattern.
#[derive(Debug, Clone)]
pub enum Pattern {
    Exact(String),
    Substr(String),
    /// Shell wildcards: `*`, `?`, `[...]`, `[!...]`.
    Fnmatch(Vec<Token>),
}

/// One element of an fnmatch pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    Char(char),
    Any,
    Star,
    /// `[...]` (negated with `[!...]`): single characters and ranges.
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

/// Why a pattern cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadPattern {
    #[error("unknown pattern type `{0}` (exact, substr, fnmatch or regex)")]
    UnknownType(String),
    #[error("unclosed `[` in fnmatch pattern")]
    UnclosedClass,
    #[error("pattern longer than {MAX_LEN} characters")]
    TooLong,
}

/// Patterns come from database rows; a bound keeps matching cheap.
pub const MAX_LEN: usize = 1024;

impl Pattern {
    /// Compiles `pattern` of `kind` (`regex` is compiled by the caller that has the regex engine).
    pub fn new(kind: &str, pattern: &str) -> Result<Pattern, BadPattern> {
        if pattern.chars().count() > MAX_LEN {
            return Err(BadPattern::TooLong);
        }
        let lower = pattern.to_lowercase();
        match kind.trim().to_ascii_lowercase().as_str() {
            "exact" => Ok(Pattern::Exact(lower)),
            "substr" => Ok(Pattern::Substr(lower)),
            "fnmatch" => Ok(Pattern::Fnmatch(compile(&lower)?)),
            other => Err(BadPattern::UnknownType(other.chars().take(32).collect())),
        }
    }

    /// Whether `text` matches (case-insensitively).
    pub fn matches(&self, text: &str) -> bool {
        let text = text.to_lowercase();
        match self {
            Pattern::Exact(p) => text == *p,
            Pattern::Substr(p) => text.contains(p.as_str()),
            Pattern::Fnmatch(tokens) => fnmatch(tokens, &text.chars().collect::<Vec<_>>()),
        }
    }
}

fn compile(p: &str) -> Result<Vec<Token>, BadPattern> {
    let chars: Vec<char> = p.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '*' => {
                // Runs of stars are one star.
                if out.last() != Some(&Token::Star) {
                    out.push(Token::Star);
                }
            }
            '?' => out.push(Token::Any),
            '[' => {
                let mut j = i + 1;
                let negated = matches!(chars.get(j), Some('!') | Some('^'));
                if negated {
                    j += 1;
                }
                let mut ranges = Vec::new();
                let mut first = true;
                loop {
                    let Some(&c) = chars.get(j) else {
                        return Err(BadPattern::UnclosedClass);
                    };
                    if c == ']' && !first {
                        break;
                    }
                    first = false;
                    if chars.get(j + 1) == Some(&'-') && chars.get(j + 2).is_some_and(|&e| e != ']') {
                        ranges.push((c, chars[j + 2]));
                        j += 3;
                    } else {
                        ranges.push((c, c));
                        j += 1;
                    }
                }
                out.push(Token::Class { negated, ranges });
                i = j;
            }
            c => out.push(Token::Char(c)),
        }
        i += 1;
    }
    Ok(out)
}

fn one(token: &Token, c: char) -> bool {
    match token {
        Token::Char(p) => *p == c,
        Token::Any => true,
        Token::Class { negated, ranges } => ranges.iter().any(|(a, b)| (*a..=*b).contains(&c)) != *negated,
        Token::Star => false,
    }
}

/// Wildcard matching with one backtrack point (the last star): at most
/// pattern × text steps, whatever the pattern.
fn fnmatch(tokens: &[Token], text: &[char]) -> bool {
    let (mut t, mut s) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while s < text.len() {
        match tokens.get(t) {
            Some(Token::Star) => {
                star = Some((t, s));
                t += 1;
            }
            Some(token) if one(token, text[s]) => {
                t += 1;
                s += 1;
            }
            _ => match star {
                Some((st, ss)) => {
                    t = st + 1;
                    s = ss + 1;
                    star = Some((st, ss + 1));
                }
                None => return false,
            },
        }
    }
    tokens[t..].iter().all(|tok| *tok == Token::Star)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fnm(p: &str, text: &str) -> bool {
        Pattern::new("fnmatch", p).unwrap().matches(text)
    }

    #[test]
    fn fnmatch_wildcards_and_classes() {
        assert!(fnm("*.google.com", "gmail-smtp-in.l.google.com"));
        assert!(fnm("*.GOOGLE.com", "ALT1.gmail-smtp-in.l.google.com"));
        assert!(!fnm("*.google.com", "google.com"));
        assert!(!fnm("*.google.com", "evil-google.com"));
        assert!(fnm("mx?.example", "mx1.example"));
        assert!(!fnm("mx?.example", "mx10.example"));
        assert!(fnm("mx[0-9].example", "mx7.example"));
        assert!(!fnm("mx[!0-9].example", "mx7.example"));
        assert!(fnm("mx[!0-9].example", "mxa.example"));
        assert!(fnm("[]]x", "]x"));
        assert!(fnm("*", ""));
        assert!(fnm("a*b*c", "aXXbYYc"));
        assert!(!fnm("a*b*c", "aXXbYY"));
        assert!(matches!(
            Pattern::new("fnmatch", "mx[0-9"),
            Err(BadPattern::UnclosedClass)
        ));
    }

    #[test]
    fn exact_and_substr_ignore_case() {
        assert!(Pattern::new("exact", "Gmail.com").unwrap().matches("gmail.COM"));
        assert!(!Pattern::new("exact", "gmail.com").unwrap().matches("xgmail.com"));
        assert!(Pattern::new("substr", "Rate Limit")
            .unwrap()
            .matches("421 4.7.28 rate limited"));
        assert!(Pattern::new("wildcard", "x").is_err());
    }

    #[test]
    fn a_hostile_pattern_costs_at_most_pattern_times_text() {
        let p = Pattern::new("fnmatch", &"*a".repeat(500)).unwrap();
        // A naively backtracking matcher would not finish this in a lifetime.
        assert!(!p.matches(&("a".repeat(499) + "b")));
        assert!(p.matches(&"a".repeat(600)));
    }
}
