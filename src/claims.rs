//! Reading verified claims by dotted path and rendering them as header values.
