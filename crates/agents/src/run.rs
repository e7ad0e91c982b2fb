//! The agent loop: the model proposes, the gateway disposes. Each step is one billed model turn;
//! the tools it may call are exactly those the host offers (for the gateway: the caller's own,
//! under its policy), less `use-agent` (no recursion) and the built-ins the agent does not enable,
//! narrowed to one provider when asked. A tool name the model invents is answered with an error,
//! never executed. Bounded by steps, wall time and credits; every tool result re-enters the prompt
//! redacted, capped and fenced as data.

use std::time::Duration;

use async_trait::async_trait;
use bk_audit::redact::Redactor;
use bk_domain::ids::AccountId;
use bk_gateway::agent_tools::AgentToolCall;
use bk_gateway::tools::{BUILTIN_NAMES, ToolDescriptor};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::model::{AgentModel, ModelError};
use crate::sanitize::Fence;

/// This tool's own name: never offered to, nor callable by, an agent.
pub const USE_AGENT: &str = "use-agent";

/// The bounds of one run.
#[derive(Clone, Copy, Debug)]
pub struct LoopLimits {
    /// Model turns.
    pub max_steps: u32,
    /// From the first turn to the answer.
    pub max_wall: Duration,
    /// Credits one run may spend (checked before each turn).
    pub max_credits: i64,
}

impl Default for LoopLimits {
    fn default() -> Self {
        Self { max_steps: 8, max_wall: Duration::from_secs(120), max_credits: 5_000 }
    }
}

/// Where the loop's tools come from, and who hears about its progress.
#[async_trait]
pub trait ToolHost: Send + Sync {
    /// The tools the caller may call (the gateway: exactly its `tools/list`).
    async fn tools(&self) -> Vec<ToolDescriptor>;
    /// Calls one (the gateway: through `tools/call`'s checks and audit).
    async fn call(&self, name: &str, args: &Value) -> AgentToolCall;
    /// Progress as the loop works (`step` of at most `max`).
    fn progress(&self, _step: u32, _max: u32, _message: String) {}
    /// One model turn was taken and billed.
    async fn turn_taken(&self, _step: u32, _credits: i64) {}
}

/// What one run is asked.
pub struct LoopInput<'a> {
    pub bill_to: &'a AccountId,
    pub model: &'a str,
    pub temperature: Option<f64>,
    /// The agent's personality (prepended to the system message).
    pub personality: Option<&'a str>,
    /// Earlier messages of the conversation (user and assistant only).
    pub history: Vec<Value>,
    pub prompt: &'a str,
    /// Only this provider's tools.
    pub connector: Option<&'a str>,
    /// The built-in tools the agent may use.
    pub enabled_builtins: &'a [String],
}

/// One tool call the model asked for, as the caller sees it.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ToolCallRecord {
    pub name: String,
    pub arguments: Value,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Stop {
    /// The model answered.
    Answered,
    MaxSteps,
    MaxTime,
    MaxCredits,
}

/// How a run ended.
#[derive(Clone, Debug)]
pub struct LoopOutcome {
    pub answer: String,
    pub tool_calls: Vec<ToolCallRecord>,
    pub steps: u32,
    pub credits_consumed: i64,
    pub credits_remaining: Option<i64>,
    pub stop: Stop,
    /// The conversation's new messages: the user's prompt and the final answer.
    pub new_messages: Vec<Value>,
}

impl LoopOutcome {
    /// The structured content of the `use-agent` result.
    pub fn structured(&self) -> Value {
        json!({
            "answer": self.answer,
            "toolCalls": self.tool_calls,
            "steps": self.steps,
            "creditsConsumed": self.credits_consumed,
            "stopReason": self.stop,
        })
    }
}

/// The tools offered to the model, from what the host offers.
pub fn offered_tools(
    all: Vec<ToolDescriptor>,
    connector: Option<&str>,
    enabled_builtins: &[String],
) -> Vec<ToolDescriptor> {
    all.into_iter()
        .filter(|t| t.name != USE_AGENT)
        .filter(|t| !BUILTIN_NAMES.contains(&t.name.as_str()) || enabled_builtins.contains(&t.name))
        .filter(|t| connector.is_none_or(|c| t.provider.as_deref() == Some(c)))
        .collect()
}

/// A tool as an OpenAI function tool.
fn function_tool(t: &ToolDescriptor) -> Value {
    json!({"type": "function", "function": {
        "name": t.name,
        "description": if t.description.is_empty() { &t.title } else { &t.description },
        "parameters": t.input_schema,
    }})
}

fn stop_text(stop: Stop, limits: &LoopLimits) -> String {
    match stop {
        Stop::Answered => String::new(),
        Stop::MaxSteps => {
            format!("The agent stopped before finishing: it reached its limit of {} steps.", limits.max_steps)
        }
        Stop::MaxTime => format!(
            "The agent stopped before finishing: it reached its time limit of {} s.",
            limits.max_wall.as_secs_f64()
        ),
        Stop::MaxCredits => {
            format!(
                "The agent stopped before finishing: it reached its limit of {} credits for one run.",
                limits.max_credits
            )
        }
    }
}

/// Runs the loop to an answer or a bound.
pub async fn run_loop(
    model: &dyn AgentModel,
    host: &dyn ToolHost,
    limits: &LoopLimits,
    input: LoopInput<'_>,
    redactor: &Redactor,
) -> Result<LoopOutcome, ModelError> {
    let started = Instant::now();
    let deadline = started + limits.max_wall;
    let fence = Fence::new();
    let tools = offered_tools(host.tools().await, input.connector, input.enabled_builtins);
    let offered: Vec<Value> = tools.iter().map(function_tool).collect();
    let mut system = String::new();
    if let Some(p) = input.personality.filter(|p| !p.trim().is_empty()) {
        system.push_str(p.trim());
        system.push_str("\n\n");
    }
    system.push_str("You answer the user's request, using the tools offered when they help. ");
    system.push_str(&fence.instruction());
    let mut messages = vec![json!({"role": "system", "content": system})];
    messages.extend(input.history);
    let user = json!({"role": "user", "content": input.prompt});
    messages.push(user.clone());

    let mut records = Vec::new();
    let (mut credits, mut remaining, mut steps) = (0i64, None, 0u32);
    let mut last_text = String::new();
    let stop = loop {
        if steps >= limits.max_steps {
            break Stop::MaxSteps;
        }
        if credits >= limits.max_credits {
            break Stop::MaxCredits;
        }
        if Instant::now() >= deadline {
            break Stop::MaxTime;
        }
        steps += 1;
        host.progress(steps, limits.max_steps, format!("step {steps}: thinking"));
        let turn = tokio::time::timeout_at(
            deadline,
            model.turn(input.bill_to, input.model, &messages, &offered, input.temperature),
        )
        .await;
        let turn = match turn {
            Err(_) => break Stop::MaxTime,
            Ok(t) => t?,
        };
        credits = credits.saturating_add(turn.credits_consumed.max(0));
        remaining = Some(turn.credits_remaining);
        host.turn_taken(steps, turn.credits_consumed).await;
        let message = turn.message;
        let text = message.get("content").and_then(Value::as_str).unwrap_or_default().to_owned();
        let calls: Vec<Value> = message.get("tool_calls").and_then(Value::as_array).cloned().unwrap_or_default();
        // The assistant message as it goes back to the model: role, content and tool calls only.
        let mut kept = json!({"role": "assistant", "content": if text.is_empty() { Value::Null } else { json!(text) }});
        if !calls.is_empty() {
            kept["tool_calls"] = json!(calls);
        }
        messages.push(kept);
        if calls.is_empty() {
            last_text = text;
            break Stop::Answered;
        }
        if !text.is_empty() {
            last_text = text;
        }
        let mut timed_out = false;
        for (i, call) in calls.iter().enumerate() {
            let id = call
                .get("id")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .unwrap_or_else(|| format!("call_{steps}_{i}"));
            let name = call.pointer("/function/name").and_then(Value::as_str).unwrap_or_default().to_owned();
            let raw = call.pointer("/function/arguments");
            let args: Result<Value, String> = match raw {
                None | Some(Value::Null) => Ok(json!({})),
                Some(Value::String(s)) if s.trim().is_empty() => Ok(json!({})),
                Some(Value::String(s)) => {
                    serde_json::from_str::<Value>(s).map_err(|e| format!("the arguments are not JSON: {e}")).and_then(
                        |v| if v.is_object() { Ok(v) } else { Err("the arguments must be a JSON object".into()) },
                    )
                }
                Some(v @ Value::Object(_)) => Ok(v.clone()),
                Some(_) => Err("the arguments must be a JSON object".into()),
            };
            let mut shown_args = args.clone().unwrap_or(Value::Null);
            redactor.redact_strings(&mut shown_args);
            let outcome = if !tools.iter().any(|t| t.name == name) {
                // Never executed: not among the tools this caller may call here.
                refused(format!(
                    "unknown tool {}: call only the tools offered",
                    name.chars().take(80).collect::<String>()
                ))
            } else {
                match args {
                    Err(why) => refused(why),
                    Ok(args) if Instant::now() < deadline => {
                        host.progress(steps, limits.max_steps, format!("step {steps}: calling {name}"));
                        match tokio::time::timeout_at(deadline, host.call(&name, &args)).await {
                            Ok(c) => c,
                            Err(_) => {
                                timed_out = true;
                                refused("the run's time limit was reached during this call".into())
                            }
                        }
                    }
                    Ok(_) => {
                        timed_out = true;
                        refused("the run's time limit was reached before this call".into())
                    }
                }
            };
            let error = (!outcome.ok).then(|| redactor.redact_str(&error_text(&outcome.result)));
            records.push(ToolCallRecord { name: name.clone(), arguments: shown_args, ok: outcome.ok, error });
            messages.push(json!({
                "role": "tool",
                "tool_call_id": id,
                "content": fence.wrap(&name, &outcome.result, redactor),
            }));
        }
        if timed_out {
            break Stop::MaxTime;
        }
    };
    let answer = match stop {
        Stop::Answered => last_text,
        other if last_text.is_empty() => stop_text(other, limits),
        other => format!("{last_text}\n\n{}", stop_text(other, limits)),
    };
    host.progress(steps, limits.max_steps, "done".into());
    let new_messages = vec![user, json!({"role": "assistant", "content": answer})];
    Ok(LoopOutcome {
        answer,
        tool_calls: records,
        steps,
        credits_consumed: credits,
        credits_remaining: remaining,
        stop,
        new_messages,
    })
}

fn refused(message: String) -> AgentToolCall {
    AgentToolCall { ok: false, result: json!({"error": message}) }
}

/// A short, redaction-safe reason for a failed call (its error text, else the tool's own).
fn error_text(result: &Value) -> String {
    let s = match result.get("error").and_then(Value::as_str) {
        Some(e) => e.to_owned(),
        None => {
            result.pointer("/content/0/text").and_then(Value::as_str).unwrap_or("the tool reported an error").to_owned()
        }
    };
    s.chars().take(300).collect()
}
