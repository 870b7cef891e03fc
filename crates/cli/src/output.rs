//! How results are printed: one place for `--output json|table|tsv|yaml`
//! and `--query` (JMESPath, as in `az` and `aws`). Commands hand over a
//! typed result and a [`View`] (how a person would like to read it as a
//! table); scripts get JSON, YAML or tab-separated text.
//!
//! With `--query`, the expression is applied to the JSON form of the result
//! and its value printed: JSON and YAML as such, a scalar as plain text, a
//! list of scalars one per line, objects as a table (or tab-separated rows).

use std::io::Write;

use anyhow::Context;
use clap::ValueEnum;
use serde::Serialize;
use serde_json::Value;

use crate::client::Listed;

/// Output formats.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Format {
    /// Aligned columns for people.
    Table,
    /// JSON, as the API returns it.
    Json,
    /// Tab-separated values, one line per item, no header (for `cut`, `read`).
    Tsv,
    /// YAML.
    Yaml,
}

/// How a result reads as a table.
pub enum View<'a> {
    /// One resource: a FIELD / VALUE table.
    Fields,
    /// A list: one column per (header, JSON pointer).
    Columns(&'a [(&'a str, &'a str)]),
    /// Text made for people by the command (tsv falls back to the fields).
    Text(&'a dyn Fn(&Value) -> String),
}

/// The output settings of one run.
pub struct Output {
    format: Format,
    query: Option<(String, jmespath::Expression<'static>)>,
}

impl Output {
    /// Settings from `--output` and `--query` (compiled here, so a bad
    /// expression fails before any request is made).
    pub fn new(format: Format, query: Option<String>) -> anyhow::Result<Self> {
        let query = match query {
            None => None,
            Some(q) => {
                let expr = jmespath::compile(&q).map_err(|e| {
                    anyhow::anyhow!(
                        "invalid --query: {e}\n--query takes a JMESPath expression, e.g. `id`, `encryption.type`, `[].name` or `[?state=='attached'].id` (see https://jmespath.org)"
                    )
                })?;
                Some((q, expr))
            }
        };
        Ok(Self { format, query })
    }

    /// Print `value`.
    pub fn show<T: Serialize + ?Sized>(&self, value: &T, view: View<'_>) -> anyhow::Result<()> {
        let v = serde_json::to_value(value).context("encoding the result")?;
        let text = self.render(&v, view)?;
        let mut out = std::io::stdout().lock();
        writeln!(out, "{text}")?;
        Ok(())
    }

    /// Print a list, and on stderr the token to go on from if `--max-items`
    /// cut it short.
    pub fn show_list<T: Serialize>(
        &self,
        listed: &Listed<T>,
        view: View<'_>,
    ) -> anyhow::Result<()> {
        self.show(&listed.items, view)?;
        if let Some(t) = &listed.next_token {
            eprintln!("NextToken: {t}");
            eprintln!("(more items remain: run the same command with --starting-token {t})");
        }
        Ok(())
    }

    fn render(&self, v: &Value, view: View<'_>) -> anyhow::Result<String> {
        if let Some((text, expr)) = &self.query {
            let found = expr
                .search(v.clone())
                .map_err(|e| anyhow::anyhow!("--query {text}: {e}"))?;
            let found = serde_json::to_value(&*found).context("encoding the query's result")?;
            if found.is_null() {
                check_path(text, v)?;
            }
            return self.generic(&found);
        }
        match (self.format, view) {
            (Format::Table, View::Fields) => Ok(fields_table(v)),
            (Format::Table, View::Columns(cols)) => Ok(columns_table(v, cols)),
            (Format::Table, View::Text(f)) => Ok(f(v)),
            (Format::Tsv, View::Columns(cols)) => Ok(items(v)
                .iter()
                .map(|item| {
                    cols.iter()
                        .map(|(_, ptr)| tsv_cell(item.pointer(ptr).unwrap_or(&Value::Null)))
                        .collect::<Vec<_>>()
                        .join("\t")
                })
                .collect::<Vec<_>>()
                .join("\n")),
            _ => self.generic(v),
        }
    }

    /// Any value in the chosen format, with no view.
    fn generic(&self, v: &Value) -> anyhow::Result<String> {
        Ok(match self.format {
            Format::Json => serde_json::to_string_pretty(v)?,
            Format::Yaml => serde_norway::to_string(v)?.trim_end().to_string(),
            Format::Tsv => match v {
                Value::Array(a) => a.iter().map(tsv_line).collect::<Vec<_>>().join("\n"),
                other => tsv_line(other),
            },
            Format::Table => match v {
                Value::Object(_) => fields_table(v),
                Value::Array(a) if a.iter().any(Value::is_object) => {
                    let mut keys: Vec<String> = vec![];
                    for item in a {
                        for k in item.as_object().into_iter().flat_map(|o| o.keys()) {
                            if !keys.contains(k) {
                                keys.push(k.clone());
                            }
                        }
                    }
                    table(
                        &keys.iter().map(|k| k.to_uppercase()).collect::<Vec<_>>(),
                        a.iter()
                            .map(|item| {
                                keys.iter()
                                    .map(|k| cell(item.get(k).unwrap_or(&Value::Null)))
                                    .collect()
                            })
                            .collect(),
                    )
                }
                Value::Array(a) => a.iter().map(cell).collect::<Vec<_>>().join("\n"),
                other => cell(other),
            },
        })
    }
}

/// A query that found nothing: if it is a plain field path, a typo must not
/// pass for an empty value in a script, so say which fields there are.
fn check_path(query: &str, v: &Value) -> anyhow::Result<()> {
    let plain = !query.is_empty()
        && query.split('.').all(|p| {
            let mut c = p.chars();
            c.next()
                .is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
                && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
        });
    if !plain {
        return Ok(());
    }
    match v {
        Value::Array(a) => anyhow::bail!(
            "--query {query}: the result is a list, so name the field of each item: --query '[].{query}'{}",
            if a.is_empty() {
                " (the list is empty)"
            } else {
                ""
            }
        ),
        Value::Object(_) => {
            let ptr = format!("/{}", query.replace('.', "/"));
            if v.pointer(&ptr).is_some() {
                return Ok(()); // the field exists and is null
            }
            // The fields of the deepest object the path reaches.
            let mut at = v;
            for part in query.split('.') {
                match at.get(part) {
                    Some(next) if next.is_object() => at = next,
                    _ => break,
                }
            }
            let fields: Vec<&str> = at
                .as_object()
                .map(|o| o.keys().map(String::as_str).collect())
                .unwrap_or_default();
            anyhow::bail!(
                "--query {query}: the result has no such field; its fields are: {}",
                fields.join(", ")
            )
        }
        _ => Ok(()),
    }
}

fn items(v: &Value) -> Vec<&Value> {
    match v {
        Value::Array(a) => a.iter().collect(),
        other => vec![other],
    }
}

/// A value in a table cell.
pub fn cell(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        Value::Array(a) => a.iter().map(cell).collect::<Vec<_>>().join(", "),
        Value::Object(o) => o
            .iter()
            .map(|(k, v)| format!("{k}={}", cell(v)))
            .collect::<Vec<_>>()
            .join(" "),
        other => other.to_string(),
    }
}

fn tsv_cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        other => cell(other).replace(['\t', '\n'], " "),
    }
}

/// An object's scalar fields (and a scalar itself) on one tab-separated line.
fn tsv_line(v: &Value) -> String {
    match v {
        Value::Object(o) => o
            .values()
            .filter(|x| !x.is_object() && !x.is_array())
            .map(tsv_cell)
            .collect::<Vec<_>>()
            .join("\t"),
        other => tsv_cell(other),
    }
}

/// The cell at `ptr` of `v` (`-` when absent).
pub fn at(v: &Value, ptr: &str) -> String {
    cell(v.pointer(ptr).unwrap_or(&Value::Null))
}

/// An `az`-style table: padded columns, a dashed rule under the header.
pub fn table<S: AsRef<str>>(headers: &[S], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.as_ref().chars().count()).collect();
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = vec![line(
        headers.iter().map(|h| h.as_ref().to_string()).collect(),
    )];
    out.push(line(widths.iter().map(|w| "-".repeat(*w)).collect()));
    out.extend(rows.into_iter().map(line));
    out.join("\n")
}

/// A list as a table with one column per (header, JSON pointer).
pub fn columns_table(v: &Value, columns: &[(&str, &str)]) -> String {
    let headers: Vec<&str> = columns.iter().map(|c| c.0).collect();
    let body = items(v)
        .into_iter()
        .map(|item| columns.iter().map(|c| at(item, c.1)).collect())
        .collect();
    table(&headers, body)
}

/// One resource as a FIELD / VALUE table, id and name first.
pub fn fields_table(v: &Value) -> String {
    let mut rows = Vec::new();
    if let Value::Object(m) = v {
        let mut fields: Vec<(&String, &Value)> = m.iter().collect();
        fields.sort_by_key(|(k, _)| match k.as_str() {
            "id" => 0,
            "name" => 1,
            _ => 2,
        });
        for (k, val) in fields {
            rows.push(vec![k.clone(), cell(val)]);
        }
    }
    table(&["FIELD", "VALUE"], rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(format: Format, query: Option<&str>, v: &Value) -> anyhow::Result<String> {
        Output::new(format, query.map(str::to_string))?.render(v, View::Fields)
    }

    #[test]
    fn jmespath_queries_pick_fields_and_filter_lists() {
        let disk = json!({"id": "disk-1", "encryption": {"type": "platform"}, "source": null});
        assert_eq!(run(Format::Table, Some("id"), &disk).unwrap(), "disk-1");
        assert_eq!(
            run(Format::Table, Some("encryption.type"), &disk).unwrap(),
            "platform"
        );
        // A field that exists and is null is not a typo.
        assert_eq!(run(Format::Tsv, Some("source"), &disk).unwrap(), "");
        let list = json!([{"id": "a", "state": "attached"}, {"id": "b", "state": "available"}]);
        assert_eq!(run(Format::Table, Some("[].id"), &list).unwrap(), "a\nb");
        assert_eq!(
            run(Format::Json, Some("[?state=='attached'].id"), &list).unwrap(),
            "[\n  \"a\"\n]"
        );
        assert_eq!(run(Format::Tsv, Some("length(@)"), &list).unwrap(), "2");
    }

    #[test]
    fn typos_and_bad_expressions_are_errors_with_a_hint() {
        let who = json!({"account_id": "acct-1", "tenant_id": "tnt-1"});
        let e = run(Format::Table, Some("account.id"), &who)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no such field") && e.contains("account_id"),
            "{e}"
        );
        let e = run(Format::Table, Some("id"), &json!([{"id": "a"}]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("'[].id'"), "{e}");
        let e = Output::new(Format::Json, Some("[?".into()))
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("invalid --query") && e.contains("JMESPath"),
            "{e}"
        );
    }

    #[test]
    fn formats_render_lists_for_people_and_for_scripts() {
        let list =
            json!([{"id": "a", "size": 1, "tags": null}, {"id": "bb", "size": 22, "tags": null}]);
        let cols = [("ID", "/id"), ("SIZE", "/size")];
        let o = Output::new(Format::Table, None).unwrap();
        assert_eq!(
            o.render(&list, View::Columns(&cols)).unwrap(),
            "ID  SIZE\n--  ----\na   1\nbb  22"
        );
        let o = Output::new(Format::Tsv, None).unwrap();
        assert_eq!(
            o.render(&list, View::Columns(&cols)).unwrap(),
            "a\t1\nbb\t22"
        );
        let o = Output::new(Format::Yaml, None).unwrap();
        let y = o.render(&list, View::Columns(&cols)).unwrap();
        assert!(y.starts_with("- id: a\n  size: 1"), "{y}");
        let back: Value = serde_norway::from_str(&y).unwrap();
        assert_eq!(back, list);
    }
}
