//! A JSON Web Key Set: parsing with caps, and choosing the key for a token.
