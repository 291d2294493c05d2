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
//! - `docs/iam.md`: the fenced ```` ```json ```` block right after the line that
//!   contains `<!-- host-iam-policy -->`; every `Action` string in it.
//!
//! `permissions::auditor_actions()` (the read-only `verify` and `query`) is
//! checked the same way against the auditor role (`# auditor-actions-begin` /
//! `# auditor-actions-end`) and the block after `<!-- auditor-iam-policy -->`.
//!
//! The digest signing key's key policy (between `# digest-key-policy-begin`
//! and `# digest-key-policy-end`) is read statement by statement: only the host
//! role and the function role may `kms:Sign` (`permissions::DIGEST_SIGN_ACTIONS`),
//! through no wildcard may anyone else, the auditor gets exactly
//! `permissions::AUDITOR_DIGEST_KEY_ACTIONS`, and nothing else in the template
//! (outside the host and function roles) names an action that matches
//! `kms:Sign`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use audit_archiver::permissions;

const TEMPLATE: &str = "deploy/cloudformation.yaml";
const IAM_DOC: &str = "docs/iam.md";
const BEGIN: &str = "# host-actions-begin";
const END: &str = "# host-actions-end";
const LAMBDA_BEGIN: &str = "# lambda-actions-begin";
const LAMBDA_END: &str = "# lambda-actions-end";
const HOST_MARKER: &str = "<!-- host-iam-policy -->";
const AUDITOR_BEGIN: &str = "# auditor-actions-begin";
const AUDITOR_END: &str = "# auditor-actions-end";
const AUDITOR_MARKER: &str = "<!-- auditor-iam-policy -->";
const KEY_POLICY_BEGIN: &str = "# digest-key-policy-begin";
const KEY_POLICY_END: &str = "# digest-key-policy-end";
/// The one signing action, and the only logical ids that may be granted it.
const SIGN: &str = "kms:Sign";
const SIGNERS: &[&str] = &["HostRole", "FunctionRole"];
/// The auditor role's logical id.
const AUDITOR: &str = "AuditorRole";
/// How the template names the account (key administration).
const ACCOUNT_ROOT: &str = "!Sub 'arn:${AWS::Partition}:iam::${AWS::AccountId}:root'";

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
/// (letters and digits, or `*`/`?` wildcards, which then show up as "extra").
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
            .all(|c| c.is_ascii_alphanumeric() || c == '*' || c == '?')
}

/// Whether the IAM action pattern `pattern` (`*` any run, `?` one character,
/// case-insensitive, as IAM compares actions) covers `action`.
fn covers(pattern: &str, action: &str) -> bool {
    fn go(p: &[u8], a: &[u8]) -> bool {
        match p.split_first() {
            None => a.is_empty(),
            Some((b'*', rest)) => (0..=a.len()).any(|i| go(rest, &a[i..])),
            Some((b'?', rest)) => !a.is_empty() && go(rest, &a[1..]),
            Some((c, rest)) => a
                .split_first()
                .is_some_and(|(d, tail)| c.eq_ignore_ascii_case(d) && go(rest, tail)),
        }
    }
    go(pattern.as_bytes(), action.as_bytes())
}

/// `line` without its comment: a '#' at the start or after whitespace.
fn strip_comment(line: &str) -> &str {
    match line
        .char_indices()
        .find(|&(i, c)| c == '#' && (i == 0 || line[..i].ends_with(char::is_whitespace)))
    {
        Some((i, _)) => &line[..i],
        None => line,
    }
}

/// The `service:Action`-shaped tokens of a line of the template.
fn action_tokens(code: &str) -> impl Iterator<Item = &str> {
    code.split(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, ':' | '*' | '?' | '-' | '_')))
        .filter(|t| is_action(t))
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
        actions.extend(action_tokens(strip_comment(line)).map(String::from));
    }
    assert!(!inside, "{TEMPLATE}: `{begin}` without a `{end}` after it");
    assert!(
        regions > 0,
        "{TEMPLATE} has no `{begin}` / `{end}` lines around a role's actions"
    );
    actions
}

/// The ```json block that follows the line holding `marker` in `page`.
fn block_after(page: &str, marker: &str) -> String {
    let mut lines = page.lines();
    lines
        .by_ref()
        .find(|line| line.contains(marker))
        .unwrap_or_else(|| {
            panic!(
                "{IAM_DOC} has no `{marker}` line: put it right before the ```json block \
                 that holds the least-privilege IAM policy"
            )
        });
    let fence = lines.by_ref().find(|line| !line.trim().is_empty());
    assert_eq!(
        fence.map(str::trim),
        Some("```json"),
        "{IAM_DOC}: the line after `{marker}` must open a ```json block"
    );
    let mut json = String::new();
    for line in lines {
        if line.trim() == "```" {
            return json;
        }
        json.push_str(line);
        json.push('\n');
    }
    panic!("{IAM_DOC}: the ```json block after `{marker}` is not closed")
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
                                    panic!("{IAM_DOC}: an Action list holds a non-string: {item}")
                                });
                                out.insert(s.to_owned());
                            }
                        }
                        other => {
                            panic!("{IAM_DOC}: Action is neither a string nor a list: {other}")
                        }
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
fn documented_host_policy_grants_exactly_the_code_actions() {
    let page = read_repo_file(IAM_DOC);
    let json = block_after(&page, HOST_MARKER);
    let policy: serde_json::Value = serde_json::from_str(&json).unwrap_or_else(|e| {
        panic!("{IAM_DOC}: the ```json block after `{HOST_MARKER}` is not valid JSON: {e}")
    });
    let mut actions = BTreeSet::new();
    collect_actions(&policy, &mut actions);
    assert_matches_code(&format!("the IAM policy in {IAM_DOC}"), &actions);
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
fn documented_auditor_policy_grants_exactly_the_read_actions() {
    let page = read_repo_file(IAM_DOC);
    let json = block_after(&page, AUDITOR_MARKER);
    let policy: serde_json::Value = serde_json::from_str(&json).unwrap_or_else(|e| {
        panic!("{IAM_DOC}: the ```json block after `{AUDITOR_MARKER}` is not valid JSON: {e}")
    });
    let mut actions = BTreeSet::new();
    collect_actions(&policy, &mut actions);
    assert_matches(
        &format!("the auditor policy in {IAM_DOC}"),
        &actions,
        permissions::auditor_actions(),
    );
    // Read-only: nothing that writes, deletes, signs or changes a setting
    // (kms:Verify checks a signature against the digest key's public key).
    for action in &actions {
        let name = action.split_once(':').map_or("", |(_, a)| a);
        assert!(
            name.starts_with("Get")
                || name.starts_with("List")
                || action == "kms:Decrypt"
                || action == "kms:Verify",
            "{action} is not a read"
        );
    }
}

#[test]
fn documented_auditor_policy_cannot_sign() {
    let page = read_repo_file(IAM_DOC);
    let policy: serde_json::Value =
        serde_json::from_str(&block_after(&page, AUDITOR_MARKER)).unwrap();
    let mut actions = BTreeSet::new();
    collect_actions(&policy, &mut actions);
    for action in &actions {
        assert!(
            !covers(action, SIGN),
            "the auditor policy in {IAM_DOC} grants {SIGN} through {action}"
        );
    }
}

// ------------------------------------------------------------ the digest key

/// One statement of the key policy: its first line and its keys' values (the
/// text after `Key:`, with the more-indented lines under it).
#[derive(Debug)]
struct Statement {
    line: usize,
    keys: BTreeMap<String, String>,
}

impl Statement {
    fn sid(&self) -> &str {
        self.keys.get("Sid").map_or("", |s| s.trim())
    }

    fn allows(&self) -> bool {
        self.keys.get("Effect").map(|e| e.trim()) == Some("Allow")
    }

    /// The statement's action patterns; anything but plain patterns (or `*`)
    /// under `Action` is refused, so no grant hides behind a function.
    fn actions(&self) -> Vec<String> {
        let text = self.keys.get("Action").unwrap_or_else(|| {
            panic!(
                "{TEMPLATE}:{}: statement {} has no Action",
                self.line,
                self.sid()
            )
        });
        text.split(|c: char| c.is_whitespace() || matches!(c, '[' | ']' | ',' | '\'' | '"'))
            .filter(|t| !t.is_empty() && *t != "-")
            .map(|t| {
                assert!(
                    t == "*" || is_action(t),
                    "{TEMPLATE}:{}: statement {}: `{t}` in Action is not an action pattern \
                     (write the key policy's actions as plain strings)",
                    self.line,
                    self.sid()
                );
                t.to_owned()
            })
            .collect()
    }

    /// Who the statement names: the logical ids of `!GetAtt X.Arn`, "account
    /// root" for the account, and every token that is neither of those nor
    /// structure (`AWS:`, `!If`, a condition name) as it stands (`'*'`,
    /// `!Ref`, `Service:`…), so an unknown principal is never taken for a
    /// signer.
    fn principals(&self) -> BTreeSet<String> {
        let mut rest = self
            .keys
            .get("Principal")
            .unwrap_or_else(|| {
                panic!(
                    "{TEMPLATE}:{}: statement {} has no Principal",
                    self.line,
                    self.sid()
                )
            })
            .clone();
        let mut found = BTreeSet::new();
        if rest.contains(ACCOUNT_ROOT) {
            found.insert("account root".to_owned());
            rest = rest.replace(ACCOUNT_ROOT, " ");
        }
        while let Some(at) = rest.find("!GetAtt ") {
            let after = &rest[at + "!GetAtt ".len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect();
            let taken = if after[name.len()..].starts_with(".Arn") && !name.is_empty() {
                found.insert(name.clone());
                "!GetAtt ".len() + name.len() + ".Arn".len()
            } else {
                found.insert(format!("!GetAtt {after}"));
                rest.len() - at
            };
            rest.replace_range(at..at + taken, " ");
        }
        for token in rest.split(|c: char| c.is_whitespace() || matches!(c, '[' | ']' | ',')) {
            let structure = token.is_empty()
                || token == "-"
                || token == "AWS:"
                || token == "!If"
                || token.chars().all(|c| c.is_ascii_alphanumeric());
            if !structure {
                found.insert(token.to_owned());
            }
        }
        found
    }
}

/// The key policy's statements between the digest-key-policy markers. Every
/// statement starts with `- Sid:`; outside statements only the structure of a
/// conditional statement (`- !If`, `- Condition`, `- !Ref AWS::NoValue`) may
/// appear; `NotAction`, `NotPrincipal` and unknown keys are refused.
fn key_policy_statements(template: &str) -> Vec<Statement> {
    let mut statements: Vec<Statement> = Vec::new();
    // (indent of the statement's `-`, the key being read)
    let mut current: Option<(usize, String)> = None;
    let mut inside = false;
    let mut regions = 0;
    for (number, line) in template.lines().enumerate() {
        let number = number + 1;
        let trimmed = line.trim_start();
        if trimmed.starts_with(KEY_POLICY_BEGIN) {
            assert!(!inside, "{TEMPLATE}:{number}: `{KEY_POLICY_BEGIN}` twice");
            inside = true;
            regions += 1;
            continue;
        }
        if trimmed.starts_with(KEY_POLICY_END) {
            assert!(
                inside,
                "{TEMPLATE}:{number}: `{KEY_POLICY_END}` without a begin"
            );
            inside = false;
            current = None;
            continue;
        }
        if !inside {
            continue;
        }
        let code = strip_comment(line).trim_end();
        if code.trim().is_empty() {
            continue;
        }
        let indent = code.len() - code.trim_start().len();
        let text = code.trim_start();
        if let Some(sid) = text.strip_prefix("- Sid:") {
            statements.push(Statement {
                line: number,
                keys: BTreeMap::from([("Sid".to_owned(), sid.to_owned())]),
            });
            current = Some((indent, "Sid".to_owned()));
            continue;
        }
        if let Some((start, key)) = current.as_mut() {
            let statement = statements.last_mut().unwrap();
            if indent > *start + 2 {
                let value = statement.keys.get_mut(key.as_str()).unwrap();
                value.push('\n');
                value.push_str(text);
                continue;
            }
            if indent == *start + 2 {
                let (name, value) = text.split_once(':').unwrap_or_else(|| {
                    panic!(
                        "{TEMPLATE}:{number}: `{text}` is not a `Key: value` line of a statement"
                    )
                });
                assert!(
                    matches!(name, "Effect" | "Principal" | "Action" | "Resource" | "Condition"),
                    "{TEMPLATE}:{number}: `{name}` in the digest key policy: only Sid, Effect, \
                     Principal, Action, Resource and Condition are read (no NotAction, NotPrincipal)"
                );
                assert!(
                    statement
                        .keys
                        .insert(name.to_owned(), value.to_owned())
                        .is_none(),
                    "{TEMPLATE}:{number}: `{name}` twice in one statement"
                );
                *key = name.to_owned();
                continue;
            }
            assert!(
                indent <= *start,
                "{TEMPLATE}:{number}: unexpected indentation in the digest key policy"
            );
            current = None;
        }
        let structure = text == "- !If"
            || text == "- !Ref AWS::NoValue"
            || text
                .strip_prefix("- ")
                .is_some_and(|c| !c.is_empty() && c.chars().all(|c| c.is_ascii_alphanumeric()));
        assert!(
            structure,
            "{TEMPLATE}:{number}: `{text}`: every statement of the digest key policy must \
             start with `- Sid:` (or be the `!If` around such a statement)"
        );
    }
    assert!(
        !inside,
        "{TEMPLATE}: `{KEY_POLICY_BEGIN}` without a `{KEY_POLICY_END}` after it"
    );
    assert_eq!(
        regions, 1,
        "{TEMPLATE}: one `{KEY_POLICY_BEGIN}` region expected"
    );
    assert!(
        !statements.is_empty(),
        "{TEMPLATE}: the digest key policy has no statement"
    );
    for statement in &statements {
        assert!(
            statement.keys.contains_key("Effect"),
            "{TEMPLATE}:{}: statement {} has no Effect",
            statement.line,
            statement.sid()
        );
    }
    statements
}

/// What is wrong with who may sign: every Allow statement whose actions
/// cover `kms:Sign` must name signers only, and none may allow
/// `kms:CreateGrant` (a grant could hand signing to anyone).
fn signing_violations(statements: &[Statement]) -> Vec<String> {
    let mut wrong = Vec::new();
    for statement in statements.iter().filter(|s| s.allows()) {
        let actions = statement.actions();
        let principals = statement.principals();
        if let Some(action) = actions.iter().find(|a| covers(a, SIGN)) {
            let others: Vec<&String> = principals
                .iter()
                .filter(|p| !SIGNERS.contains(&p.as_str()))
                .collect();
            if !others.is_empty() || principals.is_empty() {
                wrong.push(format!(
                    "{}: {action} lets {others:?} sign (only {SIGNERS:?} may)",
                    statement.sid()
                ));
            }
        }
        if let Some(action) = actions.iter().find(|a| covers(a, "kms:CreateGrant")) {
            wrong.push(format!(
                "{}: {action} allows kms:CreateGrant to {principals:?}",
                statement.sid()
            ));
        }
    }
    wrong
}

#[test]
fn digest_key_policy_lets_only_the_archiver_roles_sign() {
    let statements = key_policy_statements(&read_repo_file(TEMPLATE));
    let wrong = signing_violations(&statements);
    assert!(
        wrong.is_empty(),
        "the digest key policy in {TEMPLATE}:\n  {}",
        wrong.join("\n  ")
    );
    let sign: Vec<String> = permissions::DIGEST_SIGN_ACTIONS
        .iter()
        .map(|a| a.to_string())
        .collect();
    for signer in SIGNERS {
        let granted: Vec<&Statement> = statements
            .iter()
            .filter(|s| s.allows() && s.principals().contains(*signer))
            .collect();
        assert!(
            granted.iter().any(|s| s.actions() == sign),
            "the digest key policy in {TEMPLATE} does not let {signer} {SIGN}"
        );
        for statement in granted {
            assert_eq!(
                statement.actions(),
                sign,
                "{TEMPLATE}:{}: {signer} gets more than {sign:?} on the digest key",
                statement.line
            );
        }
    }
}

#[test]
fn digest_key_policy_gives_the_auditor_the_public_key_only() {
    let statements = key_policy_statements(&read_repo_file(TEMPLATE));
    let mut actions = BTreeSet::new();
    for statement in statements
        .iter()
        .filter(|s| s.allows() && s.principals().contains(AUDITOR))
    {
        actions.extend(statement.actions());
    }
    assert!(
        !actions.iter().any(|a| covers(a, SIGN)),
        "the digest key policy lets the auditor {SIGN}: {actions:?}"
    );
    assert_matches(
        &format!("the auditor's statements of the digest key policy in {TEMPLATE}"),
        &actions,
        permissions::AUDITOR_DIGEST_KEY_ACTIONS.to_vec(),
    );
    assert!(!permissions::auditor_actions()
        .iter()
        .any(|a| covers(a, SIGN)));
}

#[test]
fn digest_key_policy_lets_the_account_administer_the_key() {
    let statements = key_policy_statements(&read_repo_file(TEMPLATE));
    let admin: Vec<String> = statements
        .iter()
        .filter(|s| s.allows() && s.principals().contains("account root"))
        .flat_map(Statement::actions)
        .collect();
    // Without PutKeyPolicy for the account, KMS refuses the policy (lockout)
    // and no stack update could change it.
    for needed in [
        "kms:PutKeyPolicy",
        "kms:ScheduleKeyDeletion",
        "kms:DescribeKey",
        "kms:CreateAlias",
    ] {
        assert!(
            admin.iter().any(|a| covers(a, needed)),
            "the account cannot {needed} on the digest key: {admin:?}"
        );
    }
}

#[test]
fn nothing_else_in_the_template_may_sign() {
    let template = read_repo_file(TEMPLATE);
    let signer_regions = [
        (BEGIN, END),
        (LAMBDA_BEGIN, LAMBDA_END),
        (KEY_POLICY_BEGIN, KEY_POLICY_END),
    ];
    let mut skip_until: Option<&str> = None;
    for (number, line) in template.lines().enumerate() {
        let trimmed = line.trim_start();
        if let Some(end) = skip_until {
            if trimmed.starts_with(end) {
                skip_until = None;
            }
            continue;
        }
        if let Some(&(_, end)) = signer_regions
            .iter()
            .find(|(begin, _)| trimmed.starts_with(begin))
        {
            skip_until = Some(end);
            continue;
        }
        let code = strip_comment(line);
        for token in action_tokens(code) {
            assert!(
                !covers(token, SIGN),
                "{TEMPLATE}:{}: `{token}` outside the host and function roles grants {SIGN}",
                number + 1
            );
        }
        if let Some((_, value)) = code.split_once("Action:") {
            let value = value.trim().trim_matches(|c| c == '\'' || c == '"');
            assert_ne!(value, "*", "{TEMPLATE}:{}: `Action: '*'`", number + 1);
        }
    }
    // The host and function roles' regions are exactly the code's lists, which
    // hold kms:Sign and no wildcard (checked above); the auditor's hold none.
    assert!(permissions::all_actions().contains(&SIGN));
    assert!(permissions::lambda_actions().contains(&SIGN));
}

#[test]
fn every_writer_may_seal() {
    let host: BTreeSet<&str> = permissions::all_actions().into_iter().collect();
    let function: BTreeSet<&str> = permissions::lambda_actions().into_iter().collect();
    for action in permissions::seal_actions() {
        assert!(
            host.contains(action),
            "`seal` needs {action}, the host's list lacks it"
        );
        assert!(
            function.contains(action),
            "sealing needs {action}, the function's list lacks it"
        );
    }
}

#[test]
fn key_policy_reading_sees_wildcards_and_unknown_principals() {
    for (pattern, matches) in [
        ("kms:Sign", true),
        ("kms:sign", true),
        ("kms:*", true),
        ("kms:S*", true),
        ("kms:Si?n", true),
        ("*", true),
        ("*:Sign", true),
        ("kms:Get*", false),
        ("kms:SigningAlgorithm", false),
        ("kms:Sign?", false),
        ("s3:*", false),
    ] {
        assert_eq!(covers(pattern, SIGN), matches, "{pattern}");
    }
    let text = "\
Resources:
  Key:
    Properties:
      KeyPolicy:
        Statement:
          # digest-key-policy-begin
          - Sid: Admin # kms:Sign in a comment is not read
            Effect: Allow
            Principal:
              AWS: !Sub 'arn:${AWS::Partition}:iam::${AWS::AccountId}:root'
            Action:
              - kms:Describe*
              - kms:S*
            Resource: '*'
          - Sid: Signer
            Effect: Allow
            Principal:
              AWS: !If [IsHost, !GetAtt HostRole.Arn, !GetAtt FunctionRole.Arn]
            Action: kms:Sign
            Resource: '*'
            Condition:
              StringEquals:
                kms:SigningAlgorithm: RSASSA_PKCS1_V1_5_SHA_256
          - !If
            - HasAuditor
            - Sid: Everyone
              Effect: Allow
              Principal: '*'
              Action: ['kms:*']
              Resource: '*'
            - !Ref AWS::NoValue
          - Sid: DenyIsFine
            Effect: Deny
            Principal: '*'
            Action: kms:Sign
            Resource: '*'
          - Sid: Grants
            Effect: Allow
            Principal:
              AWS: !GetAtt HostRole.Arn
            Action: kms:Create*
            Resource: '*'
          # digest-key-policy-end
";
    let statements = key_policy_statements(text);
    let sids: Vec<&str> = statements.iter().map(Statement::sid).collect();
    assert_eq!(
        sids,
        ["Admin", "Signer", "Everyone", "DenyIsFine", "Grants"]
    );
    assert_eq!(
        statements[1].principals(),
        BTreeSet::from(["FunctionRole".to_owned(), "HostRole".to_owned()])
    );
    assert_eq!(
        statements[2].principals(),
        BTreeSet::from(["'*'".to_owned()])
    );
    let wrong = signing_violations(&statements);
    assert_eq!(wrong.len(), 4, "{wrong:#?}");
    assert!(
        wrong[0].starts_with("Admin: kms:S* lets [\"account root\"] sign"),
        "{wrong:?}"
    );
    assert!(
        wrong[1].starts_with("Everyone: kms:* lets [\"'*'\"] sign"),
        "{wrong:?}"
    );
    assert!(
        wrong[2].starts_with("Everyone: kms:* allows kms:CreateGrant"),
        "{wrong:?}"
    );
    assert!(
        wrong[3].starts_with("Grants: kms:Create* allows kms:CreateGrant"),
        "{wrong:?}"
    );
}
