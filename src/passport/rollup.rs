//! The analytics rollups the passport keeps beside the events, in the same transaction: answers
//! per item and group (`item_stats`), and which learners answered each component, each
//! (skill, cognitive demand), and gave each known misconception (`learner_*`), so that the
//! educators' analytics count learners from small tables instead of scanning every event.

use std::collections::BTreeMap;

use sqlx::Row;

use super::event::{Event, LearnerId, Verb, normalize_answer};
use crate::content::Library;
use crate::db::{IN_LIST, StoreError, Tx, Writes, placeholder_list};

/// Each learner's group per course after their events ('' for none): the group named by the
/// newest (in time) of the statements that name one — across every batch of a group commit —
/// else the one kept from before. One query for all the learners.
pub(super) async fn groups<'l>(
    tx: &mut Tx,
    learners: &BTreeMap<&'l LearnerId, Vec<&Event>>,
    lib: &Library,
) -> Result<BTreeMap<&'l LearnerId, BTreeMap<String, String>>, StoreError> {
    let mut out: BTreeMap<&LearnerId, BTreeMap<String, String>> =
        learners.keys().map(|l| (*l, BTreeMap::new())).collect();
    let by_name: BTreeMap<&str, &'l LearnerId> = learners.keys().map(|l| (l.as_str(), *l)).collect();
    let ids: Vec<&&LearnerId> = learners.keys().collect();
    for chunk in ids.chunks(IN_LIST) {
        let sql = format!(
            "SELECT learner, course, grp FROM learner_courses WHERE learner IN ({})",
            placeholder_list(tx, chunk.len())
        );
        let mut q = sqlx::query(&sql);
        for l in chunk {
            q = q.bind(l.as_str().to_owned());
        }
        for r in q.fetch_all(&mut **tx).await? {
            let learner: String = r.try_get("learner")?;
            if let Some(g) = by_name.get(learner.as_str()).and_then(|l| out.get_mut(l)) {
                g.insert(r.try_get("course")?, r.try_get::<Option<String>, _>("grp")?.unwrap_or_default());
            }
        }
    }
    for (learner, events) in learners {
        let mut sorted: Vec<&&Event> = events.iter().collect();
        sorted.sort_by(|a, b| a.order_key().cmp(&b.order_key()));
        let groups = out.get_mut(learner).expect("every learner has an entry");
        for e in sorted {
            let Some(c) = lib.components.get(&e.component) else { continue };
            let entry = groups.entry(c.course.clone()).or_default();
            if let Some(g) = &e.group {
                g.clone_into(entry);
            }
        }
    }
    Ok(out)
}

/// The group an event counts in.
pub(super) fn group_of<'g>(groups: &'g BTreeMap<String, String>, lib: &Library, e: &Event) -> &'g str {
    lib.components.get(&e.component).and_then(|c| groups.get(&c.course)).map_or("", String::as_str)
}

/// Counts new answers into the rollups: each learner's new events with their groups, in as
/// few statements as the rows allow.
pub(super) fn count_answers(
    w: &mut Writes,
    learners: &[(&LearnerId, &[&Event], &BTreeMap<String, String>)],
    lib: &Library,
) {
    // (course, component, item, group) → (answers, wrong, hints)
    type ItemKey<'a> = (&'a str, &'a str, &'a str, &'a str);
    let mut stats: BTreeMap<ItemKey, (i64, i64, i64)> = BTreeMap::new();
    let mut components: BTreeMap<(&str, &str, &str), &str> = BTreeMap::new();
    let mut demands: BTreeMap<(&str, &str, String, &str), &str> = BTreeMap::new();
    let mut misconceptions: BTreeMap<(&str, &str, &str, &str, String), &str> = BTreeMap::new();
    for (learner, events, groups) in learners {
        let who = learner.as_str();
        for e in events.iter().filter(|e| e.verb == Verb::Answered) {
            let Some(c) = lib.components.get(&e.component) else { continue };
            let item = e.item.as_deref().unwrap_or_default();
            let grp = group_of(groups, lib, e);
            let wrong = !e.success.unwrap_or(false);
            let s = stats.entry((c.course.as_str(), c.id.as_str(), item, grp)).or_default();
            s.0 += 1;
            s.1 += i64::from(wrong);
            s.2 += i64::from(e.hints_used.unwrap_or(0));
            components.insert((who, c.course.as_str(), c.id.as_str()), grp);
            if let Some(it) = c.items.iter().find(|i| i.id == item) {
                for skill in &c.skills {
                    demands.entry((who, c.course.as_str(), skill.to_string(), it.demand.as_str())).or_insert(grp);
                }
            }
            if wrong
                && let Some(r) = &e.response
                && let Some(key) = lib.answer_key(&e.component, item)
            {
                let given = normalize_answer(r);
                if key.misconceptions.iter().any(|m| normalize_answer(&m.response) == given) {
                    misconceptions.entry((who, c.course.as_str(), c.id.as_str(), item, given)).or_insert(grp);
                }
            }
        }
    }
    let rows: Vec<_> = stats.into_iter().collect();
    for chunk in rows.chunks(500) {
        let sql = format!(
            "INSERT INTO item_stats (course, component, item, grp, attempts, wrong, hints) VALUES {} \
             ON CONFLICT (course, component, item, grp) DO UPDATE SET attempts = item_stats.attempts + excluded.attempts, \
             wrong = item_stats.wrong + excluded.wrong, hints = item_stats.hints + excluded.hints",
            w.placeholders(chunk.len(), 7)
        );
        w.statement(&sql);
        for ((course, component, item, grp), (n, wrong, hints)) in chunk {
            w.bind(course.to_string())
                .bind(component.to_string())
                .bind(item.to_string())
                .bind(grp.to_string())
                .bind(*n)
                .bind(*wrong)
                .bind(*hints);
        }
    }
    let rows: Vec<_> = components.into_iter().collect();
    for chunk in rows.chunks(500) {
        let sql = format!(
            "INSERT INTO learner_components (learner, course, component, grp) VALUES {} ON CONFLICT DO NOTHING",
            w.placeholders(chunk.len(), 4)
        );
        w.statement(&sql);
        for ((who, course, component), grp) in chunk {
            w.bind(who.to_string()).bind(course.to_string()).bind(component.to_string()).bind(grp.to_string());
        }
    }
    let rows: Vec<_> = demands.into_iter().collect();
    for chunk in rows.chunks(500) {
        let sql = format!(
            "INSERT INTO learner_demands (learner, course, skill, demand, grp) VALUES {} ON CONFLICT DO NOTHING",
            w.placeholders(chunk.len(), 5)
        );
        w.statement(&sql);
        for ((who, course, skill, demand), grp) in chunk {
            w.bind(who.to_string())
                .bind(course.to_string())
                .bind(skill.clone())
                .bind(demand.to_string())
                .bind(grp.to_string());
        }
    }
    let rows: Vec<_> = misconceptions.into_iter().collect();
    for chunk in rows.chunks(500) {
        let sql = format!(
            "INSERT INTO learner_misconceptions (learner, course, component, item, response, grp) VALUES {} \
             ON CONFLICT DO NOTHING",
            w.placeholders(chunk.len(), 6)
        );
        w.statement(&sql);
        for ((who, course, component, item, response), grp) in chunk {
            w.bind(who.to_string())
                .bind(course.to_string())
                .bind(component.to_string())
                .bind(item.to_string())
                .bind(response.clone())
                .bind(grp.to_string());
        }
    }
}

/// Takes a learner's stored answers back out of `item_stats` and deletes their rows of the
/// other rollups (erasure). Answers already deleted by the retention policy stay in the
/// anonymous per-item counts.
pub(super) async fn uncount(tx: &mut Tx, learner: &LearnerId) -> Result<(), StoreError> {
    let rows = sqlx::query(
        "SELECT component, item, COALESCE(grp, '') AS grp, COUNT(*) AS n, \
         CAST(SUM(CASE WHEN success = 0 THEN 1 ELSE 0 END) AS BIGINT) AS wrong, \
         CAST(SUM(COALESCE(hints_used, 0)) AS BIGINT) AS hints \
         FROM events WHERE learner = $1 AND verb = 'answered' GROUP BY component, item, COALESCE(grp, '')",
    )
    .bind(learner.as_str().to_owned())
    .fetch_all(&mut **tx)
    .await?;
    for r in rows {
        sqlx::query(
            "UPDATE item_stats SET attempts = attempts - $1, wrong = wrong - $2, hints = hints - $3 \
             WHERE component = $4 AND item = $5 AND grp = $6",
        )
        .persistent(false)
        .bind(r.try_get::<i64, _>("n")?)
        .bind(r.try_get::<Option<i64>, _>("wrong")?.unwrap_or(0))
        .bind(r.try_get::<Option<i64>, _>("hints")?.unwrap_or(0))
        .bind(r.try_get::<String, _>("component")?)
        .bind(r.try_get::<Option<String>, _>("item")?.unwrap_or_default())
        .bind(r.try_get::<String, _>("grp")?)
        .execute(&mut **tx)
        .await?;
    }
    sqlx::query("DELETE FROM item_stats WHERE attempts <= 0").execute(&mut **tx).await?;
    for table in ["learner_components", "learner_demands", "learner_misconceptions"] {
        crate::db::delete_rows(tx, table, learner).await?;
    }
    Ok(())
}
