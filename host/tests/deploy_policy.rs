//! The host's IAM permissions, as written for people, match the code; so do
//! the Lambda function role's (`# lambda-actions-begin` / `# lambda-actions-end`
//! in the template, against `permissions::lambda_actions()`).
//!
//! `audit_archiver::permissions::all_actions()` lists every AWS action the host
//! calls. Two documents grant those actions and must list exactly the same set:
//!
//! - `deploy/cloudformation.yaml`: every `service:Action` token between a
//!   `# host-actions-begin` and a `# host-actions-end` comment line (the template
//!   is read as text: CloudFormation tags such as `!Sub` are not plain YAML);
//! - `README.md`: the fenced ```` ```json ```` block right after the line that
//!   contains `<!-- host-iam-policy -->`; every `Action` string in it.
//!
//! `permissions::auditor_actions()` (the read-only `verify` and `query`) is
//! checked the same way against the auditor role (`# auditor-actions-begin` /
//! `# auditor-actions-end`) and the block after `<!-- auditor-iam-policy -->`.

use std::collections::BTreeSet;
use std::path::PathBuf;

use audit_archiver::permissions;

const TEMPLATE: &str = "deploy/cloudformation.yaml";
const README: &str = "README.md";
const BEGIN: &str = "# host-actions-begin";
const END: &str = "# host-actions-end";
const LAMBDA_BEGIN: &str = "# lambda-actions-begin";
const LAMBDA_END: &str = "# lambda-actions-end";
const README_MARKER: &str = "<!-- host-iam-policy -->";
const AUDITOR_BEGIN: &str = "# auditor-actions-begin";
const AUDITOR_END: &str = "# auditor-actions-end";
const AUDITOR_README_MARKER: &str = "<!-- auditor-iam-policy -->";

/// Reads a file from the repository root (the parent of this crate).
fn read_repo_file(relative: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Asserts that `found` is exactly the set of actions the code calls.
fn assert_matches_code(what: &str, found: &BTreeSet<String>) {
    assert_matches(what, found, permissions::all_actions());
}

/// Asserts that `found` is exactly `actions`.
fn assert_matches(what: &str, found: &BTreeSet<String>, actions: Vec<&str>) {
    let expected: BTreeSet<String> = actions.into_iter().map(String::from).collect();
    let missing: Vec<&String> = expected.difference(found).collect();
    let extra: Vec<&String> = found.difference(&expected).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what} does not grant exactly the actions in host/src/permissions.rs\n  \
         missing (the code calls them): {missing:?}\n  \
         extra (not in the code's lists): {extra:?}"
    );
}

/// `service:Action`: a lowercase service prefix, one colon, then an action name
/// (letters and digits, or a `*` wildcard, which then shows up as "extra").
fn is_action(token: &str) -> bool {
    let Some((service, action)) = token.split_once(':') else {
        return false;
    };
    !service.is_empty()
        && service
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !action.is_empty()
        && action
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '*')
}

/// Every `service:Action` token between the begin/end marker lines.
///
/// Comments are ignored; ARNs (`arn:${AWS::Partition}:sqs:...`), YAML keys
/// (`Action:`) and pseudo parameters (`AWS::NoValue`) are not tokens of that
/// shape, so they are ignored too.
fn template_host_actions(template: &str) -> BTreeSet<String> {
    template_actions(template, BEGIN, END)
}

/// Every `service:Action` token between the `begin`/`end` marker lines.
fn template_actions(template: &str, begin: &str, end: &str) -> BTreeSet<String> {
    let mut actions = BTreeSet::new();
    let mut inside = false;
    let mut regions = 0;
    for (number, line) in template.lines().enumerate() {
        let number = number + 1;
        let trimmed = line.trim_start();
        if trimmed.starts_with(begin) {
            assert!(
                !inside,
                "{TEMPLATE}:{number}: `{begin}` inside another such region"
            );
            inside = true;
            regions += 1;
            continue;
        }
        if trimmed.starts_with(end) {
            assert!(
                inside,
                "{TEMPLATE}:{number}: `{end}` without a `{begin}` before it"
            );
            inside = false;
            continue;
        }
        if !inside {
            continue;
        }
        // Drop a comment: a '#' at the start or after whitespace.
        let code = match line
            .char_indices()
            .find(|&(i, c)| c == '#' && (i == 0 || line[..i].ends_with(char::is_whitespace)))
        {
            Some((i, _)) => &line[..i],
            None => line,
        };
        let tokens = code
            .split(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, ':' | '*' | '-' | '_')));
        actions.extend(tokens.filter(|t| is_action(t)).map(String::from));
    }
    assert!(!inside, "{TEMPLATE}: `{begin}` without a `{end}` after it");
    assert!(
        regions > 0,
        "{TEMPLATE} has no `{begin}` / `{end}` lines around a role's actions"
    );
    actions
}

/// The ```json block that follows the marker line in the README.
fn readme_policy_json(readme: &str) -> String {
    readme_block_after(readme, README_MARKER)
}

/// The ```json block that follows the line holding `marker`.
fn readme_block_after(readme: &str, marker: &str) -> String {
    let mut lines = readme.lines();
    lines
        .by_ref()
        .find(|line| line.contains(marker))
        .unwrap_or_else(|| {
            panic!(
                "{README} has no `{marker}` line: put it right before the ```json block \
                 that holds the least-privilege IAM policy"
            )
        });
    let fence = lines.by_ref().find(|line| !line.trim().is_empty());
    assert_eq!(
        fence.map(str::trim),
        Some("```json"),
        "{README}: the line after `{marker}` must open a ```json block"
    );
    let mut json = String::new();
    for line in lines {
        if line.trim() == "```" {
            return json;
        }
        json.push_str(line);
        json.push('\n');
    }
    panic!("{README}: the ```json block after `{marker}` is not closed")
}

/// Every string under an `Action` key, at any depth (a string or a list).
fn collect_actions(value: &serde_json::Value, out: &mut BTreeSet<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map {
                if key == "Action" {
                    match v {
                        serde_json::Value::String(s) => {
                            out.insert(s.clone());
                        }
                        serde_json::Value::Array(items) => {
                            for item in items {
                                let s = item.as_str().unwrap_or_else(|| {
                                    panic!("{README}: an Action list holds a non-string: {item}")
                                });
                                out.insert(s.to_owned());
                            }
                        }
                        other => panic!("{README}: Action is neither a string nor a list: {other}"),
                    }
                } else {
                    collect_actions(v, out);
                }
            }
        }
        serde_json::Value::Array(items) => {
            for item in items {
                collect_actions(item, out);
            }
        }
        _ => {}
    }
}

#[test]
fn cloudformation_host_role_grants_exactly_the_code_actions() {
    let template = read_repo_file(TEMPLATE);
    let actions = template_host_actions(&template);
    assert_matches_code(&format!("the host role in {TEMPLATE}"), &actions);
}

#[test]
fn cloudformation_lambda_role_grants_exactly_the_code_actions() {
    let template = read_repo_file(TEMPLATE);
    let actions = template_actions(&template, LAMBDA_BEGIN, LAMBDA_END);
    assert_matches(
        &format!("the Lambda function role in {TEMPLATE}"),
        &actions,
        permissions::lambda_actions(),
    );
}

#[test]
fn readme_iam_policy_grants_exactly_the_code_actions() {
    let readme = read_repo_file(README);
    let json = readme_policy_json(&readme);
    let policy: serde_json::Value = serde_json::from_str(&json).unwrap_or_else(|e| {
        panic!("{README}: the ```json block after `{README_MARKER}` is not valid JSON: {e}")
    });
    let mut actions = BTreeSet::new();
    collect_actions(&policy, &mut actions);
    assert_matches_code(&format!("the IAM policy in {README}"), &actions);
}

#[test]
fn template_extraction_reads_actions_only() {
    let text = "\
Statement:
  # sqs:NotInTheRegion
  # host-actions-begin
  - Sid: Objects # s3:InAComment
    Effect: Allow
    Action:
      - s3:GetObject
      - \"s3:PutObject\"
    Resource: !Sub 'arn:${AWS::Partition}:s3:::${Bucket}/*'
  - !If [UseKms, {Action: ['kms:Decrypt'], Resource: '*'}, !Ref AWS::NoValue]
  # host-actions-end
  - Action: sts:AssumeRole
";
    let found: Vec<String> = template_host_actions(text).into_iter().collect();
    assert_eq!(found, ["kms:Decrypt", "s3:GetObject", "s3:PutObject"]);
}

#[test]
fn cloudformation_auditor_role_grants_exactly_the_read_actions() {
    let template = read_repo_file(TEMPLATE);
    let actions = template_actions(&template, AUDITOR_BEGIN, AUDITOR_END);
    assert_matches(
        &format!("the auditor role in {TEMPLATE}"),
        &actions,
        permissions::auditor_actions(),
    );
}

#[test]
fn readme_auditor_policy_grants_exactly_the_read_actions() {
    let readme = read_repo_file(README);
    let json = readme_block_after(&readme, AUDITOR_README_MARKER);
    let policy: serde_json::Value = serde_json::from_str(&json).unwrap_or_else(|e| {
        panic!("{README}: the ```json block after `{AUDITOR_README_MARKER}` is not valid JSON: {e}")
    });
    let mut actions = BTreeSet::new();
    collect_actions(&policy, &mut actions);
    assert_matches(
        &format!("the auditor policy in {README}"),
        &actions,
        permissions::auditor_actions(),
    );
    // Read-only: nothing that writes, deletes or changes a setting.
    for action in &actions {
        let name = action.split_once(':').map_or("", |(_, a)| a);
        assert!(
            name.starts_with("Get") || name.starts_with("List") || action == "kms:Decrypt",
            "{action} is not a read"
        );
    }
}
