//! What applying a config can fail with, and the status each answers with.

use http::StatusCode;

use super::schema::SchemaError;

/// Why a config was not applied (nothing changes on the errors that come before deploying:
/// every one but [`DeployError::Deploy`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeployError {
    /// The config does not parse, or a value breaks a rule: the path of the field and why.
    #[error("{0}")]
    Schema(SchemaError),
    /// An `import_path` names no application compiled into the server.
    #[error(
        "{path}: no application is registered as {import_path:?}; the known import paths are: {}",
        if known.is_empty() { "(none)".to_owned() } else { known.join(", ") }
    )]
    UnknownImportPath {
        /// The field's path.
        path: String,
        /// What the config asked for.
        import_path: String,
        /// What the server knows.
        known: Vec<String>,
    },
    /// A deployment the application does not have.
    #[error(
        "{path}: the application {import_path:?} has no deployment named `{name}`; its deployments are: {}",
        known.join(", ")
    )]
    UnknownDeployment {
        /// The field's path.
        path: String,
        /// The name asked for.
        name: String,
        /// The application's import path.
        import_path: String,
        /// Its deployments.
        known: Vec<String>,
    },
    /// An HTTP option that differs from the running server's, which cannot change at run time.
    #[error(
        "http_options.{field}: {requested} differs from the running server's {running}; HTTP \
         options cannot change on a running server (restart it with the new value, or leave \
         the option out)"
    )]
    HttpOptionsChanged {
        /// The option.
        field: &'static str,
        /// The config's value.
        requested: String,
        /// The server's.
        running: String,
    },
    /// The application was refused or failed to start (the applications before it in the
    /// config were applied).
    #[error("application `{app}` was not deployed")]
    Deploy {
        /// The application's name.
        app: String,
        /// What the controller said.
        #[source]
        source: rayai_core::Error,
    },
    /// No application of that name (`DELETE /api/serve/applications/{name}`).
    #[error("no application named `{0}`")]
    NotFound(String),
}

impl DeployError {
    /// A value that breaks a rule, at `path`.
    pub(crate) fn invalid(path: String, message: String) -> Self {
        DeployError::Schema(SchemaError { path, message })
    }

    /// The status the API answers this error with: 400 for a config at fault, 404 for an
    /// unknown application, 409 for a route another application holds, 503 when the node has
    /// no room, 500 when a replica fails to start.
    pub fn status(&self) -> StatusCode {
        match self {
            DeployError::NotFound(_) => StatusCode::NOT_FOUND,
            DeployError::Deploy { source, .. } => match source {
                rayai_core::Error::RouteConflict { .. } => StatusCode::CONFLICT,
                rayai_core::Error::Infeasible { .. } | rayai_core::Error::NoRoom { .. } => {
                    StatusCode::SERVICE_UNAVAILABLE
                }
                rayai_core::Error::InvalidConfig { .. }
                | rayai_core::Error::InvalidRoutePrefix { .. }
                | rayai_core::Error::DuplicateDeployment(_)
                | rayai_core::Error::EmptyApp => StatusCode::BAD_REQUEST,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            },
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

impl From<SchemaError> for DeployError {
    fn from(e: SchemaError) -> Self {
        DeployError::Schema(e)
    }
}
