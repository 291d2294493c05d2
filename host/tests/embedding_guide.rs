//! docs/embedding.md's Rust snippet is `host/examples/embed.rs`, verbatim, and
//! prints what the guide says it prints.

use std::path::Path;

// The example itself, compiled into this test.
#[allow(dead_code)]
#[path = "../examples/embed.rs"]
mod embed;

fn guide() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/embedding.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The fenced block right after `<!-- {marker} -->`, which must be unique.
fn block(guide: &str, marker: &str, lang: &str) -> String {
    let opening = format!("<!-- {marker} -->\n```{lang}\n");
    let mut found = guide.match_indices(&opening);
    let (at, _) = found
        .next()
        .unwrap_or_else(|| panic!("no `<!-- {marker} -->` ```{lang} block in docs/embedding.md"));
    assert!(found.next().is_none(), "two `<!-- {marker} -->` blocks");
    let body = &guide[at + opening.len()..];
    let end = body.find("\n```").expect("an unterminated block");
    format!("{}\n", &body[..end])
}

#[test]
fn the_guide_shows_the_example_verbatim() {
    let example =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/embed.rs")).unwrap();
    let shown = block(&guide(), "snippet: rust (host/examples/embed.rs)", "rust");
    assert!(
        shown == example,
        "docs/embedding.md's Rust block differs from host/examples/embed.rs: copy the file into the guide"
    );
}

#[test]
fn the_example_prints_the_documented_output() {
    let lines = embed::route_examples(audit_archiver::route::EMBEDDED_COMPONENT).unwrap();
    let printed: String = lines.iter().map(|line| format!("{line}\n")).collect();
    assert_eq!(printed, block(&guide(), "output: rust", "text"));
}
