//! The page templates: built in (`templates/*.html`), each replaceable by a file of the same
//! name in the admin's `templates_dir`, all rendered with HTML auto-escaping.

use std::borrow::Cow;
use std::path::Path;

use minijinja::{AutoEscape, Environment};
use serde::Serialize;

use crate::WebError;

/// The templates an admin may replace, by file name.
pub const TEMPLATE_NAMES: [&str; 8] = [
    "base.html",
    "signin.html",
    "consent.html",
    "device_entry.html",
    "device_confirm.html",
    "device_done.html",
    "signout.html",
    "error.html",
];

const BUILT_IN: [(&str, &str); 8] = [
    ("base.html", include_str!("../templates/base.html")),
    ("signin.html", include_str!("../templates/signin.html")),
    ("consent.html", include_str!("../templates/consent.html")),
    (
        "device_entry.html",
        include_str!("../templates/device_entry.html"),
    ),
    (
        "device_confirm.html",
        include_str!("../templates/device_confirm.html"),
    ),
    (
        "device_done.html",
        include_str!("../templates/device_done.html"),
    ),
    ("signout.html", include_str!("../templates/signout.html")),
    ("error.html", include_str!("../templates/error.html")),
];

/// The stylesheet, served from our own origin so that the CSP needs no inline styles.
const STYLE: &str = include_str!("../templates/style.css");
/// Its file name in `templates_dir`.
const STYLE_NAME: &str = "style.css";

/// The loaded templates and stylesheet.
#[derive(Debug)]
pub(crate) struct Templates {
    env: Environment<'static>,
    style: Cow<'static, str>,
}

impl Templates {
    /// The built-in templates, then every `*.html` of `dir` (replacing or adding) and its
    /// `style.css`. A template that does not parse is an error naming the file.
    pub(crate) fn load(dir: Option<&Path>) -> Result<Self, WebError> {
        let mut env = Environment::new();
        // Every template is HTML, whatever an override file is called.
        env.set_auto_escape_callback(|_| AutoEscape::Html);
        for (name, source) in BUILT_IN {
            env.add_template(name, source)
                .map_err(|source| WebError::Template {
                    name: name.to_owned(),
                    source,
                })?;
        }
        let mut style = Cow::Borrowed(STYLE);
        if let Some(dir) = dir {
            for (name, source) in read_overrides(dir)? {
                if name == STYLE_NAME {
                    style = Cow::Owned(source);
                    continue;
                }
                env.add_template_owned(name.clone(), source)
                    .map_err(|source| WebError::Template { name, source })?;
            }
        }
        Ok(Self { env, style })
    }

    /// Renders `name` with `context`.
    pub(crate) fn render(
        &self,
        name: &str,
        context: minijinja::Value,
    ) -> Result<String, minijinja::Error> {
        self.env.get_template(name)?.render(context)
    }

    /// The stylesheet.
    pub(crate) fn style(&self) -> &str {
        &self.style
    }
}

/// `(file name, text)` of every `*.html` file and `style.css` in `dir`.
fn read_overrides(dir: &Path) -> Result<Vec<(String, String)>, WebError> {
    let io_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| WebError::TemplatesDir { path, source }
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_error(dir))? {
        let entry = entry.map_err(io_error(dir))?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if !(name.ends_with(".html") || name == STYLE_NAME) {
            continue;
        }
        let path = entry.path();
        if !path.is_file() {
            continue;
        }
        let text = std::fs::read_to_string(&path).map_err(io_error(&path))?;
        files.push((name, text));
    }
    // Stable order, so that the first broken file reported is the same every time.
    files.sort();
    Ok(files)
}

/// A scope as the pages show it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub(crate) struct ScopeView {
    /// The wire name.
    pub(crate) name: String,
    /// What it lets the client do, in words.
    pub(crate) description: String,
}

/// The scopes of a space-separated `scope`, described for people.
pub(crate) fn describe_scopes(scope: &str) -> Vec<ScopeView> {
    scope
        .split(' ')
        .filter(|name| !name.is_empty())
        .map(|name| ScopeView {
            name: name.to_owned(),
            description: describe_scope(name),
        })
        .collect()
}

fn describe_scope(name: &str) -> String {
    let known = match name {
        "urn:ietf:params:oauth:scope:mail" | "mail" => "read and send your mail",
        "urn:ietf:params:oauth:scope:contacts" => "use your contacts",
        "urn:ietf:params:oauth:scope:calendars" => "use your calendars",
        "openid" => "know who you are",
        "profile" => "see your name",
        "email" => "see your mail address",
        "offline_access" => "stay signed in",
        _ => return format!("use “{name}”"),
    };
    known.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_templates_parse_and_escape() {
        let templates = Templates::load(None).unwrap();
        let html = templates
            .render(
                "error.html",
                minijinja::context! { title => "Oops", message => "<script>x</script>" },
            )
            .unwrap();
        assert!(
            html.contains("&lt;script&gt;x&lt;&#x2f;script&gt;"),
            "{html}"
        );
        assert!(!html.contains("<script>"));
        assert!(html.contains("<html lang=\"en\">"));
        assert!(html.contains("<main"));
    }

    #[test]
    fn scopes_are_described() {
        let views = describe_scopes("openid urn:ietf:params:oauth:scope:mail offline_access");
        let descriptions: Vec<_> = views.iter().map(|view| view.description.as_str()).collect();
        assert_eq!(
            descriptions,
            [
                "know who you are",
                "read and send your mail",
                "stay signed in"
            ]
        );
        assert_eq!(describe_scopes("x")[0].description, "use “x”");
    }
}
