//! The host's source tree keeps its shape: one room per stage a message goes
//! through (`source`, `route`, `store`, `settle`, `seal`, `read`), the loop,
//! configuration and observability beside them, and no import circle between
//! any two of them (a circle would mean two rooms that can only be understood
//! together). A file of more than [`MAX_LINES`] lines of non-test code is
//! refused too: it is a room that wants dividing.
//!
//! Reads `host/src` as text: every `crate::{room}` in code (comments and
//! test modules aside) is an edge from the file's room to that room.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The most lines of non-test code in one file.
const MAX_LINES: usize = 560;

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("host/src is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The file's code without its unit tests: a file that is a test module, or
/// what follows `#[cfg(test)]` + `mod tests`, is not part of the room's
/// dependencies or its size.
fn code(path: &Path, text: &str) -> Option<Vec<String>> {
    let name = path.file_name()?.to_str()?;
    if name == "tests.rs" || name == "testing.rs" {
        return None;
    }
    let mut lines = Vec::new();
    let mut previous = "";
    for line in text.lines() {
        if previous.trim() == "#[cfg(test)]" && line.trim_start().starts_with("mod tests") {
            lines.pop();
            break;
        }
        previous = line;
        lines.push(line.to_string());
    }
    Some(lines)
}

/// The rooms `line` names as `crate::{room}`.
fn references(line: &str) -> Vec<String> {
    let code = line.split("//").next().unwrap_or("");
    code.match_indices("crate::")
        .filter(|(at, _)| {
            // Not `$crate::` (a macro) nor part of a longer name.
            !code[..*at].ends_with('$') && !code[..*at].ends_with(|c: char| c.is_alphanumeric())
        })
        .map(|(at, _)| {
            code[at + "crate::".len()..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect()
        })
        .collect()
}

struct Tree {
    /// Room → rooms it names, with one file that does.
    edges: BTreeMap<String, BTreeMap<String, String>>,
    /// (non-test lines, file) of every file.
    sizes: Vec<(usize, String)>,
}

fn read_tree() -> Tree {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, &mut files);
    files.sort();
    let rooms: BTreeSet<String> = files
        .iter()
        .filter_map(|f| {
            let first = f.strip_prefix(&root).ok()?.components().next()?;
            let name = first
                .as_os_str()
                .to_str()?
                .trim_end_matches(".rs")
                .to_string();
            (name != "lib" && name != "main").then_some(name)
        })
        .collect();
    let mut tree = Tree {
        edges: BTreeMap::new(),
        sizes: Vec::new(),
    };
    for file in &files {
        let relative = file.strip_prefix(&root).expect("under src");
        let room = relative
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .expect("a first component")
            .trim_end_matches(".rs")
            .to_string();
        let text = std::fs::read_to_string(file).expect("a readable source file");
        let Some(lines) = code(file, &text) else {
            continue;
        };
        tree.sizes
            .push((lines.len(), relative.display().to_string()));
        if !rooms.contains(&room) {
            continue;
        }
        for line in &lines {
            for target in references(line) {
                if target != room && rooms.contains(&target) {
                    tree.edges
                        .entry(room.clone())
                        .or_default()
                        .entry(target)
                        .or_insert_with(|| relative.display().to_string());
                }
            }
        }
    }
    tree
}

/// A circle through `start`, if any: the rooms in order.
fn circle_from(
    edges: &BTreeMap<String, BTreeMap<String, String>>,
    start: &str,
) -> Option<Vec<String>> {
    fn walk(
        edges: &BTreeMap<String, BTreeMap<String, String>>,
        start: &str,
        at: &str,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        for next in edges.get(at).into_iter().flat_map(|e| e.keys()) {
            if next == start {
                path.push(next.clone());
                return true;
            }
            if seen.insert(next.clone()) {
                path.push(next.clone());
                if walk(edges, start, next, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![start.to_string()];
    walk(edges, start, start, &mut path, &mut BTreeSet::new()).then_some(path)
}

#[test]
fn no_import_circle_between_rooms() {
    let tree = read_tree();
    assert!(
        tree.edges.contains_key("worker") && tree.edges.contains_key("store"),
        "the tree was read: {:?}",
        tree.edges.keys().collect::<Vec<_>>()
    );
    let mut circles = Vec::new();
    for room in tree.edges.keys() {
        if let Some(circle) = circle_from(&tree.edges, room) {
            let steps: Vec<String> = circle
                .windows(2)
                .map(|pair| {
                    format!(
                        "{} -> {} (in {})",
                        pair[0], pair[1], tree.edges[&pair[0]][&pair[1]]
                    )
                })
                .collect();
            circles.push(steps.join(", "));
        }
    }
    assert!(
        circles.is_empty(),
        "import circles between rooms of host/src:\n{}",
        circles.join("\n")
    );
}

#[test]
fn the_stages_name_only_rooms_below_them() {
    // The message's way through, bottom up: a stage may use what is below
    // it, never what comes after it or the loop, config or commands that
    // drive it.
    let order = [
        "aws", "shutdown", "source", "observe", "route", "store", "settle", "read", "seal",
    ];
    let tree = read_tree();
    let mut upward = Vec::new();
    for (position, room) in order.iter().enumerate() {
        for (target, file) in tree.edges.get(*room).into_iter().flatten() {
            let allowed = order[..position].contains(&target.as_str());
            if !allowed {
                upward.push(format!("{room} -> {target} (in {file})"));
            }
        }
    }
    assert!(
        upward.is_empty(),
        "a stage names a room above it:\n{}",
        upward.join("\n")
    );
}

#[test]
fn no_file_over_the_size_of_a_room() {
    let tree = read_tree();
    assert!(tree.sizes.len() > 40, "the tree was read: {:?}", tree.sizes);
    let large: Vec<String> = tree
        .sizes
        .iter()
        .filter(|(lines, _)| *lines > MAX_LINES)
        .map(|(lines, file)| format!("{file}: {lines} lines"))
        .collect();
    assert!(
        large.is_empty(),
        "files over {MAX_LINES} lines of non-test code (divide them):\n{}",
        large.join("\n")
    );
}

#[test]
fn the_reader_finds_a_circle_when_there_is_one() {
    let mut edges: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    edges
        .entry("a".into())
        .or_default()
        .insert("b".into(), "a.rs".into());
    assert_eq!(circle_from(&edges, "a"), None);
    edges
        .entry("b".into())
        .or_default()
        .insert("a".into(), "b.rs".into());
    assert_eq!(
        circle_from(&edges, "a"),
        Some(vec!["a".to_string(), "b".to_string(), "a".to_string()])
    );
    assert_eq!(
        references("use crate::store::s3; // crate::seal"),
        ["store"]
    );
    assert!(references("impl $crate::config::file::Layer").is_empty());
}
