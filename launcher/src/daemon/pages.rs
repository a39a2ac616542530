//! The daemon's HTML: the API-key form, the OAuth client form, result pages, and the frame of
//! the overview (`ui`). Plain HTML,
//! every value escaped, no script; forms carry the session's CSRF token.

use axum::response::Html;

use crate::providers::Provider;

pub(crate) fn escape(text: &str) -> String {
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

fn layout(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"referrer\" content=\"no-referrer\">\
         <title>{title} · authsome</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:36rem;margin:3rem auto;padding:0 1rem;line-height:1.5}}\
         label{{display:block;margin-top:1rem;font-weight:600}}input{{width:100%;padding:.4rem;font:inherit}}\
         button{{margin-top:1.2rem;padding:.5rem 1.2rem;font:inherit}}.error{{color:#b00}}code{{background:#eee;padding:0 .2rem}}\
         table{{border-collapse:collapse}}td,th{{padding:.2rem .6rem;text-align:left;border-bottom:1px solid #ddd}}</style>\
         </head><body><h1>{title}</h1>\n{body}\n</body></html>\n",
        title = escape(title),
    ))
}

fn error_line(error: Option<&str>) -> String {
    error.map(|e| format!("<p class=\"error\">{}</p>", escape(e))).unwrap_or_default()
}

/// Ask for the OAuth app's client id and secret (saved to the profile before the flow runs).
pub(crate) fn client_form(
    provider: &Provider,
    connection: &str,
    action: &str,
    csrf: &str,
    redirect_uri: &str,
    error: Option<&str>,
) -> Html<String> {
    let docs = provider
        .docs_url
        .as_deref()
        .map(|url| format!("<p>How to create one: <a href=\"{0}\" rel=\"noreferrer\">{0}</a></p>", escape(url)))
        .unwrap_or_default();
    layout(
        &format!("Log in to {}", provider.display_name),
        &format!(
            "<p>Connection <code>{connection}</code>. authsome needs your OAuth app's credentials for {name}; \
             register this redirect URI with the app: <code>{redirect}</code></p>{docs}{error}\
             <form method=\"post\" action=\"{action}\" autocomplete=\"off\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <label for=\"client_id\">Client ID</label><input id=\"client_id\" name=\"client_id\" required>\
             <label for=\"client_secret\">Client secret (empty for a public client)</label>\
             <input id=\"client_secret\" name=\"client_secret\" type=\"password\">\
             <button type=\"submit\">Continue to {name}</button></form>",
            connection = escape(connection),
            name = escape(&provider.display_name),
            redirect = escape(redirect_uri),
            error = error_line(error),
            action = escape(action),
            csrf = escape(csrf),
        ),
    )
}

/// Ask for an API key, with the provider's pattern (checked again on the server) and docs.
pub(crate) fn api_key_form(
    provider: &Provider,
    connection: &str,
    action: &str,
    csrf: &str,
    error: Option<&str>,
) -> Html<String> {
    let spec = provider.api_key.as_ref();
    let pattern = spec
        .and_then(|s| s.pattern.as_deref())
        .map(|p| format!(" pattern=\"{}\"", escape(p.trim_start_matches('^').trim_end_matches('$'))))
        .unwrap_or_default();
    let hint = spec.and_then(|s| s.hint.as_deref()).map(|h| format!("<p>{}</p>", escape(h))).unwrap_or_default();
    let docs = provider
        .docs_url
        .as_deref()
        .map(|url| format!("<p>Get a key: <a href=\"{0}\" rel=\"noreferrer\">{0}</a></p>", escape(url)))
        .unwrap_or_default();
    layout(
        &format!("{} API key", provider.display_name),
        &format!(
            "<p>Connection <code>{connection}</code>. The key is stored encrypted in your authsome vault.</p>\
             {docs}{hint}{error}\
             <form method=\"post\" action=\"{action}\" autocomplete=\"off\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <label for=\"api_key\">API key</label>\
             <input id=\"api_key\" name=\"api_key\" type=\"password\" required{pattern}>\
             <button type=\"submit\">Save</button></form>",
            connection = escape(connection),
            error = error_line(error),
            action = escape(action),
            csrf = escape(csrf),
        ),
    )
}

/// A page around `body`, which the caller has escaped.
pub(crate) fn page(title: &str, body: &str) -> Html<String> {
    layout(title, body)
}

/// A result page (success, failure, unknown session).
pub(crate) fn message(title: &str, text: &str) -> Html<String> {
    layout(title, &format!("<p>{}</p>", escape(text)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::Catalog;

    #[test]
    fn values_are_escaped() {
        assert_eq!(escape(r#"<a href="x">'&'</a>"#), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
        let openai = Catalog::bundled_only().get("openai").unwrap().provider.clone();
        let page = api_key_form(&openai, "<w>", "/auth/sessions/s/input", "tok\"", Some("bad <key>")).0;
        assert!(page.contains("&lt;w&gt;") && !page.contains("<w>"));
        assert!(page.contains("value=\"tok&quot;\""));
        assert!(page.contains("bad &lt;key&gt;"));
        assert!(page.contains("pattern=\""), "the provider's key pattern is on the form");
        assert!(!page.contains("<script"));
    }
}
