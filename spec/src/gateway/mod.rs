//! The HTTP gateway: reads a DB-less kong.yml, runs filter chains, proxies to services.
