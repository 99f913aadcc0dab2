//! Integers of JSON request bodies as JSON Schema defines them (`10.0` is one): the helpers
//! live in `lasect_api_contract::json_integer`, beside the bodies shared with the CLI.

pub use lasect_api_contract::json_integer::option;
