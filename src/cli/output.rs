//! Output of the client commands: tables fitted to the terminal width, field
//! lists for one record, and the server's JSON for `--json`.

use std::io::Write;

use chrono::{DateTime, Utc};
use serde_json::Value;

/// Blanks between table columns.
const GAP: usize = 2;

/// Narrowest a column is cut to when the table is wider than the terminal.
const MIN_COLUMN: usize = 6;

/// Rows of text under column headers.
pub struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&'static str]) -> Table {
        Table {
            headers: headers.to_vec(),
            rows: Vec::new(),
        }
    }

    pub fn push(&mut self, row: Vec<String>) {
        self.rows.push(row);
    }

    /// Returns the table as text at most `max_width` characters wide, when
    /// given, by cutting the widest columns and marking cut cells with `…`.
    pub fn render(&self, max_width: Option<usize>) -> String {
        let widths = self.fit(max_width);
        let mut text = String::new();
        let headers: Vec<String> = self.headers.iter().map(|h| h.to_string()).collect();
        for row in std::iter::once(&headers).chain(&self.rows) {
            let cells: Vec<String> = widths
                .iter()
                .enumerate()
                .map(|(index, width)| cut(row.get(index).map(String::as_str).unwrap_or(""), *width))
                .collect();
            let mut line = String::new();
            for (index, cell) in cells.iter().enumerate() {
                line.push_str(cell);
                if index + 1 < cells.len() {
                    let pad = widths[index] - cell.chars().count() + GAP;
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            text.push_str(line.trim_end());
            text.push('\n');
        }
        text
    }

    /// Column widths: each column's widest cell, then the widest columns cut
    /// one character at a time until the table fits or all are at the minimum.
    fn fit(&self, max_width: Option<usize>) -> Vec<usize> {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let Some(max_width) = max_width else {
            return widths;
        };
        let gaps = GAP * widths.len().saturating_sub(1);
        while widths.iter().sum::<usize>() + gaps > max_width {
            let Some(widest) = (0..widths.len()).max_by_key(|&index| widths[index]) else {
                break;
            };
            if widths[widest] <= MIN_COLUMN {
                break;
            }
            widths[widest] -= 1;
        }
        widths
    }

    /// Prints the table to stdout, fitted to [`terminal_width`].
    pub fn print(&self) -> anyhow::Result<()> {
        print_text(&self.render(terminal_width()))
    }
}

/// Cuts `text` to `width` characters, ending a cut cell with `…`; line
/// breaks become spaces so a cell stays on one line.
fn cut(text: &str, width: usize) -> String {
    let text = text.replace(['\n', '\r', '\t'], " ");
    if text.chars().count() <= width {
        return text;
    }
    let mut kept: String = text.chars().take(width.saturating_sub(1)).collect();
    kept.push('…');
    kept
}

/// The width tables must fit: `COLUMNS` when it is a positive number, else
/// the width of the terminal on stdout. `None` when stdout is no terminal, so
/// piped output is never cut.
pub fn terminal_width() -> Option<usize> {
    let columns = std::env::var("COLUMNS")
        .ok()
        .and_then(|text| text.trim().parse::<usize>().ok());
    if let Some(columns) = columns.filter(|&columns| columns > 0) {
        return Some(columns);
    }
    let mut size = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one `winsize` through the pointer, which
    // points to a live local, and it fails without writing on a non-terminal.
    let result = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) };
    (result == 0 && size.ws_col > 0).then_some(usize::from(size.ws_col))
}

/// Writes text to stdout; a closed pipe is an error, not a panic.
pub fn print_text(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()?;
    Ok(())
}

pub fn print_json(value: &Value) -> anyhow::Result<()> {
    print_text(&(serde_json::to_string_pretty(value)? + "\n"))
}

/// Prints one record as `field: value` lines: `first` in that order, then
/// the other fields in name order.
pub fn print_record(record: &Value, first: &[&str]) -> anyhow::Result<()> {
    let Some(object) = record.as_object() else {
        return print_json(record);
    };
    let mut keys: Vec<&str> = first
        .iter()
        .copied()
        .filter(|key| object.contains_key(*key))
        .collect();
    keys.extend(
        object
            .keys()
            .map(String::as_str)
            .filter(|key| !first.contains(key)),
    );
    let width = keys.iter().map(|key| key.len()).max().unwrap_or(0) + 1;
    let mut text = String::new();
    for key in keys {
        let value = cell(&object[key]);
        let mut lines = value.split('\n');
        let label = format!("{key}:");
        text.push_str(&format!("{label:<width$} {}\n", lines.next().unwrap_or("")));
        for line in lines {
            text.push_str(&format!("{:<width$} {line}\n", ""));
        }
    }
    print_text(&text)
}

/// Text of a JSON value for a table cell or field: `-` for null, strings
/// without quotes, lists joined by commas, objects as `key=value` pairs.
pub fn cell(value: &Value) -> String {
    match value {
        Value::Null => "-".to_string(),
        Value::String(text) => text.clone(),
        Value::Array(items) if items.is_empty() => "-".to_string(),
        Value::Array(items) => items.iter().map(cell).collect::<Vec<_>>().join(", "),
        Value::Object(map) if map.is_empty() => "-".to_string(),
        Value::Object(map) => map
            .iter()
            .map(|(key, value)| format!("{key}={}", cell(value)))
            .collect::<Vec<_>>()
            .join(" "),
        other => other.to_string(),
    }
}

/// Parses an RFC 3339 field of a record.
pub fn instant(value: &Value) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(value.as_str()?)
        .ok()
        .map(|at| at.with_timezone(&Utc))
}

/// Formats a duration in milliseconds as `850ms`, `42s`, `3m05s` or `2h04m`.
pub fn duration(milliseconds: i64) -> String {
    let seconds = milliseconds / 1000;
    match seconds {
        _ if milliseconds < 1000 => format!("{milliseconds}ms"),
        0..60 => format!("{seconds}s"),
        60..3600 => format!("{}m{:02}s", seconds / 60, seconds % 60),
        _ => format!("{}h{:02}m", seconds / 3600, seconds % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Table {
        let mut table = Table::new(&["ID", "NAME", "COMMAND"]);
        table.push(vec![
            "1".into(),
            "backup".into(),
            "tar czf /backup/home.tgz /home".into(),
        ]);
        table.push(vec!["22".into(), "x".into(), "true".into()]);
        table
    }

    #[test]
    fn table_pads_columns_without_a_limit() {
        let text = table().render(None);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "ID  NAME    COMMAND");
        assert_eq!(lines[1], "1   backup  tar czf /backup/home.tgz /home");
        assert_eq!(lines[2], "22  x       true");
    }

    #[test]
    fn table_cuts_widest_column_to_fit() {
        let text = table().render(Some(24));
        for line in text.lines() {
            assert!(line.chars().count() <= 24, "{line:?} is wider than 24");
        }
        assert!(text.contains("tar czf /ba…"), "{text}");
        assert!(text.contains("backup"), "{text}");
    }

    #[test]
    fn cells_render_json_values() {
        assert_eq!(cell(&Value::Null), "-");
        assert_eq!(cell(&serde_json::json!("a")), "a");
        assert_eq!(cell(&serde_json::json!([1, 2])), "1, 2");
        assert_eq!(cell(&serde_json::json!({"A": "1", "B": "x"})), "A=1 B=x");
    }

    #[test]
    fn durations_pick_units() {
        assert_eq!(duration(850), "850ms");
        assert_eq!(duration(42_000), "42s");
        assert_eq!(duration(185_000), "3m05s");
        assert_eq!(duration(7_440_000), "2h04m");
    }
}
