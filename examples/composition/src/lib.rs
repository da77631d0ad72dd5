//! The deployments of the composition example, shared by its binary (`cargo run -p composition`)
//! and the workspace's tests.
//!
//! | route | what it composes |
//! |---|---|
//! | `POST /pipeline {"text": s}` | preprocess (trim, lowercase) -> model (word count) -> postprocess (format): `{"result": "N words: text"}` |
//! | `POST /ensemble {"x": n}` | three models at once (2x, x+10, x²): `{"outputs": {"a","b","c"}, "combined": mean}` |
//! | `POST /route {"kind": "a"\|"b", "text": s}` | model a (reverse) or b (upper case), picked by input |
//! | `POST /stream {"n": k}` | k tokens from the token model's stream, as SSE, each as produced |

pub mod apps;
