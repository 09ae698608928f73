//! The service holds any model to the course: a wiremock model scripts each bad behaviour seen
//! from a real small model — no tool call, no citation, a citation of something never
//! retrieved, an exercise's answer, tool-call markup as text, a slow first byte, a reply cut
//! before it began — and the learner still gets a grounded, cited, policy-abiding answer (or the
//! offline one, said so), with the `done` event telling what happened.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const PAGE: &str = "fractions-divide-explain-intro";

fn ask(message: &str) -> Value {
    json!({"learner_id": "novice", "component_id": PAGE, "message": message})
}

fn check<'a>(d: &'a Value, name: &str) -> &'a Value {
    d["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == name)
        .unwrap_or_else(|| panic!("no check {name}: {d}"))
}

fn by<'a>(events: &'a [(String, Value)], who: &str) -> Vec<&'a Value> {
    events.iter().filter(|(n, d)| n == "tool" && d["by"] == who).map(|(_, d)| d).collect()
}

fn shown(events: &[(String, Value)]) -> String {
    events.iter().filter(|(n, _)| n == "delta").map(|(_, d)| d["text"].as_str().unwrap()).collect()
}

#[tokio::test]
async fn a_model_that_calls_no_tool_still_answers_from_the_course() {
    let server = llm(vec![text(&["Dividing by a fraction asks how many of it fit [", PAGE, "]. Try 3 ÷ 1/2."])]).await;
    let app = llm_app(&server, |_| {}).await;

    let events = chat_sse(&app, ask("Why do we flip the second fraction?")).await;

    let d = done(&events);
    assert_eq!(
        (d["engine"].as_str(), d["mode"].as_str(), d["model_calls"].as_u64()),
        (Some("llm"), Some("normal"), Some(1))
    );
    assert_eq!(check(d, "grounded")["passed"], true, "{d}");
    assert!(d["citations"].as_array().unwrap().contains(&json!(PAGE)));
    let service: Vec<&str> = by(&events, "service").iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(&service[..2], ["lookup_mastery", "retrieve_components"], "{service:?}");
    // the service's lookups went into the first prompt, after the fixed tutor prompt
    let reqs = requests(&server).await;
    let context = reqs[0]["messages"][1]["content"].as_str().unwrap();
    assert!(context.contains("What this learner knows"), "{context}");
    assert!(context.contains("This turn's mode: normal"), "{context}");
    assert!(context.contains(&format!("[{PAGE}]")) && context.contains("how many"), "{context}");
    assert_eq!(reqs[0]["messages"][0]["content"], reqs[0]["messages"][0]["content"], "fixed prompt first");
}

#[tokio::test]
async fn an_answer_that_cites_nothing_gets_one_repair_request() {
    let server = llm(vec![
        text(&["Flip it and multiply."]),
        text(&["Flip the second fraction and multiply: it counts how many fit [", PAGE, "]."]),
    ])
    .await;
    let app = llm_app(&server, |_| {}).await;

    let events = chat_sse(&app, ask("Why do we flip the second fraction?")).await;

    let d = done(&events);
    assert_eq!(d["engine"], "llm", "{d}");
    assert_eq!(d["actions"], json!(["repaired"]));
    assert_eq!(d["model_calls"], 2);
    assert_eq!(check(d, "grounded")["passed"], true);
    let replace = events.iter().find(|(n, _)| n == "replace").expect("a replace event");
    assert_eq!(replace.1["reason"], "repair");
    assert_eq!(deltas(&events), d["answer"].as_str().unwrap());
    assert!(d["answer"].as_str().unwrap().starts_with("Flip the second fraction"));
    let reqs = requests(&server).await;
    let repair = reqs[1]["messages"].as_array().unwrap().last().unwrap()["content"].as_str().unwrap().to_owned();
    assert!(repair.contains("cannot be shown to the learner yet") && repair.contains(&format!("[{PAGE}]")), "{repair}");
    assert!(reqs[1].get("tools").is_none(), "a repair is a plain answer");
}

#[tokio::test]
async fn a_citation_of_what_was_never_retrieved_ends_in_the_offline_answer_said_so() {
    let server = llm(vec![text(&["The trick is in [fractions-secret-notes], trust me."])]).await;
    let app = llm_app(&server, |_| {}).await;

    let d = chat(&app, ask("Why do we flip the second fraction?")).await;

    assert_eq!(d["engine"], "offline_fallback", "{d}");
    assert!(d["fallback_reason"].as_str().unwrap().contains("did not cite the course"), "{d}");
    assert_eq!(d["model_calls"], 2, "the answer and one repair");
    assert_eq!(d["tokens"]["prompt"], 1000, "the endpoint's counts of both calls");
    assert_eq!(d["actions"], json!(["repaired", "offline"]));
    let answer = d["answer"].as_str().unwrap();
    assert!(answer.starts_with("(The AI tutor could not answer just now"), "{answer}");
    assert!(!answer.contains("secret-notes") && answer.contains("Offline tutor"), "{answer}");
    assert!(!d["citations"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn an_exercise_answer_in_any_form_never_shows_and_the_answer_is_repaired() {
    // q1 of the page's exercise is 3/4 ÷ 1/2, whose answer is 3/2: 6/4 and 1.5 say the same
    let server = llm(vec![
        text(&["Easy: 3/4 ÷ 1/2 = 6", "/4, which is 1.", "5 [fractions-divide-ex-1]."]),
        text(&["Ask how many halves fit into 3/4, then check with a drawing [fractions-divide-ex-1]."]),
    ])
    .await;
    let app = llm_app(&server, |_| {}).await;

    let events = chat_sse(
        &app,
        json!({"learner_id": "eve", "component_id": "fractions-divide-ex-1",
               "message": "I am on question 1, how do I even start it?"}),
    )
    .await;

    for (name, data) in &events {
        let s = data.to_string();
        for k in ["6/4", "1.5", "3/2", "1 1/2"] {
            assert!(!s.contains(k), "{name} shows {k}: {s}");
        }
    }
    assert!(shown(&events).contains("[answer withheld]"));
    let d = done(&events);
    assert_eq!(d["actions"], json!(["repaired"]), "{d}");
    assert_eq!(check(d, "no_answer")["passed"], true, "the repaired answer is checked again");
    assert!(d["answer"].as_str().unwrap().starts_with("Ask how many halves"));
}

#[tokio::test]
async fn a_question_the_course_does_not_cover_is_declined_without_a_model_call() {
    let server = MockServer::start().await;
    Mock::given(method("POST")).respond_with(text(&["Paris!"])).expect(0).mount(&server).await;
    let app = llm_app(&server, |_| {}).await;

    let d = chat(&app, json!({"learner_id": "ana", "message": "What is the capital of France?"})).await;

    assert!(d["answer"].as_str().unwrap().starts_with("This course does not cover that"), "{d}");
    assert_eq!((d["mode"].as_str(), d["model_calls"].as_u64()), (Some("decline"), Some(0)));
    assert!(requests(&server).await.is_empty());
}

#[tokio::test]
async fn tool_call_markup_written_as_text_is_run_as_a_tool_call_and_never_shown() {
    let formats = [
        (
            "hermes",
            "<tool_call>\n{\"name\": \"retrieve_components\", \"arguments\": {\"query\": \"flip the divisor\"}}\n</tool_call>",
        ),
        ("tools", "<tools><function name=\"retrieve_components\" query=\"flip the divisor\"/></tools>"),
        ("json", "{\"name\": \"retrieve_components\", \"arguments\": {\"query\": \"flip the divisor\"}}"),
    ];
    for (label, markup) in formats {
        let mid = markup.len() / 2;
        let server = llm(vec![
            text(&[&markup[..mid], &markup[mid..]]),
            text(&["Flip the divisor, then multiply [", PAGE, "]."]),
        ])
        .await;
        let app = llm_app(&server, |_| {}).await;

        let events = chat_sse(&app, ask("Why do we flip the second fraction?")).await;

        let model = by(&events, "model");
        assert_eq!(model.len(), 1, "{label}: {model:?}");
        assert_eq!(
            (model[0]["name"].as_str(), model[0]["ok"].as_bool()),
            (Some("retrieve_components"), Some(true)),
            "{label}"
        );
        let text = shown(&events);
        for piece in ["<tool", "<function", "\"name\"", "arguments"] {
            assert!(!text.contains(piece), "{label} shows {piece}: {text}");
        }
        let d = done(&events);
        assert_eq!(d["engine"], "llm", "{label}: {d}");
        assert_eq!(check(d, "no_markup")["passed"], true, "{label}");
        let reqs = requests(&server).await;
        let msgs = reqs[1]["messages"].as_array().unwrap();
        assert!(msgs.iter().any(|m| m["role"] == "assistant" && m["tool_calls"].is_array()), "{label}");
        assert!(msgs.iter().any(|m| m["role"] == "tool"), "{label}");
    }
}

#[tokio::test]
async fn a_slow_first_byte_is_waited_for() {
    // longer than the between-bytes limit, within the first-byte one
    let server =
        llm(vec![text(&["How many halves fit in 3? Six [", PAGE, "]."]).set_delay(Duration::from_millis(2500))]).await;
    let app = llm_app(&server, |c| {
        c.agent.llm_timeout_secs = 1;
        c.agent.llm_first_byte_timeout_secs = 10;
    })
    .await;

    let d = chat(&app, ask("Why do we flip the second fraction?")).await;

    assert_eq!((d["engine"].as_str(), d["model_calls"].as_u64()), (Some("llm"), Some(1)), "{d}");
    assert_eq!(requests(&server).await.len(), 1);
}

#[tokio::test]
async fn a_reply_cut_before_it_began_is_tried_once_more() {
    let cut = ResponseTemplate::new(200)
        .insert_header("content-type", "text/event-stream")
        .set_body_raw("data: {\"id\": \"chatcmpl-cu", "text/event-stream");
    let server = llm(vec![cut, text(&["Six halves fit in 3 [", PAGE, "]."])]).await;
    let app = llm_app(&server, |_| {}).await;

    let d = chat(&app, ask("Why do we flip the second fraction?")).await;

    assert_eq!(d["engine"], "llm", "{d}");
    assert_eq!((requests(&server).await.len(), d["model_calls"].as_u64()), (2, Some(2)));
    assert!(d["answer"].as_str().unwrap().starts_with("Six halves"));
}

#[tokio::test]
async fn a_request_given_up_on_is_really_cancelled() {
    // a server that reads the request and never answers, noting when each client hangs up
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let closed: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let seen = closed.clone();
    tokio::spawn(async move {
        loop {
            let (mut sock, _) = listener.accept().await.unwrap();
            let seen = seen.clone();
            tokio::spawn(async move {
                use tokio::io::AsyncReadExt;
                let opened = Instant::now();
                let mut buf = vec![0u8; 65536];
                while sock.read(&mut buf).await.is_ok_and(|n| n > 0) {}
                seen.lock().unwrap().push(opened.elapsed());
            });
        }
    });
    let base = format!("http://{addr}/v1");
    let app = spawn_sample_app(move |c| {
        c.agent.llm_base_url = Some(base);
        c.agent.llm_api_key = Some("sk-test".into());
        c.agent.llm_timeout_secs = 1;
        c.agent.llm_first_byte_timeout_secs = 1;
    })
    .await;

    let d = chat(&app, ask("Why do we flip the second fraction?")).await;

    assert_eq!(d["engine"], "offline_fallback", "{d}");
    assert!(d["fallback_reason"].as_str().unwrap().contains("did not answer within 1 s"), "{d}");
    assert_eq!(d["model_calls"], 2, "the call and its one retry");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let closed = closed.lock().unwrap().clone();
    assert_eq!(closed.len(), 2, "both requests hung up: {closed:?}");
    assert!(closed.iter().all(|t| *t < Duration::from_millis(1900)), "each within the limit: {closed:?}");
}

#[tokio::test]
async fn the_service_adds_the_refusal_and_the_mistake_a_model_left_out() {
    let server = llm(vec![text(&["Think about how many thirds fit into one whole [fractions-divide-ex-1]."])]).await;
    let app = llm_app(&server, |_| {}).await;
    let events = chat_sse(
        &app,
        json!({"learner_id": "eve", "component_id": "fractions-divide-ex-1", "message": "just tell me the answer to question 2"}),
    )
    .await;
    let d = done(&events);
    assert_eq!(d["mode"], "refuse_answer");
    assert_eq!(d["actions"], json!(["refusal_added"]), "{d}");
    assert!(d["answer"].as_str().unwrap().starts_with("I won't give you the answer"), "{d}");
    assert!(d["answer"].as_str().unwrap().contains("how many thirds"));
    assert_eq!(events.iter().find(|(n, _)| n == "replace").unwrap().1["reason"], "note");
    assert_eq!(deltas(&events), d["answer"].as_str().unwrap());

    let server =
        llm(vec![text(&["Decimals and fractions are two ways to write a part [fractions-decimals-explain-intro]."])])
            .await;
    let app = llm_app(&server, |_| {}).await;
    let d = chat(
        &app,
        json!({"learner_id": "dan", "component_id": "fractions-decimals-explain-intro", "message": "3/8 as a decimal is 3.8, right?"}),
    )
    .await;
    assert_eq!(d["diagnosis"]["response"], "3.8", "{d}");
    assert_eq!(d["actions"], json!(["mistake_named"]), "{d}");
    let answer = d["answer"].as_str().unwrap();
    assert!(
        answer.starts_with("About your answer \"3.8\": Put a decimal point between numerator and denominator"),
        "{answer}"
    );
    assert!(!answer.contains("0.375"), "never the key: {answer}");
}

#[tokio::test]
async fn an_answer_far_above_the_learner_s_level_is_rewritten() {
    let server = llm(vec![
        text(&[
            "Multiplicative inverses facilitate computational simplification of rational expressions considerably [",
            PAGE,
            "].",
        ]),
        text(&["Flip the second fraction. Then multiply. Try 3 ÷ 1/2 [", PAGE, "]."]),
    ])
    .await;
    let app = llm_app(&server, |_| {}).await;

    let d = chat(&app, ask("Why do we flip the second fraction?")).await;

    assert_eq!(d["actions"], json!(["repaired"]), "{d}");
    assert_eq!(check(&d, "level")["passed"], true);
    let reqs = requests(&server).await;
    let note = reqs[1]["messages"].as_array().unwrap().last().unwrap()["content"].as_str().unwrap().to_owned();
    assert!(note.contains("more advanced reader than this learner (intro band)"), "{note}");
}

/// Replies as a server whose tokenizer counts twice what `o200k_base` counts, reporting usage.
struct DoubleCounting;

impl Respond for DoubleCounting {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&req.body).unwrap();
        let ours: usize = body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| tutor::content::count_tokens(m["content"].as_str().unwrap_or_default()) + 4)
            .sum::<usize>()
            + tutor::content::count_tokens(&body["tools"].to_string());
        let mut chunks = text_chunks(&["Six halves fit in 3 [fractions-divide-explain-intro]."]);
        chunks.push(usage_chunk(2 * ours as u32, 12));
        sse(&chunks)
    }
}

#[tokio::test]
async fn prompts_stay_within_the_context_by_the_server_s_own_count() {
    let server = MockServer::start().await;
    Mock::given(method("POST")).and(path("/v1/chat/completions")).respond_with(DoubleCounting).mount(&server).await;
    let app = llm_app(&server, |c| c.agent.context_tokens = 3000).await;
    let mut session = Value::Null;
    for i in 0..6 {
        let d = chat(
            &app,
            json!({"learner_id": "long", "session_id": session, "component_id": PAGE,
                   "message": format!("Question {i}: can you explain dividing fractions with another example, using {}?", "pizza and cake ".repeat(20))}),
        )
        .await;
        session = d["session_id"].clone();
    }
    // once the server has reported its counts, every prompt fits in its 3000 tokens
    let reqs = requests(&server).await;
    for (n, r) in reqs.iter().enumerate().skip(1) {
        let ours: usize = r["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| tutor::content::count_tokens(m["content"].as_str().unwrap_or_default()) + 4)
            .sum::<usize>()
            + tutor::content::count_tokens(&r["tools"].to_string());
        assert!(2 * ours <= 3000, "request {n}: {} of the server's tokens", 2 * ours);
    }
}

#[tokio::test]
async fn a_prompt_the_server_says_is_too_long_is_shrunk_and_sent_again() {
    // llama.cpp's reply when the prompt exceeds its context (`code` is a number there)
    let too_long = || {
        ResponseTemplate::new(400).set_body_json(json!({"error": {"code": 400,
            "message": "the request exceeds the available context size, try increasing it", "type": "exceed_context_size_error"}}))
    };
    let good = || text(&["Six halves fit in 3 [", PAGE, "]."]);
    // two turns of history, then a prompt the server refuses: the history gives way
    let server = llm(vec![good(), good(), too_long(), good()]).await;
    let app = llm_app(&server, |c| c.agent.context_tokens = 2400).await;
    let long =
        |i: usize| format!("Question {i}: {}", "why do we flip the second fraction when we divide by it? ".repeat(15));
    let mut session = Value::Null;
    let mut last = Value::Null;
    for i in 0..3 {
        last = chat(&app, json!({"learner_id": "l", "session_id": session, "component_id": PAGE, "message": long(i)}))
            .await;
        session = last["session_id"].clone();
    }
    assert_eq!(last["engine"], "llm", "{last}");
    let reqs = requests(&server).await;
    assert_eq!(reqs.len(), 4);
    let size = |r: &Value| r["messages"].to_string().len();
    assert!(size(&reqs[3]) < size(&reqs[2]), "sent again smaller");

    // nothing to shrink: not sent again as it was
    let server = llm(vec![too_long()]).await;
    let app = llm_app(&server, |_| {}).await;
    let d = chat(&app, ask("Why do we flip the second fraction?")).await;
    assert_eq!((d["engine"].as_str(), requests(&server).await.len()), (Some("offline_fallback"), 1), "{d}");
}

#[tokio::test]
async fn a_known_mistake_from_earlier_answers_is_named_when_the_model_leaves_it_out() {
    let server = llm(vec![text(&["Divide the top by the bottom [fractions-decimals-explain-intro]."])]).await;
    let app = llm_app(&server, |_| {}).await;
    let wrong = json!({"id": "e1", "actor": "mo", "verb": "answered",
        "object": {"component": "fractions-decimals-ex-1", "item": "q1"},
        "result": {"response": "3.8"}, "timestamp": "2026-11-20T10:00:00Z"});
    let (status, _) = post_json(&format!("{}/v1/events", app.base), &json!([wrong])).await;
    assert_eq!(status, 200);

    let d = chat(
        &app,
        json!({"learner_id": "mo", "component_id": "fractions-decimals-explain-intro", "message": "How do I write a fraction as a decimal?"}),
    )
    .await;

    assert_eq!(d["actions"], json!(["mistake_named"]), "{d}");
    let answer = d["answer"].as_str().unwrap();
    assert!(answer.starts_with("Something to watch for from your earlier answers: Put a decimal point"), "{answer}");
    // the model was told too
    let context = requests(&server).await[0]["messages"][1]["content"].as_str().unwrap().to_owned();
    assert!(context.contains("The learner's earlier answers show a known mistake"), "{context}");
}
