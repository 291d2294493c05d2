//! What the host reports: Prometheus metrics (`metrics.rs`), each queue's
//! health and the refusals an operator must fix (`health.rs`), and logs
//! (`logging.rs`).

pub mod health;
pub mod logging;
pub mod metrics;

pub use logging::init_logging;
