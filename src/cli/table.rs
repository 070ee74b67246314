//! Terminal tables: columns cut and padded by display width.

pub(super) fn terminal_width() -> usize {
    if let Some(cols) = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse::<usize>().ok())
    {
        return cols.max(40);
    }
    terminal_size::terminal_size()
        .map(|(w, _)| usize::from(w.0))
        .unwrap_or(120)
        .max(40)
}

pub(super) fn display_width(s: &str) -> usize {
    unicode_width::UnicodeWidthStr::width(s)
}

/// Cut `s` to at most `width` terminal columns, with "…" when cut.
pub fn fit(s: &str, width: usize) -> String {
    if display_width(s) <= width {
        return s.to_string();
    }
    let mut out = String::new();
    let mut w = 0;
    for c in s.chars() {
        let cw = unicode_width::UnicodeWidthChar::width(c).unwrap_or(0);
        if w + cw + 1 > width {
            break;
        }
        out.push(c);
        w += cw;
    }
    out.push('…');
    out
}

pub(super) fn pad(s: &str, width: usize) -> String {
    let w = display_width(s);
    format!("{s}{}", " ".repeat(width.saturating_sub(w)))
}

/// Write a table: `headers`, then `rows` (cells already terminal-safe), columns padded to
/// their widest cell (at most `caps[i]` when given), the last column taking the rest of the
/// terminal line (at least 20 columns); `empty` is printed when there are no rows.
pub(super) fn write_table(
    out: &mut dyn std::io::Write,
    headers: &[&str],
    rows: &[Vec<String>],
    caps: &[Option<usize>],
    empty: &str,
) -> std::io::Result<()> {
    let last = headers.len().saturating_sub(1);
    let mut widths: Vec<usize> = headers.iter().map(|h| display_width(h)).collect();
    for row in rows {
        for (i, c) in row.iter().enumerate().take(last) {
            widths[i] = widths[i].max(display_width(c));
        }
    }
    for (w, cap) in widths.iter_mut().zip(caps) {
        if let Some(cap) = cap {
            *w = (*w).min(*cap);
        }
    }
    let fixed: usize = widths[..last].iter().sum::<usize>() + last * 2;
    if let Some(w) = widths.get_mut(last) {
        *w = terminal_width().saturating_sub(fixed).max(20);
    }
    let line = |cols: &[&str], out: &mut dyn std::io::Write| -> std::io::Result<()> {
        let mut s = String::new();
        for (i, c) in cols.iter().enumerate() {
            let cell = fit(c, widths[i]);
            if i < last {
                s.push_str(&pad(&cell, widths[i]));
                s.push_str("  ");
            } else {
                s.push_str(&cell);
            }
        }
        writeln!(out, "{}", s.trim_end())
    };
    line(headers, out)?;
    for row in rows {
        let cols: Vec<&str> = row.iter().map(String::as_str).collect();
        line(&cols, out)?;
    }
    if rows.is_empty() {
        writeln!(out, "{empty}")?;
    }
    Ok(())
}
