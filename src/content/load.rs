//! Loading and validating courses: every problem reported at once as `path:line: message`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_yaml::{Mapping, Value};

use super::model::{
    AnswerKey, BktParams, Component, ComponentId, Course, Demand, ExerciseItem, Format, Level, Library, Misconception,
    Skill, SkillId,
};

/// The name of a course's skill graph file.
pub const SKILLS_FILE: &str = "skills.yaml";

/// One problem in the content, located at a file and line.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Diagnostic {
    pub path: PathBuf,
    pub line: usize,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.path.display(), self.line, self.message)
    }
}

/// Every problem found in a content tree; loading fails when there is at least one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ContentError {
    pub diagnostics: Vec<Diagnostic>,
}

impl fmt::Display for ContentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.diagnostics {
            writeln!(f, "{d}")?;
        }
        write!(f, "{} problem(s) found", self.diagnostics.len())
    }
}

/// Limits applied while loading.
#[derive(Debug, Clone, Copy)]
pub struct LoadOptions {
    /// Files larger than this are refused.
    pub max_file_bytes: u64,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self { max_file_bytes: 256 * 1024 }
    }
}

#[derive(Default)]
struct Report(Vec<Diagnostic>);

impl Report {
    fn add(&mut self, path: &Path, line: usize, message: impl Into<String>) {
        self.0.push(Diagnostic { path: path.to_owned(), line: line.max(1), message: message.into() });
    }
}

/// Loads every course under `root` (a folder of course folders, or one course folder) and
/// validates it whole. On any problem, returns all of them, sorted by file and line.
pub fn load_library(root: &Path, opts: &LoadOptions) -> Result<Library, ContentError> {
    let mut report = Report::default();
    let mut lib = Library::default();
    let course_dirs = find_course_dirs(root, &mut report);
    // component id -> (path, line) of its first definition, for duplicate reports
    let mut seen_components: HashMap<ComponentId, (PathBuf, usize)> = HashMap::new();
    // skill id -> (path, line) of its definition, for cycle and duplicate reports
    let mut skill_lines: HashMap<SkillId, (PathBuf, usize)> = HashMap::new();
    let mut pending_components = Vec::new();

    for dir in &course_dirs {
        let Some(course) = load_skills_file(dir, opts, &mut lib, &mut skill_lines, &mut report) else {
            continue;
        };
        let mut files = Vec::new();
        collect_markdown(dir, &mut files, &mut report);
        files.sort();
        for path in files {
            pending_components.extend(parse_component_file(&path, &course, opts, &mut report));
        }
    }

    check_prerequisites(&lib, &skill_lines, &mut report);

    for parsed in pending_components {
        let ParsedComponent { path, course, component, keys, id_line, skill_lines: comp_skill_lines } = parsed;
        for (skill, line) in &comp_skill_lines {
            match lib.skills.get(skill) {
                None => report.add(&path, *line, format!("unknown skill '{skill}' (not in any {SKILLS_FILE})")),
                Some(s) if s.course != course => {
                    report.add(
                        &path,
                        *line,
                        format!("skill '{skill}' belongs to course '{}', not '{course}'", s.course),
                    );
                }
                Some(_) => {}
            }
        }
        let Some(component) = component else { continue };
        if let Some((first, first_line)) = seen_components.get(&component.id) {
            report.add(
                &component.path,
                id_line,
                format!(
                    "duplicate component id '{}' (first defined at {}:{})",
                    component.id,
                    first.display(),
                    first_line
                ),
            );
            continue;
        }
        seen_components.insert(component.id.clone(), (component.path.clone(), id_line));
        if let Some(course) = lib.courses.get_mut(&component.course) {
            course.components.push(component.id.clone());
        }
        for (item, key) in keys {
            lib.insert_answer_key(component.id.clone(), item, key);
        }
        lib.components.insert(component.id.clone(), component);
    }

    if lib.courses.is_empty() && report.0.is_empty() {
        report.add(root, 1, format!("no course found: expected {SKILLS_FILE} here or in a sub-folder"));
    }
    if report.0.is_empty() {
        Ok(lib)
    } else {
        let mut diagnostics = report.0;
        diagnostics.sort();
        diagnostics.dedup();
        Err(ContentError { diagnostics })
    }
}

fn empty_course(id: &str, dir: &Path) -> Course {
    Course {
        id: id.to_owned(),
        title: String::new(),
        description: String::new(),
        audience: String::new(),
        dir: dir.to_owned(),
        skills: Vec::new(),
        components: Vec::new(),
    }
}

fn find_course_dirs(root: &Path, report: &mut Report) -> Vec<PathBuf> {
    if root.join(SKILLS_FILE).is_file() {
        return vec![root.to_owned()];
    }
    let entries = match std::fs::read_dir(root) {
        Ok(e) => e,
        Err(e) => {
            report.add(root, 1, format!("cannot read content folder: {e}"));
            return Vec::new();
        }
    };
    let mut dirs: Vec<PathBuf> =
        entries.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.is_dir() && !is_hidden(p)).collect();
    dirs.sort();
    dirs.retain(|d| {
        if d.join(SKILLS_FILE).is_file() {
            return true;
        }
        let mut md = Vec::new();
        collect_markdown(d, &mut md, &mut Report::default());
        if !md.is_empty() {
            report.add(d, 1, format!("course folder has Markdown files but no {SKILLS_FILE}"));
        }
        false
    });
    dirs
}

fn is_hidden(p: &Path) -> bool {
    p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.') || n.starts_with('_'))
}

fn collect_markdown(dir: &Path, out: &mut Vec<PathBuf>, report: &mut Report) {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => return report.add(dir, 1, format!("cannot read folder: {e}")),
    };
    for entry in entries.filter_map(Result::ok) {
        let p = entry.path();
        if is_hidden(&p) {
            continue;
        }
        if p.is_dir() {
            collect_markdown(&p, out, report);
        } else if p.extension().is_some_and(|e| e == "md")
            && !p.file_name().is_some_and(|n| n.eq_ignore_ascii_case("README.md"))
        {
            out.push(p);
        }
    }
}

/// Reads a file as UTF-8 within the size limit, reporting why not.
fn read_text(path: &Path, opts: &LoadOptions, report: &mut Report) -> Option<String> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            report.add(path, 1, format!("cannot read file: {e}"));
            return None;
        }
    };
    if bytes.len() as u64 > opts.max_file_bytes {
        report.add(
            path,
            1,
            format!(
                "file is {} bytes, over the limit of {} bytes (TUTOR_MAX_FILE_BYTES)",
                bytes.len(),
                opts.max_file_bytes
            ),
        );
        return None;
    }
    match String::from_utf8(bytes) {
        Ok(mut s) => {
            if s.starts_with('\u{feff}') {
                s.remove(0);
            }
            Some(s)
        }
        Err(e) => {
            let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
            let line = 1 + valid.iter().filter(|b| **b == b'\n').count();
            let col = 1 + valid.iter().rev().take_while(|b| **b != b'\n').count();
            report.add(path, line, format!("file is not valid UTF-8 (invalid byte at column {col})"));
            None
        }
    }
}

/// Parses YAML, reporting a syntax error at its line (offset by `first_line - 1`).
fn parse_yaml(text: &str, path: &Path, first_line: usize, report: &mut Report) -> Option<Value> {
    match serde_yaml::from_str::<Value>(text) {
        Ok(v) => Some(v),
        Err(e) => {
            let line = e.location().map_or(1, |l| l.line());
            let msg = e.to_string();
            // serde_yaml appends " at line N column M": the location is already in front
            let msg = msg.split(" at line ").next().unwrap_or(&msg).to_owned();
            report.add(path, first_line + line - 1, format!("YAML does not parse: {msg}"));
            None
        }
    }
}

/// Finds the line of a top-level (or any-indent) `key:` in `text`, searching from `from` (0-based).
fn key_line(text: &str, key: &str, from: usize) -> Option<usize> {
    text.lines().enumerate().skip(from).find_map(|(n, l)| {
        let t = l.trim_start().trim_start_matches("- ");
        let rest = t.strip_prefix(key)?;
        rest.trim_start().starts_with(':').then_some(n)
    })
}

/// Finds the first line at or after `from` (0-based) that mentions `needle`.
fn text_line(text: &str, needle: &str, from: usize) -> Option<usize> {
    text.lines().enumerate().skip(from).find_map(|(n, l)| l.contains(needle).then_some(n))
}

/// Typed access to one YAML map, reporting problems with the line of the key.
struct Fields<'a> {
    map: &'a Mapping,
    text: &'a str,
    /// 1-based line in the file of the first line of `text`
    base: usize,
    /// 0-based line in `text` where this map starts (for nested maps)
    from: usize,
    path: &'a Path,
    what: &'a str,
}

impl Fields<'_> {
    fn line_of(&self, key: &str) -> usize {
        self.base + key_line(self.text, key, self.from).unwrap_or(self.from)
    }
    fn start_line(&self) -> usize {
        self.base + self.from
    }
    fn get(&self, key: &str) -> Option<&Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }
    fn check_keys(&self, allowed: &[&str], report: &mut Report) {
        for k in self.map.keys() {
            let name = k.as_str().map_or_else(|| format!("{k:?}"), str::to_owned);
            if !allowed.contains(&name.as_str()) {
                report.add(
                    self.path,
                    self.line_of(&name),
                    format!("unknown field '{name}' in {} (expected one of {})", self.what, allowed.join(", ")),
                );
            }
        }
    }
    fn scalar(&self, key: &str, required: bool, report: &mut Report) -> Option<String> {
        match self.get(key) {
            None if required => {
                report.add(self.path, self.start_line(), format!("missing required field '{key}' in {}", self.what));
                None
            }
            None => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            Some(Value::Bool(b)) => Some(b.to_string()),
            Some(_) => {
                report.add(self.path, self.line_of(key), format!("field '{key}' must be text"));
                None
            }
        }
    }
    fn text(&self, key: &str, required: bool, report: &mut Report) -> Option<String> {
        let s = self.scalar(key, required, report)?;
        if s.trim().is_empty() && required {
            report.add(self.path, self.line_of(key), format!("field '{key}' must not be empty"));
            return None;
        }
        Some(s.trim().to_owned())
    }
    fn list(&self, key: &str, required: bool, report: &mut Report) -> Option<Vec<&Value>> {
        match self.get(key) {
            None if required => {
                report.add(self.path, self.start_line(), format!("missing required field '{key}' in {}", self.what));
                None
            }
            None => Some(Vec::new()),
            Some(Value::Sequence(s)) => Some(s.iter().collect()),
            Some(_) => {
                report.add(self.path, self.line_of(key), format!("field '{key}' must be a list"));
                None
            }
        }
    }
    fn text_list(&self, key: &str, required: bool, report: &mut Report) -> Option<Vec<String>> {
        let items = self.list(key, required, report)?;
        let mut out = Vec::new();
        for v in items {
            match v {
                Value::String(s) => out.push(s.trim().to_owned()),
                Value::Number(n) => out.push(n.to_string()),
                _ => {
                    report.add(self.path, self.line_of(key), format!("every entry of '{key}' must be text"));
                    return None;
                }
            }
        }
        Some(out)
    }
    fn nested<'b>(&'b self, map: &'b Mapping, from: usize, what: &'b str) -> Fields<'b> {
        Fields { map, text: self.text, base: self.base, from, path: self.path, what }
    }
}

fn load_skills_file(
    dir: &Path,
    opts: &LoadOptions,
    lib: &mut Library,
    skill_lines: &mut HashMap<SkillId, (PathBuf, usize)>,
    report: &mut Report,
) -> Option<String> {
    let path = dir.join(SKILLS_FILE);
    let text = read_text(&path, opts, report)?;
    let value = parse_yaml(&text, &path, 1, report)?;
    let Value::Mapping(map) = &value else {
        report.add(&path, 1, format!("{SKILLS_FILE} must be a map with 'course' and 'skills'"));
        return None;
    };
    let top = Fields { map, text: &text, base: 1, from: 0, path: &path, what: SKILLS_FILE };
    top.check_keys(&["course", "skills"], report);

    let folder_name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("course").to_owned();
    let mut course = empty_course(&folder_name, dir);
    match top.get("course") {
        Some(Value::Mapping(cm)) => {
            let from = key_line(&text, "course", 0).unwrap_or(0);
            let f = top.nested(cm, from, "course");
            f.check_keys(&["id", "title", "description", "audience"], report);
            if let Some(id) = f.text("id", true, report) {
                if ComponentId::parse(&id).is_err() {
                    report.add(
                        &path,
                        f.line_of("id"),
                        format!("illegal course id '{id}': use a lowercase slug (a-z, 0-9, '-')"),
                    );
                }
                course.id = id;
            }
            course.title = f.text("title", true, report).unwrap_or_default();
            course.description = f.text("description", false, report).unwrap_or_default();
            course.audience = f.text("audience", false, report).unwrap_or_default();
        }
        _ => {
            report.add(&path, 1, format!("missing required field 'course' (a map with id and title) in {SKILLS_FILE}"))
        }
    }
    if lib.courses.contains_key(&course.id) {
        report.add(&path, top.line_of("course"), format!("duplicate course id '{}'", course.id));
        return None;
    }

    let skills = top.list("skills", true, report).unwrap_or_default();
    if skills.is_empty() && top.get("skills").is_some() {
        report.add(&path, top.line_of("skills"), "a course needs at least one skill");
    }
    let skills_from = key_line(&text, "skills", 0).unwrap_or(0);
    let mut search_from = skills_from;
    for entry in skills {
        let Value::Mapping(sm) = entry else {
            report.add(&path, 1 + skills_from, "every entry of 'skills' must be a map with id, name, description");
            continue;
        };
        let raw_id = sm.get("id").and_then(Value::as_str).unwrap_or("");
        let from = key_line(&text, "id", search_from)
            .filter(|_| !raw_id.is_empty())
            .map_or(search_from, |n| text_line(&text, raw_id, n).unwrap_or(n));
        search_from = from + 1;
        let f = top.nested(sm, from, "skill");
        f.check_keys(&["id", "name", "description", "prerequisites", "bkt"], report);
        let Some(id_text) = f.text("id", true, report) else {
            continue;
        };
        let id = match SkillId::parse(&id_text) {
            Ok(id) => id,
            Err(e) => {
                report.add(&path, f.line_of("id"), e.0);
                continue;
            }
        };
        let line = f.start_line();
        let name = f.text("name", true, report).unwrap_or_default();
        let description = f.text("description", false, report).unwrap_or_default();
        let mut prerequisites = Vec::new();
        for p in f.text_list("prerequisites", false, report).unwrap_or_default() {
            match SkillId::parse(&p) {
                Ok(p) => prerequisites.push(p),
                Err(e) => report.add(&path, f.line_of("prerequisites"), e.0),
            }
        }
        let bkt = match f.get("bkt") {
            None => None,
            Some(v) => {
                match serde_yaml::from_value::<BktParams>(v.clone()) {
                    Ok(b)
                        if [b.prior, b.slip, b.guess].iter().all(|p| *p > 0.0 && *p < 1.0)
                            && (0.0..1.0).contains(&b.learn) =>
                    {
                        if b.slip + b.guess >= 1.0 {
                            report.add(&path, f.line_of("bkt"), "bkt: slip + guess must be below 1, or a right answer would be evidence against knowing");
                        }
                        Some(b)
                    }
                    Ok(_) => {
                        report.add(
                            &path,
                            f.line_of("bkt"),
                            "bkt: prior, slip and guess must each be strictly between 0 and 1, and learn at least 0 and below 1",
                        );
                        None
                    }
                    Err(e) => {
                        report.add(&path, f.line_of("bkt"), format!("bkt: {e} (expected prior, learn, slip, guess)"));
                        None
                    }
                }
            }
        };
        if let Some((other, other_line)) = skill_lines.get(&id) {
            report.add(
                &path,
                line,
                format!("duplicate skill id '{id}' (first defined at {}:{other_line})", other.display()),
            );
            continue;
        }
        skill_lines.insert(id.clone(), (path.clone(), line));
        course.skills.push(id.clone());
        lib.skills.insert(id.clone(), Skill { id, course: course.id.clone(), name, description, prerequisites, bkt });
    }
    let id = course.id.clone();
    lib.courses.insert(id.clone(), course);
    Some(id)
}

/// Unknown prerequisites and cycles, each cycle named once.
fn check_prerequisites(lib: &Library, lines: &HashMap<SkillId, (PathBuf, usize)>, report: &mut Report) {
    for skill in lib.skills.values() {
        for p in &skill.prerequisites {
            if !lib.skills.contains_key(p) {
                let (path, line) = &lines[&skill.id];
                report.add(path, *line, format!("skill '{}' has unknown prerequisite '{p}'", skill.id));
            }
        }
    }
    // iterative-free DFS with colours; skills are few, recursion depth is bounded by their count
    #[derive(Clone, Copy, PartialEq)]
    enum Colour {
        White,
        Grey,
        Black,
    }
    fn visit<'a>(
        id: &'a SkillId,
        lib: &'a Library,
        colour: &mut HashMap<&'a SkillId, Colour>,
        stack: &mut Vec<&'a SkillId>,
        cycles: &mut BTreeSet<Vec<SkillId>>,
    ) {
        colour.insert(id, Colour::Grey);
        stack.push(id);
        for p in lib.skills.get(id).map(|s| s.prerequisites.as_slice()).unwrap_or_default() {
            match colour.get(p).copied().unwrap_or(Colour::White) {
                Colour::White if lib.skills.contains_key(p) => visit(p, lib, colour, stack, cycles),
                Colour::Grey => {
                    let start = stack.iter().position(|s| *s == p).unwrap_or(0);
                    let mut cycle: Vec<SkillId> = stack[start..].iter().map(|s| (*s).clone()).collect();
                    // canonical rotation so the same cycle found twice is reported once
                    let min = cycle.iter().enumerate().min_by_key(|(_, s)| *s).map_or(0, |(i, _)| i);
                    cycle.rotate_left(min);
                    cycles.insert(cycle);
                }
                _ => {}
            }
        }
        stack.pop();
        colour.insert(id, Colour::Black);
    }
    let mut colour = HashMap::new();
    let mut cycles = BTreeSet::new();
    for id in lib.skills.keys() {
        if colour.get(id).copied().unwrap_or(Colour::White) == Colour::White {
            visit(id, lib, &mut colour, &mut Vec::new(), &mut cycles);
        }
    }
    for cycle in cycles {
        let (path, line) = &lines[&cycle[0]];
        let mut names: Vec<&str> = cycle.iter().map(SkillId::as_str).collect();
        names.push(cycle[0].as_str());
        // edges point from a skill to its prerequisite
        report.add(path, *line, format!("prerequisite cycle: {} (each skill requires the next)", names.join(" -> ")));
    }
}

struct ParsedComponent {
    path: PathBuf,
    course: String,
    /// `None` when the file has problems; its skills are still checked.
    component: Option<Component>,
    keys: Vec<(String, AnswerKey)>,
    id_line: usize,
    skill_lines: Vec<(SkillId, usize)>,
}

const COMPONENT_FIELDS: &[&str] = &["id", "title", "skills", "level", "format", "objectives", "items"];
const ITEM_FIELDS: &[&str] = &["id", "prompt", "demand", "answer", "accept", "explanation", "hints", "misconceptions"];

fn parse_component_file(path: &Path, course: &str, opts: &LoadOptions, report: &mut Report) -> Option<ParsedComponent> {
    let text = read_text(path, opts, report)?;
    let mut lines = text.split_inclusive('\n');
    if lines.next().map(str::trim_end) != Some("---") {
        report.add(path, 1, "missing front matter: a component starts with a line '---', then YAML, then '---'");
        return None;
    }
    let mut fm_len = 0; // bytes of front matter text
    let mut fm_lines = 0;
    let mut closed = false;
    for l in lines.by_ref() {
        if matches!(l.trim_end(), "---" | "...") {
            closed = true;
            break;
        }
        fm_len += l.len();
        fm_lines += 1;
    }
    if !closed {
        report.add(path, 1, "front matter is not closed: add a line '---' after the YAML");
        return None;
    }
    let fm_start = text.find('\n').map_or(text.len(), |i| i + 1);
    let fm = &text[fm_start..fm_start + fm_len];
    let body: String = lines.collect();
    let body_line = 2 + fm_lines + 1; // '---', front matter, '---'

    let value = parse_yaml(fm, path, 2, report)?;
    let Value::Mapping(map) = &value else {
        report.add(path, 2, "front matter must be a YAML map of fields (id, title, skills, level, format, ...)");
        return None;
    };
    let f = Fields { map, text: fm, base: 2, from: 0, path, what: "front matter" };
    let errors_before = report.0.len();
    f.check_keys(COMPONENT_FIELDS, report);

    let id_line = f.line_of("id");
    let id = f
        .text("id", true, report)
        .and_then(|s| ComponentId::parse(&s).map_err(|e| report.add(path, id_line, e.0)).ok());
    let title = f.text("title", true, report);
    let mut skills = Vec::new();
    let mut skill_lines = Vec::new();
    if let Some(list) = f.text_list("skills", true, report) {
        if list.is_empty() {
            report.add(path, f.line_of("skills"), "a component needs at least one skill");
        }
        let from = key_line(fm, "skills", 0).unwrap_or(0);
        for s in list {
            let line = 2 + text_line(fm, &s, from).unwrap_or(from);
            match SkillId::parse(&s) {
                Ok(id) => {
                    skill_lines.push((id.clone(), line));
                    skills.push(id);
                }
                Err(e) => report.add(path, line, e.0),
            }
        }
    }
    let level = f
        .text("level", true, report)
        .and_then(|s| s.parse::<Level>().map_err(|e| report.add(path, f.line_of("level"), e.0)).ok());
    let format = f
        .text("format", true, report)
        .and_then(|s| s.parse::<Format>().map_err(|e| report.add(path, f.line_of("format"), e.0)).ok());
    let objectives = f.text_list("objectives", false, report).unwrap_or_default();

    if body.trim().is_empty() {
        report.add(path, body_line, "empty body: write the component's Markdown after the front matter");
    }

    let (items, keys) = parse_items(&f, format, report);
    let valid = report.0.len() == errors_before;
    let component = match (id, title, level, format) {
        (Some(id), Some(title), Some(level), Some(format)) if valid => Some(Component {
            id,
            course: course.to_owned(),
            title,
            skills,
            level,
            format,
            objectives,
            body,
            items,
            path: path.to_owned(),
        }),
        _ => None,
    };
    Some(ParsedComponent { path: path.to_owned(), course: course.to_owned(), component, keys, id_line, skill_lines })
}

fn parse_items(
    f: &Fields<'_>,
    format: Option<Format>,
    report: &mut Report,
) -> (Vec<ExerciseItem>, Vec<(String, AnswerKey)>) {
    let mut items = Vec::new();
    let mut keys = Vec::new();
    let is_exercise = format == Some(Format::Exercise);
    let Some(list) = f.list("items", false, report) else {
        return (items, keys);
    };
    if !is_exercise {
        if !list.is_empty() && format.is_some() {
            report.add(f.path, f.line_of("items"), "only exercises carry 'items'");
        }
        return (items, keys);
    }
    if list.is_empty() {
        report.add(
            f.path,
            f.line_of("format"),
            "exercise without items: add 'items' with prompt, demand and answer key",
        );
        return (items, keys);
    }
    let items_from = key_line(f.text, "items", 0).unwrap_or(0);
    let mut search_from = items_from;
    let mut seen = BTreeMap::new();
    for entry in list {
        let Value::Mapping(im) = entry else {
            report.add(
                f.path,
                f.base + items_from,
                "every entry of 'items' must be a map with id, prompt, demand, answer",
            );
            continue;
        };
        let raw_id = im.get("id").and_then(Value::as_str).unwrap_or("");
        let from = key_line(f.text, "id", search_from)
            .filter(|_| !raw_id.is_empty())
            .map_or(search_from, |n| text_line(f.text, raw_id, n).unwrap_or(n));
        search_from = from + 1;
        let it = f.nested(im, from, "exercise item");
        it.check_keys(ITEM_FIELDS, report);
        let Some(id) = it.text("id", true, report) else {
            continue;
        };
        if ComponentId::parse(&id).is_err() {
            report.add(
                f.path,
                it.line_of("id"),
                format!("illegal item id '{id}': use a lowercase slug (a-z, 0-9, '-')"),
            );
        }
        if let Some(first) = seen.insert(id.clone(), it.start_line()) {
            report.add(f.path, it.start_line(), format!("duplicate item id '{id}' (first at line {first})"));
        }
        let prompt = it.text("prompt", true, report);
        let demand = it
            .text("demand", true, report)
            .and_then(|s| s.parse::<Demand>().map_err(|e| report.add(f.path, it.line_of("demand"), e.0)).ok());
        let answer = match it.scalar("answer", false, report) {
            Some(a) if !a.trim().is_empty() => Some(a.trim().to_owned()),
            _ => {
                report.add(f.path, it.start_line(), format!("exercise item '{id}' has no answer key: add 'answer'"));
                None
            }
        };
        let accept = it.text_list("accept", false, report).unwrap_or_default();
        let explanation = it.text("explanation", false, report);
        let hints = it.text_list("hints", false, report).unwrap_or_default();
        let mut misconceptions = Vec::new();
        for m in it.list("misconceptions", false, report).unwrap_or_default() {
            let parsed = m.as_mapping().and_then(|mm| {
                let r = mm.get("response").and_then(value_text)?;
                let d = mm.get("diagnosis").and_then(value_text)?;
                Some(Misconception { response: r, diagnosis: d })
            });
            match parsed {
                Some(m) => misconceptions.push(m),
                None => report.add(
                    f.path,
                    it.line_of("misconceptions"),
                    "every misconception needs 'response' and 'diagnosis'",
                ),
            }
        }
        if let (Some(prompt), Some(demand), Some(answer)) = (prompt, demand, answer) {
            items.push(ExerciseItem { id: id.clone(), prompt, demand });
            keys.push((id, AnswerKey { answer, accept, explanation, hints, misconceptions }));
        }
    }
    (items, keys)
}

fn value_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}
