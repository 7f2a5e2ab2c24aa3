//! A command line as keepalived writes one for its notify scripts: words split on blanks,
//! `"..."` and `'...'` quote, a backslash escapes the next character. No shell runs it, so
//! nothing else is special (no `$VAR`, no `|`): what the config says is what is executed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("a quote is not closed")]
    UnclosedQuote,
    #[error("a backslash ends the command")]
    TrailingBackslash,
    #[error("the command is empty")]
    Empty,
}

/// Splits `line` into the program and its arguments.
pub fn split(line: &str) -> Result<Vec<String>, CommandError> {
    let mut words = Vec::new();
    let mut word = String::new();
    // A word exists once a character or a pair of quotes was seen: `""` is an empty argument.
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                word.push(chars.next().ok_or(CommandError::TrailingBackslash)?);
                in_word = true;
            }
            '"' | '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        None => return Err(CommandError::UnclosedQuote),
                        Some(q) if q == c => break,
                        // Inside double quotes a backslash still escapes (the quote itself, mostly).
                        Some('\\') if c == '"' => word.push(chars.next().ok_or(CommandError::TrailingBackslash)?),
                        Some(x) => word.push(x),
                    }
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    if words.is_empty() {
        return Err(CommandError::Empty);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn splits_words_and_honours_quotes_and_escapes() {
        assert_eq!(split("/bin/notify.sh master").unwrap(), s(&["/bin/notify.sh", "master"]));
        assert_eq!(split("  /a   'b c'  \"d \\\" e\" f\\ g ").unwrap(), s(&["/a", "b c", "d \" e", "f g"]));
        assert_eq!(split("/a \"\" x").unwrap(), s(&["/a", "", "x"]), "an empty quoted argument is kept");
        assert_eq!(split("/a $HOME|x").unwrap(), s(&["/a", "$HOME|x"]), "no shell: nothing expands");
    }

    #[test]
    fn refuses_what_cannot_be_split() {
        assert_eq!(split("/a 'b"), Err(CommandError::UnclosedQuote));
        assert_eq!(split("/a b\\"), Err(CommandError::TrailingBackslash));
        assert_eq!(split("   "), Err(CommandError::Empty));
    }
}
