//! Content validation: one broken tree per error kind, each reported as `path:line: message`,
//! and a tree with several errors reporting all of them.

mod common;

use common::{SKILLS, component, explanation, tree};
use tutor::content::{LoadOptions, load_library};

const GOOD_A: &str = "---\nid: mini-a-explain\ntitle: About A\nskills: [mini.a]\nlevel: intro\nformat: explanation\n---\nA is the first idea.\n";

struct Case {
    name: &'static str,
    files: Vec<(&'static str, Vec<u8>)>,
    /// (file relative to the tree, line, substring of the message)
    expect: Vec<(&'static str, usize, &'static str)>,
    max_bytes: u64,
}

fn case(
    name: &'static str,
    files: Vec<(&'static str, Vec<u8>)>,
    expect: Vec<(&'static str, usize, &'static str)>,
) -> Case {
    Case { name, files, expect, max_bytes: LoadOptions::default().max_file_bytes }
}

fn with_skills(mut files: Vec<(&'static str, Vec<u8>)>) -> Vec<(&'static str, Vec<u8>)> {
    files.insert(0, ("mini/skills.yaml", SKILLS.as_bytes().to_vec()));
    files
}

fn cases() -> Vec<Case> {
    let exercise_no_key = component(
        "id: mini-a-ex\ntitle: Practise A\nskills: [mini.a]\nlevel: developing\nformat: exercise\nitems:\n  - id: q1\n    prompt: What is A?\n    demand: recall\n    answer: it is a\n  - id: q2\n    prompt: Why A?\n    demand: reasoning",
        "Answer both questions.",
    );
    let mut big = GOOD_A.as_bytes().to_vec();
    big.extend(std::iter::repeat_n(b'x', 2000));
    let mut non_utf8 = b"---\nid: mini-a-explain\ntitle: About A\nskills: [mini.a]\nlevel: intro\nformat: explanation\n---\nline eight\ncaf".to_vec();
    non_utf8.extend([0xe9, b'\n']);
    vec![
        case(
            "front matter does not parse",
            with_skills(vec![("mini/a.md", b"---\nid: mini-a-explain\ntitle: [unclosed\nskills: [mini.a]\n---\nbody\n".to_vec())]),
            vec![("mini/a.md", 4, "YAML does not parse")],
        ),
        case(
            "front matter is not a map",
            with_skills(vec![("mini/a.md", b"---\n- just\n- a list\n---\nbody\n".to_vec())]),
            vec![("mini/a.md", 2, "front matter must be a YAML map")],
        ),
        case(
            "no front matter",
            with_skills(vec![("mini/a.md", b"# Just a heading\n\ntext\n".to_vec())]),
            vec![("mini/a.md", 1, "missing front matter")],
        ),
        case(
            "missing required field",
            with_skills(vec![("mini/a.md", component("id: mini-a\nskills: [mini.a]\nlevel: intro\nformat: explanation", "Body.").into_bytes())]),
            vec![("mini/a.md", 2, "missing required field 'title'")],
        ),
        case(
            "unknown skill",
            with_skills(vec![("mini/a.md", component("id: mini-a\ntitle: T\nskills:\n  - mini.a\n  - mini.zzz\nlevel: intro\nformat: explanation", "Body.").into_bytes())]),
            vec![("mini/a.md", 6, "unknown skill 'mini.zzz'")],
        ),
        case(
            "duplicate component id",
            with_skills(vec![
                ("mini/a.md", GOOD_A.as_bytes().to_vec()),
                ("mini/b.md", explanation("mini-a-explain", "mini.b", "intro", "Other", "Body.").into_bytes()),
            ]),
            vec![("mini/b.md", 2, "duplicate component id 'mini-a-explain' (first defined at")],
        ),
        case(
            "prerequisite cycle",
            vec![
                ("mini/skills.yaml", b"course:\n  id: mini\n  title: Mini\nskills:\n  - id: mini.a\n    name: A\n    prerequisites: [mini.c]\n  - id: mini.b\n    name: B\n    prerequisites: [mini.a]\n  - id: mini.c\n    name: C\n    prerequisites: [mini.b]\n".to_vec()),
                ("mini/a.md", GOOD_A.as_bytes().to_vec()),
            ],
            vec![("mini/skills.yaml", 5, "prerequisite cycle: mini.a -> mini.c -> mini.b -> mini.a")],
        ),
        case(
            "unknown prerequisite",
            vec![
                ("mini/skills.yaml", b"course:\n  id: mini\n  title: Mini\nskills:\n  - id: mini.a\n    name: A\n    prerequisites: [mini.nope]\n".to_vec()),
                ("mini/a.md", GOOD_A.as_bytes().to_vec()),
            ],
            vec![("mini/skills.yaml", 5, "unknown prerequisite 'mini.nope'")],
        ),
        case(
            "unknown level",
            with_skills(vec![("mini/a.md", component("id: mini-a\ntitle: T\nskills: [mini.a]\nlevel: beginner\nformat: explanation", "Body.").into_bytes())]),
            vec![("mini/a.md", 5, "unknown level 'beginner' (expected one of intro, developing, proficient, advanced)")],
        ),
        case(
            "unknown format",
            with_skills(vec![("mini/a.md", component("id: mini-a\ntitle: T\nskills: [mini.a]\nlevel: intro\nformat: video", "Body.").into_bytes())]),
            vec![("mini/a.md", 6, "unknown format 'video'")],
        ),
        case(
            "exercise without answer key",
            with_skills(vec![("mini/ex.md", exercise_no_key.into_bytes())]),
            vec![("mini/ex.md", 12, "exercise item 'q2' has no answer key")],
        ),
        case(
            "exercise without items",
            with_skills(vec![("mini/ex.md", component("id: mini-a-ex\ntitle: T\nskills: [mini.a]\nlevel: intro\nformat: exercise", "Do it.").into_bytes())]),
            vec![("mini/ex.md", 6, "exercise without items")],
        ),
        case(
            "empty body",
            with_skills(vec![("mini/a.md", component("id: mini-a\ntitle: T\nskills: [mini.a]\nlevel: intro\nformat: explanation", "  \n").into_bytes())]),
            vec![("mini/a.md", 8, "empty body")],
        ),
        case(
            "illegal characters in id",
            with_skills(vec![("mini/a.md", component("title: T\nid: Mini_A!\nskills: [mini.a]\nlevel: intro\nformat: explanation", "Body.").into_bytes())]),
            vec![("mini/a.md", 3, "illegal component id 'Mini_A!'")],
        ),
        case(
            "illegal characters in skill id",
            vec![
                ("mini/skills.yaml", b"course:\n  id: mini\n  title: Mini\nskills:\n  - id: mini.a\n    name: A\n  - id: Mini B\n    name: B\n".to_vec()),
                ("mini/a.md", GOOD_A.as_bytes().to_vec()),
            ],
            vec![("mini/skills.yaml", 7, "illegal skill id 'Mini B'")],
        ),
        case(
            "unknown field",
            with_skills(vec![("mini/a.md", component("id: mini-a\ntitle: T\nskils: [mini.a]\nskills: [mini.a]\nlevel: intro\nformat: explanation", "Body.").into_bytes())]),
            vec![("mini/a.md", 4, "unknown field 'skils'")],
        ),
        case("not UTF-8", with_skills(vec![("mini/a.md", non_utf8)]), vec![("mini/a.md", 9, "not valid UTF-8 (invalid byte at column 4)")]),
        Case {
            max_bytes: 1024,
            ..case("oversized file", with_skills(vec![("mini/a.md", big)]), vec![("mini/a.md", 1, "over the limit of 1024 bytes")])
        },
    ]
}

#[test]
fn every_error_kind_is_reported_with_path_and_line() {
    let mut failures = Vec::new();
    for c in cases() {
        let files: Vec<(&str, &[u8])> = c.files.iter().map(|(p, b)| (*p, b.as_slice())).collect();
        let dir = tree(&files);
        let err = match load_library(dir.path(), &LoadOptions { max_file_bytes: c.max_bytes }) {
            Ok(_) => {
                failures.push(format!("{}: loaded without error", c.name));
                continue;
            }
            Err(e) => e,
        };
        for (file, line, msg) in &c.expect {
            let want_path = dir.path().join(file);
            let found =
                err.diagnostics.iter().any(|d| d.path == want_path && d.line == *line && d.message.contains(msg));
            if !found {
                failures.push(format!("{}: expected {file}:{line}: …{msg}…, got:\n{err}", c.name));
            }
        }
        // the rendered form is path:line: message
        let rendered = err.to_string();
        assert!(
            rendered.contains(&format!("{}:{}: ", dir.path().join(c.expect[0].0).display(), c.expect[0].1)),
            "{rendered}"
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn several_errors_are_all_reported_at_once() {
    let dir = tree(&[
        ("mini/skills.yaml", SKILLS.as_bytes()),
        (
            "mini/a.md",
            component("id: mini-a\ntitle: T\nskills: [mini.nope]\nlevel: expert\nformat: explanation", "Body.")
                .as_bytes(),
        ),
        ("mini/b.md", b"---\nid: [broken\n---\nx\n"),
        ("mini/c.md", component("id: mini-c\nskills: [mini.b]\nlevel: intro\nformat: explanation", "").as_bytes()),
    ]);
    let err = load_library(dir.path(), &LoadOptions::default()).unwrap_err();
    let msgs: Vec<String> = err.diagnostics.iter().map(ToString::to_string).collect();
    for want in [
        "a.md:4: unknown skill 'mini.nope'",
        "a.md:5: unknown level 'expert'",
        "b.md:3: YAML does not parse",
        "c.md:2: missing required field 'title'",
        "c.md:7: empty body",
    ] {
        assert!(msgs.iter().any(|m| m.contains(want)), "missing {want} in:\n{}", msgs.join("\n"));
    }
    assert_eq!(err.diagnostics.len(), 5, "{}", msgs.join("\n"));
}

#[test]
fn answer_keys_are_held_apart_from_the_component() {
    let ex = component(
        "id: mini-a-ex\ntitle: Practise A\nskills: [mini.a]\nlevel: developing\nformat: exercise\nitems:\n  - id: q1\n    prompt: What is A?\n    demand: recall\n    answer: CANARY-KEY-41\n    hints: [CANARY-HINT-42]\n    misconceptions:\n      - response: CANARY-WRONG-43\n        diagnosis: CANARY-DIAG-44",
        "Answer the question.",
    );
    let dir = tree(&[("mini/skills.yaml", SKILLS.as_bytes()), ("mini/ex.md", ex.as_bytes())]);
    let lib = common::load(dir.path());
    let c = lib.components.values().next().unwrap();
    let visible = format!("{}{}", serde_json::to_string(c).unwrap(), c.retrievable_text());
    assert!(visible.contains("What is A?"));
    assert!(!visible.contains("CANARY"), "{visible}");
    let key = lib.answer_key(&c.id, "q1").unwrap();
    assert_eq!(key.answer, "CANARY-KEY-41");
    assert_eq!(key.misconceptions[0].diagnosis, "CANARY-DIAG-44");
}

#[test]
fn validate_cli_prints_problems_and_fails() {
    let dir = tree(&[
        ("mini/skills.yaml", SKILLS.as_bytes()),
        (
            "mini/a.md",
            component("id: mini-a\ntitle: T\nskills: [mini.a]\nlevel: intro\nformat: podcast", "Body.").as_bytes(),
        ),
    ]);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tutor")).arg("validate").arg(dir.path()).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{}:6: unknown format 'podcast'", dir.path().join("mini/a.md").display())),
        "{stderr}"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tutor"))
        .args(["validate", "--json"])
        .arg(dir.path())
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(v["errors"][0]["line"], 6);
}
