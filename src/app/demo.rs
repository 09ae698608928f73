//! Demo data for the sample courses: learners in groups who view and answer the courses'
//! components over the past month (some struggle, some stop), so that a newcomer opening
//! `/educator` sees a populated review queue and charts. Every demo learner's id starts with
//! `demo-`; [`clear`] erases them all through the normal erase path. Deterministic: the same
//! content seeds the same data.

use std::sync::Arc;

use serde::Serialize;
use sqlx::Row;

use super::App;
use crate::agent::TurnRequest;
use crate::content::{Demand, Format, Library};
use crate::db::StoreError;
use crate::ids::now_ms;
use crate::passport::{Event, LearnerId, Verb};

/// The prefix that marks a demo learner.
pub const PREFIX: &str = "demo-";

/// What [`seed`] added.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Seeded {
    pub learners: usize,
    pub events: usize,
    pub flags: usize,
}

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The demo learners of a course: (id suffix, group), by course.
fn cohort(course: &str) -> Vec<(String, Option<&'static str>)> {
    let (prefix, groups): (&str, &[(&'static str, usize)]) = match course {
        "fractions" => ("f", &[("class 7A", 14), ("class 7B", 12), ("class 7C", 4)]),
        _ => ("s", &[("ops team", 9), ("sales team", 4)]),
    };
    let mut out = Vec::new();
    for (g, n) in groups {
        for _ in 0..*n {
            out.push((format!("{PREFIX}{prefix}{:02}", out.len() + 1), Some(*g)));
        }
    }
    // two without a group
    for _ in 0..2 {
        out.push((format!("{PREFIX}{prefix}{:02}", out.len() + 1), None));
    }
    out
}

/// Whether the learner database has any learner yet (demo or not).
pub async fn is_empty(app: &App) -> Result<bool, StoreError> {
    let row = sqlx::query("SELECT COUNT(*) FROM learners").fetch_one(app.stores.db.pool()).await?;
    Ok(row.try_get::<i64, _>(0)? == 0)
}

/// Seeds the demo learners of every course in `lib`.
pub async fn seed(app: &Arc<App>, lib: &Arc<Library>) -> Result<Seeded, StoreError> {
    let mut done = Seeded::default();
    let now = now_ms();
    let day = 86_400_000i64;
    for (ci, course) in lib.courses.values().enumerate() {
        let exercises: Vec<_> = course
            .components
            .iter()
            .filter_map(|id| lib.components.get(id))
            .filter(|c| c.format == Format::Exercise)
            .collect();
        let learners = cohort(&course.id);
        for (li, (id, group)) in learners.iter().enumerate() {
            let Ok(learner) = LearnerId::parse(id) else { continue };
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ ((ci as u64 + 1) << 32) ^ (li as u64 + 1));
            let ability = 0.6 + 0.35 * rng.next();
            // some stop part-way: their last activity is weeks ago
            let stops_after = if li % 5 == 3 { 1 + (li % 3) } else { exercises.len() };
            let mut t = now - 30 * day + (rng.next() * day as f64) as i64;
            let mut n = 0;
            let mut struggled = false;
            for (ei, ex) in exercises.iter().enumerate().take(stops_after) {
                let mut events = Vec::new();
                let mut push = |verb: Verb,
                                component: &crate::content::ComponentId,
                                item: Option<String>,
                                right: Option<bool>,
                                response: Option<String>,
                                hints: Option<u32>,
                                t: i64| {
                    n += 1;
                    events.push(Event {
                        id: format!("demo-{n}"),
                        learner: learner.clone(),
                        verb,
                        component: component.clone(),
                        item,
                        success: right,
                        score: None,
                        response,
                        hints_used: hints,
                        duration_ms: hints.map(|h| 15_000 + u64::from(h) * 20_000),
                        timestamp: t,
                        group: group.map(str::to_owned),
                    });
                };
                // the explanation of the exercise's skill first, when there is one
                if let Some(explain) = lib.components.values().find(|c| {
                    c.course == course.id && c.format == Format::Explanation && c.skills.first() == ex.skills.first()
                }) {
                    push(Verb::Viewed, &explain.id, None, None, None, None, t);
                }
                t += 20 * 60_000;
                push(Verb::Viewed, &ex.id, None, None, None, None, t);
                // the third exercise is the hard one: a few learners get stuck on it
                let hard = ei == 2 && li % 7 == 2;
                for (ki, item) in ex.items.iter().enumerate() {
                    t += 2 * 60_000;
                    let penalty = match item.demand {
                        Demand::Recall => 0.0,
                        Demand::Application => 0.1,
                        Demand::Reasoning => 0.25,
                    };
                    let p = (ability - penalty + 0.05 * ei as f64).clamp(0.05, 0.97);
                    let right = !hard && rng.next() < p;
                    let key = lib.answer_key(&ex.id, &item.id);
                    let response = if right {
                        key.map(|k| k.answer.clone())
                    } else {
                        key.and_then(|key| key.misconceptions.get(ki % key.misconceptions.len().max(1)))
                            .map(|m| m.response.clone())
                            .or_else(|| Some("not sure".into()))
                    };
                    struggled |= hard;
                    let hints = if right { u32::from(rng.next() < 0.2) } else { 1 + u32::from(rng.next() < 0.5) };
                    push(Verb::Answered, &ex.id, Some(item.id.clone()), Some(right), response, Some(hints), t);
                }
                t += day / 2 + (rng.next() * day as f64) as i64;
                let recorded = app.stores.passports.record(&events, lib).await?;
                done.events += recorded.accepted;
                crate::flags::watch_answers(
                    lib,
                    &app.config.flags,
                    &*app.stores.passports,
                    &*app.stores.flags,
                    &events,
                    None,
                )
                .await;
            }
            // one stuck learner asks the tutor, so their flag has a conversation beside it
            if struggled && li % 3 == 0 {
                let req = TurnRequest {
                    learner: learner.clone(),
                    session_id: None,
                    component: exercises.get(2).map(|c| c.id.clone()),
                    message: "I don't get this one, I keep getting it wrong".into(),
                    courses: None,
                };
                if let Err(e) = app.agent.turn(lib.clone(), req, None).await {
                    tracing::warn!(error = %e, "demo: the tutor turn failed");
                }
            }
            done.learners += 1;
        }
    }
    let row =
        sqlx::query("SELECT COUNT(*) FROM flags WHERE learner LIKE 'demo-%'").fetch_one(app.stores.db.pool()).await?;
    done.flags = row.try_get::<i64, _>(0)?.max(0) as usize;
    tracing::info!(
        learners = done.learners,
        events = done.events,
        flags = done.flags,
        "demo data seeded (tutor demo clear removes it)"
    );
    Ok(done)
}

/// Erases every demo learner; returns how many.
pub async fn clear(app: &App) -> Result<usize, StoreError> {
    let rows = sqlx::query(
        "SELECT learner FROM learners WHERE learner LIKE 'demo-%' UNION SELECT learner FROM sessions WHERE learner LIKE 'demo-%' \
         UNION SELECT learner FROM flags WHERE learner LIKE 'demo-%'",
    )
    .fetch_all(app.stores.db.pool())
    .await?;
    let mut n = 0;
    for r in rows {
        let raw: String = r.try_get(0)?;
        if let Ok(l) = LearnerId::parse(&raw) {
            app.stores.erase(&l).await?;
            n += 1;
        }
    }
    Ok(n)
}
