//! A crontab(5) parser: turns the text of a user crontab, or of a system
//! crontab such as /etc/crontab or a file in /etc/cron.d, into entries that
//! become tasks.
//!
//! The rules follow Vixie cron and cronie:
//! - blank lines and lines whose first non-blank character is `#` are ignored;
//! - `NAME=value` lines set an environment variable for the entries after
//!   them. Spaces around `=` are allowed, the value may be wrapped in single
//!   or double quotes (kept as written inside them), and an unquoted value
//!   loses its trailing white space. Values are not expanded: `$PATH` stays
//!   literal, as in cron;
//! - `CRON_TZ=ZONE` and `TZ=ZONE` set the IANA zone of the entries after
//!   them, and an empty value restores the default zone. `TZ` also stays in
//!   the environment, where the command reads it, while `CRON_TZ` does not;
//! - an entry is five time fields (minute, hour, day of month, month, day of
//!   week) or an `@` macro, then the user name in a system crontab, then the
//!   command;
//! - in the command, `\%` is a literal `%`, the first unescaped `%` ends the
//!   command and starts its standard input, and later unescaped `%` become
//!   newlines.
//!
//! The time fields are checked with [`Schedule::parse`], which also takes the
//! `?`, `L`, `W` and `#` extensions that cron itself lacks. The module does no
//! I/O.

use std::collections::BTreeMap;

use chrono::DateTime;

use super::schedule::Schedule;

/// Macros cron accepts in place of the five time fields, besides `@reboot`.
const MACROS: [&str; 7] = [
    "@yearly",
    "@annually",
    "@monthly",
    "@weekly",
    "@daily",
    "@midnight",
    "@hourly",
];

const TIME_FIELDS: usize = 5;

/// How to read one crontab file.
#[derive(Clone, Debug)]
pub struct ParseOptions {
    /// True for /etc/crontab and /etc/cron.d files, whose entries name the
    /// user to run as after the time fields.
    pub system: bool,
    /// IANA zone of the entries before any `CRON_TZ` or `TZ` line.
    pub default_zone: String,
}

/// One job line with the environment and zone in effect at that line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrontabEntry {
    /// 1-based line number in the file.
    pub line: usize,
    /// The five time fields joined by single spaces, or the macro.
    pub cron_expression: String,
    pub time_zone: String,
    /// The command up to the first unescaped `%`, with `\%` unescaped.
    pub command: String,
    /// The text after the first unescaped `%`; `None` when there is none or
    /// it is empty.
    pub stdin: Option<String>,
    pub env: BTreeMap<String, String>,
    /// The `MAILTO` value in effect, when it is not empty.
    pub mailto: Option<String>,
    /// The user field of a system crontab.
    pub run_as: Option<String>,
}

/// A line that cannot be imported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadLine {
    /// 1-based line number in the file.
    pub line: usize,
    pub reason: String,
}

/// The entries of a file and the lines that were rejected.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Crontab {
    pub entries: Vec<CrontabEntry>,
    pub bad_lines: Vec<BadLine>,
}

/// Returns the name of the task made from `line` of the crontab file
/// `file_name`: `crontab-` with the file's base name and the line number, such
/// as `crontab-backup.cron-12` for line 12 of `/etc/cron.d/backup.cron`.
pub fn task_name(file_name: &str, line: usize) -> String {
    format!("crontab-{}-{line}", base_name(file_name))
}

/// Returns the part of `file_name` after its last `/`.
pub fn base_name(file_name: &str) -> &str {
    file_name.rsplit('/').next().unwrap_or(file_name)
}

/// The zone in effect: valid, or invalid since the given line.
#[derive(Clone, Debug)]
enum Zone {
    Valid(String),
    /// Set by an invalid `CRON_TZ` or `TZ` line.
    Invalid {
        line: usize,
        variable: String,
        zone: String,
    },
}

/// Parser state carried from line to line.
struct Reader<'a> {
    options: &'a ParseOptions,
    env: BTreeMap<String, String>,
    zone: Zone,
    crontab: Crontab,
}

/// Parses the text of a crontab file. Every line that cannot be imported is
/// listed in [`Crontab::bad_lines`] with the reason, and the other lines are
/// still read.
pub fn parse(content: &str, options: &ParseOptions) -> Crontab {
    let mut reader = Reader {
        options,
        env: BTreeMap::new(),
        zone: Zone::Valid(options.default_zone.clone()),
        crontab: Crontab::default(),
    };
    for (index, raw) in content.split('\n').enumerate() {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        reader.read_line(index + 1, line);
    }
    reader.crontab
}

impl Reader<'_> {
    fn read_line(&mut self, number: usize, line: &str) {
        let text = line.trim_start_matches([' ', '\t']);
        if text.is_empty() || text.starts_with('#') {
            return;
        }
        let result = match split_assignment(text) {
            Some(assignment) => {
                assignment.and_then(|(name, value)| self.assign(number, name, value))
            }
            None => self.read_entry(number, text),
        };
        if let Err(reason) = result {
            self.crontab.bad_lines.push(BadLine {
                line: number,
                reason,
            });
        }
    }

    fn assign(&mut self, number: usize, name: String, value: String) -> Result<(), String> {
        if !is_env_name(&name) {
            return Err(format!(
                "invalid environment variable name {name:?}: use letters, digits and _, \
                 not starting with a digit"
            ));
        }
        if name == "CRON_TZ" || name == "TZ" {
            self.set_zone(number, &name, &value);
        }
        if name != "CRON_TZ" {
            self.env.insert(name, value);
        }
        if let Zone::Invalid {
            line,
            variable,
            zone,
        } = &self.zone
            && *line == number
        {
            return Err(format!(
                "unknown time zone {zone:?} in {variable}: use an IANA name such as Europe/Berlin"
            ));
        }
        Ok(())
    }

    fn set_zone(&mut self, number: usize, name: &str, value: &str) {
        let zone = if value.is_empty() {
            self.options.default_zone.as_str()
        } else {
            value
        };
        self.zone = if zone.parse::<chrono_tz::Tz>().is_ok() {
            Zone::Valid(zone.to_string())
        } else {
            Zone::Invalid {
                line: number,
                variable: name.to_string(),
                zone: zone.to_string(),
            }
        };
    }

    fn read_entry(&mut self, number: usize, text: &str) -> Result<(), String> {
        let (cron_expression, rest) = split_schedule(text)?;
        let (run_as, command_text) = if self.options.system {
            let (user, rest) = next_field(rest)
                .ok_or("missing user and command: a system crontab entry names the user after the schedule")?;
            (Some(user.to_string()), rest)
        } else {
            (None, rest)
        };
        let (command, stdin) = split_percent(command_text);
        if command.is_empty() {
            let after = if self.options.system {
                "user field"
            } else {
                "schedule"
            };
            return Err(format!("missing command after the {after}"));
        }

        let time_zone = match &self.zone {
            Zone::Valid(zone) => zone.clone(),
            Zone::Invalid { line, variable, .. } => {
                return Err(format!(
                    "no valid time zone: the {variable} line {line} above names an unknown zone"
                ));
            }
        };
        // The anchor matters only for `@every`, which crontab files do not take.
        Schedule::parse(&cron_expression, &time_zone, DateTime::UNIX_EPOCH)
            .map_err(|error| error.to_string())?;

        self.crontab.entries.push(CrontabEntry {
            line: number,
            cron_expression,
            time_zone,
            command,
            stdin,
            mailto: self
                .env
                .get("MAILTO")
                .filter(|mail| !mail.is_empty())
                .cloned(),
            env: self.env.clone(),
            run_as,
        });
        Ok(())
    }
}

/// Reads `NAME=value` as cron does: the name ends at white space or `=`, and
/// a line is an assignment when `=` follows the name. Returns `None` for a
/// line that is not an assignment, and `Some(Err)` for an assignment with a
/// broken quote.
fn split_assignment(text: &str) -> Option<Result<(String, String), String>> {
    let (name, rest) = match text.chars().next() {
        Some(quote @ ('"' | '\'')) => {
            let end = text[1..].find(quote)? + 1;
            (&text[1..end], &text[end + 1..])
        }
        _ => {
            let end = text.find([' ', '\t', '=']).unwrap_or(text.len());
            (&text[..end], &text[end..])
        }
    };
    let value = rest.trim_start_matches([' ', '\t']).strip_prefix('=')?;
    Some(unquote(value.trim_start_matches([' ', '\t'])).map(|value| (name.to_string(), value)))
}

/// Strips one pair of matching quotes, or the trailing white space of an
/// unquoted value.
fn unquote(value: &str) -> Result<String, String> {
    let Some(quote @ ('"' | '\'')) = value.chars().next() else {
        return Ok(value.trim_end_matches([' ', '\t']).to_string());
    };
    let Some(end) = value[1..].find(quote).map(|index| index + 1) else {
        return Err(format!("missing closing {quote} in the value {value}"));
    };
    let trailing = value[end + 1..].trim_matches([' ', '\t']);
    if !trailing.is_empty() {
        return Err(format!(
            "unexpected text {trailing:?} after the closing {quote}"
        ));
    }
    Ok(value[1..end].to_string())
}

/// Splits off the schedule: a macro or five time fields. Returns the
/// expression and the rest of the line.
fn split_schedule(text: &str) -> Result<(String, &str), String> {
    if text.starts_with('@') {
        let (word, rest) = next_field(text).unwrap_or((text, ""));
        let name = word.to_ascii_lowercase();
        if name == "@reboot" {
            return Err(
                "@reboot is not supported: delicate runs tasks on cron schedules and has no \
                 start-up event; start the command from the host's init system instead"
                    .to_string(),
            );
        }
        if !MACROS.contains(&name.as_str()) {
            return Err(format!(
                "unknown macro {word:?}: crontab files take @yearly, @annually, @monthly, \
                 @weekly, @daily, @midnight and @hourly"
            ));
        }
        return Ok((name, rest));
    }

    let mut fields = Vec::with_capacity(TIME_FIELDS);
    let mut rest = text;
    while fields.len() < TIME_FIELDS {
        let Some((field, after)) = next_field(rest) else {
            return Err(format!(
                "found {} of the 5 time fields (minute hour day-of-month month day-of-week) \
                 and no command",
                fields.len()
            ));
        };
        fields.push(field);
        rest = after;
    }
    Ok((fields.join(" "), rest))
}

/// Returns the next blank-separated field and the rest of the line after the
/// blanks that follow it.
fn next_field(text: &str) -> Option<(&str, &str)> {
    let text = text.trim_start_matches([' ', '\t']);
    if text.is_empty() {
        return None;
    }
    let end = text.find([' ', '\t']).unwrap_or(text.len());
    Some((&text[..end], text[end..].trim_start_matches([' ', '\t'])))
}

/// Splits a command at the first unescaped `%` into the command and its
/// standard input; see the module documentation for the rules.
fn split_percent(text: &str) -> (String, Option<String>) {
    let mut command = String::new();
    let mut stdin: Option<String> = None;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let escaped_percent = c == '\\' && chars.peek() == Some(&'%');
        if escaped_percent {
            chars.next();
        }
        if c == '%' && stdin.is_none() {
            stdin = Some(String::new());
            continue;
        }
        let target = stdin.as_mut().unwrap_or(&mut command);
        match c {
            _ if escaped_percent => target.push('%'),
            '%' => target.push('\n'),
            other => target.push(other),
        }
    }
    let command = command.trim_end_matches([' ', '\t']).to_string();
    (command, stdin.filter(|text| !text.is_empty()))
}

fn is_env_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> ParseOptions {
        ParseOptions {
            system: false,
            default_zone: "UTC".to_string(),
        }
    }

    fn system() -> ParseOptions {
        ParseOptions {
            system: true,
            default_zone: "UTC".to_string(),
        }
    }

    fn only_entry(content: &str, options: &ParseOptions) -> CrontabEntry {
        let crontab = parse(content, options);
        assert_eq!(crontab.bad_lines, vec![], "{content:?}");
        assert_eq!(crontab.entries.len(), 1, "{content:?}");
        crontab.entries.into_iter().next().unwrap()
    }

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn schedules_and_commands_are_split() {
        let cases = [
            ("* * * * * echo hi", "* * * * *", "echo hi"),
            (
                "05 01-05/2 * jan mon-fri /bin/job --flag",
                "05 01-05/2 * jan mon-fri",
                "/bin/job --flag",
            ),
            (
                "0,30\t*/4  1-15 * 0,7   run   twice  ",
                "0,30 */4 1-15 * 0,7",
                "run   twice",
            ),
            ("   @daily  backup.sh", "@daily", "backup.sh"),
            ("@HOURLY ping", "@hourly", "ping"),
            ("@midnight a b c", "@midnight", "a b c"),
            ("0 12 * * SUN echo 'a # b'", "0 12 * * SUN", "echo 'a # b'"),
        ];
        for (line, expression, command) in cases {
            let entry = only_entry(line, &user());
            assert_eq!(entry.cron_expression, expression, "{line:?}");
            assert_eq!(entry.command, command, "{line:?}");
            assert_eq!(entry.run_as, None, "{line:?}");
            assert_eq!(entry.stdin, None, "{line:?}");
        }
    }

    #[test]
    fn percent_signs_split_stdin() {
        let cases = [
            ("* * * * * cat%line1%line2", "cat", Some("line1\nline2")),
            ("* * * * * date +\\%Y-\\%m", "date +%Y-%m", None),
            (
                "* * * * * mail -s x root%body \\% text%%end",
                "mail -s x root",
                Some("body % text\n\nend"),
            ),
            ("* * * * * cmd %", "cmd", None),
            ("* * * * * printf 'a\\nb'%x", "printf 'a\\nb'", Some("x")),
        ];
        for (line, command, stdin) in cases {
            let entry = only_entry(line, &user());
            assert_eq!(entry.command, command, "{line:?}");
            assert_eq!(entry.stdin.as_deref(), stdin, "{line:?}");
        }
    }

    #[test]
    fn environment_lines_apply_to_later_entries() {
        let content = "\
# comment
SHELL=/bin/bash
PATH = /usr/local/bin:/usr/bin
1 * * * * first
  MAILTO=\"ops@example.com\"
QUOTED = 'two  words'   
EMPTY=
TRAILING=value   
2 * * * * second
MAILTO=''
3 * * * * third
";
        let crontab = parse(content, &user());
        assert_eq!(crontab.bad_lines, vec![]);
        let [first, second, third] = crontab.entries.as_slice() else {
            panic!("expected three entries: {:?}", crontab.entries);
        };
        assert_eq!(first.line, 4);
        assert_eq!(
            first.env,
            env(&[("SHELL", "/bin/bash"), ("PATH", "/usr/local/bin:/usr/bin")])
        );
        assert_eq!(first.mailto, None);
        assert_eq!(second.line, 9);
        assert_eq!(
            second.env.get("MAILTO").map(String::as_str),
            Some("ops@example.com")
        );
        assert_eq!(
            second.env.get("QUOTED").map(String::as_str),
            Some("two  words")
        );
        assert_eq!(second.env.get("EMPTY").map(String::as_str), Some(""));
        assert_eq!(
            second.env.get("TRAILING").map(String::as_str),
            Some("value")
        );
        assert_eq!(second.mailto.as_deref(), Some("ops@example.com"));
        assert_eq!(third.env.get("MAILTO").map(String::as_str), Some(""));
        assert_eq!(third.mailto, None);
    }

    #[test]
    fn zone_lines_set_later_zones() {
        let content = "\
1 * * * * a
CRON_TZ=Europe/Berlin
2 * * * * b
TZ = \"America/New_York\"
3 * * * * c
CRON_TZ=
4 * * * * d
";
        let options = ParseOptions {
            system: false,
            default_zone: "Asia/Tokyo".to_string(),
        };
        let crontab = parse(content, &options);
        assert_eq!(crontab.bad_lines, vec![]);
        let zones: Vec<&str> = crontab
            .entries
            .iter()
            .map(|e| e.time_zone.as_str())
            .collect();
        assert_eq!(
            zones,
            [
                "Asia/Tokyo",
                "Europe/Berlin",
                "America/New_York",
                "Asia/Tokyo"
            ]
        );
        assert!(!crontab.entries[1].env.contains_key("CRON_TZ"));
        assert_eq!(
            crontab.entries[2].env.get("TZ").map(String::as_str),
            Some("America/New_York")
        );
    }

    #[test]
    fn system_entries_take_user_field() {
        let content = "\
SHELL=/bin/sh
17 *\t* * *\troot    cd / && run-parts --report /etc/cron.hourly
@weekly backup /usr/bin/backup --full%yes
";
        let crontab = parse(content, &system());
        assert_eq!(crontab.bad_lines, vec![]);
        let [hourly, weekly] = crontab.entries.as_slice() else {
            panic!("expected two entries: {:?}", crontab.entries);
        };
        assert_eq!(hourly.run_as.as_deref(), Some("root"));
        assert_eq!(
            hourly.command,
            "cd / && run-parts --report /etc/cron.hourly"
        );
        assert_eq!(weekly.cron_expression, "@weekly");
        assert_eq!(weekly.run_as.as_deref(), Some("backup"));
        assert_eq!(weekly.command, "/usr/bin/backup --full");
        assert_eq!(weekly.stdin.as_deref(), Some("yes"));
    }

    #[test]
    fn bad_lines_are_reported() {
        let cases: [(&str, ParseOptions, &str); 12] = [
            ("@reboot /bin/start", user(), "@reboot is not supported"),
            ("@every 5m /bin/x", user(), "unknown macro \"@every\""),
            ("@daily", user(), "missing command"),
            ("* * * * *", user(), "missing command after the schedule"),
            ("* * * echo", user(), "found 4 of the 5 time fields"),
            ("61 * * * * echo", user(), "invalid minute value \"61\""),
            ("0 0 31 2 * echo", user(), "can never fire"),
            ("* * * * * %only stdin", user(), "missing command"),
            ("* * * * *", system(), "missing user and command"),
            (
                "* * * * * root %x",
                system(),
                "missing command after the user field",
            ),
            (
                "MY-VAR=1",
                user(),
                "invalid environment variable name \"MY-VAR\"",
            ),
            ("A=\"unterminated", user(), "missing closing \""),
        ];
        for (line, options, reason) in cases {
            let crontab = parse(line, &options);
            assert_eq!(crontab.entries, vec![], "{line:?}");
            assert_eq!(crontab.bad_lines.len(), 1, "{line:?}");
            assert_eq!(crontab.bad_lines[0].line, 1, "{line:?}");
            let found = &crontab.bad_lines[0].reason;
            assert!(
                found.contains(reason),
                "{line:?}: {found:?} lacks {reason:?}"
            );
        }
    }

    #[test]
    fn unknown_zone_marks_following_entries() {
        let content =
            "1 * * * * a\nCRON_TZ=Mars/Olympus\n2 * * * * b\r\nCRON_TZ=UTC\n3 * * * * c\n";
        let crontab = parse(content, &user());
        let lines: Vec<usize> = crontab.bad_lines.iter().map(|bad| bad.line).collect();
        assert_eq!(lines, [2, 3]);
        assert!(
            crontab.bad_lines[0]
                .reason
                .contains("unknown time zone \"Mars/Olympus\" in CRON_TZ")
        );
        assert!(crontab.bad_lines[1].reason.contains("CRON_TZ line 2 above"));
        let good: Vec<usize> = crontab.entries.iter().map(|entry| entry.line).collect();
        assert_eq!(good, [1, 5]);
    }

    #[test]
    fn line_numbers_count_every_line() {
        let content = "\n# a\n\n   \n\t# b\n0 0 * * * x\n";
        let entry = only_entry(content, &user());
        assert_eq!(entry.line, 6);
    }

    #[test]
    fn task_names_use_base_name_and_line() {
        assert_eq!(task_name("backup.cron", 12), "crontab-backup.cron-12");
        assert_eq!(task_name("/etc/cron.d/php", 3), "crontab-php-3");
        assert_eq!(task_name("/etc/crontab", 1), "crontab-crontab-1");
    }
}
