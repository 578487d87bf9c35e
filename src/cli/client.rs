//! A blocking JSON client of the scheduler's HTTP API, shared by the client
//! commands, and the lookup of records by name or id.
//!
//! Errors are `anyhow` errors whose message is printed as is: the server's
//! own message when it rejects a request, or one line naming the URL when it
//! cannot be reached.

use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use clap::Args;
use serde_json::Value;

/// Maximum time for one request, connection included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Largest output stream read in one request. The scheduler caps each stream
/// at 1 MiB by default, so this leaves room for a raised cap.
const MAX_OUTPUT_BYTES: u64 = 256 * 1024 * 1024;

/// Options every client command takes.
#[derive(Args, Clone, Debug)]
pub struct Connection {
    /// URL of the scheduler's HTTP API
    #[arg(
        long,
        global = true,
        env = "DELICATE_SERVER",
        default_value = "http://127.0.0.1:8090",
        value_name = "URL"
    )]
    pub server: String,

    /// Print the server's JSON in place of tables
    #[arg(long, global = true)]
    pub json: bool,
}

/// An HTTP status and the JSON body (`Null` when empty).
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

impl Reply {
    /// Returns the body of a 2xx reply, or the server's error message as the
    /// error.
    pub fn into_body(self) -> anyhow::Result<Value> {
        if (200..300).contains(&self.status) {
            return Ok(self.body);
        }
        Err(anyhow!(rejection_message(&self)))
    }
}

/// Bytes of an instance's output with the instance status the server sent.
pub struct OutputChunk {
    pub bytes: Vec<u8>,
    pub instance_status: String,
}

pub struct Client {
    server: String,
    agent: ureq::Agent,
}

impl Client {
    pub fn new(server: &str) -> Client {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(REQUEST_TIMEOUT))
            .build()
            .into();
        Client {
            server: server.trim_end_matches('/').to_string(),
            agent,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.server)
    }

    fn unreachable(&self, error: ureq::Error) -> anyhow::Error {
        anyhow!(
            "cannot reach the delicate server at {}: {error}",
            self.server
        )
    }

    /// Sends a request and returns the reply whatever its status.
    pub fn send(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> anyhow::Result<Reply> {
        let url = self.url(path);
        let result = match (method, body) {
            ("GET", _) => self.agent.get(&url).query_pairs(query_refs(query)).call(),
            ("DELETE", _) => self
                .agent
                .delete(&url)
                .query_pairs(query_refs(query))
                .call(),
            ("POST", Some(body)) => self.agent.post(&url).send_json(body),
            ("POST", None) => self.agent.post(&url).send_empty(),
            ("PATCH", Some(body)) => self.agent.patch(&url).send_json(body),
            _ => bail!("unsupported request {method} {path}"),
        };
        let mut response = result.map_err(|error| self.unreachable(error))?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .read_to_string()
            .map_err(|error| self.unreachable(error))?;
        let body = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Ok(Reply { status, body })
    }

    /// Sends a request and returns the body of a 2xx reply, or the server's
    /// error message as the error.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        self.send(method, path, query, body)?.into_body()
    }

    pub fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.call("GET", path, &[], None)
    }

    pub fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.call("POST", path, &[], Some(body))
    }

    pub fn patch(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.call("PATCH", path, &[], Some(body))
    }

    /// Reads one stream of an instance's output from byte `offset` on.
    pub fn output(&self, id: &str, stream: &str, offset: u64) -> anyhow::Result<OutputChunk> {
        let url = self.url(&format!("/instances/{id}/output"));
        let mut response = self
            .agent
            .get(&url)
            .query("stream", stream)
            .query("offset", offset.to_string())
            .call()
            .map_err(|error| self.unreachable(error))?;
        let status = response.status().as_u16();
        let instance_status = response
            .headers()
            .get("X-Delicate-Instance-Status")
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let bytes = response
            .body_mut()
            .with_config()
            .limit(MAX_OUTPUT_BYTES)
            .read_to_vec()
            .map_err(|error| self.unreachable(error))?;
        if !(200..300).contains(&status) {
            let text = String::from_utf8_lossy(&bytes).into_owned();
            let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
            bail!(rejection_message(&Reply { status, body }));
        }
        Ok(OutputChunk {
            bytes,
            instance_status,
        })
    }

    /// Finds a group, processor, bind or task by id or by name. Text of
    /// digits is tried as an id first, then as a name, so a record named
    /// `2024` can still be found when no record has id 2024.
    pub fn resolve(&self, kind: Kind, text: &str) -> anyhow::Result<Value> {
        if text.parse::<u64>().is_ok() {
            let reply = self.send("GET", &format!("/{}/{text}", kind.path()), &[], None)?;
            if (200..300).contains(&reply.status) {
                return Ok(reply.body);
            }
            if reply.status != 404 {
                bail!(rejection_message(&reply));
            }
        }
        let list = self.get(&format!("/{}", kind.path()))?;
        let found = list
            .as_array()
            .into_iter()
            .flatten()
            .find(|record| record["name"].as_str() == Some(text));
        found.cloned().with_context(|| {
            format!(
                "{noun} {text:?} not found: no {noun} has this name or id (see delicate {noun} list)",
                noun = kind.noun()
            )
        })
    }

    /// Returns the id of the record [`Client::resolve`] finds.
    pub fn resolve_id(&self, kind: Kind, text: &str) -> anyhow::Result<u64> {
        let record = self.resolve(kind, text)?;
        record["id"]
            .as_u64()
            .with_context(|| format!("the server sent a {} without an id: {record}", kind.noun()))
    }
}

fn query_refs<'a>(query: &'a [(&str, String)]) -> impl IntoIterator<Item = (&'a str, &'a str)> {
    query.iter().map(|(key, value)| (*key, value.as_str()))
}

/// The server's error message from an `{"error": {"message"}}` body, or the
/// status and body text when the body has another shape.
fn rejection_message(reply: &Reply) -> String {
    match reply.body["error"]["message"].as_str() {
        Some(message) => message.to_string(),
        None => format!("the server answered HTTP {}: {}", reply.status, reply.body),
    }
}

/// The kinds of record the CLI names by id or name.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    Group,
    Processor,
    Bind,
    Task,
}

impl Kind {
    /// The collection under `/api/v1`.
    pub fn path(self) -> &'static str {
        match self {
            Kind::Group => "groups",
            Kind::Processor => "processors",
            Kind::Bind => "binds",
            Kind::Task => "tasks",
        }
    }

    /// The word used in messages and as the CLI command.
    pub fn noun(self) -> &'static str {
        match self {
            Kind::Group => "group",
            Kind::Processor => "processor",
            Kind::Bind => "bind",
            Kind::Task => "task",
        }
    }
}
