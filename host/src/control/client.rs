//! The CLI's side of the admin API: `weir deploy`, `weir status`, `weir rollback`,
//! `weir resume`, `weir dlq replay`.

use anyhow::{Context, Result, anyhow, bail};
use serde::de::DeserializeOwned;
use std::net::SocketAddr;

use super::{DeployReport, OperatorStatus, ReplayReport, TapRequest};

/// The admin address the CLI uses when none is given.
pub const DEFAULT_ADMIN: &str = "127.0.0.1:9870";

/// A client of one running pipeline's admin API.
pub struct AdminClient {
    address: SocketAddr,
    agent: ureq::Agent,
}

impl AdminClient {
    /// A client for the admin API at `address`.
    pub fn new(address: SocketAddr) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .new_agent();
        Self { address, agent }
    }

    /// Deploys `component` as the next version of `operator`.
    ///
    /// # Errors
    /// When the pipeline refuses the version (with its reason) or cannot be reached.
    pub fn deploy(&self, operator: &str, component: &[u8]) -> Result<DeployReport> {
        let url = self.url(&format!("operators/{operator}/deploy"));
        let response = self.agent.post(&url).send(component);
        self.answer(response)
    }

    /// Rolls `operator` back to its previous version.
    ///
    /// # Errors
    /// When the pipeline refuses (with its reason) or cannot be reached.
    pub fn rollback(&self, operator: &str) -> Result<DeployReport> {
        let url = self.url(&format!("operators/{operator}/rollback"));
        let response = self.agent.post(&url).send_empty();
        self.answer(response)
    }

    /// Lets `operator` go on after its `on_failure` policy paused it;
    /// false when it was not paused.
    ///
    /// # Errors
    /// When there is no such operator or the pipeline cannot be reached.
    pub fn resume(&self, operator: &str) -> Result<bool> {
        let url = self.url(&format!("operators/{operator}/resume"));
        let answer: serde_json::Value = self.answer(self.agent.post(&url).send_empty())?;
        Ok(answer["resumed"].as_bool().unwrap_or(false))
    }

    /// Feeds the dead letters of `operator` in `dead_letters` (a dead-letter
    /// file's text) to it again.
    ///
    /// # Errors
    /// When there is no such operator, it has finished, or the pipeline
    /// cannot be reached.
    pub fn replay(&self, operator: &str, dead_letters: &str) -> Result<ReplayReport> {
        let url = self.url(&format!("operators/{operator}/replay"));
        self.answer(self.agent.post(&url).send(dead_letters))
    }

    /// Takes a savepoint, into folder `to` (absolute) or the default one;
    /// returns its folder.
    ///
    /// # Errors
    /// When the run takes no checkpoints, ends first, or cannot be reached.
    pub fn savepoint(&self, to: Option<&std::path::Path>) -> Result<std::path::PathBuf> {
        let body = to.map(|p| p.display().to_string()).unwrap_or_default();
        let answer: serde_json::Value =
            self.answer(self.agent.post(&self.url("savepoint")).send(body))?;
        answer["path"]
            .as_str()
            .map(std::path::PathBuf::from)
            .ok_or_else(|| anyhow!("the admin API answered something unexpected"))
    }

    /// The last complete checkpoint, if the run takes checkpoints.
    ///
    /// # Errors
    /// When the pipeline cannot be reached.
    pub fn last_checkpoint(&self) -> Result<Option<crate::checkpoint::CheckpointStats>> {
        self.answer(self.agent.get(&self.url("checkpoint")).call())
    }

    /// Every operator's status.
    ///
    /// # Errors
    /// When the pipeline cannot be reached.
    pub fn status(&self) -> Result<Vec<OperatorStatus>> {
        let response = self.agent.get(&self.url("status")).call();
        self.answer(response)
    }

    /// Every figure of the run, in the Prometheus text format (`/metrics`).
    ///
    /// # Errors
    /// When the pipeline cannot be reached.
    pub fn metrics(&self) -> Result<String> {
        let url = format!("http://{}/metrics", self.address);
        let mut response = self
            .agent
            .get(&url)
            .call()
            .map_err(|e| anyhow!("no running pipeline answers on {} ({e})", self.address))?;
        response
            .body_mut()
            .read_to_string()
            .context("cannot read the admin API's answer")
    }

    /// Attaches a tap: what it sees, as JSON lines (`TapEvent`), until the
    /// pipeline ends. Returns once the tap is attached.
    ///
    /// # Errors
    /// When there is no such operator or the pipeline cannot be reached.
    pub fn tap(&self, request: &TapRequest) -> Result<impl std::io::BufRead + use<>> {
        let mut query = Vec::new();
        let mut add = |name: &str, value: &str| query.push(format!("{name}={}", encode(value)));
        if let Some(operator) = &request.operator {
            add("operator", operator);
        }
        if let Some(rate) = request.rate {
            add("rate", &rate.to_string());
        }
        if let Some(key) = &request.key {
            add("key", key);
        }
        if let Some(field) = &request.field {
            add("field", field);
        }
        let url = format!("{}?{}", self.url("tap"), query.join("&"));
        let response = self.agent.get(&url).call();
        let mut response = response.map_err(|e| {
            anyhow!(
                "no running pipeline answers on {} ({e}); give the pipeline `admin = \"{}\"` \
                 or run it with `weir run --admin {}`",
                self.address,
                self.address,
                self.address
            )
        })?;
        if !response.status().is_success() {
            let body = response.body_mut().read_to_string().unwrap_or_default();
            let message = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
                .unwrap_or(body);
            bail!("{message}");
        }
        let mut reader = std::io::BufReader::new(response.into_body().into_reader());
        // The server's first line (empty) says the tap is attached.
        let mut first = String::new();
        std::io::BufRead::read_line(&mut reader, &mut first)
            .context("the tap ended before it started")?;
        Ok(reader)
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}/v1/{path}", self.address)
    }

    fn answer<T: DeserializeOwned>(
        &self,
        response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<T> {
        let mut response = response.map_err(|e| {
            anyhow!(
                "no running pipeline answers on {} ({e}); give the pipeline `admin = \"{}\"` \
                 or run it with `weir run --admin {}`",
                self.address,
                self.address,
                self.address
            )
        })?;
        let status = response.status();
        let body = response
            .body_mut()
            .read_to_string()
            .context("cannot read the admin API's answer")?;
        if !status.is_success() {
            let message = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
                .unwrap_or(body);
            bail!("{message}");
        }
        serde_json::from_str(&body).context("the admin API answered something unexpected")
    }
}

/// `value` percent-encoded for a query string.
fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
