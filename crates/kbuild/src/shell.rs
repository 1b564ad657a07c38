//! Reading the shell lines `make -n` prints back into words.
//!
//! kbuild's recipes are POSIX shell: `set -e; echo ..; trap ..; gcc ... -c -o x.o x.c ;
//! scripts/basic/fixdep ...`. Only what those lines use is understood: single and double quotes,
//! backslash escapes, and the operators `;`, `&&`, `||`, `|`, `&` between simple commands.
//! Expansions (`$x`) are left as they are written; the compile command has none.

/// Splits one shell line into simple commands, each a list of words with quotes removed.
///
/// Operators separate commands and are dropped; empty commands are skipped.
pub(crate) fn split_commands(line: &str) -> Result<Vec<Vec<String>>, &'static str> {
    let mut commands = Vec::new();
    let mut words: Vec<String> = Vec::new();
    let mut word = String::new();
    // A word exists once anything (even an empty pair of quotes) was read for it.
    let mut in_word = false;
    let mut chars = line.chars().peekable();

    let end_word = |words: &mut Vec<String>, word: &mut String, in_word: &mut bool| {
        if *in_word {
            words.push(std::mem::take(word));
            *in_word = false;
        }
    };

    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => end_word(&mut words, &mut word, &mut in_word),
            '\n' | ';' | '&' | '|' => {
                end_word(&mut words, &mut word, &mut in_word);
                if (c == '&' || c == '|') && chars.peek() == Some(&c) {
                    chars.next();
                }
                if !words.is_empty() {
                    commands.push(std::mem::take(&mut words));
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err("unterminated single quote"),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => word.push(c),
                            Some('\n') => {}
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err("unterminated double quote"),
                        },
                        Some(c) => word.push(c),
                        None => return Err("unterminated double quote"),
                    }
                }
            }
            '\\' => match chars.next() {
                Some('\n') => {}
                Some(c) => {
                    in_word = true;
                    word.push(c);
                }
                None => return Err("backslash at the end of the line"),
            },
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    end_word(&mut words, &mut word, &mut in_word);
    if !words.is_empty() {
        commands.push(words);
    }
    Ok(commands)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<Vec<String>> {
        split_commands(line).unwrap()
    }

    #[test]
    fn splits_kbuild_recipe_into_commands() {
        let line = r#"set -e;  echo '  CC      fs/pipe.o';   trap 'rm -f fs/pipe.o; trap - HUP; kill -s HUP $$' HUP; gcc -DKBUILD_MODFILE='"fs/pipe"' -c -o fs/pipe.o fs/pipe.c  ; scripts/basic/fixdep fs/.pipe.o.d fs/pipe.o 'gcc -DKBUILD_MODFILE='\''"fs/pipe"'\'' -c' > fs/.pipe.o.cmd; rm -f fs/.pipe.o.d"#;
        let commands = words(line);
        assert_eq!(commands.len(), 6, "{commands:?}");
        assert_eq!(commands[0], ["set", "-e"]);
        assert_eq!(commands[1], ["echo", "  CC      fs/pipe.o"]);
        assert_eq!(
            commands[2],
            ["trap", "rm -f fs/pipe.o; trap - HUP; kill -s HUP $$", "HUP"]
        );
        assert_eq!(
            commands[3],
            [
                "gcc",
                "-DKBUILD_MODFILE=\"fs/pipe\"",
                "-c",
                "-o",
                "fs/pipe.o",
                "fs/pipe.c"
            ]
        );
        assert_eq!(
            commands[4][3], "gcc -DKBUILD_MODFILE='\"fs/pipe\"' -c",
            "the saved command stays one word"
        );
        assert_eq!(commands[5], ["rm", "-f", "fs/.pipe.o.d"]);
    }

    #[test]
    fn operators_and_escapes() {
        assert_eq!(
            words(r#"a && b || c | d & e"#),
            [["a"], ["b"], ["c"], ["d"], ["e"]]
        );
        assert_eq!(
            words(r#"x "a\"b\$c" '' d\ e"#),
            [["x", "a\"b$c", "", "d e"]]
        );
        assert_eq!(words("a \\\n b"), [["a", "b"]]);
        assert!(words("  ;; ").is_empty());
        assert!(split_commands("echo 'oops").is_err());
        assert!(split_commands("echo \"oops").is_err());
    }
}
