//! The applications of the `http_features` example, shared by its binary
//! (`cargo run -p http_features`) and the workspace's tests.
//!
//! | route | what answers |
//! |---|---|
//! | `GET /` | the `Hello` handler: `hello` |
//! | `GET /api/v1/items/{item_id}` | `{"item_id": <u32>}`; a bad id is a 422 JSON error |
//! | `POST /api/v1/items/` | `{"created": <the JSON body>}`; a bad body is a 422 JSON error |
//! | `GET /api/v1/stream` | `chunk 0\n` .. `chunk 9\n`, each sent as produced |
//! | `GET /api/v1/secret` | `{"ok": true}` with `Authorization: Bearer <token>`, else 401 |
//! | `GET /api/v1/openapi.json` | the OpenAPI document of the routes above |
//! | `GET /api/v1/docs` | Swagger UI for that document (its assets under `/api/v1/docs/`, served offline) |
//! | `GET /slow?ms=N` | sleeps N ms |
//! | `GET /ws/echo` (WebSocket) | each text or binary message answered with the same; a close answered with a close |

pub mod apps;
