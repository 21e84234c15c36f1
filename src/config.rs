//! The route configuration: raw JSON parsed once into an immutable, typed FilterConfig.
