//! Just enough GraphQL execution for the Railway API: a real parse (async-graphql-parser),
//! operation selection, arguments from literals and variables, fragments and
//! `@include`/`@skip`, and projection of resolved JSON objects onto selection sets.
//!
//! Resolvers build whole objects (with `__typename`); [`project`] keeps what was asked for and
//! rejects fields the type does not have, as a schema-validating server would.

use std::collections::HashMap;

use async_graphql_parser::Positioned;
use async_graphql_parser::types::{
    DocumentOperations, ExecutableDocument, Field, FragmentDefinition, OperationDefinition, OperationType,
    Selection, SelectionSet,
};
use async_graphql_value::{Name, Value as GqlValue};
use serde_json::{Map, Value, json};

/// A request that parsed: the chosen operation with its variables.
pub struct Prepared {
    pub doc: ExecutableDocument,
    pub op_name: Option<String>,
    pub variables: Map<String, Value>,
}

/// A GraphQL error with the location of the field it belongs to, if any.
#[derive(Debug)]
pub struct GqlError {
    pub message: String,
    pub pos: Option<(usize, usize)>,
    pub path: Vec<Value>,
}

impl GqlError {
    pub fn new(message: impl Into<String>) -> Self {
        GqlError { message: message.into(), pos: None, path: Vec::new() }
    }

    pub fn to_json(&self) -> Value {
        let mut e = json!({"message": self.message});
        if let Some((line, column)) = self.pos {
            e["locations"] = json!([{"line": line, "column": column}]);
        }
        if !self.path.is_empty() {
            e["path"] = json!(self.path);
        }
        e
    }
}

/// Parses the HTTP body `{query, variables?, operationName?}` and the document in it.
/// `Err` carries a message and whether it was the document's syntax (vs. the request shape).
pub fn prepare(body: &[u8]) -> Result<Prepared, GqlError> {
    let request: Value = serde_json::from_slice(body)
        .map_err(|e| GqlError::new(format!("POST body is not valid JSON: {e}")))?;
    let query = request
        .get("query")
        .and_then(Value::as_str)
        .ok_or_else(|| GqlError::new("POST body must contain a \"query\" string"))?;
    let variables = match request.get("variables") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => return Err(GqlError::new("\"variables\" must be an object")),
    };
    let op_name = request.get("operationName").and_then(Value::as_str).map(str::to_string);
    let doc = async_graphql_parser::parse_query(query).map_err(|e| {
        let pos = e.positions().next().map(|p| (p.line, p.column));
        GqlError { message: format!("Syntax Error: {e}"), pos, path: Vec::new() }
    })?;
    let prepared = Prepared { doc, op_name, variables };
    prepared.operation()?;
    Ok(prepared)
}

impl Prepared {
    /// The operation to run: the named one, or the only one.
    pub fn operation(&self) -> Result<&OperationDefinition, GqlError> {
        match (&self.doc.operations, &self.op_name) {
            (DocumentOperations::Single(op), None) => Ok(&op.node),
            (DocumentOperations::Single(_), Some(name)) => {
                Err(GqlError::new(format!("Unknown operation named \"{name}\".")))
            }
            (DocumentOperations::Multiple(ops), Some(name)) => ops
                .get(name.as_str())
                .map(|op| &op.node)
                .ok_or_else(|| GqlError::new(format!("Unknown operation named \"{name}\"."))),
            (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => {
                Ok(&ops.values().next().expect("one operation").node)
            }
            (DocumentOperations::Multiple(_), None) => {
                Err(GqlError::new("Must provide operation name if query contains multiple operations."))
            }
        }
    }

    /// The variables with the operation's defaults filled in.
    pub fn context(&self) -> Result<Ctx<'_>, GqlError> {
        let op = self.operation()?;
        let mut vars = self.variables.clone();
        for def in &op.variable_definitions {
            let name = def.node.name.node.as_str();
            if !vars.contains_key(name) {
                match &def.node.default_value {
                    Some(v) => {
                        vars.insert(name.to_string(), v.node.clone().into_json().unwrap_or(Value::Null));
                    }
                    None if !def.node.var_type.node.nullable => {
                        return Err(GqlError::new(format!(
                            "Variable \"${name}\" of required type \"{}\" was not provided.",
                            def.node.var_type.node
                        )));
                    }
                    None => {}
                }
            }
        }
        Ok(Ctx { fragments: &self.doc.fragments, vars })
    }
}

/// What field resolution needs from the document.
pub struct Ctx<'a> {
    fragments: &'a HashMap<Name, Positioned<FragmentDefinition>>,
    vars: Map<String, Value>,
}

const MAX_DEPTH: usize = 32;

impl<'a> Ctx<'a> {
    /// A GraphQL value as JSON, variables substituted (unknown ones are null).
    pub fn value(&self, v: &GqlValue) -> Value {
        match v {
            GqlValue::Variable(name) => self.vars.get(name.as_str()).cloned().unwrap_or(Value::Null),
            GqlValue::Null => Value::Null,
            GqlValue::Number(n) => Value::Number(n.clone()),
            GqlValue::String(s) => Value::String(s.clone()),
            GqlValue::Boolean(b) => Value::Bool(*b),
            GqlValue::Binary(b) => Value::String(String::from_utf8_lossy(b).into_owned()),
            GqlValue::Enum(name) => Value::String(name.to_string()),
            GqlValue::List(items) => Value::Array(items.iter().map(|i| self.value(i)).collect()),
            GqlValue::Object(map) => {
                Value::Object(map.iter().map(|(k, v)| (k.to_string(), self.value(v))).collect())
            }
        }
    }

    /// A field's arguments as a JSON object.
    pub fn args(&self, field: &Field) -> Map<String, Value> {
        field.arguments.iter().map(|(k, v)| (k.node.to_string(), self.value(&v.node))).collect()
    }

    fn included(&self, directives: &[Positioned<async_graphql_parser::types::Directive>]) -> bool {
        for d in directives {
            let arg = d
                .node
                .arguments
                .iter()
                .find(|(k, _)| k.node.as_str() == "if")
                .map(|(_, v)| self.value(&v.node));
            let cond = arg.and_then(|v| v.as_bool()).unwrap_or(false);
            match d.node.name.node.as_str() {
                "include" if !cond => return false,
                "skip" if cond => return false,
                _ => {}
            }
        }
        true
    }

    /// The fields of a selection set for an object of type `typename`, fragments expanded.
    pub fn fields(
        &'a self,
        set: &'a SelectionSet,
        typename: &str,
    ) -> Result<Vec<&'a Positioned<Field>>, GqlError> {
        let mut out = Vec::new();
        self.collect(set, typename, &mut out, 0)?;
        Ok(out)
    }

    fn collect(
        &'a self,
        set: &'a SelectionSet,
        typename: &str,
        out: &mut Vec<&'a Positioned<Field>>,
        depth: usize,
    ) -> Result<(), GqlError> {
        if depth > MAX_DEPTH {
            return Err(GqlError::new("Fragments nest too deeply (or form a cycle)."));
        }
        for item in &set.items {
            match &item.node {
                Selection::Field(f) => {
                    if self.included(&f.node.directives) {
                        out.push(f);
                    }
                }
                Selection::InlineFragment(frag) => {
                    let applies =
                        frag.node.type_condition.as_ref().is_none_or(|c| c.node.on.node.as_str() == typename);
                    if applies && self.included(&frag.node.directives) {
                        self.collect(&frag.node.selection_set.node, typename, out, depth + 1)?;
                    }
                }
                Selection::FragmentSpread(spread) => {
                    let name = spread.node.fragment_name.node.as_str();
                    let def = self
                        .fragments
                        .get(name)
                        .ok_or_else(|| GqlError::new(format!("Unknown fragment \"{name}\".")))?;
                    if def.node.type_condition.node.on.node.as_str() == typename
                        && self.included(&spread.node.directives)
                    {
                        self.collect(&def.node.selection_set.node, typename, out, depth + 1)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Keeps from `value` what `set` selects. Objects carry `__typename`; a field the object
    /// lacks is a validation error; a connection is served a page at a time.
    pub fn project(
        &self,
        value: &Value,
        set: &SelectionSet,
        path: &mut Vec<Value>,
    ) -> Result<Value, GqlError> {
        match value {
            Value::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    path.push(json!(i));
                    out.push(self.project(item, set, path)?);
                    path.pop();
                }
                Ok(Value::Array(out))
            }
            Value::Object(obj) => {
                let typename = obj.get("__typename").and_then(Value::as_str).unwrap_or("Object").to_string();
                let mut out = Map::new();
                for field in self.fields(set, &typename)? {
                    let f = &field.node;
                    let key = f.response_key().node.to_string();
                    let name = f.name.node.as_str();
                    if name == "__typename" {
                        out.insert(key, json!(typename));
                        continue;
                    }
                    let Some(found) = obj.get(name) else {
                        return Err(GqlError {
                            message: format!("Cannot query field \"{name}\" on type \"{typename}\"."),
                            pos: Some((field.pos.line, field.pos.column)),
                            path: path.clone(),
                        });
                    };
                    let found = trim_connection(found, &self.args(f)).map_err(|message| GqlError {
                        message,
                        pos: Some((field.pos.line, field.pos.column)),
                        path: path.clone(),
                    })?;
                    path.push(json!(key));
                    let projected = if f.selection_set.node.items.is_empty() {
                        if found.get("__typename").is_some() {
                            return Err(GqlError {
                                message: format!(
                                    "Field \"{name}\" of type \"{}\" must have a selection of subfields.",
                                    found["__typename"].as_str().unwrap_or("Object")
                                ),
                                pos: Some((field.pos.line, field.pos.column)),
                                path: path.clone(),
                            });
                        }
                        found
                    } else {
                        self.project(&found, &f.selection_set.node, path)?
                    };
                    path.pop();
                    merge(&mut out, key, projected);
                }
                Ok(Value::Object(out))
            }
            Value::Null => Ok(Value::Null),
            _ => Err(GqlError::new("Cannot select subfields of a scalar field.")),
        }
    }
}

/// The most edges one page of a connection holds, and what a page holds without `first`.
pub const PAGE_SIZE: usize = 100;

/// Serves one page of a connection (`{edges: [...]}`), as Railway does: `first` (at most
/// [`PAGE_SIZE`], the default) edges after the `after` cursor, or the `last` ones, each edge
/// with its cursor and `pageInfo` saying whether more follow. A client that ignores
/// `hasNextPage` sees only the first page. Cursors are opaque offsets.
fn trim_connection(value: &Value, args: &Map<String, Value>) -> Result<Value, String> {
    let mut value = value.clone();
    let Some(all) = value.get_mut("edges").and_then(Value::as_array_mut) else { return Ok(value) };
    let total = all.len();
    let start = match args.get("after") {
        None | Some(Value::Null) => 0,
        Some(Value::String(c)) => decode_cursor(c).ok_or_else(|| format!("Invalid cursor {c:?}"))? + 1,
        Some(_) => return Err("Argument \"after\" must be a String".into()),
    };
    let start = start.min(total);
    let first = args.get("first").and_then(Value::as_u64).map(|n| n as usize);
    let last = args.get("last").and_then(Value::as_u64).map(|n| n as usize);
    let (from, to) = match (first, last) {
        (_, Some(n)) if first.is_none() => (total.saturating_sub(n.min(PAGE_SIZE)).max(start), total),
        (n, _) => (start, (start + n.unwrap_or(PAGE_SIZE).min(PAGE_SIZE)).min(total)),
    };
    let page: Vec<Value> = all[from..to]
        .iter()
        .enumerate()
        .map(|(i, edge)| {
            let mut edge = edge.clone();
            edge["cursor"] = json!(encode_cursor(from + i));
            edge
        })
        .collect();
    let (start_cursor, end_cursor) = match page.len() {
        0 => (Value::Null, Value::Null),
        n => (json!(encode_cursor(from)), json!(encode_cursor(from + n - 1))),
    };
    *all = page;
    value["pageInfo"] = json!({
        "__typename": "PageInfo",
        "hasNextPage": to < total,
        "hasPreviousPage": from > 0,
        "startCursor": start_cursor,
        "endCursor": end_cursor,
    });
    Ok(value)
}

fn encode_cursor(offset: usize) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("offset:{offset}"))
}

fn decode_cursor(cursor: &str) -> Option<usize> {
    use base64::Engine;
    let raw = base64::engine::general_purpose::STANDARD.decode(cursor).ok()?;
    String::from_utf8(raw).ok()?.strip_prefix("offset:")?.parse().ok()
}

/// Two selections with one response key are merged field by field.
fn merge(out: &mut Map<String, Value>, key: String, value: Value) {
    match (out.get_mut(&key), value) {
        (Some(Value::Object(existing)), Value::Object(new)) => {
            for (k, v) in new {
                merge(existing, k, v);
            }
        }
        (_, value) => {
            out.insert(key, value);
        }
    }
}

/// The root fields of the operation, in order.
pub fn root_fields<'a>(
    ctx: &'a Ctx<'a>,
    op: &'a OperationDefinition,
) -> Result<Vec<&'a Positioned<Field>>, GqlError> {
    let typename = match op.ty {
        OperationType::Query => "Query",
        OperationType::Mutation => "Mutation",
        OperationType::Subscription => "Subscription",
    };
    ctx.fields(&op.selection_set.node, typename)
}
