//! The module structure holds: no two modules import each other, directly or around a loop, at
//! any level (a folder module counts with everything inside it). Read from the sources, as a
//! reviewer would read them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Every module of `src/` by its path (`agent::llm::engine`), with its source (tests cut off).
fn modules() -> BTreeMap<String, String> {
    fn walk(dir: &Path, out: &mut BTreeMap<String, String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
                continue;
            }
            let rel = p.strip_prefix(Path::new(env!("CARGO_MANIFEST_DIR")).join("src")).unwrap();
            let rel = rel.to_str().unwrap().trim_end_matches(".rs").replace('/', "::");
            if rel == "lib" || rel == "main" {
                continue;
            }
            let name = rel.trim_end_matches("::mod").to_owned();
            let text = std::fs::read_to_string(&p).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap().to_owned();
            out.insert(name, code);
        }
    }
    let mut out = BTreeMap::new();
    walk(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut out);
    out
}

/// The modules a module's code names through `crate::` or `super::` paths.
fn imports(name: &str, code: &str, all: &BTreeMap<String, String>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = code.as_bytes();
    for start in ["crate::", "super::"] {
        let mut from = 0;
        while let Some(at) = code[from..].find(start) {
            let i = from + at;
            from = i + start.len();
            if i > 0 && (bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_') {
                continue;
            }
            let path: String =
                code[i..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':').collect();
            let mut segs: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
            let mut base: Vec<&str> = Vec::new();
            if segs[0] == "super" {
                base = name.split("::").collect();
                while segs.first() == Some(&"super") {
                    base.pop();
                    segs.remove(0);
                }
            } else {
                segs.remove(0);
            }
            base.extend(segs);
            // the longest prefix that is a module
            if let Some(m) = (1..=base.len()).rev().map(|n| base[..n].join("::")).find(|m| all.contains_key(m))
                && m != name
            {
                out.insert(m);
            }
        }
    }
    out
}

#[test]
fn no_module_imports_another_that_imports_it_back() {
    let all = modules();
    let edges: BTreeMap<&String, BTreeSet<String>> = all.iter().map(|(n, c)| (n, imports(n, c, &all))).collect();
    let mut cycles = Vec::new();
    // at each level: the children of one parent, each with all it contains
    let parents: BTreeSet<String> = std::iter::once(String::new()).chain(all.keys().cloned()).collect();
    for parent in &parents {
        let prefix = if parent.is_empty() { String::new() } else { format!("{parent}::") };
        let owner = |m: &str| -> Option<String> {
            let rest = m.strip_prefix(&prefix)?;
            (!rest.is_empty()).then(|| format!("{prefix}{}", rest.split("::").next().unwrap()))
        };
        let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (m, targets) in &edges {
            let Some(a) = owner(m) else { continue };
            for t in targets {
                if let Some(b) = owner(t).filter(|b| *b != a) {
                    graph.entry(a.clone()).or_default().insert(b);
                }
            }
        }
        for (a, bs) in &graph {
            for b in bs {
                // a path back from b to a
                let mut stack = vec![vec![a.clone(), b.clone()]];
                let mut seen = BTreeSet::new();
                while let Some(path) = stack.pop() {
                    let last = path.last().unwrap().clone();
                    if last == *a {
                        cycles.push(path.join(" -> "));
                        break;
                    }
                    if !seen.insert(last.clone()) {
                        continue;
                    }
                    for next in graph.get(&last).into_iter().flatten() {
                        let mut p = path.clone();
                        p.push(next.clone());
                        stack.push(p);
                    }
                }
            }
        }
    }
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

#[test]
fn the_api_holds_only_http() {
    // the HTTP layer reaches the application through `app`, not the engines or backends
    let all = modules();
    for (name, code) in all.iter().filter(|(n, _)| n.starts_with("api")) {
        for banned in ["crate::retrieval", "crate::agent::llm", "crate::agent::offline", "crate::db::Database", "sqlx"]
        {
            assert!(!code.contains(banned), "{name} uses {banned}");
        }
    }
}
