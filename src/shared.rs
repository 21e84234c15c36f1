//! Values in the host's shared data: full key and expiry stored inside, and CAS leases.
