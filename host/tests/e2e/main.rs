//! End-to-end tests: the real `audit-archiver` binary against a real S3/SQS
//! endpoint (moto's server on loopback), asserting on the bucket's contents
//! byte for byte and on the queues being empty.

mod archive;
mod discovery;
mod fifo;
mod metrics;
mod objects;
mod route;
mod shutdown;
mod startup;
