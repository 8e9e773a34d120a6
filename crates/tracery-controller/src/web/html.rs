//! HTML building blocks: escaping, and the layout every page shares.

use axum::response::Html;

/// `text` safe inside HTML text and double-quoted attributes.
pub(super) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A whole page: head, navigation, `body`, and the shared script (live updates).
pub(super) fn layout(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} · Tracery</title>\
         <link rel=\"stylesheet\" href=\"/assets/style.css\"></head><body>\
         <header class=\"top\"><a class=\"brand\" href=\"/\">Tracery</a>\
         <nav><a href=\"/\">Overview</a><a href=\"/breakpoints\">Breakpoints</a></nav>\
         <span id=\"live\" class=\"live\" title=\"live updates\">connecting…</span></header>\
         <main>{body}</main>\
         <script src=\"/assets/app.js\"></script></body></html>",
        title = escape(title),
    ))
}

/// A time as `HH:MM:SS.mmm UTC`, for tables.
pub(super) fn clock(t: std::time::SystemTime) -> String {
    let s = humantime::format_rfc3339_millis(t).to_string();
    format!("{} UTC", s.get(11..23).unwrap_or(&s))
}

/// The last `/`-separated part of a path.
pub(super) fn base_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_in_values_is_shown_not_run() {
        assert_eq!(
            escape("<b a=\"1\">&'"),
            "&lt;b a=&quot;1&quot;&gt;&amp;&#39;"
        );
    }
}
