//! The read side: what `verify`, `query` and the sealer read back from the
//! archive (`reader.rs`, the only S3 reads), and the key layout they read it
//! by (`layout.rs`).

pub mod layout;
pub mod reader;
