//! A mock LLM server speaking OpenAI's and Anthropic's streaming wire
//! formats, replaying scripted replies, or answering from a function for
//! load.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use futures::StreamExt;
use serde_json::Value;

use crate::frames::{
    DONE, finish_chunk, role_chunk, text_chunk, tool_args_chunk, tool_start_chunk, usage_chunk,
};

/// One request the mock LLM received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Value,
}

/// How the mock answers one request.
pub struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    writes: Vec<String>,
    /// Keep the body open after the writes, sending nothing more.
    hang_after_writes: bool,
    /// Never send even the headers.
    never_answer: bool,
    /// A pause before the write at this index.
    pause: Option<(usize, Duration)>,
}

impl Reply {
    pub fn stream(writes: Vec<String>) -> Reply {
        Reply {
            status: 200,
            headers: Vec::new(),
            writes,
            hang_after_writes: false,
            never_answer: false,
            pause: None,
        }
    }

    pub fn status(status: u16, body: &str) -> Reply {
        Reply {
            status,
            ..Reply::stream(vec![body.to_owned()])
        }
    }

    pub fn header(mut self, name: &'static str, value: &str) -> Reply {
        self.headers.push((name, value.to_owned()));
        self
    }

    /// Waits `pause` before the `index`th write (from 0), as a model that
    /// thinks mid-answer.
    pub fn pausing_before(mut self, index: usize, pause: Duration) -> Reply {
        self.pause = Some((index, pause));
        self
    }

    pub fn then_hang(mut self) -> Reply {
        self.hang_after_writes = true;
        self
    }

    pub fn never() -> Reply {
        Reply {
            never_answer: true,
            ..Reply::stream(Vec::new())
        }
    }
}

/// A loopback listener whose connections send each write at once, as a
/// real model API's do; without it every stream would stall on delayed
/// ACKs.
pub async fn nodelay_listener() -> (
    std::net::SocketAddr,
    impl axum::serve::Listener<Addr = std::net::SocketAddr>,
) {
    use axum::serve::ListenerExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let listener = listener.tap_io(|tcp| tcp.set_nodelay(true).unwrap());
    (addr, listener)
}

/// Decides a reply from the request body alone.
pub type Answer = fn(&Value) -> Reply;

struct MockState {
    script: Mutex<VecDeque<Reply>>,
    requests: Mutex<Vec<Recorded>>,
    open: std::sync::atomic::AtomicUsize,
    /// Set for load: replies come from here and nothing is recorded, so
    /// the mock's memory stays flat however many requests it serves.
    answer: Option<Answer>,
    /// The pause before each write.
    pace: Duration,
}

impl MockState {
    fn new(answer: Option<Answer>, pace: Duration) -> MockState {
        MockState {
            script: Mutex::default(),
            requests: Mutex::default(),
            open: Default::default(),
            answer,
            pace,
        }
    }
}

/// Counts a request as open until its response is finished or dropped.
struct OpenGuard(Arc<MockState>);

impl OpenGuard {
    fn new(state: &Arc<MockState>) -> OpenGuard {
        state.open.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        OpenGuard(state.clone())
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0
            .open
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A mock LLM server speaking OpenAI's and Anthropic's streaming wire
/// formats, replaying scripted replies in order.
pub struct MockLlm {
    /// Base URL including `/v1`, as OPENAI_BASE_URL would be.
    pub base_url: String,
    /// Base URL without `/v1`, as ANTHROPIC_BASE_URL would be.
    pub root_url: String,
    state: Arc<MockState>,
}

impl MockLlm {
    pub async fn start() -> MockLlm {
        Self::serve(MockState::new(None, Duration::from_millis(2))).await
    }

    /// A mock that answers every request with `answer`, pausing `pace`
    /// before each write, and records nothing.
    pub async fn answering(answer: Answer, pace: Duration) -> MockLlm {
        Self::serve(MockState::new(Some(answer), pace)).await
    }

    async fn serve(state: MockState) -> MockLlm {
        let state = Arc::new(state);
        let app = Router::new()
            .route("/v1/chat/completions", post(completions))
            .route("/v1/messages", post(completions))
            .with_state(state.clone());
        let (addr, listener) = nodelay_listener().await;
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        MockLlm {
            base_url: format!("http://{addr}/v1"),
            root_url: format!("http://{addr}"),
            state,
        }
    }

    /// Queues a 200 streaming reply, one string per write.
    pub fn respond(&self, writes: Vec<String>) {
        self.reply(Reply::stream(writes));
    }

    pub fn reply(&self, reply: Reply) {
        self.state.script.lock().unwrap().push_back(reply);
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.requests.lock().unwrap().clone()
    }

    /// The content of the first tool message in request `index` (an
    /// OpenAI-style body): a tool's result as the model was given it.
    pub fn tool_message_in(&self, index: usize) -> Value {
        let requests = self.requests();
        requests[index].body["messages"]
            .as_array()
            .and_then(|messages| messages.iter().find(|m| m["role"] == "tool"))
            .map(|message| message["content"].clone())
            .unwrap_or_else(|| panic!("no tool message in request {index}"))
    }

    /// Requests whose response is still open.
    pub fn open_requests(&self) -> usize {
        self.state.open.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The `[provider]` section pointing agenthost at this mock.
    pub fn provider_toml(&self) -> String {
        format!(
            "[provider]\nplugin = \"openai\"\nbase_url = {:?}\napi_key_env = \"AGENTHOST_TEST_KEY\"\nmodel = \"gpt-4o-mini\"\n",
            self.base_url
        )
    }
}

async fn completions(
    State(state): State<Arc<MockState>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let guard = OpenGuard::new(&state);
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let reply = match state.answer {
        Some(answer) => answer(&body),
        None => {
            state.requests.lock().unwrap().push(Recorded {
                path: uri.path().to_owned(),
                headers,
                body,
            });
            let Some(reply) = state.script.lock().unwrap().pop_front() else {
                return (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "mock LLM: no scripted response left",
                )
                    .into_response();
            };
            reply
        }
    };
    if reply.never_answer {
        std::future::pending::<()>().await;
    }
    let hang = reply.hang_after_writes;
    let pace = state.pace;
    let pause = reply.pause;
    let writes = futures::stream::iter(reply.writes.into_iter().enumerate()).then(
        move |(i, write)| async move {
            if !pace.is_zero() {
                tokio::time::sleep(pace).await;
            }
            if let Some((_, pause)) = pause.filter(|(at, _)| *at == i) {
                tokio::time::sleep(pause).await;
            }
            Ok::<_, std::io::Error>(Bytes::from(write))
        },
    );
    let tail = futures::stream::once(async move {
        if hang {
            std::future::pending::<()>().await;
        }
        drop(guard);
        Ok(Bytes::new())
    });
    let mut response = Response::builder().status(reply.status).header(
        "content-type",
        if reply.status == 200 {
            "text/event-stream"
        } else {
            "application/json"
        },
    );
    for (name, value) in reply.headers {
        response = response.header(name, value);
    }
    response
        .body(Body::from_stream(writes.chain(tail)))
        .unwrap()
}

/// Text chunks in a reply to a chat under load.
pub const LOAD_TEXT_CHUNKS: usize = 20;

/// Tokens the load models report for each turn, as OpenAI does when asked.
pub const LOAD_TURN_TOKENS: (u32, u32) = (120, 20);

/// A model for load: a chat with no tool result yet calls
/// `demo__calculate`, arguments split over three chunks; once the result
/// is in, it answers in [`LOAD_TEXT_CHUNKS`] text chunks. Each turn ends
/// with its usage.
pub fn calculate_then_answer(body: &Value) -> Reply {
    let has_result = body["messages"]
        .as_array()
        .and_then(|messages| messages.last())
        .is_some_and(|last| last["role"] == "tool");
    if has_result {
        text_answer(body)
    } else {
        Reply::stream(vec![
            role_chunk(),
            tool_start_chunk(0, "call_load", "demo__calculate"),
            tool_args_chunk(0, "{\"expr"),
            tool_args_chunk(0, "ession\": \"6*"),
            tool_args_chunk(0, "7\"}"),
            finish_chunk("tool_calls"),
            usage_chunk(LOAD_TURN_TOKENS.0, LOAD_TURN_TOKENS.1),
            DONE.into(),
        ])
    }
}

/// A model for load that answers in [`LOAD_TEXT_CHUNKS`] text chunks.
pub fn text_answer(_body: &Value) -> Reply {
    let mut writes = vec![role_chunk()];
    writes.extend((0..LOAD_TEXT_CHUNKS).map(|i| text_chunk(&format!("word{i} "))));
    writes.extend([
        finish_chunk("stop"),
        usage_chunk(LOAD_TURN_TOKENS.0, LOAD_TURN_TOKENS.1),
        DONE.into(),
    ]);
    Reply::stream(writes)
}
