//! The API's OpenAPI 3.1 document (`GET /openapi.json`). It is written by hand next to the
//! route table and checked against it below, so a route added to the table without a
//! description (or described but not served) fails the tests; `scripts/api-contract` then runs
//! schemathesis against a live pool from this same document, so the bodies cannot drift either.

use super::Reply;

/// `openapi.json` without its whitespace (build.rs), as every HTTP function embeds it.
pub const DOCUMENT: &str = include_str!(concat!(env!("OUT_DIR"), "/openapi.min.json"));

pub fn openapi() -> Reply {
    Reply::static_json(DOCUMENT)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::Value;

    use super::DOCUMENT;
    use crate::api::routes::{Route, TABLE};

    fn document() -> Value {
        serde_json::from_str(DOCUMENT).expect("openapi.json is JSON")
    }

    const METHODS: &[&str] = &["get", "put", "post", "delete", "patch", "head", "options", "trace"];

    #[test]
    fn the_document_describes_exactly_the_route_table() {
        let doc = document();
        assert_eq!(doc["openapi"], "3.1.0");
        let paths = doc["paths"].as_object().expect("paths");
        let described: BTreeSet<(String, String)> = paths
            .iter()
            .flat_map(|(path, item)| {
                let item = item.as_object().expect("a path item is an object");
                item.keys()
                    .filter(|key| METHODS.contains(&key.as_str()))
                    .map(move |method| (method.to_uppercase(), path.clone()))
            })
            .collect();
        let served: BTreeSet<(String, String)> =
            TABLE.iter().map(|(method, path, _)| (method.as_str().to_owned(), (*path).to_owned())).collect();
        let missing: Vec<_> = served.difference(&described).collect();
        let extra: Vec<_> = described.difference(&served).collect();
        assert!(missing.is_empty(), "routes of the table openapi.json does not describe: {missing:?}");
        assert!(extra.is_empty(), "openapi.json describes routes the table does not serve: {extra:?}");
    }

    #[test]
    fn each_operation_says_whether_it_needs_the_key() {
        let doc = document();
        assert!(doc["components"]["securitySchemes"]["poolApiKey"]["scheme"] == "bearer");
        for (method, path, route) in TABLE {
            let operation = &doc["paths"][*path][method.as_str().to_lowercase()];
            let security =
                operation["security"].as_array().unwrap_or_else(|| panic!("{method} {path}: security"));
            let unauthorized = &operation["responses"]["401"];
            if route.needs_key() {
                assert_eq!(security.len(), 1, "{method} {path} needs the key");
                assert!(security[0].get("poolApiKey").is_some(), "{method} {path}");
                assert!(!unauthorized.is_null(), "{method} {path}: its 401 is not described");
            } else {
                assert!(security.is_empty(), "{method} {path} is public");
                assert!(unauthorized.is_null(), "{method} {path} never answers 401");
            }
        }
        assert!(Route::ALL.iter().any(|r| !r.needs_key()));
    }

    /// A `$ref` naming nothing would make the whole document unusable to a client generator.
    #[test]
    fn every_reference_resolves() {
        let doc = document();
        let mut refs = Vec::new();
        collect_refs(&doc, &mut refs);
        assert!(!refs.is_empty());
        for reference in refs {
            let pointer = reference.strip_prefix('#').unwrap_or_else(|| panic!("{reference} is not local"));
            assert!(doc.pointer(pointer).is_some(), "{reference} names nothing");
        }
    }

    fn collect_refs(value: &Value, refs: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(reference)) = map.get("$ref") {
                    refs.push(reference.clone());
                }
                map.values().for_each(|v| collect_refs(v, refs));
            }
            Value::Array(items) => items.iter().for_each(|v| collect_refs(v, refs)),
            _ => {}
        }
    }
}
