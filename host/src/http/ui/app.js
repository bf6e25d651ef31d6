// The chat page: the MCP Chat API (sessions, history, streamed chats) and
// the server and tool lists, through the public HTTP API only. In keyed
// mode the key is asked for once and kept in this tab's session storage.
// Everything shown is set as text, never as markup.
"use strict";

const KEY_ITEM = "agenthost-api-key";
const $ = (id) => document.getElementById(id);
let currentSession = null;
let streaming = false;

class KeyNeeded extends Error {}

async function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  const key = sessionStorage.getItem(KEY_ITEM);
  if (key) headers.set("x-api-key", key);
  const response = await fetch(path, { ...options, headers });
  if (response.status === 401 || response.status === 403) {
    askForKey(await detail(response));
    throw new KeyNeeded();
  }
  if (!response.ok) throw new Error(await detail(response));
  return response;
}

async function detail(response) {
  const text = await response.text();
  try {
    const body = JSON.parse(text);
    return body.detail || (body.error && body.error.message) || text;
  } catch {
    return text || `HTTP ${response.status}`;
  }
}

function askForKey(reason) {
  $("key-reason").textContent = reason || "This server needs an API key.";
  $("key-form").classList.add("shown");
  $("key-input").focus();
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function show(node) {
  const log = $("log");
  log.appendChild(node);
  log.scrollTop = log.scrollHeight;
  return node;
}

function showError(message) {
  show(element("p", "message error", message));
}

function pretty(value) {
  if (typeof value === "string") {
    try {
      return JSON.stringify(JSON.parse(value), null, 2);
    } catch {
      return value;
    }
  }
  return JSON.stringify(value, null, 2);
}

/// A tool call's box; its result is filled in when it comes.
function toolBox(server, tool, args) {
  const box = element("div", "tool");
  box.dataset.tool = tool;
  box.appendChild(element("strong", "tool-name", server ? `${server} · ${tool}` : tool));
  box.appendChild(element("pre", "tool-arguments", pretty(args ?? {})));
  return show(box);
}

function toolResult(box, success, result) {
  const shown = element("pre", success ? "tool-result" : "tool-result failed", pretty(result ?? ""));
  box.appendChild(shown);
}

async function loadSessions() {
  const sessions = await (await api("/sessions")).json();
  const list = $("sessions");
  list.replaceChildren();
  for (const session of sessions.slice().reverse()) {
    const item = element("li", session.id === currentSession ? "current" : "",
      `${session.created_at} · ${session.message_count} messages`);
    item.title = session.id;
    item.dataset.session = session.id;
    item.addEventListener("click", () => openSession(session.id));
    list.appendChild(item);
  }
}

async function loadServersAndTools() {
  // `/tools` waits for servers still starting; `/servers` then shows them
  // connected.
  const tools = await (await api("/tools")).json();
  const servers = await (await api("/servers")).json();
  const serverList = $("servers");
  serverList.replaceChildren(...servers.map((s) =>
    element("li", "", `${s.name} (${s.transport}, ${s.tools_count} tools)`)));
  const toolList = $("tools");
  toolList.replaceChildren(...tools.map((t) => {
    const item = element("li", "", t.full_name);
    item.title = t.description || "";
    return item;
  }));
}

async function openSession(id) {
  currentSession = id;
  $("log").replaceChildren();
  $("message").disabled = false;
  $("send").disabled = false;
  const history = await (await api(`/sessions/${encodeURIComponent(id)}/history`)).json();
  const boxes = new Map();
  for (const message of history) {
    if (message.role === "tool") {
      const box = boxes.get(message.tool_call_id) || toolBox("", message.name || "tool", {});
      toolResult(box, true, message.content);
    } else {
      if (message.content) show(element("div", `message ${message.role}`, message.content));
      for (const call of message.tool_calls || []) {
        const fn = call.function || call;
        boxes.set(call.id, toolBox("", fn.name, fn.arguments));
      }
    }
  }
  await loadSessions();
  $("message").focus();
}

async function newSession() {
  const { session_id } = await (await api("/sessions", { method: "POST" })).json();
  await openSession(session_id);
}

/// One streamed chat: tokens into the answer, tool calls and results
/// into their boxes, as the events arrive.
async function send(text) {
  streaming = true;
  $("send").disabled = true;
  show(element("div", "message user", text));
  let answer = null;
  const calls = [];
  const path = `/chat/${encodeURIComponent(currentSession)}/stream?message=${encodeURIComponent(text)}`;
  const response = await api(path);
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  const handle = (event) => {
    switch (event.type) {
      case "token":
        if (!answer) answer = show(element("div", "message assistant", ""));
        answer.textContent += event.content;
        break;
      case "tool_call":
        answer = null;
        calls.push(toolBox(event.content.server, event.content.tool, event.content.arguments));
        break;
      case "tool_result": {
        const box = calls.find((b) => b.dataset.tool === event.content.tool && !b.dataset.done);
        if (box) {
          box.dataset.done = "1";
          toolResult(box, event.content.success, event.content.result);
        }
        break;
      }
      case "done":
        if (!answer && event.content) answer = show(element("div", "message assistant", event.content));
        break;
      case "error":
        showError(typeof event.content === "string" ? event.content : pretty(event.content));
        break;
    }
  };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = block.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trimStart()).join("\n");
      if (data) handle(JSON.parse(data));
    }
  }
}

function guarded(action) {
  return async (...args) => {
    try {
      await action(...args);
    } catch (error) {
      if (!(error instanceof KeyNeeded)) showError(error.message);
    }
  };
}

async function start() {
  await loadServersAndTools();
  await loadSessions();
}

$("key-form").addEventListener("submit", guarded(async (event) => {
  event.preventDefault();
  sessionStorage.setItem(KEY_ITEM, $("key-input").value.trim());
  $("key-input").value = "";
  $("key-form").classList.remove("shown");
  await start();
}));

$("new-session").addEventListener("click", guarded(newSession));

$("chat-form").addEventListener("submit", guarded(async (event) => {
  event.preventDefault();
  const text = $("message").value.trim();
  if (!text || !currentSession || streaming) return;
  $("message").value = "";
  try {
    await send(text);
  } finally {
    streaming = false;
    $("send").disabled = false;
    await loadSessions();
    await loadServersAndTools();
  }
}));

guarded(start)();
