//! What changed between two schema snapshots (the document of the agent's
//! `schema_snapshot`), each change classified:
//!
//! - **breaking** — can make existing queries or writes fail: a dropped
//!   schema, table, column, view, function, type, enum value or sequence; a
//!   column type change; a column made NOT NULL; a NOT NULL column added
//!   without a default; a new constraint (existing writes may now fail); a
//!   dropped primary key or unique constraint/index (ON CONFLICT and foreign
//!   keys rely on them); a changed constraint; a view that lost or changed a
//!   column; a function whose result type changed.
//! - **non-breaking** — everything else: additions, a dropped plain index
//!   (slower, not wrong), a dropped check or foreign key (more permissive), a
//!   new enum value, a changed default, a changed function body or trigger.
//!
//! Sizes and row estimates are not changes. A rename shows as a drop and an
//! add (the catalog keeps no history).

use std::collections::BTreeMap;

use serde_json::{Value, json};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub object_kind: &'static str,
    pub object_name: String,
    /// `added`, `dropped` or `altered`.
    pub change: &'static str,
    pub breaking: bool,
    pub detail: Value,
}

impl Change {
    pub fn classification(&self) -> &'static str {
        if self.breaking {
            "breaking"
        } else {
            "non_breaking"
        }
    }
}

fn named(list: &Value, key: &str) -> BTreeMap<String, Value> {
    list.as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|i| Some((i[key].as_str()?.to_owned(), i.clone())))
                .collect()
        })
        .unwrap_or_default()
}

struct Diff {
    out: Vec<Change>,
}

impl Diff {
    fn push(
        &mut self,
        kind: &'static str,
        name: String,
        change: &'static str,
        breaking: bool,
        detail: Value,
    ) {
        self.out.push(Change {
            object_kind: kind,
            object_name: name,
            change,
            breaking,
            detail,
        });
    }

    /// Added and dropped members of a named list; calls `altered` for the rest.
    #[allow(clippy::too_many_arguments)]
    fn lists(
        &mut self,
        kind: &'static str,
        prefix: &str,
        old: &Value,
        new: &Value,
        key: &str,
        added_breaking: impl Fn(&Value) -> bool,
        dropped_breaking: impl Fn(&Value) -> bool,
        mut altered: impl FnMut(&mut Self, String, &Value, &Value),
    ) {
        let (o, n) = (named(old, key), named(new, key));
        for (name, v) in &n {
            let full = format!("{prefix}{name}");
            match o.get(name) {
                None => self.push(kind, full, "added", added_breaking(v), json!({ "to": v })),
                Some(before) => altered(self, full, before, v),
            }
        }
        for (name, v) in &o {
            if !n.contains_key(name) {
                self.push(
                    kind,
                    format!("{prefix}{name}"),
                    "dropped",
                    dropped_breaking(v),
                    json!({ "from": v }),
                );
            }
        }
    }

    fn table(&mut self, name: String, old: &Value, new: &Value) {
        let prefix = format!("{name}.");
        self.lists(
            "column",
            &prefix,
            &old["columns"],
            &new["columns"],
            "name",
            |c| c["nullable"] == false && c["default"].is_null() && c["identity"].is_null() && c["generated"].is_null(),
            |_| true,
            |d, full, o, n| {
                if o["type"] != n["type"] {
                    d.push("column", full.clone(), "altered", true, json!({ "from": { "type": o["type"] }, "to": { "type": n["type"] } }));
                }
                if o["nullable"] != n["nullable"] {
                    d.push("column", full.clone(), "altered", n["nullable"] == false, json!({ "from": { "nullable": o["nullable"] }, "to": { "nullable": n["nullable"] } }));
                }
                if o["default"] != n["default"] {
                    d.push("column", full, "altered", false, json!({ "from": { "default": o["default"] }, "to": { "default": n["default"] } }));
                }
            },
        );
        self.lists(
            "constraint",
            &prefix,
            &old["constraints"],
            &new["constraints"],
            "name",
            |_| true,
            |c| {
                matches!(
                    c["type"].as_str(),
                    Some("primary_key" | "unique" | "exclusion")
                )
            },
            |d, full, o, n| {
                if o["definition"] != n["definition"] {
                    d.push(
                        "constraint",
                        full,
                        "altered",
                        true,
                        json!({ "from": o["definition"], "to": n["definition"] }),
                    );
                }
            },
        );
        self.lists(
            "index",
            &prefix,
            &old["indexes"],
            &new["indexes"],
            "name",
            |_| false,
            |i| i["unique"] == true,
            |d, full, o, n| {
                if o["definition"] != n["definition"] || o["valid"] != n["valid"] {
                    d.push("index", full, "altered", o["unique"] == true && n["unique"] != true, json!({ "from": o["definition"], "to": n["definition"], "valid": n["valid"] }));
                }
            },
        );
        self.lists(
            "trigger",
            &prefix,
            &old["triggers"],
            &new["triggers"],
            "name",
            |_| false,
            |_| false,
            |d, full, o, n| {
                if o != n {
                    d.push(
                        "trigger",
                        full,
                        "altered",
                        false,
                        json!({ "from": o, "to": n }),
                    );
                }
            },
        );
    }

    fn schema(&mut self, name: String, old: &Value, new: &Value) {
        let prefix = format!("{name}.");
        self.lists(
            "table",
            &prefix,
            &old["tables"],
            &new["tables"],
            "name",
            |_| false,
            |_| true,
            |d, full, o, n| d.table(full, o, n),
        );
        self.lists(
            "view",
            &prefix,
            &old["views"],
            &new["views"],
            "name",
            |_| false,
            |_| true,
            |d, full, o, n| {
                if o["definition"] == n["definition"] && o["columns"] == n["columns"] {
                    return;
                }
                let before = named(&o["columns"], "name");
                let after = named(&n["columns"], "name");
                let lost = before
                    .iter()
                    .any(|(c, v)| after.get(c).is_none_or(|a| a["type"] != v["type"]));
                d.push(
                    "view",
                    full,
                    "altered",
                    lost,
                    json!({ "from": o["definition"], "to": n["definition"] }),
                );
            },
        );
        self.lists("function", &prefix, &old["functions"], &new["functions"], "signature", |_| false, |_| true, |d, full, o, n| {
            if o["returns"] != n["returns"] {
                d.push("function", full.clone(), "altered", true, json!({ "from": { "returns": o["returns"] }, "to": { "returns": n["returns"] } }));
            } else if o != n {
                d.push("function", full, "altered", false, json!({ "from": o, "to": n }));
            }
        });
        self.lists(
            "type",
            &prefix,
            &old["types"],
            &new["types"],
            "name",
            |_| false,
            |_| true,
            |d, full, o, n| {
                let (ov, nv) = (named_strings(&o["values"]), named_strings(&n["values"]));
                for v in nv.iter().filter(|v| !ov.contains(v)) {
                    d.push(
                        "enum_value",
                        format!("{full}.{v}"),
                        "added",
                        false,
                        json!({ "to": v }),
                    );
                }
                for v in ov.iter().filter(|v| !nv.contains(v)) {
                    d.push(
                        "enum_value",
                        format!("{full}.{v}"),
                        "dropped",
                        true,
                        json!({ "from": v }),
                    );
                }
                if o["definition"] != n["definition"] || o["kind"] != n["kind"] {
                    d.push("type", full, "altered", true, json!({ "from": o, "to": n }));
                }
            },
        );
        self.lists(
            "sequence",
            &prefix,
            &old["sequences"],
            &new["sequences"],
            "name",
            |_| false,
            |_| true,
            |_, _, _, _| {},
        );
    }
}

fn named_strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The changes from `old` to `new`, in a stable order.
pub fn diff(old: &Value, new: &Value) -> Vec<Change> {
    let mut d = Diff { out: Vec::new() };
    d.lists(
        "schema",
        "",
        &old["schemas"],
        &new["schemas"],
        "name",
        |_| false,
        |_| true,
        |d, full, o, n| d.schema(full, o, n),
    );
    d.lists(
        "extension",
        "",
        &old["extensions"],
        &new["extensions"],
        "name",
        |_| false,
        |_| true,
        |d, full, o, n| {
            if o["version"] != n["version"] {
                d.push(
                    "extension",
                    full,
                    "altered",
                    false,
                    json!({ "from": o["version"], "to": n["version"] }),
                );
            }
        },
    );
    d.out
}

/// The document without what changes on its own (sizes, row estimates),
/// serialized with sorted keys: equal schemas give equal text.
pub fn canonical(doc: &Value) -> String {
    fn strip(v: &Value) -> Value {
        match v {
            Value::Object(map) => Value::Object(
                map.iter()
                    .filter(|(k, _)| !matches!(k.as_str(), "size_bytes" | "row_estimate"))
                    .map(|(k, v)| (k.clone(), strip(v)))
                    .collect(),
            ),
            Value::Array(items) => Value::Array(items.iter().map(strip).collect()),
            other => other.clone(),
        }
    }
    strip(doc).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(columns: Value) -> Value {
        json!({"database": "app", "extensions": [], "schemas": [{"name": "public", "tables": [{
            "name": "orders", "size_bytes": 1, "row_estimate": 1,
            "columns": columns, "constraints": [], "indexes": [], "triggers": []}],
            "views": [], "functions": [], "types": [], "sequences": []}]})
    }

    fn col(name: &str, ty: &str, nullable: bool) -> Value {
        json!({"name": name, "type": ty, "nullable": nullable, "default": null, "identity": null, "generated": null})
    }

    #[test]
    fn add_then_drop_a_column_are_two_changes_classified() {
        let a = doc(json!([col("id", "integer", false)]));
        let b = doc(json!([
            col("id", "integer", false),
            col("note", "text", true)
        ]));
        let c = doc(json!([col("note", "text", true)]));
        let added = diff(&a, &b);
        assert_eq!(added.len(), 1);
        assert_eq!(
            (
                added[0].object_name.as_str(),
                added[0].change,
                added[0].breaking
            ),
            ("public.orders.note", "added", false)
        );
        let dropped = diff(&b, &c);
        assert_eq!(dropped.len(), 1);
        assert_eq!(
            (
                dropped[0].object_name.as_str(),
                dropped[0].change,
                dropped[0].breaking
            ),
            ("public.orders.id", "dropped", true)
        );
    }

    #[test]
    fn type_changes_and_not_null_additions_break() {
        let a = doc(json!([col("id", "integer", true)]));
        let b = doc(json!([
            col("id", "bigint", false),
            col("req", "text", false)
        ]));
        let changes = diff(&a, &b);
        assert!(changes.iter().all(|c| c.breaking), "{changes:?}");
        assert_eq!(changes.len(), 3, "{changes:?}");
    }

    #[test]
    fn sizes_are_not_changes() {
        let a = doc(json!([col("id", "integer", true)]));
        let mut b = a.clone();
        b["schemas"][0]["tables"][0]["size_bytes"] = json!(999);
        assert!(diff(&a, &b).is_empty());
        assert_eq!(canonical(&a), canonical(&b));
    }

    #[test]
    fn indexes_and_enum_values() {
        let mut a = doc(json!([]));
        a["schemas"][0]["types"] =
            json!([{"name": "mood", "kind": "enum", "values": ["sad", "ok"], "definition": null}]);
        let mut b = a.clone();
        b["schemas"][0]["tables"][0]["indexes"] =
            json!([{"name": "i", "definition": "CREATE INDEX i", "unique": false, "valid": true}]);
        b["schemas"][0]["types"][0]["values"] = json!(["sad", "ok", "happy"]);
        let changes = diff(&a, &b);
        assert_eq!(changes.len(), 2, "{changes:?}");
        assert!(changes.iter().all(|c| !c.breaking));
        let back = diff(&b, &a);
        assert!(
            back.iter()
                .any(|c| c.object_kind == "enum_value" && c.breaking)
        );
        assert!(back.iter().any(|c| c.object_kind == "index" && !c.breaking));
    }

    #[test]
    fn garbage_documents_give_no_changes_and_no_panic() {
        assert!(diff(&json!(null), &json!({"schemas": 7})).is_empty());
        assert!(diff(&json!({"schemas": [{"name": 1}]}), &json!("x")).is_empty());
    }
}
