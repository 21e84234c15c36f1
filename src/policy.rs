//! Route rules on verified claims: required scopes and required claim values.
