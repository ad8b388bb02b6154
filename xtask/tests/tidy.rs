//! Tidy: the layering of `docs/ARCHITECTURE.md` kept by a test (in the spirit of
//! rust-analyzer's `xtask/src/tidy.rs`).
//!
//! * **Crates:** `cargo metadata` must show `otsensor-wire` depending on no project
//!   crate and `otsensor` on `otsensor-wire` only; `xtask` and the benches sit on top
//!   and may use anything.
//! * **Engine modules:** inside `otsensor`, a lower layer's file must not name a higher
//!   layer (`crate::<module>` in a `use` or a path), outside its `#[cfg(test)]` items:
//!   tests may build their fixtures from any layer.
//!
//! Imports being removed by work in progress are listed in [`KNOWN_VIOLATIONS`], each
//! with its file and the module it names. The test fails on a violation that is not
//! listed, and on a listed one that no longer exists, so the list only shrinks.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Project crates and the project crates each may depend on (normal and build
/// dependencies). `None`: anything. Dev-dependencies are test code and may reach
/// higher, except for `otsensor-wire`, whose tree must hold no project crate at all.
const CRATES: &[(&str, Option<&[&str]>)] = &[
    ("otsensor-wire", Some(&[])),
    ("otsensor", Some(&["otsensor-wire"])),
    ("xtask", None),
    ("otsensor-benches", None),
];

/// Engine modules of `otsensor` and the modules they must not name.
const LAYERS: &[(&str, &[&str])] = &[
    ("inspect", ENGINE_FORBIDDEN),
    ("flow", ENGINE_FORBIDDEN),
    ("observe", ENGINE_FORBIDDEN),
    ("analyze", ENGINE_FORBIDDEN),
    ("store", ENGINE_FORBIDDEN),
    ("capture", &["metrics", "observe"]),
    ("worker", &["metrics", "output"]),
];

/// What the engine below the worker must not know: the edges and operations.
const ENGINE_FORBIDDEN: &[&str] = &["output", "http", "metrics", "capture", "reload", "live"];

/// Violations that exist today and are being removed; the lead empties this list as
/// that work merges. `(file, module it names)`.
const KNOWN_VIOLATIONS: &[(&str, &str)] = &[];

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Violation {
    /// Path relative to the workspace root, `/`-separated.
    file: String,
    /// The module of `otsensor` the file must not name.
    names: String,
    /// The first line that names it, for the message.
    line: usize,
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits in the workspace")
        .to_path_buf()
}

#[test]
fn crate_graph_is_the_layering() {
    let output = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(workspace_root())
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("cargo metadata prints JSON");
    let packages = metadata["packages"].as_array().expect("packages");
    let project: BTreeSet<&str> = packages.iter().filter_map(|p| p["name"].as_str()).collect();
    let mut problems = Vec::new();
    for package in packages {
        let name = package["name"].as_str().unwrap_or_default();
        let Some((_, allowed)) = CRATES.iter().find(|(crate_name, _)| *crate_name == name) else {
            problems.push(format!(
                "{name}: a workspace crate with no place in the layering (add it to CRATES)"
            ));
            continue;
        };
        let Some(allowed) = allowed else {
            continue;
        };
        for dependency in package["dependencies"].as_array().into_iter().flatten() {
            let dep = dependency["name"].as_str().unwrap_or_default();
            let kind = dependency["kind"].as_str().unwrap_or("normal");
            let is_project = project.contains(dep);
            let counts = kind != "dev" || name == "otsensor-wire";
            if is_project && counts && !allowed.contains(&dep) {
                problems.push(format!("{name} depends on {dep} ({kind}): above it"));
            }
        }
    }
    assert!(problems.is_empty(), "crate graph:\n{}", problems.join("\n"));
}

#[test]
fn engine_modules_import_only_below_them() {
    let root = workspace_root();
    let found = violations(&root);
    let known: BTreeSet<(String, String)> = KNOWN_VIOLATIONS
        .iter()
        .map(|(file, module)| (file.to_string(), module.to_string()))
        .collect();
    let present: BTreeSet<(String, String)> = found
        .iter()
        .map(|v| (v.file.clone(), v.names.clone()))
        .collect();
    let new: Vec<String> = found
        .iter()
        .filter(|v| !known.contains(&(v.file.clone(), v.names.clone())))
        .map(|v| {
            format!(
                "{}:{}: names crate::{}, a layer above it",
                v.file, v.line, v.names
            )
        })
        .collect();
    let gone: Vec<String> = known
        .difference(&present)
        .map(|(file, module)| {
            format!("{file} no longer names crate::{module}: remove it from KNOWN_VIOLATIONS")
        })
        .collect();
    assert!(
        new.is_empty() && gone.is_empty(),
        "layering:\n{}",
        new.iter()
            .chain(&gone)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Every forbidden `crate::` reference in the engine's files, sorted.
fn violations(root: &Path) -> Vec<Violation> {
    let src = root.join("sensor/src");
    let mut files = Vec::new();
    collect_rs(&src, &mut files);
    let test_only = test_module_files(&files);
    let mut found = Vec::new();
    for path in files {
        if test_only.contains(&path) {
            continue;
        }
        let relative = path.strip_prefix(&src).expect("under sensor/src");
        let Some(module) = top_module(relative) else {
            continue;
        };
        let text = std::fs::read_to_string(&path).expect("source reads");
        let file = format!(
            "sensor/src/{}",
            relative.to_string_lossy().replace('\\', "/")
        );
        found.extend(check_file(&file, &module, &text));
    }
    found.sort();
    found
}

/// Files of modules declared `#[cfg(test)] mod name;`: test code as a whole.
fn test_module_files(files: &[PathBuf]) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    for path in files {
        let text = std::fs::read_to_string(path).expect("source reads");
        // Children of `x.rs` live in `x/`, of `mod.rs` and `lib.rs` beside them.
        let stem = path.file_stem().map(|s| s.to_string_lossy().to_string());
        let parent = path.parent().expect("a file has a directory");
        let children = match stem.as_deref() {
            Some("mod" | "lib" | "main") | None => parent.to_path_buf(),
            Some(stem) => parent.join(stem),
        };
        let mut after_cfg_test = false;
        for line in text.lines() {
            if line.starts_with("#[cfg(test)]") {
                after_cfg_test = true;
                continue;
            }
            if after_cfg_test && (line.starts_with('#') || line.starts_with("//")) {
                continue;
            }
            if after_cfg_test {
                let declaration = line
                    .trim_start_matches("pub(crate) ")
                    .trim_start_matches("pub ");
                if let Some(name) = declaration
                    .strip_prefix("mod ")
                    .and_then(|rest| rest.strip_suffix(';'))
                {
                    out.insert(children.join(format!("{name}.rs")));
                    out.insert(children.join(name).join("mod.rs"));
                }
            }
            after_cfg_test = false;
        }
    }
    out
}

fn collect_rs(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("source directory reads") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            collect_rs(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to: `analyze.rs` and `analyze/x.rs` are both
/// `analyze`; `lib.rs` and `main.rs` are none.
fn top_module(relative: &Path) -> Option<String> {
    let first = relative.components().next()?.as_os_str().to_string_lossy();
    let module = first.trim_end_matches(".rs").to_string();
    (module != "lib" && module != "main").then_some(module)
}

/// The forbidden modules `text` (the file `file` of `module`) names, one violation per
/// module, at its first line.
fn check_file(file: &str, module: &str, text: &str) -> Vec<Violation> {
    let Some((_, forbidden)) = LAYERS.iter().find(|(layer, _)| *layer == module) else {
        return Vec::new();
    };
    let mut found: Vec<Violation> = Vec::new();
    for (line, named) in crate_references(text) {
        if forbidden.contains(&named.as_str()) && !found.iter().any(|v| v.names == named) {
            found.push(Violation {
                file: file.to_string(),
                names: named,
                line,
            });
        }
    }
    found
}

/// `(line, module)` for every `crate::module` and every module of a
/// `crate::{a::..., b}` group in the code outside `#[cfg(test)]` items and comments.
fn crate_references(text: &str) -> Vec<(usize, String)> {
    let code = production_lines(text);
    // Join the kept lines so a `use crate::{` group spanning lines reads as one.
    let mut joined = String::new();
    let mut line_of = Vec::new();
    for (number, line) in &code {
        for _ in 0..=line.len() {
            line_of.push(*number);
        }
        joined.push_str(line);
        joined.push('\n');
    }
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(found) = joined[at..].find("crate::") {
        let start = at + found;
        at = start + "crate::".len();
        // `otsensor_wire::...` or `foo_crate::` are not `crate::`.
        let preceded = joined[..start]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_');
        if preceded {
            continue;
        }
        let rest = &joined[at..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name = leading_ident(item.trim());
                if !name.is_empty() && name != "self" {
                    out.push((line_of[start], name.to_string()));
                }
            }
        } else {
            let name = leading_ident(rest);
            if !name.is_empty() {
                out.push((line_of[start], name.to_string()));
            }
        }
    }
    out
}

fn leading_ident(text: &str) -> &str {
    let end = text
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(text.len());
    &text[..end]
}

/// The file's lines (1-based numbers) without comments and without the top-level
/// items marked `#[cfg(test)]` (rustfmt'd code: such an item ends at its `;` line or
/// at the next `}` in column 0).
fn production_lines(text: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut skipping = false;
    let mut in_test_item = false;
    for (index, line) in text.lines().enumerate() {
        if skipping {
            let item_starts = !line.starts_with('#') && !line.starts_with("//");
            if in_test_item {
                if line.starts_with('}') {
                    skipping = false;
                    in_test_item = false;
                }
                continue;
            }
            if item_starts {
                if line.trim_end().ends_with(';') {
                    skipping = false;
                } else {
                    in_test_item = true;
                    if line.trim_end().ends_with('}') && line.contains('{') {
                        // A one-line item: `mod tests {}`.
                        skipping = false;
                        in_test_item = false;
                    }
                }
            }
            continue;
        }
        if line.starts_with("#[cfg(test)]") {
            skipping = true;
            continue;
        }
        let trimmed = line.trim_start();
        if trimmed.starts_with("//") {
            continue;
        }
        // Drop a trailing comment (good enough for paths: no `//` inside them).
        let code = match line.find("//") {
            Some(at) if !line[..at].contains('"') => &line[..at],
            _ => line,
        };
        out.push((index + 1, code));
    }
    out
}

#[test]
fn checker_catches_a_forbidden_import() {
    let text = "//! A flow module that reaches up.\n\
                use std::sync::Arc;\n\
                use crate::observe::Observation;\n\
                use crate::{config::Policy, metrics::Metrics};\n\
                \n\
                fn f() {\n    let _ = crate::output::eve::rfc3339_micros(0);\n}\n";
    let found = check_file("sensor/src/flow/x.rs", "flow", text);
    let named: Vec<(&str, usize)> = found.iter().map(|v| (v.names.as_str(), v.line)).collect();
    assert_eq!(named, [("metrics", 4), ("output", 7)]);
    // The same file in a module without rules is fine.
    assert!(check_file("sensor/src/pipeline.rs", "pipeline", text).is_empty());
}

#[test]
fn checker_ignores_tests_comments_and_other_crates() {
    let text = "use otsensor_wire::layers::Mac;\n\
                // use crate::metrics::Metrics;\n\
                /// See [`crate::http`].\n\
                pub fn f() {}\n\
                \n\
                #[cfg(test)]\n\
                use crate::output::eve::EveRecord;\n\
                \n\
                #[cfg(test)]\n\
                // A panic in a test is a failed assertion.\n\
                #[allow(clippy::unwrap_used)]\n\
                mod tests {\n    use crate::metrics::Metrics;\n    use crate::output::eve::EventSink;\n}\n\
                \n\
                use crate::capture::Packet;\n";
    let found = check_file("sensor/src/inspect/x.rs", "inspect", text);
    let named: Vec<(&str, usize)> = found.iter().map(|v| (v.names.as_str(), v.line)).collect();
    // Only the last line is production code naming a higher layer.
    assert_eq!(named, [("capture", 17)]);
}

#[test]
fn known_violations_name_forbidden_modules_of_real_files() {
    let root = workspace_root();
    for (file, module) in KNOWN_VIOLATIONS {
        assert!(root.join(file).is_file(), "{file}: no such file");
        let relative = Path::new(file)
            .strip_prefix("sensor/src")
            .expect("engine file");
        let layer = top_module(relative).expect("a module");
        let forbidden = LAYERS
            .iter()
            .find(|(name, _)| *name == layer)
            .map(|(_, forbidden)| *forbidden)
            .unwrap_or_default();
        assert!(
            forbidden.contains(module),
            "{file}: {module} is not forbidden for {layer}: the entry allows nothing"
        );
    }
}
