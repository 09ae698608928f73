//! Content analytics for educators: aggregates only, per course and per group (a class, a team),
//! never per learner. Every figure is computed over some learners; a figure over fewer than
//! `min_group` of them is [`Figure::Suppressed`], never a number — and so is a second figure
//! of the same partition when exactly one was suppressed, so that no suppressed figure can be
//! recovered by subtracting the others from a total (a course total minus its other groups, a
//! skill's attempts minus its other demands or components).
//!
//! [`Analytics::load`] reads the aggregates of one course from the learner database with a few
//! grouped queries (the work is done by the database); [`Analytics::skills`] and
//! [`Analytics::components`] shape them for a view (the course, or one group) and suppress.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use sqlx::Row;

use crate::config::PassportConfig;
use crate::content::{ComponentId, Demand, Library, SkillId};
use crate::db::{Database, StoreError};
use crate::passport::{Band, normalize_answer, week_start};

/// A learner's group in a course; `None` for learners with no group.
type Grp = Option<String>;

/// A number (a whole number as an integer), or suppressed because it is computed over too few
/// learners.
#[derive(Debug, Clone, Copy, PartialEq, schemars::JsonSchema)]
#[serde(untagged)]
pub enum Figure {
    Value(f64),
    /// Always the text `suppressed`.
    Suppressed(Suppressed),
    /// `null`: nothing to compute it over (a rate over no answers).
    Empty(()),
}

/// The marker of a suppressed figure.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Suppressed {
    Suppressed,
}

impl Serialize for Figure {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Figure::Value(v) if v.fract() == 0.0 && v.abs() < 9e15 => s.serialize_i64(*v as i64),
            Figure::Value(v) => s.serialize_f64(*v),
            Figure::Suppressed(m) => m.serialize(s),
            Figure::Empty(()) => s.serialize_none(),
        }
    }
}

impl Figure {
    const SUPPRESSED: Figure = Figure::Suppressed(Suppressed::Suppressed);

    /// The value if it may be shown (`null` when there is nothing to compute it over).
    fn shown(show: bool, value: f64) -> Self {
        match (show, value.is_finite()) {
            (false, _) => Figure::SUPPRESSED,
            (true, true) => Figure::Value(value),
            (true, false) => Figure::Empty(()),
        }
    }

    /// The value, when shown.
    pub fn value(self) -> Option<f64> {
        match self {
            Figure::Value(v) => Some(v),
            _ => None,
        }
    }

    /// The figure as a CSV cell.
    fn cell(self, decimals: usize) -> String {
        match self {
            Figure::Value(v) => format!("{v:.decimals$}"),
            Figure::Suppressed(_) => "suppressed".into(),
            Figure::Empty(()) => String::new(),
        }
    }
}

/// Answers, over some learners.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Tally {
    learners: u64,
    attempts: u64,
    wrong: u64,
    hints: u64,
}

impl std::ops::AddAssign for Tally {
    fn add_assign(&mut self, o: Self) {
        self.learners += o.learners;
        self.attempts += o.attempts;
        self.wrong += o.wrong;
        self.hints += o.hints;
    }
}

/// Whether a figure over `learners` may be shown: over none (it says nothing about anyone), or
/// over at least `min`.
fn enough(learners: u64, min: u64) -> bool {
    learners == 0 || learners >= min
}

/// Which learners a view is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum View {
    Course,
    Group(String),
}

/// A figure's value per group; the view's value is the group's, or their sum.
#[derive(Debug, Clone, Default)]
struct ByGroup<T>(BTreeMap<Grp, T>);

impl ByGroup<Tally> {
    fn add(&mut self, g: Grp, t: Tally) {
        *self.0.entry(g).or_default() += t;
    }

    fn total(&self) -> Tally {
        let mut t = Tally::default();
        for v in self.0.values() {
            t += *v;
        }
        t
    }

    /// The view's tally, and whether it may be shown: enough learners, and not the one group
    /// whose figure could be recovered from the total and the other groups.
    fn view(&self, view: &View, min: u64) -> (Tally, bool) {
        let total = self.total();
        match view {
            View::Course => (total, enough(total.learners, min)),
            View::Group(g) => {
                let key = Some(g.clone());
                let t = self.0.get(&key).copied().unwrap_or_default();
                let counts: Vec<(Grp, u64)> = self.0.iter().map(|(k, v)| (k.clone(), v.learners)).collect();
                (t, !suppressed_parts(&counts, min).contains(&key) && enough(t.learners, min))
            }
        }
    }
}

/// The parts of a partition that are suppressed: those over fewer than `min` learners, and
/// when that is exactly one, the smallest other part too (else the total minus the others
/// gives it away).
fn suppressed_parts<K: Ord + Clone>(parts: &[(K, u64)], min: u64) -> BTreeSet<K> {
    let mut out: BTreeSet<K> = parts.iter().filter(|(_, n)| *n > 0 && *n < min).map(|(k, _)| k.clone()).collect();
    if out.len() == 1
        && let Some((k, _)) =
            parts.iter().filter(|(k, n)| *n > 0 && !out.contains(k)).min_by_key(|(k, n)| (*n, k.clone()))
    {
        out.insert(k.clone());
    }
    out
}

/// A misconception learners showed on an item.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct MisconceptionCount {
    pub component: String,
    pub item: String,
    pub diagnosis: String,
    /// Learners who gave it; only misconceptions of at least `min_group` learners are listed.
    pub learners: u64,
}

/// Results on items of one cognitive demand, for the view's learners.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct DemandCell {
    pub learners: Figure,
    pub attempts: Figure,
    pub wrong_rate: Figure,
}

/// One skill of the course.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct SkillRow {
    pub skill: String,
    pub name: String,
    /// Learners with answers on the skill.
    pub learners: Figure,
    pub attempts: Figure,
    pub wrong_rate: Figure,
    pub hints_per_answer: Figure,
    pub flags_opened: Figure,
    /// Median hours from a learner's first answer on the skill to proficient, over the learners
    /// who got there.
    pub median_hours_to_proficient: Figure,
    /// Results by cognitive demand: `recall`, `application`, `reasoning`.
    pub demand: BTreeMap<Demand, DemandCell>,
    /// The most common misconceptions, most learners first (at most 3).
    pub misconceptions: Vec<MisconceptionCount>,
}

/// Bands of the view's learners' skills in one week.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct WeekBands {
    /// The Monday the week starts, `YYYY-MM-DD`.
    pub week: String,
    /// Learners who answered that week.
    pub learners: Figure,
    /// Share of those learners' (learner, skill) pairs in each band at the end of the week.
    pub bands: BTreeMap<Band, Figure>,
}

/// A group of the course, and its size.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct GroupSize {
    pub group: String,
    pub learners: Figure,
}

/// `GET /v1/analytics/skills`.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct SkillsReport {
    pub course: String,
    /// The group the figures are about; absent for the whole course.
    pub group: Option<String>,
    pub min_group: u64,
    /// Learners of the view with any activity in the course.
    pub learners: Figure,
    pub groups: Vec<GroupSize>,
    pub skills: Vec<SkillRow>,
    /// The last 12 weeks with answers, oldest first.
    pub progression: Vec<WeekBands>,
}

/// One component of the course.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct ComponentRow {
    pub component: String,
    pub title: String,
    pub format: String,
    pub skills: Vec<String>,
    pub learners: Figure,
    pub attempts: Figure,
    pub wrong_rate: Figure,
    pub hints_per_answer: Figure,
    pub flags_opened: Figure,
    pub misconceptions: Vec<MisconceptionCount>,
}

/// Where learners stop.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct DropOff {
    pub component: String,
    pub title: String,
    /// Learners whose last activity in the course was here, and none since for `dropoff_days`.
    pub learners: Figure,
}

/// `GET /v1/analytics/components`.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct ComponentsReport {
    pub course: String,
    pub group: Option<String>,
    pub min_group: u64,
    pub dropoff_days: u64,
    pub components: Vec<ComponentRow>,
    /// Learners gone quiet, and the components most often last seen, most first.
    pub quiet_learners: Figure,
    pub dropoff: Vec<DropOff>,
}

/// The aggregates of one course, per group, as read from the database.
#[derive(Debug, Default)]
pub struct Analytics {
    course: String,
    min: u64,
    dropoff_days: u64,
    /// Learners with activity in the course, per group.
    learners: ByGroup<Tally>,
    /// Answers per item and group, and per (item, wrong response) the learners who gave it.
    items: BTreeMap<(String, String), ByGroup<Tally>>,
    responses: BTreeMap<(String, String, String), ByGroup<Tally>>,
    /// Distinct learners per component and group (answers, views, anything).
    component_learners: BTreeMap<String, ByGroup<Tally>>,
    /// Per skill and demand: attempts, wrong, distinct learners.
    demand: BTreeMap<(String, Demand), ByGroup<Tally>>,
    /// Per skill: learners with evidence.
    skill_learners: BTreeMap<String, ByGroup<Tally>>,
    /// Per skill: (minutes from first answer to proficient, learners who took that long).
    to_proficient: BTreeMap<String, BTreeMap<Grp, Vec<(i64, u64)>>>,
    /// Flags opened per (skill, component) and group.
    flags: BTreeMap<(String, Option<String>), ByGroup<Tally>>,
    /// Per week: learners, and (learner, skill) pairs per band.
    weeks: BTreeMap<i64, BTreeMap<Grp, (u64, [u64; 4])>>,
    /// Quiet learners per last component.
    quiet: BTreeMap<String, ByGroup<Tally>>,
}

/// Weeks of progression shown.
const WEEKS_SHOWN: i64 = 12;

fn int(r: &sqlx::any::AnyRow, col: &str) -> Result<u64, StoreError> {
    Ok(r.try_get::<Option<i64>, _>(col)?.unwrap_or(0).max(0) as u64)
}

/// `$first, $first+1, …` for `n` values.
fn params(first: usize, n: usize) -> String {
    (first..first + n).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}

impl Analytics {
    /// Reads the aggregates of `course` (which must be in `lib`).
    pub async fn load(
        db: &Database,
        lib: &Library,
        course: &str,
        cfg: &PassportConfig,
        min_group: u64,
        dropoff_days: u64,
        now: i64,
    ) -> Result<Self, StoreError> {
        let mut a = Analytics { course: course.to_owned(), min: min_group.max(1), dropoff_days, ..Self::default() };
        let Some(c) = lib.courses.get(course) else {
            return Ok(a);
        };
        let components: Vec<String> = c.components.iter().map(|c| c.to_string()).collect();
        let skills: Vec<String> = c.skills.iter().map(|s| s.to_string()).collect();
        if components.is_empty() {
            return Ok(a);
        }
        let pool = db.pool();
        fn bind<'q>(
            sql: &'q str,
            course: &str,
            values: &[String],
        ) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
            let mut q = sqlx::query(sql).persistent(false).bind(course.to_owned());
            for v in values {
                q = q.bind(v.clone());
            }
            q
        }
        fn bind_values<'q>(
            sql: &'q str,
            values: &[String],
        ) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
            let mut q = sqlx::query(sql).persistent(false);
            for v in values {
                q = q.bind(v.clone());
            }
            q
        }
        if skills.is_empty() {
            return Ok(a);
        }
        // the group of a row: NULL or '' for none
        let g = |r: &sqlx::any::AnyRow| -> Result<Grp, StoreError> {
            Ok(r.try_get::<Option<String>, _>("grp")?.filter(|g| !g.is_empty()))
        };
        let in_skills = params(1, skills.len());
        let skill_learners = format!(
            "SELECT skill, grp, COUNT(*) AS learners FROM skill_states \
             WHERE skill IN ({in_skills}) AND evidence > 0 GROUP BY skill, grp"
        );
        let to_proficient = format!(
            "SELECT skill, grp, (proficient_at - first_at) / 60000 AS minutes, COUNT(*) AS n FROM skill_states \
             WHERE skill IN ({in_skills}) AND proficient_at IS NOT NULL AND first_at > 0 \
             GROUP BY skill, grp, (proficient_at - first_at) / 60000"
        );
        // bands per week, of the (learner, skill) pairs with answers that week
        let week_bands = format!(
            "SELECT week, grp, \
             CAST(SUM(CASE WHEN mastery < {d} THEN 1 ELSE 0 END) AS BIGINT) AS b0, \
             CAST(SUM(CASE WHEN mastery >= {d} AND mastery < {p} THEN 1 ELSE 0 END) AS BIGINT) AS b1, \
             CAST(SUM(CASE WHEN mastery >= {p} AND mastery < {m} THEN 1 ELSE 0 END) AS BIGINT) AS b2, \
             CAST(SUM(CASE WHEN mastery >= {m} THEN 1 ELSE 0 END) AS BIGINT) AS b3 \
             FROM mastery_weeks WHERE skill IN ({in_skills}) GROUP BY week, grp",
            d = cfg.developing,
            p = cfg.proficient,
            m = cfg.mastered,
        );
        let quiet_since = now - (dropoff_days as i64) * 86_400_000;
        // the queries are independent: they run at once, on as many connections as the pool has
        let (learners, items, responses, components, demands, skill_rows, proficient, weeks, week_learners, flags, quiet) = tokio::try_join!(
            bind("SELECT grp, COUNT(*) AS n FROM learner_courses WHERE course = $1 GROUP BY grp", course, &[]).fetch_all(pool),
            bind("SELECT component, item, grp, attempts, wrong, hints FROM item_stats WHERE course = $1", course, &[])
                .fetch_all(pool),
            bind(
                "SELECT component, item, response, grp, COUNT(*) AS n FROM learner_misconceptions WHERE course = $1 \
                 GROUP BY component, item, response, grp",
                course,
                &[]
            )
            .fetch_all(pool),
            bind(
                "SELECT component, grp, COUNT(*) AS n FROM learner_components WHERE course = $1 GROUP BY component, grp",
                course,
                &[]
            )
            .fetch_all(pool),
            bind(
                "SELECT skill, demand, grp, COUNT(*) AS n FROM learner_demands WHERE course = $1 GROUP BY skill, demand, grp",
                course,
                &[]
            )
            .fetch_all(pool),
            bind_values(&skill_learners, &skills).fetch_all(pool),
            bind_values(&to_proficient, &skills).fetch_all(pool),
            bind_values(&week_bands, &skills).fetch_all(pool),
            bind("SELECT week, grp, COUNT(*) AS n FROM learner_weeks WHERE course = $1 GROUP BY week, grp", course, &[])
                .fetch_all(pool),
            bind(
                "SELECT f.skill, f.component, lc.grp AS grp, COUNT(*) AS n, COUNT(DISTINCT f.learner) AS learners \
                 FROM flags f LEFT JOIN learner_courses lc ON lc.learner = f.learner AND lc.course = f.course \
                 WHERE f.course = $1 GROUP BY f.skill, f.component, lc.grp",
                course,
                &[]
            )
            .fetch_all(pool),
            sqlx::query(
                "SELECT last_component, grp, COUNT(*) AS n FROM learner_courses WHERE course = $1 AND last_at < $2 \
                 GROUP BY last_component, grp",
            )
            .persistent(false)
            .bind(course.to_owned())
            .bind(quiet_since)
            .fetch_all(pool),
        )?;
        let count = |r: &sqlx::any::AnyRow, col: &str| -> Result<Tally, StoreError> {
            Ok(Tally { learners: int(r, col)?, ..Tally::default() })
        };
        for r in &learners {
            a.learners.add(g(r)?, count(r, "n")?);
        }
        for r in &items {
            let key = (r.try_get::<String, _>("component")?, r.try_get::<String, _>("item")?);
            let t =
                Tally { learners: 0, attempts: int(r, "attempts")?, wrong: int(r, "wrong")?, hints: int(r, "hints")? };
            a.items.entry(key).or_default().add(g(r)?, t);
        }
        for r in &responses {
            let key = (r.try_get("component")?, r.try_get("item")?, r.try_get("response")?);
            a.responses.entry(key).or_default().add(g(r)?, count(r, "n")?);
        }
        for r in &components {
            a.component_learners.entry(r.try_get("component")?).or_default().add(g(r)?, count(r, "n")?);
        }
        // per skill and demand: learners from their rollup, answers from the items'
        for r in &demands {
            let Ok(demand) = r.try_get::<String, _>("demand")?.parse::<Demand>() else { continue };
            a.demand.entry((r.try_get("skill")?, demand)).or_default().add(g(r)?, count(r, "n")?);
        }
        for ((component, item), by) in &a.items {
            let Some(comp) = ComponentId::parse(component).ok().and_then(|id| lib.components.get(&id)) else {
                continue;
            };
            let Some(it) = comp.items.iter().find(|i| &i.id == item) else { continue };
            for skill in &comp.skills {
                let cell = a.demand.entry((skill.to_string(), it.demand)).or_default();
                for (grp, t) in &by.0 {
                    cell.add(grp.clone(), Tally { learners: 0, ..*t });
                }
            }
        }
        for r in &skill_rows {
            a.skill_learners.entry(r.try_get("skill")?).or_default().add(g(r)?, count(r, "learners")?);
        }
        for r in &proficient {
            let minutes = r.try_get::<Option<i64>, _>("minutes")?.unwrap_or(0).max(0);
            let entry = a.to_proficient.entry(r.try_get("skill")?).or_default().entry(g(r)?).or_default();
            entry.push((minutes, int(r, "n")?));
        }
        for r in &weeks {
            let week: i64 = r.try_get("week")?;
            let bands = [int(r, "b0")?, int(r, "b1")?, int(r, "b2")?, int(r, "b3")?];
            a.weeks.entry(week).or_default().entry(g(r)?).or_default().1 = bands;
        }
        for r in &week_learners {
            let week: i64 = r.try_get("week")?;
            a.weeks.entry(week).or_default().entry(g(r)?).or_default().0 = int(r, "n")?;
        }
        while a.weeks.len() as i64 > WEEKS_SHOWN {
            a.weeks.pop_first();
        }
        for r in &flags {
            a.flags
                .entry((r.try_get("skill")?, r.try_get("component")?))
                .or_default()
                .add(g(r)?, Tally { learners: int(r, "learners")?, attempts: int(r, "n")?, ..Tally::default() });
        }
        for r in &quiet {
            a.quiet.entry(r.try_get("last_component")?).or_default().add(g(r)?, count(r, "n")?);
        }
        Ok(a)
    }

    /// The groups of the course, largest first (groups below the minimum are suppressed, and
    /// so is a second one when only one is).
    fn groups(&self) -> Vec<GroupSize> {
        let counts: Vec<(Grp, u64)> = self.learners.0.iter().map(|(k, v)| (k.clone(), v.learners)).collect();
        let hidden = suppressed_parts(&counts, self.min);
        let mut out: Vec<(u64, GroupSize)> = counts
            .iter()
            .filter_map(|(g, n)| {
                let name = g.clone()?;
                let show = !hidden.contains(g) && *n >= self.min;
                Some((if show { *n } else { 0 }, GroupSize { group: name, learners: Figure::shown(show, *n as f64) }))
            })
            .collect();
        out.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.group.cmp(&b.1.group)));
        out.into_iter().map(|(_, g)| g).collect()
    }

    /// The misconceptions on these items with at least `min` learners of the view, most first.
    fn misconceptions(&self, lib: &Library, view: &View, on: impl Fn(&str) -> bool) -> Vec<MisconceptionCount> {
        let mut out = Vec::new();
        for ((component, item, response), by) in &self.responses {
            if !on(component) {
                continue;
            }
            let (t, show) = by.view(view, self.min);
            if !show {
                continue;
            }
            let Ok(cid) = ComponentId::parse(component) else { continue };
            let Some(key) = lib.answer_key(&cid, item) else { continue };
            if let Some(m) = key.misconceptions.iter().find(|m| normalize_answer(&m.response) == *response) {
                out.push(MisconceptionCount {
                    component: component.clone(),
                    item: item.clone(),
                    diagnosis: m.diagnosis.clone(),
                    learners: t.learners,
                });
            }
        }
        out.sort_by(|a, b| b.learners.cmp(&a.learners).then_with(|| a.component.cmp(&b.component)));
        out.truncate(3);
        out
    }

    /// Learners of the view.
    fn view_learners(&self, view: &View) -> Figure {
        let (t, show) = self.learners.view(view, self.min);
        Figure::shown(show, t.learners as f64)
    }

    /// Answers on these components, summed per group.
    fn answers_on(&self, on: impl Fn(&str) -> bool) -> ByGroup<Tally> {
        let mut by = ByGroup::default();
        for ((component, _), items) in &self.items {
            if on(component) {
                for (g, t) in &items.0 {
                    by.add(g.clone(), *t);
                }
            }
        }
        by
    }

    fn flags_on(&self, on: impl Fn(&str, Option<&str>) -> bool) -> ByGroup<Tally> {
        let mut by = ByGroup::default();
        for ((skill, component), f) in &self.flags {
            if on(skill, component.as_deref()) {
                for (g, t) in &f.0 {
                    by.add(g.clone(), Tally { learners: 0, ..*t });
                }
            }
        }
        by
    }

    /// The skills report for a view.
    pub fn skills(&self, lib: &Library, view: &View) -> SkillsReport {
        let course = lib.courses.get(&self.course);
        let mut rows = Vec::new();
        for skill in course.map(|c| c.skills.as_slice()).unwrap_or_default() {
            let id = skill.to_string();
            let comps: BTreeSet<String> = lib
                .components
                .values()
                .filter(|c| c.course == self.course && c.skills.contains(skill))
                .map(|c| c.id.to_string())
                .collect();
            let (who, show) = self.skill_learners.get(&id).unwrap_or(&ByGroup::default()).view(view, self.min);
            let answers = self.answers_on(|c| comps.contains(c));
            let (ans, _) = answers.view(view, self.min);
            let (flags, _) = self.flags_on(|s, _| s == id).view(view, 0);
            let rate = |n: u64, d: u64| if d == 0 { f64::NAN } else { n as f64 / d as f64 };
            // demand cells: each over its own learners; one suppressed cell takes another with it
            let cells: Vec<(Demand, Tally, bool)> = Demand::ALL
                .iter()
                .map(|d| {
                    let (t, ok) =
                        self.demand.get(&(id.clone(), *d)).unwrap_or(&ByGroup::default()).view(view, self.min);
                    (*d, t, ok && show)
                })
                .collect();
            let parts: Vec<(Demand, u64)> =
                cells.iter().map(|(d, t, ok)| (*d, if *ok { t.learners } else { u64::from(t.attempts > 0) })).collect();
            let hidden = suppressed_parts(&parts, self.min);
            let demand = cells
                .into_iter()
                .filter(|(_, t, _)| t.attempts > 0)
                .map(|(d, t, ok)| {
                    let ok = ok && !hidden.contains(&d);
                    (
                        d,
                        DemandCell {
                            learners: Figure::shown(ok, t.learners as f64),
                            attempts: Figure::shown(ok, t.attempts as f64),
                            wrong_rate: Figure::shown(ok, rate(t.wrong, t.attempts)),
                        },
                    )
                })
                .collect();
            let mut times: Vec<(i64, u64)> = match view {
                View::Course => self.to_proficient.get(&id).map(|m| m.values().flatten().copied().collect()),
                View::Group(g) => self.to_proficient.get(&id).and_then(|m| m.get(&Some(g.clone())).cloned()),
            }
            .unwrap_or_default();
            times.sort();
            let reached: u64 = times.iter().map(|t| t.1).sum();
            let median = median_minutes(&times, reached) / 60.0;
            rows.push(SkillRow {
                name: lib.skills.get(skill).map_or_else(|| id.clone(), |s| s.name.clone()),
                learners: Figure::shown(show, who.learners as f64),
                attempts: Figure::shown(show, ans.attempts as f64),
                wrong_rate: Figure::shown(show, rate(ans.wrong, ans.attempts)),
                hints_per_answer: Figure::shown(show, rate(ans.hints, ans.attempts)),
                flags_opened: Figure::shown(show, flags.attempts as f64),
                median_hours_to_proficient: Figure::shown(show && enough(reached, self.min), median),
                demand,
                misconceptions: if show { self.misconceptions(lib, view, |c| comps.contains(c)) } else { Vec::new() },
                skill: id,
            });
        }
        let progression = self
            .weeks
            .iter()
            .map(|(week, by)| {
                let parts: Vec<(Grp, u64)> = by.iter().map(|(g, (n, _))| (g.clone(), *n)).collect();
                let (n, bands, show) = match view {
                    View::Course => {
                        let n: u64 = by.values().map(|(n, _)| n).sum();
                        let mut b = [0u64; 4];
                        for (_, bs) in by.values() {
                            for i in 0..4 {
                                b[i] += bs[i];
                            }
                        }
                        (n, b, enough(n, self.min))
                    }
                    View::Group(g) => {
                        let key = Some(g.clone());
                        let (n, b) = by.get(&key).copied().unwrap_or_default();
                        (n, b, enough(n, self.min) && !suppressed_parts(&parts, self.min).contains(&key))
                    }
                };
                let pairs: u64 = bands.iter().sum();
                let share =
                    |i: usize| Figure::shown(show, if pairs == 0 { f64::NAN } else { bands[i] as f64 / pairs as f64 });
                WeekBands {
                    week: chrono::DateTime::from_timestamp_millis(week_start(*week))
                        .map(|d| d.format("%Y-%m-%d").to_string())
                        .unwrap_or_default(),
                    learners: Figure::shown(show, n as f64),
                    bands: [Band::Intro, Band::Developing, Band::Proficient, Band::Mastered]
                        .into_iter()
                        .enumerate()
                        .map(|(i, b)| (b, share(i)))
                        .collect(),
                }
            })
            .collect();
        SkillsReport {
            course: self.course.clone(),
            group: match view {
                View::Course => None,
                View::Group(g) => Some(g.clone()),
            },
            min_group: self.min,
            learners: self.view_learners(view),
            groups: self.groups(),
            skills: rows,
            progression,
        }
    }

    /// The components report for a view.
    pub fn components(&self, lib: &Library, view: &View) -> ComponentsReport {
        let course = lib.courses.get(&self.course);
        let ids: Vec<ComponentId> = course.map(|c| c.components.clone()).unwrap_or_default();
        let mut shown: BTreeMap<String, bool> = BTreeMap::new();
        let mut tallies: BTreeMap<String, (Tally, u64)> = BTreeMap::new();
        for id in &ids {
            let key = id.to_string();
            let (who, show) = self.component_learners.get(&key).unwrap_or(&ByGroup::default()).view(view, self.min);
            let (ans, _) = self.answers_on(|c| c == key).view(view, self.min);
            shown.insert(key.clone(), show);
            tallies.insert(key, (Tally { learners: who.learners, ..ans }, who.learners));
        }
        // a skill's attempts are the sum over its components: one suppressed component of a
        // skill takes the smallest other with it
        let mut changed = true;
        while changed {
            changed = false;
            let skills: BTreeSet<&SkillId> =
                ids.iter().filter_map(|i| lib.components.get(i)).flat_map(|c| &c.skills).collect();
            for skill in skills {
                let parts: Vec<(String, u64)> = ids
                    .iter()
                    .filter(|i| lib.components.get(*i).is_some_and(|c| c.skills.contains(skill)))
                    .map(|i| i.to_string())
                    .filter(|k| tallies.get(k).is_some_and(|(t, _)| t.attempts > 0))
                    .map(|k| {
                        let n = if shown[&k] { tallies[&k].1.max(self.min) } else { 1 };
                        (k, n)
                    })
                    .collect();
                for k in suppressed_parts(&parts, self.min) {
                    if shown.insert(k, false) == Some(true) {
                        changed = true;
                    }
                }
            }
        }
        let rate = |n: u64, d: u64| if d == 0 { f64::NAN } else { n as f64 / d as f64 };
        let components = ids
            .iter()
            .filter_map(|id| lib.components.get(id))
            .map(|c| {
                let key = c.id.to_string();
                let show = shown[&key];
                let (t, _) = tallies[&key];
                let (flags, _) = self.flags_on(|_, comp| comp == Some(key.as_str())).view(view, 0);
                ComponentRow {
                    title: c.title.clone(),
                    format: c.format.as_str().to_owned(),
                    skills: c.skills.iter().map(|s| s.to_string()).collect(),
                    learners: Figure::shown(show, t.learners as f64),
                    attempts: Figure::shown(show, t.attempts as f64),
                    wrong_rate: Figure::shown(show, rate(t.wrong, t.attempts)),
                    hints_per_answer: Figure::shown(show, rate(t.hints, t.attempts)),
                    flags_opened: Figure::shown(show, flags.attempts as f64),
                    misconceptions: if show { self.misconceptions(lib, view, |x| x == key) } else { Vec::new() },
                    component: key,
                }
            })
            .collect();
        // drop-off: quiet learners by last component; a partition of the quiet learners
        let mut quiet_total = ByGroup::default();
        let mut parts = Vec::new();
        let mut cells = Vec::new();
        for (component, by) in &self.quiet {
            for (g, t) in &by.0 {
                quiet_total.add(g.clone(), *t);
            }
            let (t, show) = by.view(view, self.min);
            parts.push((component.clone(), if show { t.learners } else { t.learners.min(self.min - 1) }));
            cells.push((component.clone(), t, show));
        }
        let hidden = suppressed_parts(&parts, self.min);
        let mut dropoff: Vec<(u64, DropOff)> = cells
            .into_iter()
            .filter(|(_, t, _)| t.learners > 0)
            .map(|(component, t, show)| {
                let show = show && !hidden.contains(&component);
                let title = ComponentId::parse(&component)
                    .ok()
                    .and_then(|id| lib.components.get(&id).map(|c| c.title.clone()))
                    .unwrap_or_else(|| component.clone());
                (
                    if show { t.learners } else { 0 },
                    DropOff { component, title, learners: Figure::shown(show, t.learners as f64) },
                )
            })
            .collect();
        dropoff.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.component.cmp(&b.1.component)));
        let (q, qshow) = quiet_total.view(view, self.min);
        ComponentsReport {
            course: self.course.clone(),
            group: match view {
                View::Course => None,
                View::Group(g) => Some(g.clone()),
            },
            min_group: self.min,
            dropoff_days: self.dropoff_days,
            components,
            quiet_learners: Figure::shown(qshow, q.learners as f64),
            dropoff: dropoff.into_iter().map(|(_, d)| d).collect(),
        }
    }
}

/// A skill an educator marked a priority for a course, or for one group of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Priority {
    pub skill: String,
    /// The group it is a priority for; absent: the whole course.
    pub group: Option<String>,
    /// `role:subject` of who set it, and when (ms since the Unix epoch).
    pub set_by: String,
    pub set_at: i64,
}

/// The course's priority skills (for every group, or the course as a whole).
pub async fn priorities(db: &Database, course: &str) -> Result<Vec<Priority>, StoreError> {
    sqlx::query("SELECT grp, skill, set_by, set_at FROM priorities WHERE course = $1 ORDER BY grp, skill")
        .bind(course.to_owned())
        .fetch_all(db.pool())
        .await?
        .iter()
        .map(|r| {
            let grp: String = r.try_get("grp")?;
            Ok(Priority {
                skill: r.try_get("skill")?,
                group: (!grp.is_empty()).then_some(grp),
                set_by: r.try_get("set_by")?,
                set_at: r.try_get("set_at")?,
            })
        })
        .collect()
}

/// The priority skills for a learner of `course` in `group`: the course's and the group's.
pub async fn priorities_for(db: &Database, course: &str, group: Option<&str>) -> Result<BTreeSet<SkillId>, StoreError> {
    Ok(priorities(db, course)
        .await?
        .into_iter()
        .filter(|p| p.group.is_none() || p.group.as_deref() == group)
        .filter_map(|p| SkillId::parse(&p.skill).ok())
        .collect())
}

/// The priority skills that apply to `learner` in `course`: the course's, and their group's.
pub async fn learner_priorities(db: &Database, learner: &str, course: &str) -> Result<BTreeSet<SkillId>, StoreError> {
    let group = group_of(db, learner, course).await?;
    priorities_for(db, course, group.as_deref()).await
}

/// The learner's group in a course, if they have one.
pub async fn group_of(db: &Database, learner: &str, course: &str) -> Result<Option<String>, StoreError> {
    Ok(sqlx::query("SELECT grp FROM learner_courses WHERE learner = $1 AND course = $2")
        .bind(learner.to_owned())
        .bind(course.to_owned())
        .fetch_optional(db.pool())
        .await?
        .map(|r| r.try_get::<Option<String>, _>(0))
        .transpose()?
        .flatten())
}

/// Replaces the priority skills of a course (`group` `None`) or of one group; skills already
/// set keep who set them and when.
pub async fn set_priorities(
    db: &Database,
    course: &str,
    group: Option<&str>,
    skills: &[SkillId],
    by: &str,
) -> Result<(), StoreError> {
    let grp = group.unwrap_or_default().to_owned();
    let _writer = db.write_guard().await;
    let mut tx = db.pool().begin().await?;
    let keep: Vec<String> = skills.iter().map(|s| s.to_string()).collect();
    let existing: Vec<String> = sqlx::query("SELECT skill FROM priorities WHERE course = $1 AND grp = $2")
        .bind(course.to_owned())
        .bind(grp.clone())
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| r.try_get::<String, _>(0))
        .collect::<Result<_, _>>()?;
    for old in existing.iter().filter(|s| !keep.contains(s)) {
        sqlx::query("DELETE FROM priorities WHERE course = $1 AND grp = $2 AND skill = $3")
            .bind(course.to_owned())
            .bind(grp.clone())
            .bind(old.clone())
            .execute(&mut *tx)
            .await?;
    }
    let now = crate::ids::now_ms();
    for new in keep.iter().filter(|s| !existing.contains(s)) {
        sqlx::query("INSERT INTO priorities (course, grp, skill, set_by, set_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(course.to_owned())
            .bind(grp.clone())
            .bind(new.clone())
            .bind(by.to_owned())
            .bind(now)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// The median of values given as sorted (value, count) pairs over `n` in all; NaN for none.
fn median_minutes(sorted: &[(i64, u64)], n: u64) -> f64 {
    if n == 0 {
        return f64::NAN;
    }
    // the values at ranks (n-1)/2 and n/2 (0-based), averaged
    let at = |rank: u64| {
        let mut seen = 0;
        for (v, c) in sorted {
            seen += c;
            if seen > rank {
                return *v as f64;
            }
        }
        sorted.last().map_or(f64::NAN, |(v, _)| *v as f64)
    };
    (at((n - 1) / 2) + at(n / 2)) / 2.0
}

/// A CSV field, quoted when it must be.
fn field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_owned() }
}

impl SkillsReport {
    /// The skills table as CSV: one row per skill, the demand cells as columns.
    pub fn csv(&self) -> String {
        let mut out = String::from(
            "skill,name,learners,attempts,wrong_rate,hints_per_answer,flags_opened,median_hours_to_proficient",
        );
        for d in Demand::ALL {
            out.push_str(&format!(",{d}_attempts,{d}_wrong_rate"));
        }
        out.push('\n');
        for r in &self.skills {
            out.push_str(&format!(
                "{},{},{},{},{},{},{},{}",
                field(&r.skill),
                field(&r.name),
                r.learners.cell(0),
                r.attempts.cell(0),
                r.wrong_rate.cell(3),
                r.hints_per_answer.cell(3),
                r.flags_opened.cell(0),
                r.median_hours_to_proficient.cell(1)
            ));
            for d in Demand::ALL {
                match r.demand.get(d) {
                    Some(c) => out.push_str(&format!(",{},{}", c.attempts.cell(0), c.wrong_rate.cell(3))),
                    None => out.push_str(",,"),
                }
            }
            out.push('\n');
        }
        out
    }
}

impl ComponentsReport {
    /// The components table as CSV.
    pub fn csv(&self) -> String {
        let mut out = String::from(
            "component,title,format,skills,learners,attempts,wrong_rate,hints_per_answer,flags_opened,last_seen_by_quiet_learners\n",
        );
        for r in &self.components {
            let quiet =
                self.dropoff.iter().find(|d| d.component == r.component).map_or(String::new(), |d| d.learners.cell(0));
            out.push_str(&format!(
                "{},{},{},{},{},{},{},{},{},{}\n",
                field(&r.component),
                field(&r.title),
                r.format,
                field(&r.skills.join(" ")),
                r.learners.cell(0),
                r.attempts.cell(0),
                r.wrong_rate.cell(3),
                r.hints_per_answer.cell(3),
                r.flags_opened.cell(0),
                quiet
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_of_counted_values() {
        assert_eq!(median_minutes(&[(10, 1), (20, 1), (30, 1)], 3), 20.0);
        assert_eq!(median_minutes(&[(10, 2), (40, 2)], 4), 25.0);
        assert_eq!(median_minutes(&[(5, 1), (7, 5)], 6), 7.0);
        assert!(median_minutes(&[], 0).is_nan());
    }

    #[test]
    fn one_small_part_takes_the_smallest_other_with_it() {
        let parts = [("a", 12), ("b", 3), ("c", 7), ("d", 9)];
        assert_eq!(suppressed_parts(&parts, 5), BTreeSet::from(["b", "c"]));
        // two small parts already hide each other
        let parts = [("a", 12), ("b", 3), ("c", 2)];
        assert_eq!(suppressed_parts(&parts, 5), BTreeSet::from(["b", "c"]));
        // none small: none hidden; empty parts do not count
        assert!(suppressed_parts(&[("a", 5), ("b", 0)], 5).is_empty());
    }

    #[test]
    fn a_group_is_hidden_when_the_course_total_would_give_it_away() {
        let mut by = ByGroup::default();
        by.add(Some("big".into()), Tally { learners: 20, attempts: 100, wrong: 10, hints: 0 });
        by.add(Some("mid".into()), Tally { learners: 8, attempts: 40, wrong: 30, hints: 0 });
        by.add(Some("tiny".into()), Tally { learners: 3, attempts: 15, wrong: 15, hints: 0 });
        assert!(by.view(&View::Course, 5).1);
        assert!(!by.view(&View::Group("tiny".into()), 5).1);
        // course − big would give tiny + mid, and mid alone would give tiny: mid is hidden too
        assert!(!by.view(&View::Group("mid".into()), 5).1);
        assert!(by.view(&View::Group("big".into()), 5).1);
    }
}
