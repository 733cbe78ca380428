//! docker's `--format` for `ps`, `images` and `inspect`: a Go text/template (the gotmpl crate,
//! a port of Go's) run over the JSON document each command prints with `--format json`, with
//! the functions docker adds (json, join, split, lower, upper, title, pad, truncate).
//!
//! As in docker: `\t` and `\n` typed literally become a tab and a newline; `table TEMPLATE`
//! prints a header row first (the same template over the column titles, where the functions
//! leave the titles alone) and aligns the columns at the tabs, with docker's tabwriter settings;
//! a key the data does not have is an error naming it, not a silent `<no value>`.

use anyhow::{Context, Result};
use gotmpl::{MissingKey, Template, TemplateError, Value};
use serde_json::Map;
use std::io::Write;
use std::sync::Arc;

/// What `--format` asked a listing (`ps`, `images`) for.
pub enum Listing {
    /// One JSON object per line.
    Json,
    /// A template per row; `header` (the titles row) when it was a `table` template.
    Rows { row: Box<Template>, header: Option<Box<Template>> },
}

impl Listing {
    /// `--format` of a listing: `table` (the command's own `default_table`), `json`,
    /// `table TEMPLATE`, or a bare `TEMPLATE`.
    pub fn parse(format: &str, default_table: &str) -> Result<Listing> {
        let format = if format.trim() == "table" { default_table } else { format };
        if format.trim() == "json" {
            return Ok(Listing::Json);
        }
        let (source, table) = match format.trim_start().strip_prefix("table") {
            Some(rest) => (rest, true),
            None => (format, false),
        };
        let source = unescape(source.trim_matches(' '));
        let header = if table { Some(Box::new(parse(&source, header_functions)?)) } else { None };
        Ok(Listing::Rows { row: Box::new(parse(&source, row_functions)?), header })
    }

    /// Prints `rows` (the command's JSON objects) as asked; `titles` maps each key a row has
    /// to its column title (docker's: `ID` is `CONTAINER ID` in `ps`).
    pub fn print(&self, rows: &[serde_json::Value], titles: &[(&str, &str)], out: &mut impl Write) -> Result<()> {
        match self {
            Listing::Json => {
                for row in rows {
                    writeln!(out, "{row}")?;
                }
            }
            Listing::Rows { row, header: None } => {
                for r in rows {
                    writeln!(out, "{}", render(row, r)?)?;
                }
            }
            Listing::Rows { row, header: Some(header) } => {
                // docker's tabwriter: minimum cell width 10, 3 spaces of padding.
                // (This crate pads after the minimum width, Go's within it: 7 + 3 here is Go's 10.)
                let mut table = tabwriter::TabWriter::new(Vec::new()).minwidth(7).padding(3);
                let titles: Map<String, serde_json::Value> =
                    titles.iter().map(|(k, t)| (k.to_string(), serde_json::Value::from(*t))).collect();
                writeln!(table, "{}", render(header, &serde_json::Value::Object(titles))?)?;
                for r in rows {
                    writeln!(table, "{}", render(row, r)?)?;
                }
                let table = table.into_inner().map_err(|e| anyhow::anyhow!("aligning the table: {}", e.error()))?;
                for line in String::from_utf8_lossy(&table).lines() {
                    writeln!(out, "{}", line.trim_end())?;
                }
            }
        }
        Ok(())
    }
}

/// What `inspect` prints: docker's JSON array of the objects, or with `-f TEMPLATE` the
/// template over each object, one result per line.
pub fn inspected(format: Option<&str>, objects: &[serde_json::Value], out: &mut impl Write) -> Result<()> {
    match format {
        None | Some("json") => writeln!(out, "{}", serde_json::to_string_pretty(objects)?)?,
        Some(format) => {
            let template = parse(&unescape(format), row_functions)?;
            for object in objects {
                writeln!(out, "{}", render(&template, &with_config_defaults(object))?)?;
            }
        }
    }
    Ok(())
}

/// The fields of docker's `Config` an image or container may lack (or hold null), with the
/// empty value a Go template prints for them (`[]`, `map[]`, nothing), as docker's and
/// podman's do over their structs: `{{.Config.User}}` of an image without one is no error.
const CONFIG_DEFAULTS: &[(&str, &str)] = &[
    ("Cmd", "[]"),
    ("Entrypoint", "[]"),
    ("Env", "[]"),
    ("OnBuild", "[]"),
    ("Labels", "{}"),
    ("Volumes", "{}"),
    ("ExposedPorts", "{}"),
    ("User", "\"\""),
    ("WorkingDir", "\"\""),
    ("StopSignal", "\"\""),
    ("Hostname", "\"\""),
    ("Domainname", "\"\""),
];

fn with_config_defaults(object: &serde_json::Value) -> std::borrow::Cow<'_, serde_json::Value> {
    let Some(config) = object.get("Config").and_then(|c| c.as_object()) else {
        return std::borrow::Cow::Borrowed(object);
    };
    let mut filled = config.clone();
    for (key, empty) in CONFIG_DEFAULTS {
        if filled.get(*key).is_none_or(|v| v.is_null()) {
            filled.insert(key.to_string(), serde_json::from_str(empty).expect("a JSON literal"));
        }
    }
    let mut object = object.clone();
    object["Config"] = serde_json::Value::Object(filled);
    std::borrow::Cow::Owned(object)
}

fn parse(source: &str, functions: fn(Template) -> Template) -> Result<Template> {
    functions(Template::new("").missing_key(MissingKey::Error))
        .parse(source)
        .map_err(|e| anyhow::anyhow!("template parsing error: {e}"))
}

fn render(template: &Template, data: &serde_json::Value) -> Result<String> {
    let value = gotmpl::to_value(data).context("template data")?;
    template.execute_to_string(&value).map_err(|e| anyhow::anyhow!("template: {e}"))
}

/// What docker does to every format before parsing it.
fn unescape(source: &str) -> String {
    source.replace(r"\t", "\t").replace(r"\n", "\n")
}

fn text(args: &[Value], i: usize) -> String {
    args.get(i).map(Value::to_string).unwrap_or_default()
}

fn string(s: impl AsRef<str>) -> Value {
    Value::String(Arc::from(s.as_ref()))
}

fn list(args: &[Value]) -> Vec<Value> {
    match args.first() {
        Some(Value::List(items)) => items.to_vec(),
        Some(other) => vec![other.clone()],
        None => Vec::new(),
    }
}

fn exec_error(message: String) -> TemplateError {
    TemplateError::Exec(message)
}

/// docker's template functions (its `templates.basicFunctions`).
fn row_functions(t: Template) -> Template {
    t.func("json", |args| {
        let value = args.first().map(to_json).unwrap_or(serde_json::Value::Null);
        serde_json::to_string(&value).map(string).map_err(|e| exec_error(format!("json: {e}")))
    })
    .func("join", |args| {
        let items: Vec<String> = list(args).iter().map(Value::to_string).collect();
        Ok(string(items.join(&text(args, 1))))
    })
    .func("split", |args| {
        let (s, sep) = (text(args, 0), text(args, 1));
        Ok(Value::List(s.split(sep.as_str()).map(string).collect()))
    })
    .func("lower", |args| Ok(string(text(args, 0).to_lowercase())))
    .func("upper", |args| Ok(string(text(args, 0).to_uppercase())))
    .func("title", |args| Ok(string(title(&text(args, 0)))))
    .func("pad", |args| {
        let n = |i| args.get(i).and_then(Value::as_int).unwrap_or(0).max(0) as usize;
        Ok(string(format!("{}{}{}", " ".repeat(n(1)), text(args, 0), " ".repeat(n(2)))))
    })
    .func("truncate", |args| {
        let n = args.get(1).and_then(Value::as_int).unwrap_or(0).max(0) as usize;
        Ok(string(text(args, 0).chars().take(n).collect::<String>()))
    })
}

/// The same functions for the header row, where they leave the title as it is (docker's
/// `HeaderFunctions`: `{{json .Labels}}` has the title `LABELS`).
fn header_functions(t: Template) -> Template {
    ["json", "join", "split", "lower", "upper", "title", "pad", "truncate"]
        .into_iter()
        .fold(t, |t, name| t.func(name, |args| Ok(args.first().cloned().unwrap_or(Value::Nil))))
}

/// Go's strings.Title: the first letter of each word upper-cased.
fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut start = true;
    for c in s.chars() {
        if start {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        start = c.is_whitespace();
    }
    out
}

fn to_json(value: &Value) -> serde_json::Value {
    match value {
        Value::Nil => serde_json::Value::Null,
        Value::Bool(b) => (*b).into(),
        Value::Int(n) => (*n).into(),
        Value::Uint(n) => (*n).into(),
        Value::Float(f) => (*f).into(),
        Value::String(s) => s.as_ref().into(),
        Value::List(items) => items.iter().map(to_json).collect(),
        Value::Map(map) => map.iter().map(|(k, v)| (k.to_string(), to_json(v))).collect::<Map<_, _>>().into(),
        Value::Function(_) => serde_json::Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const TITLES: &[(&str, &str)] = &[("ID", "CONTAINER ID"), ("Names", "NAMES"), ("Labels", "LABELS")];

    fn rows() -> Vec<serde_json::Value> {
        vec![
            json!({"ID": "0123456789ab", "Names": "web", "Labels": {"tier": "front"}, "Cmd": ["sleep", "100"]}),
            json!({"ID": "ba9876543210", "Names": "a-much-longer-name", "Labels": {}, "Cmd": []}),
        ]
    }

    fn print(format: &str) -> Result<String> {
        let mut out = Vec::new();
        Listing::parse(format, "table {{.ID}}\\t{{.Names}}")?.print(&rows(), TITLES, &mut out)?;
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn a_bare_template_prints_one_line_per_row() {
        assert_eq!(print("{{.Names}}").unwrap(), "web\na-much-longer-name\n");
        assert_eq!(print(r"{{.ID}}\t{{.Names}}").unwrap(), "0123456789ab\tweb\nba9876543210\ta-much-longer-name\n");
    }

    #[test]
    fn a_table_has_docker_titles_and_aligned_columns() {
        let expected = "CONTAINER ID   NAMES\n0123456789ab   web\nba9876543210   a-much-longer-name\n";
        assert_eq!(print(r"table {{.ID}}\t{{.Names}}").unwrap(), expected);
        assert_eq!(print("table").unwrap(), expected, "plain `table` is the command's default");
        // Short columns are at least 10 wide, as docker's tabwriter makes them.
        assert_eq!(
            print(r"table {{.Names | upper}}\t{{.ID}}").unwrap().lines().next().unwrap(),
            "NAMES                CONTAINER ID"
        );
    }

    #[test]
    fn json_prints_one_object_per_line() {
        let out = print("json").unwrap();
        assert_eq!(out.lines().count(), 2);
        assert_eq!(serde_json::from_str::<serde_json::Value>(out.lines().next().unwrap()).unwrap(), rows()[0]);
    }

    #[test]
    fn docker_functions() {
        assert_eq!(print("{{json .Labels}}").unwrap(), "{\"tier\":\"front\"}\n{}\n");
        assert_eq!(print("{{join .Cmd \" \"}}|{{.Cmd}}").unwrap(), "sleep 100|[sleep 100]\n|[]\n");
        assert_eq!(
            print("{{upper .Names}} {{truncate .ID 4}} {{title \"a b\"}}").unwrap().lines().next(),
            Some("WEB 0123 A B")
        );
        assert_eq!(print("{{index (split .Names \"-\") 0}}").unwrap(), "web\na\n");
        assert_eq!(print("{{index .Labels \"tier\"}}").unwrap().lines().next(), Some("front"));
        assert_eq!(print("table {{json .Labels}}").unwrap().lines().next(), Some("LABELS"), "titles pass through");
    }

    #[test]
    fn mistakes_are_one_line_errors_naming_them() {
        let e = print("{{.Nope}}").unwrap_err().to_string();
        assert!(e.contains("Nope"), "{e}");
        let e = print("{{.Names").unwrap_err().to_string();
        assert!(e.starts_with("template parsing error:") && !e.contains('\n'), "{e}");
        let e = print("{{nosuchfunc .Names}}").unwrap_err().to_string();
        assert!(e.contains("nosuchfunc"), "{e}");
    }

    #[test]
    fn inspect_renders_each_object() {
        let mut out = Vec::new();
        inspected(Some("{{.Names}}={{json .Cmd}}"), &rows(), &mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "web=[\"sleep\",\"100\"]\na-much-longer-name=[]\n");
        let mut out = Vec::new();
        inspected(None, &rows(), &mut out).unwrap();
        assert_eq!(serde_json::from_slice::<serde_json::Value>(&out).unwrap(), serde_json::Value::Array(rows()));
    }

    #[test]
    fn config_fields_an_image_lacks_print_empty_as_docker_s() {
        let image = serde_json::json!({"Config": {"Cmd": ["sh"], "Entrypoint": null}});
        let mut out = Vec::new();
        let format = "{{.Config.Entrypoint}}|{{.Config.User}}|{{.Config.Labels}}|{{.Config.Cmd}}|";
        inspected(Some(format), &[image], &mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "[]||map[]|[sh]|\n");
        // A key docker does not have is still an error naming it.
        let e = inspected(Some("{{.Config.Nope}}"), &[serde_json::json!({"Config": {}})], &mut Vec::new()).unwrap_err();
        assert!(e.to_string().contains("Nope"), "{e}");
    }
}
