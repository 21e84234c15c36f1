//! HTTP vocabulary shared by the configuration and the request path: header names the filter may
//! own, and the URLs it calls out to.

pub mod header_name;
pub mod url;
