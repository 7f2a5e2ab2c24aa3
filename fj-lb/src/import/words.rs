//! Splitting one line of keepalived.conf or haproxy.cfg into words: blanks separate, `"..."`
//! (and in haproxy `'...'`) quote, a backslash escapes, a comment character outside quotes
//! ends the line; with `braces`, `{` and `}` are words of their own.

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Word {
    pub(super) text: String,
    /// Written in quotes: a notify command line, kept whole.
    pub(super) quoted: bool,
}

pub(super) struct Syntax {
    pub(super) comments: &'static [char],
    pub(super) braces: bool,
    pub(super) single_quotes: bool,
}

pub(super) const KEEPALIVED: Syntax = Syntax { comments: &['#', '!'], braces: true, single_quotes: false };
pub(super) const HAPROXY: Syntax = Syntax { comments: &['#'], braces: false, single_quotes: true };

/// The words of `line`; `Err` for a quote left open.
pub(super) fn split(line: &str, syntax: &Syntax) -> Result<Vec<Word>, String> {
    let mut words = Vec::new();
    let mut word: Option<Word> = None;
    let mut chars = line.chars();
    let flush = |word: &mut Option<Word>, words: &mut Vec<Word>| {
        if let Some(w) = word.take() {
            words.push(w);
        }
    };
    while let Some(c) = chars.next() {
        match c {
            c if syntax.comments.contains(&c) => break,
            '\\' => {
                if let Some(n) = chars.next() {
                    word.get_or_insert(Word { text: String::new(), quoted: false }).text.push(n);
                }
            }
            '"' | '\'' if c == '"' || syntax.single_quotes => {
                let w = word.get_or_insert(Word { text: String::new(), quoted: false });
                w.quoted = true;
                loop {
                    match chars.next() {
                        None => return Err(format!("a {c} quote is not closed")),
                        Some(q) if q == c => break,
                        Some('\\') if c == '"' => {
                            if let Some(n) = chars.next() {
                                w.text.push(n);
                            }
                        }
                        Some(x) => w.text.push(x),
                    }
                }
            }
            '{' | '}' if syntax.braces => {
                flush(&mut word, &mut words);
                words.push(Word { text: c.to_string(), quoted: false });
            }
            c if c.is_whitespace() => flush(&mut word, &mut words),
            c => word.get_or_insert(Word { text: String::new(), quoted: false }).text.push(c),
        }
    }
    flush(&mut word, &mut words);
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(v: &[Word]) -> Vec<&str> {
        v.iter().map(|w| w.text.as_str()).collect()
    }

    #[test]
    fn keepalived_words() {
        let w = split("    notify_master \"/bin/x.sh  MASTER VI_1\" ! comment", &KEEPALIVED).unwrap();
        assert_eq!(texts(&w), ["notify_master", "/bin/x.sh  MASTER VI_1"]);
        assert!(w[1].quoted && !w[0].quoted);
        assert_eq!(texts(&split("vrrp_instance VI_1{ # x", &KEEPALIVED).unwrap()), ["vrrp_instance", "VI_1", "{"]);
        assert_eq!(texts(&split("}}", &KEEPALIVED).unwrap()), ["}", "}"]);
        assert!(split("notify \"/x", &KEEPALIVED).is_err());
    }

    #[test]
    fn haproxy_words() {
        let w = split("  http-check expect string 'a b' # x", &HAPROXY).unwrap();
        assert_eq!(texts(&w), ["http-check", "expect", "string", "a b"]);
        assert_eq!(texts(&split("acl x path_beg /a\\ b {", &HAPROXY).unwrap()), ["acl", "x", "path_beg", "/a b", "{"]);
    }
}
