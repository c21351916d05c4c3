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

/// Prints a table: bold headers, columns padded to their widest cell.
pub fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    let widths: Vec<usize> = headers
        .iter()
        .enumerate()
        .map(|(i, h)| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| console::measure_text_width(c))
                .chain(std::iter::once(h.len()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| console::pad_str(c, *w, console::Alignment::Left, None).into_owned())
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(
        headers
            .iter()
            .map(|h| console::style(h).bold().to_string())
            .collect(),
    );
    for row in rows {
        line(row.clone());
    }
}
