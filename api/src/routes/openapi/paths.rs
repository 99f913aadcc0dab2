//! The path parameters many routes share, as `IntoParams` types for `#[utoipa::path]`:
//! `params(InstancePath, WaitQuery)` instead of the same tuple route after route. Each is a
//! positive id, as [`crate::runs::call`] and `routes::runs::path_id` check it.

use utoipa::IntoParams;
use utoipa::openapi::Required;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};

/// One `{name}` path segment holding a positive id.
fn id(name: &str, description: &str) -> Parameter {
    let schema = ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        .minimum(Some(1));
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Path)
        .required(Required::True)
        .description(Some(description))
        .schema(Some(schema))
        .build()
}

/// `{id}`: an instance.
pub struct InstancePath;

impl IntoParams for InstancePath {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![id("id", "Instance id")]
    }
}

/// `{id}` and `{repo}`: an instance and one of its backup repositories.
pub struct RepositoryPath;

impl IntoParams for RepositoryPath {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![id("id", "Instance id"), id("repo", "Repository id")]
    }
}
