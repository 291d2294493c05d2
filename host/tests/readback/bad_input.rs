//! Bad input to the read commands: exit 2, naming the flag.

use crate::common::{archive, bucket};
use audit_archiver_test_kit::{assert_refused, audit_log, refusals, Moto};

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_exits_2_naming_the_flag() {
    let moto = Moto::start().await;
    let bucket = bucket(&moto, false, false).await;
    archive(
        &moto,
        &bucket,
        &[("acme", audit_log("alice@example.com", crate::common::T, 1))],
        &["--time-source", "event"],
    )
    .await;
    for (args, flag) in refusals(&["verify", "query"], &bucket, "") {
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_refused(&args, flag, &moto.run(&argv));
    }
}
