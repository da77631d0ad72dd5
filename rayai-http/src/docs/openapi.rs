//! An agent's OpenAPI document, as the FastAPI app RayAI builds for each agent writes it: one
//! `POST /agents/{name}/chat` taking a `ChatRequest` and answering a `ChatResponse`, a `422`
//! with FastAPI's validation error schemas, and, for a typed agent, the schemas of its types.

use std::collections::BTreeMap;

use rayai_core::AgentSchema;
use serde_json::{Map, Value, json};

/// The OpenAPI version FastAPI writes.
const OPENAPI_VERSION: &str = "3.1.0";

/// FastAPI's default `version` of an app's document.
const APP_VERSION: &str = "0.1.0";

/// Where component schemas are referenced from.
const COMPONENTS: &str = "#/components/schemas/";

/// The document of agent `name`, whose chat endpoint is `{chat_base}/chat` (RayAI's
/// `/agents/{name}/chat`): `schema` gives the types of `data` and `result` (any object when
/// `None`); `server`, when not empty, is where that path starts (the server's `root_path` and
/// the route prefix), listed in `servers` as FastAPI lists its root path.
pub(crate) fn agent_document(
    name: &str,
    chat_base: &str,
    schema: Option<&AgentSchema>,
    server: &str,
) -> Value {
    let mut components = Components::default();
    // The fixed names first: a user's type of the same name gets another.
    for fixed in [
        "ChatRequest",
        "ChatResponse",
        "HTTPValidationError",
        "ValidationError",
    ] {
        components.reserve(fixed);
    }
    let (data, result) = match schema {
        Some(schema) => (
            components.add_document(&schema.input, "Data"),
            components.add_document(&schema.output, "Result"),
        ),
        None => (any_object("Data"), any_object("Result")),
    };
    components.set("ChatRequest", chat_request(data));
    components.set("ChatResponse", chat_response(result));
    components.set("HTTPValidationError", http_validation_error());
    components.set("ValidationError", validation_error());

    let path = format!("{chat_base}/chat");
    let mut document = Map::new();
    document.insert("openapi".into(), json!(OPENAPI_VERSION));
    document.insert(
        "info".into(),
        json!({"title": format!("{name} Agent"), "version": APP_VERSION}),
    );
    if !server.is_empty() {
        document.insert("servers".into(), json!([{ "url": server }]));
    }
    document.insert(
        "paths".into(),
        json!({ path.clone(): { "post": chat_operation(&path) } }),
    );
    document.insert(
        "components".into(),
        json!({ "schemas": components.into_schemas() }),
    );
    Value::Object(document)
}

/// `POST /agents/{name}/chat`, as FastAPI describes `chat_endpoint`.
fn chat_operation(path: &str) -> Value {
    json!({
        "summary": "Chat Endpoint",
        "description": "Runs the agent on `data`. With `stream` set to `\"text\"` or `\"events\"` \
            the answer is a stream of Server-Sent Events (`text/event-stream`) ending with \
            `data: {\"type\": \"done\"}`.",
        "operationId": operation_id("chat_endpoint", path, "post"),
        "requestBody": {
            "content": {"application/json": {"schema": {"$ref": component_ref("ChatRequest")}}},
            "required": true,
        },
        "responses": {
            "200": {
                "description": "Successful Response",
                "content": {
                    "application/json": {"schema": {"$ref": component_ref("ChatResponse")}},
                    "text/event-stream": {"schema": {"type": "string"}},
                },
            },
            "422": {
                "description": "Validation Error",
                "content": {
                    "application/json": {"schema": {"$ref": component_ref("HTTPValidationError")}},
                },
            },
        },
    })
}

/// FastAPI's unique id of a route: its function's name, its path and its method, every
/// character that is not a word character made `_`.
fn operation_id(function: &str, path: &str, method: &str) -> String {
    let raw = format!("{function}{path}");
    let mut id: String = raw
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    id.push('_');
    id.push_str(method);
    id
}

fn component_ref(name: &str) -> String {
    format!("{COMPONENTS}{}", escape_pointer(name))
}

fn any_object(title: &str) -> Value {
    json!({"additionalProperties": true, "type": "object", "title": title})
}

fn chat_request(data: Value) -> Value {
    json!({
        "properties": {
            "data": data,
            "session_id": {"type": "string", "title": "Session Id", "default": "default"},
            "stream": {"enum": [false, "text", "events"], "title": "Stream", "default": false},
        },
        "type": "object",
        "required": ["data"],
        "title": "ChatRequest",
        "description": "Request model for agent chat endpoint.",
    })
}

fn chat_response(result: Value) -> Value {
    json!({
        "properties": {
            "result": result,
            "session_id": {"type": "string", "title": "Session Id"},
        },
        "type": "object",
        "required": ["result", "session_id"],
        "title": "ChatResponse",
        "description": "Response model for agent chat endpoint.",
    })
}

fn http_validation_error() -> Value {
    json!({
        "properties": {
            "detail": {
                "items": {"$ref": component_ref("ValidationError")},
                "type": "array",
                "title": "Detail",
            },
        },
        "type": "object",
        "title": "HTTPValidationError",
    })
}

fn validation_error() -> Value {
    json!({
        "properties": {
            "loc": {
                "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
                "type": "array",
                "title": "Location",
            },
            "msg": {"type": "string", "title": "Message"},
            "type": {"type": "string", "title": "Error Type"},
            "input": {"title": "Input"},
            "ctx": {"type": "object", "title": "Context"},
        },
        "type": "object",
        "required": ["loc", "msg", "type"],
        "title": "ValidationError",
    })
}

/// The schemas of `components.schemas`, by name.
#[derive(Default)]
struct Components {
    schemas: BTreeMap<String, Value>,
}

impl Components {
    /// Keeps `name` for a schema set later.
    fn reserve(&mut self, name: &str) {
        self.schemas.insert(name.to_owned(), Value::Null);
    }

    fn set(&mut self, name: &str, schema: Value) {
        self.schemas.insert(name.to_owned(), schema);
    }

    /// A free name for a schema that wants `wanted`: `wanted`, or `wanted_2`, `wanted_3`...
    /// when another schema has it (identical ones are merged at the end). A placeholder holds
    /// the name until the schema is set.
    fn claim(&mut self, wanted: &str) -> String {
        let base = component_name(wanted);
        let mut name = base.clone();
        let mut n = 2;
        while self.schemas.contains_key(&name) {
            name = format!("{base}_{n}");
            n += 1;
        }
        self.schemas.insert(name.clone(), Value::Null);
        name
    }

    /// A JSON schema document (schemars' draft 2020-12 output) as OpenAPI 3.1 has it: its
    /// `$defs` become components, its `$ref`s point at them, and the schema itself is a
    /// component named after its title (a `$ref` to it is returned), or inline when it has no
    /// title and nothing refers to it.
    fn add_document(&mut self, document: &Value, fallback_title: &str) -> Value {
        let Value::Object(root) = document else {
            // `true` (anything) and `false` are schemas too.
            return document.clone();
        };
        let mut root = root.clone();
        root.remove("$schema");
        let defs = match root.remove("$defs") {
            Some(Value::Object(defs)) => defs,
            _ => Map::new(),
        };
        let recursive =
            refers_to_root(&Value::Object(root.clone())) || defs.values().any(refers_to_root);
        let root_name = match root.get("title").and_then(Value::as_str) {
            Some(title) => Some(title.to_owned()),
            None if recursive => Some(fallback_title.to_owned()),
            None => None,
        };
        // Names are given before any schema is rewritten, so that refs can point at them.
        let mut renames: BTreeMap<String, String> = BTreeMap::new();
        for def in defs.keys() {
            let name = self.claim(def);
            renames.insert(def.clone(), name);
        }
        let root_target = root_name.map(|title| self.claim(&title));
        for (def, mut schema) in defs {
            rewrite_refs(&mut schema, &renames, root_target.as_deref());
            if let Some(name) = renames.get(&def) {
                self.schemas.insert(name.clone(), schema);
            }
        }
        let mut root = Value::Object(root);
        rewrite_refs(&mut root, &renames, root_target.as_deref());
        match root_target {
            Some(name) => {
                self.schemas.insert(name.clone(), root);
                json!({ "$ref": component_ref(&name) })
            }
            None => root,
        }
    }

    /// The schemas, a schema that another document brought under the same name merged back
    /// into the first (`Author_2` into `Author` when both are the same).
    fn into_schemas(mut self) -> Map<String, Value> {
        // Each round merges at least one schema, so there are at most as many rounds as schemas.
        for _ in 0..self.schemas.len() {
            let twin = self.schemas.iter().find_map(|(name, schema)| {
                let (base, n) = name.rsplit_once('_')?;
                n.parse::<u32>().ok()?;
                (self.schemas.get(base) == Some(schema)).then(|| (name.clone(), base.to_owned()))
            });
            let Some((twin, base)) = twin else { break };
            self.schemas.remove(&twin);
            let (from, to) = (component_ref(&twin), component_ref(&base));
            for schema in self.schemas.values_mut() {
                retarget(schema, &from, &to);
            }
        }
        self.schemas
            .into_iter()
            .filter(|(_, schema)| !schema.is_null())
            .collect()
    }
}

/// Points every `$ref` equal to `from` at `to`.
fn retarget(schema: &mut Value, from: &str, to: &str) {
    match schema {
        Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                match value {
                    Value::String(target) if key == "$ref" && target == from => {
                        *target = to.to_owned();
                    }
                    _ => retarget(value, from, to),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| retarget(v, from, to)),
        _ => {}
    }
}

/// A name OpenAPI accepts for a component (`^[a-zA-Z0-9.\-_]+$`).
fn component_name(wanted: &str) -> String {
    let name: String = wanted
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.is_empty() {
        "Schema".into()
    } else {
        name
    }
}

/// Whether a `$ref` in `schema` points at its document's root (`#`).
fn refers_to_root(schema: &Value) -> bool {
    match schema {
        Value::Object(map) => map.iter().any(|(key, value)| {
            (key == "$ref" && value.as_str() == Some("#")) || refers_to_root(value)
        }),
        Value::Array(items) => items.iter().any(refers_to_root),
        _ => false,
    }
}

/// Points every `$ref` of `schema` into `#/$defs/...` (or at the root, `#`) at its component.
fn rewrite_refs(schema: &mut Value, renames: &BTreeMap<String, String>, root: Option<&str>) {
    match schema {
        Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                if key == "$ref"
                    && let Value::String(target) = value
                {
                    if let Some(new) = rewrite_ref(target, renames, root) {
                        *target = new;
                    }
                } else {
                    rewrite_refs(value, renames, root);
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                rewrite_refs(item, renames, root);
            }
        }
        _ => {}
    }
}

fn rewrite_ref(
    target: &str,
    renames: &BTreeMap<String, String>,
    root: Option<&str>,
) -> Option<String> {
    if target == "#" {
        return root.map(component_ref);
    }
    let pointer = target.strip_prefix("#/$defs/")?;
    // A ref may point inside a definition (`#/$defs/A/properties/b`): keep what follows.
    let (def, rest) = match pointer.split_once('/') {
        Some((def, rest)) => (def, Some(rest)),
        None => (pointer, None),
    };
    let name = renames.get(&unescape_pointer(def))?;
    Some(match rest {
        Some(rest) => format!("{}/{rest}", component_ref(name)),
        None => component_ref(name),
    })
}

/// A JSON pointer segment's `~1` and `~0` decoded.
fn unescape_pointer(segment: &str) -> String {
    segment.replace("~1", "/").replace("~0", "~")
}

fn escape_pointer(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `$ref` in `value`.
    fn refs(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (key, v) in map {
                    match (key.as_str(), v) {
                        ("$ref", Value::String(target)) => out.push(target.clone()),
                        _ => refs(v, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }

    /// Every `$ref` of `document` names a schema of its components.
    fn assert_refs_resolve(document: &Value) {
        let mut found = Vec::new();
        refs(document, &mut found);
        assert!(!found.is_empty());
        for target in found {
            let name = target
                .strip_prefix(COMPONENTS)
                .unwrap_or_else(|| panic!("{target} is not a component"));
            let name = name.split('/').next().unwrap();
            assert!(
                document["components"]["schemas"].get(name).is_some(),
                "{target} does not resolve in {document:#}"
            );
        }
        assert!(!document.to_string().contains("$defs"));
    }

    #[test]
    fn a_plain_agent_takes_and_answers_any_object() {
        let doc = agent_document("echo", "/agents/echo", None, "");
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(
            doc["info"],
            json!({"title": "echo Agent", "version": "0.1.0"})
        );
        assert!(doc.get("servers").is_none());
        let op = &doc["paths"]["/agents/echo/chat"]["post"];
        assert_eq!(op["operationId"], "chat_endpoint_agents_echo_chat_post");
        assert_eq!(
            op["requestBody"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/ChatRequest"
        );
        let request = &doc["components"]["schemas"]["ChatRequest"];
        assert_eq!(request["required"], json!(["data"]));
        assert_eq!(request["properties"]["data"]["type"], "object");
        assert_eq!(request["properties"]["session_id"]["default"], "default");
        assert_eq!(
            request["properties"]["stream"]["enum"],
            json!([false, "text", "events"])
        );
        assert_refs_resolve(&doc);
    }

    #[test]
    fn the_mount_point_is_the_server() {
        let doc = agent_document("echo", "/agents/echo", None, "/root/team");
        assert_eq!(doc["servers"], json!([{"url": "/root/team"}]));
    }

    #[test]
    fn a_typed_agents_defs_become_components() {
        let input = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "Question",
            "type": "object",
            "properties": {
                "text": {"type": "string"},
                "author": {"$ref": "#/$defs/Author"},
                "thread": {"anyOf": [{"$ref": "#"}, {"type": "null"}]},
            },
            "required": ["text", "author"],
            "$defs": {"Author": {"type": "object", "properties": {"name": {"type": "string"}}}},
        });
        let output = json!({
            "title": "Answer",
            "type": "object",
            "properties": {"author": {"$ref": "#/$defs/Author"}},
            "$defs": {"Author": {"type": "object", "properties": {"name": {"type": "string"}}}},
        });
        let doc = agent_document(
            "qa",
            "/agents/qa",
            Some(&AgentSchema::new(input, output)),
            "",
        );
        let schemas = &doc["components"]["schemas"];
        let request = &schemas["ChatRequest"];
        assert_eq!(
            request["properties"]["data"],
            json!({"$ref": "#/components/schemas/Question"})
        );
        assert_eq!(
            schemas["ChatResponse"]["properties"]["result"],
            json!({"$ref": "#/components/schemas/Answer"})
        );
        assert_eq!(
            schemas["Question"]["properties"]["author"]["$ref"],
            "#/components/schemas/Author"
        );
        assert_eq!(
            schemas["Question"]["properties"]["thread"]["anyOf"][0]["$ref"],
            "#/components/schemas/Question"
        );
        assert!(schemas["Question"].get("$schema").is_none());
        assert_eq!(schemas["Author"]["properties"]["name"]["type"], "string");
        // The output's `Author` is the same schema: one component.
        assert!(schemas.get("Author_2").is_none());
        assert_eq!(
            schemas["Answer"]["properties"]["author"]["$ref"],
            "#/components/schemas/Author"
        );
        assert_refs_resolve(&doc);
    }

    #[test]
    fn a_name_taken_by_another_schema_gets_a_suffix() {
        let input = json!({
            "title": "ChatRequest",
            "type": "object",
            "properties": {"a": {"$ref": "#/$defs/Item"}},
            "$defs": {"Item": {"type": "string"}},
        });
        let output = json!({
            "title": "Out",
            "type": "object",
            "properties": {"b": {"$ref": "#/$defs/Item"}},
            "$defs": {"Item": {"type": "integer"}},
        });
        let doc = agent_document("x", "/agents/x", Some(&AgentSchema::new(input, output)), "");
        let schemas = &doc["components"]["schemas"];
        assert_eq!(
            schemas["ChatRequest"]["properties"]["data"]["$ref"],
            "#/components/schemas/ChatRequest_2"
        );
        assert_eq!(schemas["ChatRequest_2"]["title"], "ChatRequest");
        assert_eq!(
            schemas["Out"]["properties"]["b"]["$ref"],
            "#/components/schemas/Item_2"
        );
        assert_eq!(schemas["Item_2"]["type"], "integer");
        assert_eq!(schemas["Item"]["type"], "string");
        assert_refs_resolve(&doc);
    }

    #[test]
    fn an_untitled_schema_stays_inline() {
        let schema = AgentSchema::new(json!({"type": "object"}), json!(true));
        let doc = agent_document("x", "/agents/x", Some(&schema), "");
        let schemas = &doc["components"]["schemas"];
        assert_eq!(
            schemas["ChatRequest"]["properties"]["data"],
            json!({"type": "object"})
        );
        assert_eq!(schemas["ChatResponse"]["properties"]["result"], json!(true));
    }
}
