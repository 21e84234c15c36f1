//! Finding the caller's token in the configured header, query parameter or cookie.
