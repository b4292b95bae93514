//! OpenBao over HTTP (reqwest + rustls): node observation, finding the
//! active node, streaming snapshots. Secrets (tokens) live only in memory.
//!
//! Stage: execute (backend). Owned by the OpenBao-backend work.
