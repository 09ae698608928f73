//! Where events and passports live: the [`PassportStore`] trait, and its SQL implementation
//! for SQLite (the embedded default) and PostgreSQL, in the learner [`Database`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use async_trait::async_trait;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::event::{Event, LearnerId, Verb};
use super::model::{LearnerState, SkillState};
use super::recommend::{Feedback, Given};
use crate::content::{ComponentId, Library, SkillId};
use crate::db::{
    Database, Erased, IN_LIST, LearnerData, StoreError, Tx, Writes, delete_rows, placeholder_list, placeholders,
};
use crate::ids::now_ms;

/// What a batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
pub struct Recorded {
    pub accepted: usize,
    pub duplicates: usize,
}

/// Learner events and the passports derived from them. Implementations serialize the updates
/// of one learner, so that concurrent batches never lose an update, and commit a batch before
/// returning. Erasure goes through [`LearnerData`], with the other stores, in one transaction.
#[async_trait]
pub trait PassportStore: LearnerData {
    /// Appends the events not seen before and updates the passports they touch, in one
    /// transaction. Ids already stored (or repeated in the batch) count as duplicates. The
    /// hints given on request since a learner's last answer on an item count in their next
    /// answer on it (its `hints_used`, or more), each hint once.
    async fn record(&self, events: &[Event], lib: &Library) -> Result<Recorded, StoreError>;
    /// [`PassportStore::record`], with the models of the learners the batch touched as it
    /// left them (for the struggle rules, without reading them again).
    async fn record_states(&self, events: &[Event], lib: &Library) -> Result<(Recorded, States), StoreError>;
    /// The learner's model; empty for a learner with no events.
    async fn learner(&self, learner: &LearnerId) -> Result<LearnerState, StoreError>;
    /// The learner's stored events, in order.
    async fn events(&self, learner: &LearnerId) -> Result<Vec<Event>, StoreError>;
    /// The model as of the events no longer stored (the retention policy's base), and the
    /// stored events in order: replayed together they give the learner's model.
    async fn history(&self, learner: &LearnerId) -> Result<(LearnerState, Vec<Event>), StoreError>;
    /// The learner's newest feedback on each recommendation.
    async fn feedback(&self, learner: &LearnerId) -> Result<Vec<Given>, StoreError>;
    /// How many hints of an item the learner was given.
    async fn hints_given(&self, learner: &LearnerId, component: &ComponentId, item: &str) -> Result<u32, StoreError>;
    /// Notes that hint `number` of an item was given to the learner.
    async fn give_hint(
        &self,
        learner: &LearnerId,
        component: &ComponentId,
        item: &str,
        number: u32,
    ) -> Result<(), StoreError>;
    /// Keeps `feedback` as the learner's newest on `recommendation`.
    async fn give_feedback(
        &self,
        learner: &LearnerId,
        recommendation: &str,
        feedback: Feedback,
    ) -> Result<Given, StoreError>;
    /// Notes that `reader` (`role:subject`) read `what` of the learner's data.
    async fn note_read(&self, learner: &LearnerId, reader: &str, what: &str) -> Result<(), StoreError>;
    /// The newest `limit` reads of the learner's data by others, newest first.
    async fn reads(&self, learner: &LearnerId, limit: usize) -> Result<Vec<Read>, StoreError>;
    /// Up to `limit` learners whose stored passport was computed with parameters other than
    /// version `version`.
    async fn stale(&self, version: i64, limit: usize) -> Result<Vec<LearnerId>, StoreError>;
    /// Replays the learner's passport from their events with `lib`'s parameters, unless it
    /// was computed with them already; returns whether it was.
    async fn recompute(&self, learner: &LearnerId, lib: &Library) -> Result<bool, StoreError>;
    /// Deletes every learner's events older than `before` (ms), keeping the model they built:
    /// it becomes the base a later replay starts from. Returns how many events went.
    async fn forget_events_before(&self, before: i64, lib: &Library) -> Result<u64, StoreError>;
}

/// A read of a learner's data by someone else, for the audit log.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
pub struct Read {
    /// `role:subject` of the token.
    pub reader: String,
    /// What was read, e.g. `passport`, `plan fractions-divide-ex-1`.
    pub what: String,
    /// Milliseconds since the Unix epoch.
    pub at: i64,
}

/// The passport tables (`events`, `skill_states`, `learners`) in the learner database.
pub struct SqlPassportStore {
    db: Arc<Database>,
    /// Mastery at which a skill counts as proficient (when it is first reached is kept).
    proficient: f64,
    /// Batches waiting for SQLite's writer (group commit).
    queue: std::sync::Mutex<Vec<Pending>>,
}

const EVENT_COLUMNS: &str =
    "learner, id, verb, component, item, success, score, response, hints_used, duration_ms, ts, received_at";
/// The learner's groups per course, for a batch.
type Groups<'a> = BTreeMap<&'a LearnerId, BTreeMap<String, String>>;
/// Rows per multi-row insert: 12 parameters each (6,000 in all), well below SQLite's 32,766
/// and PostgreSQL's 65,535.
const INSERT_ROWS: usize = 500;

impl SqlPassportStore {
    /// The store over `db`; `proficient` is the mastery at which a skill counts as proficient.
    pub fn new(db: Arc<Database>, proficient: f64) -> Self {
        Self { db, proficient, queue: std::sync::Mutex::new(Vec::new()) }
    }

    /// Inserts the events, returning the `(learner, id)` pairs that were new.
    async fn insert_events(
        tx: &mut Tx,
        events: &[&Event],
        received_at: i64,
        lib: &Library,
        groups: &Groups<'_>,
    ) -> Result<BTreeSet<(String, String)>, StoreError> {
        let mut inserted = BTreeSet::new();
        for chunk in events.chunks(INSERT_ROWS) {
            let sql = format!(
                "INSERT INTO events ({EVENT_COLUMNS}, grp) VALUES {} ON CONFLICT (learner, id) DO NOTHING RETURNING learner, id",
                placeholders(tx, chunk.len(), 13)
            );
            // Not a cached prepared statement: sqlx 0.8.6's Any driver sends a NULL f64 as a
            // float4 parameter, and a statement prepared that way rejects the next real score.
            let mut q = sqlx::query(&sql).persistent(false);
            for e in chunk {
                q = q
                    .bind(e.learner.as_str().to_owned())
                    .bind(e.id.clone())
                    .bind(e.verb.as_str())
                    .bind(e.component.as_str().to_owned())
                    .bind(e.item.clone())
                    .bind(e.success.map(i64::from))
                    .bind(e.score)
                    .bind(e.response.clone())
                    .bind(e.hints_used.map(i64::from))
                    .bind(e.duration_ms.map(|d| d.min(i64::MAX as u64) as i64))
                    .bind(e.timestamp)
                    .bind(received_at)
                    .bind(groups.get(&e.learner).map_or("", |g| super::rollup::group_of(g, lib, e)).to_owned());
            }
            for row in q.fetch_all(&mut **tx).await? {
                inserted.insert((row.try_get::<String, _>(0)?, row.try_get::<String, _>(1)?));
            }
        }
        Ok(inserted)
    }

    /// The model left by events the retention policy deleted (empty when none were).
    async fn base(tx: &mut Tx, learner: &LearnerId) -> Result<LearnerState, StoreError> {
        let row = sqlx::query("SELECT base_state FROM learners WHERE learner = $1")
            .bind(learner.as_str())
            .fetch_optional(&mut **tx)
            .await?;
        match row.map(|r| r.try_get::<Option<String>, _>(0)).transpose()?.flatten() {
            Some(text) => serde_json::from_str(&text)
                .map_err(|e| StoreError::Corrupt { learner: learner.to_string(), message: e.to_string() }),
            None => Ok(LearnerState::default()),
        }
    }

    /// The learner's model replayed from the base and every stored event (in order) with
    /// `lib`'s parameters, their skill rows deleted for [`Self::save`] to write anew;
    /// `answered` as in [`LearnerState::apply_all`].
    async fn replay(
        tx: &mut Tx,
        learner: &LearnerId,
        lib: &Library,
        proficient: f64,
        answered: &mut (dyn FnMut(&SkillId, i64, f64) + Send),
    ) -> Result<LearnerState, StoreError> {
        let mut all = Self::all_events(tx, learner).await?;
        all.sort_by(|a, b| a.order_key().cmp(&b.order_key()));
        let mut state = Self::base(tx, learner).await?;
        state.apply_all(lib, &all.iter().collect::<Vec<_>>(), proficient, answered);
        state.params_version = lib.learned.version;
        sqlx::query("DELETE FROM skill_states WHERE learner = $1").bind(learner.as_str()).execute(&mut **tx).await?;
        Ok(state)
    }

    async fn all_events(tx: &mut Tx, learner: &LearnerId) -> Result<Vec<Event>, StoreError> {
        let rows = sqlx::query(&format!("SELECT {EVENT_COLUMNS} FROM events WHERE learner = $1 ORDER BY ts, id"))
            .bind(learner.as_str())
            .fetch_all(&mut **tx)
            .await?;
        rows.iter().filter_map(|r| event_from_row(r, learner).transpose()).collect()
    }

    /// Writes the learners' rows and the rows of the skills each touched, in as few
    /// statements as the rows allow.
    fn save(w: &mut Writes, learners: &[Saved<'_>], now: i64, lib: &Library) {
        let skills: Vec<(&LearnerId, &SkillId, &SkillState, String)> = learners
            .iter()
            .flat_map(|l| {
                l.touched.iter().filter_map(move |s| {
                    l.state.skills.get(s).map(|st| (l.learner, s, st, skill_group(lib, l.groups, s)))
                })
            })
            .collect();
        for chunk in skills.chunks(INSERT_ROWS) {
            let sql = format!(
                "INSERT INTO skill_states (learner, skill, mastery, evidence, state, updated_at, first_at, proficient_at, grp) \
                 VALUES {} ON CONFLICT (learner, skill) DO UPDATE SET mastery = excluded.mastery, \
                 evidence = excluded.evidence, state = excluded.state, updated_at = excluded.updated_at, \
                 first_at = excluded.first_at, proficient_at = excluded.proficient_at, grp = excluded.grp",
                w.placeholders(chunk.len(), 9)
            );
            w.statement(&sql);
            for (learner, skill, st, grp) in chunk {
                w.bind(learner.as_str().to_owned())
                    .bind(skill.as_str().to_owned())
                    .bind(st.mastery)
                    .bind(i64::from(st.evidence))
                    .bind(serde_json::to_string(st).expect("state serializes"))
                    .bind(now)
                    .bind(st.first_seen)
                    .bind(st.proficient_at)
                    .bind(grp.clone());
            }
        }
        for chunk in learners.chunks(INSERT_ROWS) {
            let sql = format!(
                "INSERT INTO learners (learner, state, updated_at, params_version) VALUES {} \
                 ON CONFLICT (learner) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at, \
                 params_version = excluded.params_version",
                w.placeholders(chunk.len(), 4)
            );
            w.statement(&sql);
            for l in chunk {
                let head = LearnerState { skills: BTreeMap::new(), ..l.state.clone() };
                w.bind(l.learner.as_str().to_owned())
                    .bind(serde_json::to_string(&head).expect("state serializes"))
                    .bind(now)
                    .bind(l.state.params_version);
            }
        }
    }

    /// The stored models of `learners` (empty for one with none), in two queries per
    /// [`IN_LIST`] learners.
    async fn load_states<'l>(
        tx: &mut Tx,
        learners: &[&'l LearnerId],
    ) -> Result<BTreeMap<&'l LearnerId, LearnerState>, StoreError> {
        let mut out: BTreeMap<&LearnerId, LearnerState> = BTreeMap::new();
        let by_name: BTreeMap<&str, &LearnerId> = learners.iter().map(|l| (l.as_str(), *l)).collect();
        let corrupt = |learner: &str, message: String| StoreError::Corrupt { learner: learner.to_owned(), message };
        for chunk in learners.chunks(IN_LIST) {
            let list = placeholder_list(tx, chunk.len());
            let sql = format!("SELECT learner, state FROM learners WHERE learner IN ({list})");
            let mut q = sqlx::query_as::<_, (String, String)>(&sql);
            for l in chunk {
                q = q.bind(l.as_str().to_owned());
            }
            for (learner, text) in q.fetch_all(&mut **tx).await? {
                let Some(l) = by_name.get(learner.as_str()) else { continue };
                let state: LearnerState = serde_json::from_str(&text).map_err(|e| corrupt(&learner, e.to_string()))?;
                out.insert(l, state);
            }
            let sql = format!("SELECT learner, skill, state FROM skill_states WHERE learner IN ({list})");
            let mut q = sqlx::query_as::<_, (String, String, String)>(&sql);
            for l in chunk {
                q = q.bind(l.as_str().to_owned());
            }
            for (learner, skill, text) in q.fetch_all(&mut **tx).await? {
                // skill rows without a learner row are not a model
                let Some(state) = by_name.get(learner.as_str()).and_then(|l| out.get_mut(l)) else { continue };
                let skill = SkillId::parse(&skill).map_err(|e| corrupt(&learner, e.0))?;
                let st: SkillState = serde_json::from_str(&text).map_err(|e| corrupt(&learner, e.to_string()))?;
                state.skills.insert(skill, st);
            }
        }
        for l in learners {
            out.entry(l).or_default();
        }
        Ok(out)
    }
}

impl SqlPassportStore {
    /// The hints given on request since a learner's last answer on an item count in their
    /// next answer on it (the event's `hints_used`, or more): each hint once, in the earliest
    /// answer on the item here that was not stored before (a duplicate counts none). One query
    /// for all the learners; the events, those that now carry hints replaced, with their
    /// positions and how many hints each spends.
    async fn count_hints<'e>(
        tx: &mut Tx,
        events: &[&'e Event],
        fresh: &[bool],
    ) -> Result<(Vec<std::borrow::Cow<'e, Event>>, Vec<(usize, u32)>), StoreError> {
        use std::borrow::Cow;
        let mut out: Vec<Cow<Event>> = events.iter().map(|e| Cow::Borrowed(*e)).collect();
        let learners: Vec<&str> = events
            .iter()
            .zip(fresh)
            .filter(|(e, new)| **new && e.verb == Verb::Answered)
            .map(|(e, _)| e)
            .map(|e| e.learner.as_str())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut given: BTreeMap<(String, String, String), u32> = BTreeMap::new();
        for chunk in learners.chunks(IN_LIST) {
            let sql = format!(
                "SELECT learner, component, item, given - counted FROM hints_given WHERE given > counted AND learner IN ({})",
                placeholder_list(tx, chunk.len())
            );
            let mut q = sqlx::query_as::<_, (String, String, String, i64)>(&sql);
            for l in chunk {
                q = q.bind(l.to_string());
            }
            for (learner, component, item, n) in q.fetch_all(&mut **tx).await? {
                given.insert((learner, component, item), n.clamp(0, i64::from(u32::MAX)) as u32);
            }
        }
        if given.is_empty() {
            return Ok((out, Vec::new()));
        }
        let mut first: BTreeMap<(String, String, String), usize> = BTreeMap::new();
        for (i, e) in events.iter().enumerate().filter(|(i, e)| fresh[*i] && e.verb == Verb::Answered) {
            let key = (e.learner.to_string(), e.component.to_string(), e.item.clone().unwrap_or_default());
            if given.contains_key(&key) {
                let slot = first.entry(key).or_insert(i);
                if e.order_key() < events[*slot].order_key() {
                    *slot = i;
                }
            }
        }
        let mut hinted = Vec::new();
        for (key, i) in first {
            let n = given[&key];
            let e = out[i].to_mut();
            e.hints_used = Some(e.hints_used.unwrap_or(0).max(n));
            hinted.push((i, n));
        }
        Ok((out, hinted))
    }
}

/// Writes the hints the new answers `hinted` counted ([`SqlPassportStore::count_hints`]) into
/// their stored rows, and spends them.
fn spend_hints(w: &mut Writes, events: &[std::borrow::Cow<'_, Event>], hinted: &[(usize, u32)]) {
    for (i, n) in hinted {
        let e = &events[*i];
        let sql = format!(
            "UPDATE events SET hints_used = {} WHERE learner = {} AND id = {}",
            w.param(1),
            w.param(2),
            w.param(3)
        );
        w.statement(&sql).bind(e.hints_used.map(i64::from)).bind(e.learner.as_str().to_owned()).bind(e.id.clone());
        let sql = format!(
            "UPDATE hints_given SET counted = counted + {} WHERE learner = {} AND component = {} AND item = {}",
            w.param(1),
            w.param(2),
            w.param(3),
            w.param(4)
        );
        w.statement(&sql)
            .bind(i64::from(*n))
            .bind(e.learner.as_str().to_owned())
            .bind(e.component.as_str().to_owned())
            .bind(e.item.clone().unwrap_or_default());
    }
}

/// What [`SqlPassportStore::save`] writes for one learner.
struct Saved<'a> {
    learner: &'a LearnerId,
    state: &'a LearnerState,
    /// The skills whose rows are written.
    touched: &'a BTreeSet<SkillId>,
    groups: &'a BTreeMap<String, String>,
}

/// The group a learner's skill counts in: their group in the skill's course.
fn skill_group(lib: &Library, groups: &BTreeMap<String, String>, skill: &SkillId) -> String {
    lib.skills.get(skill).and_then(|k| groups.get(&k.course)).cloned().unwrap_or_default()
}

impl SqlPassportStore {
    /// Appends the events of the batches not seen before (an id repeated in a later batch is
    /// its duplicate) and updates the passports they touch, inside `tx`, in a fixed number of
    /// statements however many learners the batches touch; per batch, what it recorded and
    /// the models of the learners it brought new events for, as `tx` leaves them.
    async fn apply(
        &self,
        tx: &mut Tx,
        batches: &[&[Event]],
        lib: &Library,
    ) -> Result<Vec<(Recorded, States)>, StoreError> {
        // repeated ids are duplicates, within a batch and across them
        let mut seen = BTreeSet::new();
        let mut unique: Vec<&Event> = Vec::new();
        let mut batch_of: Vec<usize> = Vec::new();
        for (b, events) in batches.iter().enumerate() {
            for e in events.iter() {
                if seen.insert((e.learner.as_str(), e.id.as_str())) {
                    unique.push(e);
                    batch_of.push(b);
                }
            }
        }
        // one learner's batches are applied one at a time; locks taken in id order, so two
        // batches touching the same learners cannot deadlock
        let learners: BTreeSet<&LearnerId> = unique.iter().map(|e| &e.learner).collect();
        for learner in &learners {
            self.db.lock_learner(tx, learner.as_str()).await?;
        }
        let mut by_learner: BTreeMap<&LearnerId, Vec<&Event>> = BTreeMap::new();
        for e in &unique {
            by_learner.entry(&e.learner).or_default().push(e);
        }
        let now = now_ms();
        let groups = super::rollup::groups(tx, &by_learner, lib).await?;
        let inserted = Self::insert_events(tx, &unique, now, lib, &groups).await?;
        // whether each event was stored now (not before)
        let fresh: Vec<bool> =
            unique.iter().map(|e| inserted.contains(&(e.learner.to_string(), e.id.clone()))).collect();
        let (events, hinted) = Self::count_hints(tx, &unique, &fresh).await?;
        let mut new_by: BTreeMap<&LearnerId, Vec<&Event>> = BTreeMap::new();
        for (e, _) in events.iter().zip(&fresh).filter(|(_, new)| **new) {
            new_by.entry(&e.learner).or_default().push(e);
        }
        for new in new_by.values_mut() {
            new.sort_by(|a, b| a.order_key().cmp(&b.order_key()));
        }
        let learners: Vec<&LearnerId> = new_by.keys().copied().collect();
        let mut stored = Self::load_states(tx, &learners).await?;
        // mastery at the end of each week an answer fell in, for progression
        let mut weeks: BTreeMap<(&LearnerId, SkillId, i64), f64> = BTreeMap::new();
        let mut worked: Vec<(&LearnerId, LearnerState, BTreeSet<SkillId>)> = Vec::with_capacity(learners.len());
        for (learner, new) in &new_by {
            let mut state = stored.remove(learner).unwrap_or_default();
            let mut week_of_answer = |skill: &SkillId, ts: i64, mastery: f64| {
                weeks.insert((*learner, skill.clone(), super::model::week_of(ts)), mastery);
            };
            let touched: BTreeSet<SkillId> = if state.can_append(new[0], lib) {
                state.apply_all(lib, new, self.proficient, &mut week_of_answer).into_iter().collect()
            } else {
                // an event older than the newest applied, or a state computed with other
                // parameters: replay the learner from the start
                state = Self::replay(tx, learner, lib, self.proficient, &mut week_of_answer).await?;
                state.skills.keys().cloned().collect()
            };
            worked.push((learner, state, touched));
        }
        let saved: Vec<Saved> = worked
            .iter()
            .map(|(learner, state, touched)| Saved { learner, state, touched, groups: &groups[learner] })
            .collect();
        // everything from here on written in one round trip (on SQLite)
        let mut w = Writes::new(tx);
        Self::save(&mut w, &saved, now, lib);
        Self::save_weeks(&mut w, &weeks, lib, &groups);
        Self::save_activity(&mut w, &new_by, lib);
        let counted: Vec<_> = new_by.iter().map(|(l, evs)| (*l, evs.as_slice(), &groups[l])).collect();
        super::rollup::count_answers(&mut w, &counted, lib);
        // last: SQLite copies the rest of a multi-statement query before preparing each one
        spend_hints(&mut w, &events, &hinted);
        w.run(tx).await?;
        // what each batch recorded, and the models of the learners it brought new events for
        let finals: BTreeMap<&LearnerId, &LearnerState> = worked.iter().map(|(l, st, _)| (*l, st)).collect();
        let mut out: Vec<(Recorded, States)> = batches.iter().map(|_| Default::default()).collect();
        for ((e, b), new) in unique.iter().zip(&batch_of).zip(&fresh) {
            if *new {
                let (recorded, states) = &mut out[*b];
                recorded.accepted += 1;
                if !states.contains_key(&e.learner)
                    && let Some(st) = finals.get(&e.learner)
                {
                    states.insert(e.learner.clone(), (*st).clone());
                }
            }
        }
        for ((recorded, _), events) in out.iter_mut().zip(batches) {
            recorded.duplicates = events.len() - recorded.accepted;
        }
        Ok(out)
    }

    /// SQLite's single writer, shared: a batch waits in a queue while another commits; the
    /// next writer commits every batch waiting, in arrival order, in one durable transaction,
    /// and each batch is answered after it. (If that transaction fails, each batch is tried in
    /// a transaction of its own, so one bad batch cannot fail the others.)
    async fn group_commit(&self, events: &[Event], lib: &Library) -> Result<(Recorded, States), StoreError> {
        loop {
            let (done, mut result) = tokio::sync::oneshot::channel();
            self.queue.lock().expect("commit queue").push(Pending { events: events.to_vec(), done });
            let writer = self.db.write_guard().await;
            if let Ok(r) = result.try_recv() {
                // an earlier writer committed it
                return r;
            }
            let pending = std::mem::take(&mut *self.queue.lock().expect("commit queue"));
            if !pending.is_empty() {
                self.commit_all(pending, lib).await;
            }
            drop(writer);
            match result.await {
                Ok(r) => return r,
                // the writer that took it stopped before answering (its request was dropped):
                // its transaction rolled back, so try again
                Err(_) => continue,
            }
        }
    }

    /// Commits `pending` in one transaction and answers each.
    async fn commit_all(&self, pending: Vec<Pending>, lib: &Library) {
        let together = async {
            let mut tx = self.db.pool().begin().await?;
            let batches: Vec<&[Event]> = pending.iter().map(|p| p.events.as_slice()).collect();
            let out = self.apply(&mut tx, &batches, lib).await?;
            tx.commit().await?;
            Ok::<_, StoreError>(out)
        }
        .await;
        match together {
            Ok(out) => {
                crate::metrics::inc("tutor_event_commits_total", &[]);
                crate::metrics::add("tutor_event_batches_committed_total", &[], out.len() as u64);
                for (p, r) in pending.into_iter().zip(out) {
                    let _ = p.done.send(Ok(r));
                }
            }
            Err(e) if pending.len() == 1 => {
                let _ = pending.into_iter().next().expect("one").done.send(Err(e));
            }
            Err(_) => {
                for p in pending {
                    let _ = p.done.send(self.commit_one(&p.events, lib).await);
                }
            }
        }
    }

    /// Commits one batch in a transaction of its own.
    async fn commit_one(&self, events: &[Event], lib: &Library) -> Result<(Recorded, States), StoreError> {
        let mut tx = self.db.pool().begin().await?;
        let out = self.apply(&mut tx, &[events], lib).await?.pop().expect("one batch, one result");
        tx.commit().await?;
        Ok(out)
    }
}

/// The models of the learners a batch touched, as the commit it was part of left them.
pub type States = BTreeMap<LearnerId, LearnerState>;

/// A batch waiting for SQLite's writer.
struct Pending {
    events: Vec<Event>,
    done: tokio::sync::oneshot::Sender<Result<(Recorded, States), StoreError>>,
}

impl SqlPassportStore {
    /// Mastery at the end of each week with answers, and the weeks each learner was active
    /// in each course.
    fn save_weeks(
        w: &mut Writes,
        weeks: &BTreeMap<(&LearnerId, SkillId, i64), f64>,
        lib: &Library,
        groups: &Groups<'_>,
    ) {
        let group = |learner: &LearnerId, skill: &SkillId| groups.get(learner).map(|g| skill_group(lib, g, skill));
        // the weeks the learner answered in each course
        let active: BTreeSet<(&str, &str, i64, String)> = weeks
            .keys()
            .filter_map(|(learner, skill, week)| {
                lib.skills
                    .get(skill)
                    .map(|k| (learner.as_str(), k.course.as_str(), *week, group(learner, skill).unwrap_or_default()))
            })
            .collect();
        let active: Vec<_> = active.into_iter().collect();
        for chunk in active.chunks(INSERT_ROWS) {
            let sql = format!(
                "INSERT INTO learner_weeks (learner, course, week, grp) VALUES {} ON CONFLICT DO NOTHING",
                w.placeholders(chunk.len(), 4)
            );
            w.statement(&sql);
            for (learner, course, week, grp) in chunk {
                w.bind(learner.to_string()).bind(course.to_string()).bind(*week).bind(grp.clone());
            }
        }
        let rows: Vec<_> = weeks.iter().collect();
        for chunk in rows.chunks(INSERT_ROWS) {
            let sql = format!(
                "INSERT INTO mastery_weeks (learner, skill, week, mastery, grp) VALUES {} \
                 ON CONFLICT (learner, skill, week) DO UPDATE SET mastery = excluded.mastery, grp = excluded.grp",
                w.placeholders(chunk.len(), 5)
            );
            w.statement(&sql);
            for ((learner, skill, week), mastery) in chunk {
                w.bind(learner.as_str().to_owned())
                    .bind(skill.as_str().to_owned())
                    .bind(*week)
                    .bind(**mastery)
                    .bind(group(learner, skill).unwrap_or_default());
            }
        }
    }

    /// Each learner's newest activity and group per course their new events (sorted) touched.
    fn save_activity(w: &mut Writes, learners: &BTreeMap<&LearnerId, Vec<&Event>>, lib: &Library) {
        // per learner and course: the newest event and the newest group given
        let mut courses: BTreeMap<(&str, &str), (&Event, Option<&str>)> = BTreeMap::new();
        for (learner, events) in learners {
            for e in events {
                let Some(c) = lib.components.get(&e.component) else { continue };
                let entry = courses.entry((learner.as_str(), c.course.as_str())).or_insert((e, None));
                entry.0 = e;
                if let Some(g) = &e.group {
                    entry.1 = Some(g);
                }
            }
        }
        let rows: Vec<_> = courses.into_iter().collect();
        for chunk in rows.chunks(INSERT_ROWS) {
            let sql = format!(
                "INSERT INTO learner_courses (learner, course, grp, last_at, last_component) VALUES {} \
                 ON CONFLICT (learner, course) DO UPDATE SET grp = COALESCE(excluded.grp, learner_courses.grp), \
                 last_component = CASE WHEN excluded.last_at >= learner_courses.last_at \
                     THEN excluded.last_component ELSE learner_courses.last_component END, \
                 last_at = CASE WHEN excluded.last_at >= learner_courses.last_at \
                     THEN excluded.last_at ELSE learner_courses.last_at END",
                w.placeholders(chunk.len(), 5)
            );
            // not a cached prepared statement: a NULL group would be typed for the next one
            w.statement(&sql);
            for ((learner, course), (last, group)) in chunk {
                w.bind(learner.to_string())
                    .bind(course.to_string())
                    .bind(group.map(str::to_owned))
                    .bind(last.timestamp)
                    .bind(last.component.as_str().to_owned());
            }
        }
    }
}

fn event_from_row(r: &AnyRow, learner: &LearnerId) -> Result<Option<Event>, StoreError> {
    let corrupt = |message: String| StoreError::Corrupt { learner: learner.to_string(), message };
    let verb: String = r.try_get("verb")?;
    let Ok(verb) = Verb::parse(&verb) else {
        return Err(corrupt(format!("unknown verb {verb}")));
    };
    // a component since removed from the content no longer counts
    let Ok(component) = ComponentId::parse(&r.try_get::<String, _>("component")?) else {
        return Ok(None);
    };
    Ok(Some(Event {
        id: r.try_get("id")?,
        learner: learner.clone(),
        verb,
        component,
        item: r.try_get("item")?,
        success: r.try_get::<Option<i64>, _>("success")?.map(|s| s != 0),
        score: r.try_get("score")?,
        response: r.try_get("response")?,
        hints_used: r.try_get::<Option<i64>, _>("hints_used")?.map(|h| h.clamp(0, i64::from(u32::MAX)) as u32),
        duration_ms: r.try_get::<Option<i64>, _>("duration_ms")?.map(|d| d.max(0) as u64),
        timestamp: r.try_get("ts")?,
        group: None,
    }))
}

#[async_trait]
impl PassportStore for SqlPassportStore {
    #[tracing::instrument(skip_all, fields(events = events.len(), backend = self.db.backend().as_str()))]
    async fn record(&self, events: &[Event], lib: &Library) -> Result<Recorded, StoreError> {
        Ok(self.record_states(events, lib).await?.0)
    }

    #[tracing::instrument(skip_all, fields(events = events.len(), backend = self.db.backend().as_str()))]
    async fn record_states(&self, events: &[Event], lib: &Library) -> Result<(Recorded, States), StoreError> {
        if !self.db.single_writer() {
            // PostgreSQL: concurrent batches commit in parallel, serialized per learner
            return self.commit_one(events, lib).await;
        }
        self.group_commit(events, lib).await
    }

    async fn learner(&self, learner: &LearnerId) -> Result<LearnerState, StoreError> {
        // one connection, one snapshot: the learner row and its skill rows agree
        let mut tx = self.db.pool().begin().await?;
        let mut states = Self::load_states(&mut tx, &[learner]).await?;
        tx.commit().await?;
        Ok(states.remove(learner).unwrap_or_default())
    }

    async fn events(&self, learner: &LearnerId) -> Result<Vec<Event>, StoreError> {
        let mut tx = self.db.pool().begin().await?;
        let events = Self::all_events(&mut tx, learner).await;
        tx.commit().await?;
        events
    }

    async fn history(&self, learner: &LearnerId) -> Result<(LearnerState, Vec<Event>), StoreError> {
        let mut tx = self.db.pool().begin().await?;
        let base = Self::base(&mut tx, learner).await?;
        let events = Self::all_events(&mut tx, learner).await?;
        tx.commit().await?;
        Ok((base, events))
    }

    async fn feedback(&self, learner: &LearnerId) -> Result<Vec<Given>, StoreError> {
        let rows = sqlx::query(
            "SELECT recommendation, feedback, at FROM recommendation_feedback WHERE learner = $1 ORDER BY at DESC",
        )
        .bind(learner.as_str().to_owned())
        .fetch_all(self.db.pool())
        .await?;
        rows.iter()
            .map(|r| {
                let text: String = r.try_get("feedback")?;
                Ok(Given {
                    recommendation: r.try_get("recommendation")?,
                    feedback: Feedback::parse(&text).ok_or_else(|| StoreError::Corrupt {
                        learner: learner.to_string(),
                        message: format!("unknown feedback '{text}'"),
                    })?,
                    at: r.try_get("at")?,
                })
            })
            .collect()
    }

    async fn hints_given(&self, learner: &LearnerId, component: &ComponentId, item: &str) -> Result<u32, StoreError> {
        let row = sqlx::query("SELECT given FROM hints_given WHERE learner = $1 AND component = $2 AND item = $3")
            .bind(learner.as_str().to_owned())
            .bind(component.as_str().to_owned())
            .bind(item.to_owned())
            .fetch_optional(self.db.pool())
            .await?;
        Ok(row.map(|r| r.try_get::<i64, _>(0)).transpose()?.map_or(0, |n| n.clamp(0, i64::from(u32::MAX)) as u32))
    }

    async fn give_hint(
        &self,
        learner: &LearnerId,
        component: &ComponentId,
        item: &str,
        number: u32,
    ) -> Result<(), StoreError> {
        let _writer = self.db.write_guard().await;
        sqlx::query(
            "INSERT INTO hints_given (learner, component, item, given, at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (learner, component, item) DO UPDATE SET given = excluded.given, at = excluded.at",
        )
        .bind(learner.as_str().to_owned())
        .bind(component.as_str().to_owned())
        .bind(item.to_owned())
        .bind(i64::from(number))
        .bind(now_ms())
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    async fn give_feedback(
        &self,
        learner: &LearnerId,
        recommendation: &str,
        feedback: Feedback,
    ) -> Result<Given, StoreError> {
        let _writer = self.db.write_guard().await;
        let at = now_ms();
        sqlx::query(
            "INSERT INTO recommendation_feedback (learner, recommendation, feedback, at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (learner, recommendation) DO UPDATE SET feedback = excluded.feedback, at = excluded.at",
        )
        .bind(learner.as_str().to_owned())
        .bind(recommendation.to_owned())
        .bind(feedback.as_str())
        .bind(at)
        .execute(self.db.pool())
        .await?;
        Ok(Given { recommendation: recommendation.to_owned(), feedback, at })
    }

    async fn note_read(&self, learner: &LearnerId, reader: &str, what: &str) -> Result<(), StoreError> {
        let _writer = self.db.write_guard().await;
        sqlx::query("INSERT INTO audit_reads (learner, reader, what, at) VALUES ($1, $2, $3, $4)")
            .bind(learner.as_str().to_owned())
            .bind(reader.to_owned())
            .bind(what.to_owned())
            .bind(now_ms())
            .execute(self.db.pool())
            .await?;
        Ok(())
    }

    async fn reads(&self, learner: &LearnerId, limit: usize) -> Result<Vec<Read>, StoreError> {
        let rows = sqlx::query("SELECT reader, what, at FROM audit_reads WHERE learner = $1 ORDER BY at DESC LIMIT $2")
            .bind(learner.as_str().to_owned())
            .bind(limit.min(10_000) as i64)
            .fetch_all(self.db.pool())
            .await?;
        rows.iter()
            .map(|r| Ok(Read { reader: r.try_get("reader")?, what: r.try_get("what")?, at: r.try_get("at")? }))
            .collect()
    }

    async fn stale(&self, version: i64, limit: usize) -> Result<Vec<LearnerId>, StoreError> {
        let rows = sqlx::query("SELECT learner FROM learners WHERE params_version <> $1 ORDER BY learner LIMIT $2")
            .bind(version)
            .bind(limit.min(100_000) as i64)
            .fetch_all(self.db.pool())
            .await?;
        Ok(rows
            .iter()
            .filter_map(|r| r.try_get::<String, _>(0).ok())
            .filter_map(|l| LearnerId::parse(&l).ok())
            .collect())
    }

    async fn recompute(&self, learner: &LearnerId, lib: &Library) -> Result<bool, StoreError> {
        let _writer = self.db.write_guard().await;
        let mut tx = self.db.pool().begin().await?;
        self.db.lock_learner(&mut tx, learner.as_str()).await?;
        let stored = sqlx::query("SELECT params_version FROM learners WHERE learner = $1")
            .bind(learner.as_str())
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| r.try_get::<i64, _>(0))
            .transpose()?;
        if stored.is_none_or(|v| v == lib.learned.version) {
            tx.commit().await?;
            return Ok(false);
        }
        let groups = super::rollup::groups(&mut tx, &BTreeMap::from([(learner, Vec::new())]), lib).await?;
        let mut weeks: BTreeMap<(&LearnerId, SkillId, i64), f64> = BTreeMap::new();
        let mut week_of_answer = |skill: &SkillId, ts: i64, mastery: f64| {
            weeks.insert((learner, skill.clone(), super::model::week_of(ts)), mastery);
        };
        let state = Self::replay(&mut tx, learner, lib, self.proficient, &mut week_of_answer).await?;
        let touched: BTreeSet<SkillId> = state.skills.keys().cloned().collect();
        let saved = Saved { learner, state: &state, touched: &touched, groups: &groups[learner] };
        let mut w = Writes::new(&tx);
        Self::save(&mut w, &[saved], now_ms(), lib);
        Self::save_weeks(&mut w, &weeks, lib, &groups);
        w.run(&mut tx).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn forget_events_before(&self, before: i64, lib: &Library) -> Result<u64, StoreError> {
        let learners: Vec<String> = sqlx::query("SELECT DISTINCT learner FROM events WHERE ts < $1")
            .bind(before)
            .fetch_all(self.db.pool())
            .await?
            .iter()
            .map(|r| r.try_get::<String, _>(0))
            .collect::<Result<_, _>>()?;
        let mut deleted = 0;
        for raw in learners {
            let Ok(learner) = LearnerId::parse(&raw) else { continue };
            let _writer = self.db.write_guard().await;
            let mut tx = self.db.pool().begin().await?;
            self.db.lock_learner(&mut tx, learner.as_str()).await?;
            // the new base: the old one with the events that go applied on top, in order
            let mut old: Vec<Event> = Self::all_events(&mut tx, &learner).await?;
            old.retain(|e| e.timestamp < before);
            let base = LearnerState::replay_from(Self::base(&mut tx, &learner).await?, lib, &mut old, self.proficient);
            sqlx::query("UPDATE learners SET base_state = $1, base_until = $2 WHERE learner = $3")
                .bind(serde_json::to_string(&base).expect("state serializes"))
                .bind(before)
                .bind(learner.as_str())
                .execute(&mut *tx)
                .await?;
            deleted += sqlx::query("DELETE FROM events WHERE learner = $1 AND ts < $2")
                .bind(learner.as_str())
                .bind(before)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            tx.commit().await?;
        }
        Ok(deleted)
    }
}

#[async_trait]
impl LearnerData for SqlPassportStore {
    async fn erase_in(&self, tx: &mut Tx, learner: &LearnerId, erased: &mut Erased) -> Result<(), StoreError> {
        super::rollup::uncount(tx, learner).await?;
        erased.events += delete_rows(tx, "events", learner).await?;
        erased.skills += delete_rows(tx, "skill_states", learner).await?;
        delete_rows(tx, "learners", learner).await?;
        delete_rows(tx, "learner_courses", learner).await?;
        delete_rows(tx, "mastery_weeks", learner).await?;
        delete_rows(tx, "learner_weeks", learner).await?;
        erased.audit_reads += delete_rows(tx, "audit_reads", learner).await?;
        erased.recommendation_feedback += delete_rows(tx, "recommendation_feedback", learner).await?;
        delete_rows(tx, "hints_given", learner).await?;
        Ok(())
    }
}
