//! The read commands end to end: the real `audit-archiver` binary archives
//! real SQS messages into moto's S3 (`run --drain`), then `verify` and
//! `query` read the bucket back. Every finding `verify` must report is made
//! by really doing it to the bucket (an unconditional PUT, a DELETE, a PUT
//! in the wrong folder, ...), never by faking a response.

mod bad_input;
mod common;
mod digests;
mod least_privilege;
mod query;
mod verify;
