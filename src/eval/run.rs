//! Running cases: a fresh data dir with the content indexed, a learner per case set up from
//! its events and mastery, the turns through the real agent, then the checks. The LLM engines
//! talk to an in-process OpenAI-compatible server that serves recorded replies (`replay`) or
//! forwards to a real endpoint (`live`, recording with `--record`), keyed by a hash of the
//! request body.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sha2::Digest;

use super::case::Case;
use super::score::{Check, Observed, checks, dimensions};
use crate::agent::{TurnEvent, TurnRequest, guard};
use crate::app::App;
use crate::config::Config;
use crate::content::{ComponentId, Format, Library, SkillId};
use crate::flags::FlagStatus;
use crate::ids::now_ms;
use crate::passport::{Band, LearnerId, validate_statement};

/// Which engine answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Engine {
    Offline,
    Replay,
    Live,
}

impl Engine {
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Offline => "offline",
            Engine::Replay => "replay",
            Engine::Live => "live",
        }
    }
}

impl std::str::FromStr for Engine {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "offline" => Ok(Engine::Offline),
            "replay" => Ok(Engine::Replay),
            "live" => Ok(Engine::Live),
            _ => Err(format!("unknown engine '{s}' (expected offline, replay or live)")),
        }
    }
}

/// Why a run could not be made.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(
        "case {case}: no recorded reply for request {hash} (in {file}); record it with `tutor eval --engine live --record --cases …`"
    )]
    MissingReplay { case: String, hash: String, file: String },
    #[error("{0}")]
    Setup(String),
}

/// The result of one case.
#[derive(Debug, Clone, Serialize)]
pub struct CaseResult {
    pub id: String,
    pub file: String,
    pub passed: bool,
    pub checks: Vec<Check>,
    pub dimensions: BTreeMap<&'static str, Option<bool>>,
    /// The LLM judge's scores (`--judge`), per dimension.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub judge: Option<BTreeMap<String, Option<bool>>>,
    pub observed: Observed,
}

/// Recorded replies of one case: request hash → response body.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Recording {
    pub replies: BTreeMap<String, Reply>,
}

/// One recorded response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub body: String,
}

/// The hash a request is recorded under: SHA-256 of its JSON with object keys sorted.
pub fn request_hash(body: &[u8]) -> String {
    let canonical = match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(v) => canonical_json(&v),
        Err(_) => String::from_utf8_lossy(body).into_owned(),
    };
    sha2::Sha256::digest(canonical.as_bytes()).iter().take(16).map(|b| format!("{b:02x}")).collect()
}

fn canonical_json(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys
                .iter()
                .map(|k| format!("{}:{}", serde_json::Value::String((*k).clone()), canonical_json(&m[*k])))
                .collect();
            format!("{{{}}}", parts.join(","))
        }
        serde_json::Value::Array(a) => format!("[{}]", a.iter().map(canonical_json).collect::<Vec<_>>().join(",")),
        other => other.to_string(),
    }
}

/// The in-process model server's state.
struct Recorder {
    engine: Engine,
    dir: PathBuf,
    /// The case being run, and its recording.
    case: Mutex<(String, Recording)>,
    misses: Mutex<Vec<(String, String)>>,
    upstream: Option<(String, String)>,
    record: bool,
    http: reqwest::Client,
}

impl Recorder {
    fn file(&self, case: &str) -> PathBuf {
        self.dir.join(format!("{case}.json"))
    }

    fn start_case(&self, case: &str) -> Result<(), RunError> {
        let rec = match std::fs::read_to_string(self.file(case)) {
            Ok(t) => {
                serde_json::from_str(&t).map_err(|e| RunError::Setup(format!("{}: {e}", self.file(case).display())))?
            }
            Err(_) => Recording::default(),
        };
        *self.case.lock().expect("case lock") = (case.to_owned(), rec);
        Ok(())
    }

    fn finish_case(&self) -> Result<(), RunError> {
        let (case, rec) = self.case.lock().expect("case lock").clone();
        // a case with no model call (a declined question) is recorded too: as asking nothing
        if self.record {
            std::fs::create_dir_all(&self.dir).map_err(|e| RunError::Setup(e.to_string()))?;
            let text = serde_json::to_string_pretty(&rec).expect("a recording serializes");
            std::fs::write(self.file(&case), text + "\n").map_err(|e| RunError::Setup(e.to_string()))?;
        }
        if let Some((case, hash)) = self.misses.lock().expect("misses lock").first().cloned() {
            return Err(RunError::MissingReplay { file: self.file(&case).display().to_string(), case, hash });
        }
        Ok(())
    }
}

async fn completions(State(r): State<Arc<Recorder>>, body: Bytes) -> Response {
    let hash = request_hash(&body);
    let (case, known) = {
        let c = r.case.lock().expect("case lock");
        (c.0.clone(), c.1.replies.get(&hash).cloned())
    };
    if r.engine == Engine::Replay {
        if let Some(reply) = known {
            let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::OK);
            return (status, [("content-type", reply.content_type)], reply.body).into_response();
        }
        r.misses.lock().expect("misses lock").push((case.clone(), hash.clone()));
        // a 400 is not retried: the turn fails at once and the run reports the miss
        let body = serde_json::json!({"error": {"message": format!("no recorded reply for case {case}, request {hash}"),
            "type": "invalid_request_error", "param": null, "code": "missing_replay"}});
        return (StatusCode::BAD_REQUEST, axum::Json(body)).into_response();
    }
    let Some((base, key)) = &r.upstream else {
        return (StatusCode::BAD_GATEWAY, "no live endpoint configured").into_response();
    };
    let sent = r
        .http
        .post(format!("{base}/chat/completions"))
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(body.to_vec())
        .send()
        .await;
    match sent {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let content_type = resp
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("application/json")
                .to_owned();
            let text = resp.text().await.unwrap_or_default();
            // every reply is recorded, refusals too, so that a replay meets what the run met
            if r.record {
                r.case
                    .lock()
                    .expect("case lock")
                    .1
                    .replies
                    .insert(hash, Reply { status, content_type: content_type.clone(), body: text.clone() });
            }
            (StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY), [("content-type", content_type)], text)
                .into_response()
        }
        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}

/// The settings a recording's requests depend on: they are part of every request (the model,
/// `max_completion_tokens`) or shape what it holds (the context budget and token margin, the
/// tool result size, the step limits, the chunking, the mastery bands). `--record` writes them
/// to `replays/settings.toml`; a replay applies them, whatever the environment says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplaySettings {
    pub llm_model: String,
    pub max_completion_tokens: u32,
    pub context_tokens: usize,
    pub token_margin: f64,
    pub tool_result_tokens: usize,
    pub max_steps: u32,
    pub max_tool_calls: u32,
    pub chunk_tokens: usize,
    pub chunk_overlap: usize,
    pub passport: crate::config::PassportConfig,
}

impl ReplaySettings {
    /// The file in a replays folder.
    pub const FILE: &'static str = "settings.toml";

    fn of(cfg: &Config) -> Self {
        let a = &cfg.agent;
        Self {
            llm_model: a.llm_model.clone(),
            max_completion_tokens: a.max_completion_tokens,
            context_tokens: a.context_tokens,
            token_margin: a.token_margin,
            tool_result_tokens: a.tool_result_tokens,
            max_steps: a.max_steps,
            max_tool_calls: a.max_tool_calls,
            chunk_tokens: cfg.chunk_tokens,
            chunk_overlap: cfg.chunk_overlap,
            passport: cfg.passport.clone(),
        }
    }

    fn apply(&self, cfg: &mut Config) {
        let a = &mut cfg.agent;
        a.llm_model = self.llm_model.clone();
        a.max_completion_tokens = self.max_completion_tokens;
        a.context_tokens = self.context_tokens;
        a.token_margin = self.token_margin;
        a.tool_result_tokens = self.tool_result_tokens;
        a.max_steps = self.max_steps;
        a.max_tool_calls = self.max_tool_calls;
        cfg.chunk_tokens = self.chunk_tokens;
        cfg.chunk_overlap = self.chunk_overlap;
        cfg.passport = self.passport.clone();
    }

    /// The settings recorded in `dir`, if any.
    pub fn read(dir: &std::path::Path) -> Result<Option<Self>, RunError> {
        let path = dir.join(Self::FILE);
        match std::fs::read_to_string(&path) {
            Ok(t) => toml::from_str(&t).map(Some).map_err(|e| RunError::Setup(format!("{}: {e}", path.display()))),
            Err(_) => Ok(None),
        }
    }

    fn write(&self, dir: &std::path::Path) -> Result<(), RunError> {
        std::fs::create_dir_all(dir).map_err(setup_err)?;
        let text = format!(
            "# The settings these recordings were made with (tutor eval --engine live --record);\n# `--engine replay` applies them. See evals/README.md.\n{}",
            toml::to_string(self).expect("settings serialize")
        );
        std::fs::write(dir.join(Self::FILE), text).map_err(setup_err)
    }
}

/// How a run is made.
pub struct RunOptions {
    pub engine: Engine,
    pub record: bool,
    /// Where recordings live (`evals/replays`).
    pub replays: PathBuf,
    /// Ask the model to judge each answer with `prompts/judge.md` (LLM engines).
    pub judge: bool,
}

/// Where one engine's run keeps its state, and what it runs with.
pub struct Runner {
    app: Arc<App>,
    lib: Arc<Library>,
    recorder: Option<Arc<Recorder>>,
    judge: bool,
    _data: tempfile::TempDir,
}

fn setup_err(e: impl std::fmt::Display) -> RunError {
    RunError::Setup(e.to_string())
}

impl Runner {
    /// Builds the application for the engine on a fresh data dir (SQLite, no dense vectors)
    /// and indexes the content into it.
    pub async fn new(base: &Config, lib: Arc<Library>, opts: &RunOptions) -> Result<Self, RunError> {
        let data = tempfile::tempdir().map_err(setup_err)?;
        let mut cfg = base.clone();
        match opts.engine {
            Engine::Replay => {
                if let Some(s) = ReplaySettings::read(&opts.replays)? {
                    s.apply(&mut cfg);
                }
            }
            Engine::Live if opts.record => ReplaySettings::of(&cfg).write(&opts.replays)?,
            _ => {}
        }
        cfg.data_dir = data.path().to_owned();
        cfg.database_url = None;
        cfg.embed.base_url = None;
        let recorder = Self::recorder(base, opts)?;
        cfg.agent.llm_base_url = None;
        cfg.agent.llm_api_key = None;
        if let Some(r) = &recorder {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(setup_err)?;
            let addr = listener.local_addr().map_err(setup_err)?;
            let app = axum::Router::new()
                .route("/v1/chat/completions", axum::routing::post(completions))
                .with_state(r.clone());
            tokio::spawn(async move { axum::serve(listener, app).await });
            cfg.agent.llm_base_url = Some(format!("http://{addr}/v1"));
            cfg.agent.llm_api_key = Some("eval".into());
            // recorded replies come at once; a live model gets the configured time
            if opts.engine == Engine::Replay {
                cfg.agent.llm_timeout_secs = 10;
            }
        }
        let app = App::open(cfg).await.map_err(setup_err)?;
        app.ingest(&lib, &indicatif::ProgressBar::hidden()).await.map_err(setup_err)?;
        app.open_index().await.map_err(setup_err)?;
        if opts.judge && app.agent.llm.is_none() {
            return Err(setup_err("--judge needs an LLM engine (replay or live)"));
        }
        Ok(Self { app, lib, recorder, judge: opts.judge, _data: data })
    }

    /// The in-process model server of an LLM engine: replaying recordings, or forwarding to
    /// the live endpoint.
    fn recorder(base: &Config, opts: &RunOptions) -> Result<Option<Arc<Recorder>>, RunError> {
        let upstream = match opts.engine {
            Engine::Live => Some((
                base.agent.llm_base_url.clone().unwrap_or_else(|| crate::agent::llm::OPENAI_BASE.into()),
                base.agent
                    .llm_api_key
                    .clone()
                    .ok_or_else(|| setup_err("live mode needs TUTOR_LLM_API_KEY or OPENAI_API_KEY"))?,
            )),
            _ => None,
        };
        Ok(match opts.engine {
            Engine::Offline => None,
            engine => Some(Arc::new(Recorder {
                engine,
                dir: opts.replays.clone(),
                case: Mutex::new((String::new(), Recording::default())),
                misses: Mutex::new(Vec::new()),
                upstream,
                record: opts.record,
                http: reqwest::Client::new(),
            })),
        })
    }

    /// Answers on `skill`'s exercises until its mastery reaches the named band.
    fn mastery_events(
        &self,
        learner: &str,
        skill: &SkillId,
        target: &str,
        t: &mut i64,
    ) -> Result<Vec<serde_json::Value>, RunError> {
        let cfg = &self.app.config.passport;
        let (goal, right) = match target {
            "low" | "intro" => (cfg.developing / 2.0, false),
            "developing" => ((cfg.developing + cfg.proficient) / 2.0, true),
            "proficient" => ((cfg.proficient + cfg.mastered) / 2.0, true),
            "mastered" => (cfg.mastered, true),
            other => {
                return Err(setup_err(format!("unknown mastery '{other}' (low, developing, proficient, mastered)")));
            }
        };
        let exercise = self
            .lib
            .components
            .values()
            .find(|c| c.format == Format::Exercise && c.skills.first() == Some(skill))
            .or_else(|| self.lib.components.values().find(|c| c.format == Format::Exercise && c.skills.contains(skill)))
            .ok_or_else(|| setup_err(format!("no exercise on {skill} to set its mastery")))?;
        let params = self.lib.bkt(skill);
        let mut m = params.prior;
        let mut out = Vec::new();
        // right answers climb to the goal; for low, wrong answers, but fewer in a row than
        // the struggle rule counts (a case that wants a struggling learner posts its own)
        let wrong = self.app.config.flags.wrong_streak.saturating_sub(1).max(1) as usize;
        let mut n = 0;
        while (right && m < goal) || (!right && n < wrong) {
            let item = &exercise.items[n % exercise.items.len()];
            m = crate::passport::bkt::update(m, right, &params);
            *t += 60;
            out.push(serde_json::json!({"id": format!("setup-{skill}-{n}"), "actor": learner, "verb": "answered",
                "object": {"component": exercise.id, "item": item.id}, "result": {"success": right},
                "timestamp": chrono::DateTime::from_timestamp(*t, 0).expect("a time").to_rfc3339()}));
            n += 1;
            if n > 60 {
                break;
            }
        }
        Ok(out)
    }

    /// Runs one case.
    pub async fn run_case(&self, case: &Case) -> Result<CaseResult, RunError> {
        let learner = LearnerId::parse(&format!("eval-{}", case.id)).map_err(|e| setup_err(e.0))?;
        if let Some(r) = &self.recorder {
            r.start_case(&case.id)?;
            // each case's requests depend on nothing run before it
            self.app.stores.sessions.forget_renders().await.map_err(setup_err)?;
            if let Some(llm) = &self.app.agent.llm {
                llm.reset_scale();
            }
        }
        // setup: events as posted, then mastery per skill; fixed times, so runs are identical
        let mut t = 1_763_000_000;
        let mut raw = Vec::new();
        for (n, e) in case.learner.events.iter().enumerate() {
            t += 60;
            raw.push(serde_json::json!({"id": format!("setup-{n}"), "actor": learner, "verb": "answered",
                "object": {"component": e.component, "item": e.item},
                "result": {"success": e.success, "response": e.response, "hints_used": e.hints_used},
                "timestamp": chrono::DateTime::from_timestamp(t, 0).expect("a time").to_rfc3339()}));
        }
        for (skill, target) in &case.learner.mastery {
            let skill = SkillId::parse(skill)
                .ok()
                .filter(|s| self.lib.skills.contains_key(s))
                .ok_or_else(|| setup_err(format!("case {}: unknown skill {skill}", case.id)))?;
            raw.extend(self.mastery_events(learner.as_str(), &skill, target, &mut t)?);
        }
        let now = now_ms();
        let events = raw
            .iter()
            .map(|v| {
                validate_statement(v, &self.lib, now)
                    .map_err(|e| setup_err(format!("case {}: setup event: {e}", case.id)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if !events.is_empty() {
            self.app.stores.passports.record(&events, &self.lib).await.map_err(setup_err)?;
        }
        let page = match &case.page {
            Some(p) => Some(
                ComponentId::parse(p)
                    .ok()
                    .filter(|c| self.lib.components.contains_key(c))
                    .ok_or_else(|| setup_err(format!("case {}: unknown page {p}", case.id)))?,
            ),
            None => None,
        };
        // the answers to the learner's earlier exercises raise flags as the API would
        let stores = &self.app.stores;
        crate::flags::watch_answers(
            &self.lib,
            &self.app.config.flags,
            &*stores.passports,
            &*stores.flags,
            &events,
            None,
        )
        .await;

        let mut o = Observed::default();
        let mut session = None;
        for turn in &case.turns {
            let (tx, mut rx) = tokio::sync::mpsc::channel(256);
            let req = TurnRequest {
                learner: learner.clone(),
                session_id: session.clone(),
                component: page.clone(),
                message: turn.clone(),
                courses: None,
            };
            let collect = tokio::spawn(async move {
                let mut tools = Vec::new();
                while let Some(e) = rx.recv().await {
                    if let TurnEvent::Tool(t) = e {
                        tools.push(t);
                    }
                }
                tools
            });
            let result = self.app.agent.turn(self.lib.clone(), req, Some(tx)).await.map_err(setup_err)?;
            o.tools.extend(collect.await.map_err(setup_err)?);
            session = Some(result.session_id.clone());
            o.answers.push(result.answer.clone());
            o.citations = result.citations.iter().map(ToString::to_string).collect();
            o.peak_prompt = o.peak_prompt.max(result.tokens.peak_prompt);
            o.engines.push(result.engine.as_str().to_owned());
            o.modes.push(result.mode.as_str().to_owned());
            o.actions.push(result.actions.clone());
            let cited = crate::agent::checks::bracketed_ids(&result.answer);
            o.grounded = !cited.is_empty()
                && cited.iter().all(|c| ComponentId::parse(c).is_ok_and(|c| self.lib.components.contains_key(&c)));
        }
        let judge = if self.judge { Some(self.judge(case, &o).await) } else { None };
        if let Some(r) = &self.recorder {
            r.finish_case()?;
        }

        let state = self.app.stores.passports.learner(&learner).await.map_err(setup_err)?;
        o.flags_open = self
            .app
            .stores
            .flags
            .flags_of(&learner)
            .await
            .map_err(setup_err)?
            .into_iter()
            .filter(|f| f.status == FlagStatus::Open)
            .map(|f| f.skill)
            .collect();
        let page_component = page.as_ref().and_then(|p| self.lib.components.get(p));
        if let Some(c) = page_component {
            let plan =
                crate::passport::plan(&self.lib, &self.app.config.passport, &learner, &state, c, &Default::default());
            o.skip_offer = Some(plan.skip_offer.offered);
            let skill = &c.skills[0];
            o.band = Some(Band::of(state.mastery(&self.lib, skill), &self.app.config.passport));
            o.keys = guard::page_exercise_keys(&self.lib, Some(c)).keys;
        } else {
            o.band = Some(Band::Intro);
        }
        o.diagnoses =
            state.skills.values().flat_map(|s| s.misconceptions.iter().map(|m| m.diagnosis.clone())).collect();
        let checks = checks(case, &o);
        let dims = dimensions(case, &o);
        let passed = checks.iter().all(|c| c.passed);
        Ok(CaseResult {
            id: case.id.clone(),
            file: case.file.display().to_string(),
            passed,
            checks,
            dimensions: dims,
            judge,
            observed: o,
        })
    }

    /// The model's scores of the last answer, with `prompts/judge.md`; a reply that is not the
    /// JSON asked for scores nothing (every dimension `None`).
    async fn judge(&self, case: &Case, o: &Observed) -> BTreeMap<String, Option<bool>> {
        let llm = self.app.agent.llm.as_ref().expect("checked in new");
        let mut convo = String::new();
        for (turn, answer) in case.turns.iter().zip(&o.answers) {
            convo.push_str(&format!("Learner: {turn}\n\nTutor: {answer}\n\n"));
        }
        let user = format!(
            "Case: {}\nPage: {}\nLearner's known misconceptions: {}\n\n{convo}Score the tutor's last reply.",
            case.description,
            case.page.as_deref().unwrap_or("none"),
            if o.diagnoses.is_empty() { "none".into() } else { o.diagnoses.join("; ") }
        );
        let reply = llm.complete(&self.app.agent.prompts.get("judge").text, &user, 200).await.unwrap_or_default();
        let json = reply.find('{').and_then(|a| reply.rfind('}').map(|b| &reply[a..=b])).unwrap_or("{}");
        let parsed: serde_json::Value = serde_json::from_str(json).unwrap_or_default();
        super::score::MRBENCH
            .iter()
            .map(|d| {
                let v = match &parsed[*d] {
                    serde_json::Value::Bool(b) => Some(*b),
                    serde_json::Value::Number(n) => n.as_f64().map(|x| x >= 0.5),
                    _ => None,
                };
                (d.to_string(), v)
            })
            .collect()
    }
}

/// Runs every case on one engine.
pub async fn run_all(
    base: &Config,
    lib: Arc<Library>,
    cases: &[Case],
    opts: &RunOptions,
) -> Result<Vec<CaseResult>, RunError> {
    let runner = Runner::new(base, lib, opts).await?;
    let mut out = Vec::with_capacity(cases.len());
    for c in cases {
        out.push(runner.run_case(c).await?);
    }
    Ok(out)
}
