//! Printing results: aligned, colour-aware text for people and JSON for
//! programs (`--output json`).

use serde::Serialize;

/// Prints `value` as pretty JSON on stdout.
pub fn print_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Prints `key value` rows with the values aligned in one column.
pub fn print_rows(rows: &[(&str, String)]) {
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (key, value) in rows {
        println!(
            "{}  {value}",
            console::style(format!("{key:<width$}")).bold()
        );
    }
}
