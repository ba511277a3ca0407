// tflock demo: the Slack client half. Renders Block Kit and mrkdwn from what the bot really sent, with
// DOM nodes and textContent only (never innerHTML), so nothing the bot or a lock says can become markup.
"use strict";

const EMOJI = {
  warning: "⚠️", rotating_light: "🚨", white_check_mark: "✅", information_source: "ℹ️", gear: "⚙️", x: "❌",
  unlock: "🔓", lock: "🔒", no_entry_sign: "🚫", no_entry: "⛔", leftwards_arrow_with_hook: "↩️",
  hourglass_flowing_sand: "⏳", hourglass: "⌛", grey_question: "❔", ballot_box_with_check: "☑️",
  alarm_clock: "⏰", wave: "👋", tada: "🎉", eyes: "👀", thumbsup: "👍", "+1": "👍",
};

const app = {
  setup: null, me: null, channel: null, version: -1, poll: null, rendered: new Map(),
  lastSeen: new Map(), confirmResolve: null, lastFocus: null,
};

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

async function api(path, body) {
  const response = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-Tflock-Demo": "1" },
    body: JSON.stringify(body),
  });
  let data = {};
  try { data = await response.json(); } catch (_) { data = { ok: false, error: `HTTP ${response.status}` }; }
  if (!response.ok && !data.error) data.error = `HTTP ${response.status}`;
  return data;
}

// -- mrkdwn ------------------------------------------------------------------------------------
function decode(text) {
  return text.replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&amp;/g, "&");
}

function personName(id) {
  if (id === app.setup.bot.id) return "tflock";
  const found = app.setup.people.find((p) => p.id === id);
  return found ? found.real_name : id;
}

function formatDate(seconds, format, fallback) {
  const when = new Date(seconds * 1000);
  if (Number.isNaN(when.getTime())) return fallback;
  const date = when.toLocaleDateString(undefined, { year: "numeric", month: "short", day: "numeric" });
  const time = when.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
  return format
    .replace(/\{date_short_pretty\}|\{date_short\}|\{date_pretty\}|\{date_long_pretty\}|\{date_long\}|\{date\}|\{date_num\}/g, date)
    .replace(/\{time_secs\}|\{time\}/g, time);
}

function control(inner) {
  // <@U…|label>, <!subteam^S…|@handle>, <#C…|name>, <!date^ts^format|fallback>, <!here>, <url|label>
  const bar = inner.indexOf("|");
  const target = bar >= 0 ? inner.slice(0, bar) : inner;
  const label = bar >= 0 ? inner.slice(bar + 1) : null;
  if (target.startsWith("@")) {
    return el("span", { class: "mention", "data-user": target.slice(1) }, "@" + personName(target.slice(1)));
  }
  if (target.startsWith("!subteam^")) {
    const id = target.slice(9);
    const handle = app.setup.groups[id] ? "@" + app.setup.groups[id] : (label ? decode(label) : "@" + id);
    return el("span", { class: "mention", "data-group": id }, handle);
  }
  if (target.startsWith("#")) {
    const name = label ? decode(label) : (target.slice(1) === app.setup.channel.id ? app.setup.channel.name : target.slice(1));
    return el("span", { class: "mention" }, "#" + name);
  }
  if (target.startsWith("!date^")) {
    const [, seconds, format] = target.split("^");
    const fallback = label ? decode(label) : "";
    return el("time", { datetime: new Date(Number(seconds) * 1000).toISOString(), title: fallback },
      formatDate(Number(seconds), format || "{date_short_pretty} {time}", fallback));
  }
  if (target.startsWith("!")) {
    const word = target.slice(1).split("^")[0];
    return el("span", { class: "mention" }, "@" + (label ? decode(label) : word));
  }
  const url = decode(target);
  if (/^(https?:\/\/|mailto:)/i.test(url)) {
    return el("a", { href: url, target: "_blank", rel: "noopener noreferrer" }, label ? inline(label) : url);
  }
  return document.createTextNode("<" + decode(inner) + ">");
}

// Slack's rule: *bold*, _italic_ and ~strike~ open after a space or an opening bracket/quote (or at the
// start), hug their text, and close before a space, punctuation or the end; never inside a word.
const OPEN = String.raw`(?<![^\s(\[{"'“‘])`;
const CLOSE = String.raw`(?=$|[\s.,;:!?)\]}"'”’])`;
const EMPHASIS = (m) => `${OPEN}\\${m}(?![\\s${m}])[^${m}\\n]*?[^\\s${m}]\\${m}${CLOSE}`;
const INLINE = new RegExp(
  String.raw`(\`[^\`\n]+\`)|(<[^<>\n]+>)|(` + EMPHASIS("*") + ")|(" + EMPHASIS("_") + ")|(" + EMPHASIS("~") +
  String.raw`)|(:[a-z0-9_+-]+:)`, "g");

function inline(text) {
  const out = document.createDocumentFragment();
  let last = 0;
  for (const match of text.matchAll(INLINE)) {
    if (match.index > last) out.append(decode(text.slice(last, match.index)));
    const token = match[0];
    if (match[1]) out.append(el("code", {}, decode(token.slice(1, -1))));
    else if (match[2]) out.append(control(token.slice(1, -1)));
    else if (match[3]) out.append(el("strong", {}, inline(token.slice(1, -1))));
    else if (match[4]) out.append(el("em", {}, inline(token.slice(1, -1))));
    else if (match[5]) out.append(el("s", {}, inline(token.slice(1, -1))));
    else {
      const name = token.slice(1, -1);
      out.append(EMOJI[name] ? el("span", { role: "img", "aria-label": name.replace(/_/g, " ") }, EMOJI[name]) : token);
    }
    last = match.index + token.length;
  }
  if (last < text.length) out.append(decode(text.slice(last)));
  return out;
}

function mrkdwn(text) {
  const box = el("div", { class: "mrkdwn" });
  const parts = text.split("```");
  parts.forEach((part, index) => {
    if (index % 2 === 1) box.append(el("pre", {}, el("code", {}, decode(part.replace(/^\n/, "")))));
    else box.append(inline(part));
  });
  return box;
}

function textObject(obj) {
  if (!obj) return document.createTextNode("");
  if (obj.type === "mrkdwn") return mrkdwn(obj.text || "");
  if (obj.type === "plain_text") {
    let value = obj.text || "";
    if (obj.emoji !== false) value = value.replace(/:([a-z0-9_+-]+):/g, (m, name) => EMOJI[name] || m);
    return el("span", { class: "plain" }, value);
  }
  return unsupported(`text object “${obj.type}”`);
}

function plain(obj) {
  return obj ? (typeof obj === "string" ? obj : obj.text || "") : "";
}

// -- Block Kit ---------------------------------------------------------------------------------
function unsupported(what) {
  return el("div", { class: "unsupported", "data-unsupported": what }, `This content can’t be shown here (unsupported ${what}).`);
}

function element(item, context) {
  if (item.type === "button") return button(item, context);
  if (item.type === "image") return el("img", { src: "data:,", alt: item.alt_text || "", title: item.alt_text || "" });
  if (item.type === "mrkdwn" || item.type === "plain_text") return textObject(item);
  return unsupported(`element “${item.type}”`);
}

function button(item, context) {
  const classes = ["btn"];
  if (item.style === "primary") classes.push("primary");
  if (item.style === "danger") classes.push("danger");
  if (item.url) {
    return el("a", { class: classes.join(" "), href: item.url, target: "_blank", rel: "noopener noreferrer" }, plain(item.text));
  }
  const node = el("button", { type: "button", class: classes.join(" "), "data-action": item.action_id }, plain(item.text));
  node.addEventListener("click", async () => {
    if (item.confirm && !(await confirmDialog(item.confirm))) return;
    node.disabled = true;
    const answer = await api("/demo/action", {
      user: app.me, ts: context.ts, action_id: item.action_id, block_id: context.blockId,
    });
    node.disabled = false;
    if (!answer.ok && answer.error) status(answer.error);
  });
  return node;
}

function block(item, index, context) {
  const blockId = item.block_id || `b${index}`;
  const ctx = { ...context, blockId };
  switch (item.type) {
    case "header":
      return el("div", { class: "block block-header", role: "heading", "aria-level": "3" }, textObject(item.text));
    case "divider":
      return el("hr", { class: "block divider" });
    case "section": {
      const main = el("div", { class: "section-main" });
      if (item.text) main.append(textObject(item.text));
      if (item.fields) main.append(el("div", { class: "fields" }, item.fields.map((f) => el("div", { class: "field" }, textObject(f)))));
      const node = el("div", { class: "block section" }, main);
      if (item.accessory) node.append(element(item.accessory, ctx));
      return node;
    }
    case "context":
      return el("div", { class: "block context" }, (item.elements || []).map((e) => element(e, ctx)));
    case "actions":
      return el("div", { class: "block actions", role: "group", "aria-label": "Actions" }, (item.elements || []).map((e) => element(e, ctx)));
    case "input":
      return input(item);
    default:
      return unsupported(`block “${item.type}”`);
  }
}

function blocks(list, context) {
  return (list || []).map((item, index) => block(item, index, context));
}

function input(item) {
  const elementDef = item.element || {};
  const id = `input-${item.block_id}-${elementDef.action_id}`;
  const key = `${item.block_id}/${elementDef.action_id}`;
  if (elementDef.type !== "plain_text_input") return unsupported(`input element “${elementDef.type}”`);
  const attrs = {
    id, name: key, "data-key": key, "aria-describedby": `${id}-error`,
    placeholder: plain(elementDef.placeholder), minlength: elementDef.min_length, maxlength: elementDef.max_length,
    required: item.optional ? null : true,
  };
  const field = elementDef.multiline ? el("textarea", attrs) : el("input", { type: "text", ...attrs });
  if (elementDef.initial_value) field.value = elementDef.initial_value;
  return el("div", { class: "block input-block" },
    el("label", { for: id }, plain(item.label), item.optional ? el("span", { class: "muted" }, " (optional)") : null),
    field,
    item.hint ? el("div", { class: "hint" }, plain(item.hint)) : null,
    el("p", { id: `${id}-error`, class: "field-error", role: "alert", "data-error-for": item.block_id }));
}

// -- messages ----------------------------------------------------------------------------------
function when(ts) {
  const date = new Date(Number(ts.split(".")[0]) * 1000);
  return date.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
}

function messageNode(message, replies) {
  const context = { ts: message.ts };
  const body = message.blocks && message.blocks.length ? blocks(message.blocks, context) : [mrkdwn(message.text || "")];
  const classes = ["message"];
  if (message.ephemeral) classes.push("ephemeral");
  const node = el("li", { class: classes.join(" "), "data-ts": message.ts, "data-rev": message.rev, "aria-label": `Message from ${message.author}` },
    el("div", { class: "meta" },
      el("span", { class: "author" }, message.author),
      message.bot ? el("span", { class: "app-tag" }, "APP") : null,
      el("span", { class: "when" }, when(message.ts)),
      message.edited ? el("span", { class: "edited" }, "(edited)") : null,
      message.ephemeral ? el("span", { class: "only-you" }, "Only visible to you") : null),
    message.command ? el("div", { class: "used" }, "used ", el("code", {}, message.command)) : null,
    el("div", { class: "body" }, body),
    (message.files || []).map((f) => el("div", { class: "file" },
      el("span", { "aria-hidden": "true" }, "📄"),
      el("span", {}, el("a", { href: f.url, download: f.name }, f.title || f.name), el("span", { class: "muted small" }, ` ${f.name} · ${f.size.toLocaleString()} bytes`)))));
  if (replies.length) {
    node.append(el("div", { class: "thread-label" }, `${replies.length} ${replies.length === 1 ? "reply" : "replies"}`));
    node.append(el("ol", { class: "thread", "aria-label": "Thread replies" }, replies.map((r) => messageNode(r, []))));
  }
  return node;
}

function renderMessages(messages) {
  const list = $("messages");
  const shown = messages.filter((m) => m.channel === app.channel);
  const tops = shown.filter((m) => !m.thread_ts || m.thread_ts === m.ts);
  const replies = new Map();
  for (const m of shown) {
    if (m.thread_ts && m.thread_ts !== m.ts) {
      if (!replies.has(m.thread_ts)) replies.set(m.thread_ts, []);
      replies.get(m.thread_ts).push(m);
    }
  }
  const stick = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  const keep = new Set();
  let previous = null;
  for (const message of tops) {
    const own = replies.get(message.ts) || [];
    const key = JSON.stringify([message, own]);
    keep.add(message.ts);
    let entry = app.rendered.get(message.ts);
    if (!entry || entry.key !== key) {
      const node = messageNode(message, own);
      if (entry) entry.node.replaceWith(node);
      entry = { key, node };
      app.rendered.set(message.ts, entry);
    }
    const want = previous ? previous.nextSibling : list.firstChild;
    if (want !== entry.node) list.insertBefore(entry.node, want);
    previous = entry.node;
  }
  for (const [ts, entry] of app.rendered) {
    if (!keep.has(ts)) { entry.node.remove(); app.rendered.delete(ts); }
  }
  if (stick) list.scrollTop = list.scrollHeight;
  // unread marks for the other conversation
  for (const button of document.querySelectorAll(".convs button")) {
    const id = button.dataset.channel;
    const count = messages.filter((m) => m.channel === id).length;
    if (id === app.channel) app.lastSeen.set(id, count);
    button.classList.toggle("unread", count > (app.lastSeen.get(id) || 0));
  }
}

// -- modal and confirm --------------------------------------------------------------------------
function trapFocus(container, event) {
  if (event.key !== "Tab") return;
  const focusable = [...container.querySelectorAll("button, textarea, input, select, a[href]")].filter((n) => !n.disabled);
  if (!focusable.length) return;
  const first = focusable[0], last = focusable[focusable.length - 1];
  if (event.shiftKey && document.activeElement === first) { last.focus(); event.preventDefault(); }
  else if (!event.shiftKey && document.activeElement === last) { first.focus(); event.preventDefault(); }
}

function renderModal(open) {
  const modal = $("modal");
  if (!open) {
    if (!modal.hidden) { modal.hidden = true; $("modal-backdrop").hidden = true; restoreFocus(); }
    modal.dataset.viewId = "";
    return;
  }
  const errors = open.errors || {};
  if (modal.dataset.viewId !== open.id || modal.dataset.hash !== JSON.stringify(open.view)) {
    if (modal.hidden) app.lastFocus = document.activeElement;
    modal.dataset.viewId = open.id;
    modal.dataset.hash = JSON.stringify(open.view);
    $("modal-title").textContent = plain(open.view.title);
    $("modal-body").replaceChildren(...blocks(open.view.blocks, { ts: null }));
    $("modal-submit").textContent = plain(open.view.submit) || "Submit";
    $("modal-submit").hidden = !open.view.submit;
    $("modal-close").textContent = plain(open.view.close) || "Close";
    $("modal-error").textContent = "";
    modal.hidden = false;
    $("modal-backdrop").hidden = false;
    const first = modal.querySelector("textarea, input") || $("modal-submit");
    first.focus();
  }
  for (const node of modal.querySelectorAll("[data-error-for]")) node.textContent = errors[node.dataset.errorFor] || "";
}

function restoreFocus() {
  const target = app.lastFocus && document.contains(app.lastFocus) ? app.lastFocus : $("composer-input");
  target.focus();
  app.lastFocus = null;
}

async function submitModal(event) {
  event.preventDefault();
  const modal = $("modal");
  const values = {};
  let missing = false;
  for (const field of modal.querySelectorAll("[data-key]")) {
    values[field.dataset.key] = field.value;
    const error = modal.querySelector(`[data-error-for="${CSS.escape(field.dataset.key.split("/")[0])}"]`);
    const min = Number(field.getAttribute("minlength") || 0);
    if (field.hasAttribute("required") && field.value.trim().length < Math.max(min, 1)) {
      if (error) error.textContent = "Please fill out this field.";
      missing = true;
    } else if (error) error.textContent = "";
  }
  if (missing) { modal.querySelector("[data-key]").focus(); return; }
  $("modal-submit").disabled = true;
  const answer = await api("/demo/submit", { user: app.me, view_id: modal.dataset.viewId, values });
  $("modal-submit").disabled = false;
  if (!answer.ok && !answer.errors) $("modal-error").textContent = answer.error || "Something went wrong.";
}

function confirmDialog(confirm) {
  const box = $("confirm");
  app.lastFocus = document.activeElement;
  $("confirm-title").textContent = plain(confirm.title);
  $("confirm-text").replaceChildren(textObject(confirm.text));
  $("confirm-ok").textContent = plain(confirm.confirm) || "Yes";
  $("confirm-ok").className = "btn " + (confirm.style === "danger" ? "danger solid" : "primary");
  $("confirm-deny").textContent = plain(confirm.deny) || "Cancel";
  box.hidden = false;
  $("modal-backdrop").hidden = false;
  $("confirm-deny").focus();
  return new Promise((resolve) => { app.confirmResolve = resolve; });
}

function closeConfirm(result) {
  $("confirm").hidden = true;
  if ($("modal").hidden) $("modal-backdrop").hidden = true;
  const resolve = app.confirmResolve;
  app.confirmResolve = null;
  restoreFocus();
  if (resolve) resolve(result);
}

// -- the loop ----------------------------------------------------------------------------------
function status(text) { $("status-line").textContent = text; }

async function pollLoop(generation) {
  while (generation === app.poll) {
    try {
      const response = await fetch(`/demo/state?user=${encodeURIComponent(app.me)}&after=${app.version}`);
      if (generation !== app.poll) return;
      const data = await response.json();
      app.version = data.version;
      renderMessages(data.messages);
      renderModal(data.view);
      if ($("status-line").dataset.connecting !== "no") { status(""); $("status-line").dataset.connecting = "no"; }
    } catch (_) {
      status("Lost touch with the demo server — is `tflock-bot demo` still running? Retrying…");
      $("status-line").dataset.connecting = "yes";
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  }
}

function restart() {
  app.version = -1;
  app.poll = Symbol("poll");
  pollLoop(app.poll);
}

function showConversation(channel) {
  app.channel = channel;
  const isChannel = channel === app.setup.channel.id;
  const title = isChannel ? `#${app.setup.channel.name}` : "tflock";
  $("conv-title").textContent = title;
  document.title = `tflock demo — ${title}`;
  $("composer-label").textContent = `Message ${title}`;
  for (const b of document.querySelectorAll(".convs button")) b.setAttribute("aria-current", String(b.dataset.channel === channel));
  app.rendered.clear();
  $("messages").replaceChildren();
  restart();
}

function directChannel(user) { return "D" + user.slice(1); }

function becomeUser(id) {
  app.me = id;
  const url = new URL(window.location.href);
  url.searchParams.set("as", app.setup.people.find((p) => p.id === id).name);
  window.history.replaceState(null, "", url);
  const direct = $("directs");
  direct.replaceChildren(el("li", {}, el("button", { type: "button", "data-channel": directChannel(id), onclick: () => showConversation(directChannel(id)) }, "tflock (app)")));
  const staysInDm = app.channel && app.channel.startsWith("D");
  renderModal(null);
  showConversation(staysInDm ? directChannel(id) : app.setup.channel.id);
}

async function runTerraform() {
  const buttonNode = $("tf-run");
  buttonNode.disabled = true;
  const state = $("tf-state").value;
  $("tf-result").replaceChildren(el("p", { class: "muted" }, "Running…"));
  const answer = await api("/demo/terraform", { user: app.me, state });
  buttonNode.disabled = false;
  if (!answer.ok) { $("tf-result").replaceChildren(el("p", { class: "tf-verdict fail" }, answer.error)); return; }
  $("tf-result").replaceChildren(
    el("p", { class: `tf-verdict ${answer.acquired ? "ok" : "fail"}`, "data-acquired": String(answer.acquired) },
      answer.acquired ? "✅ terraform plan got the state lock" : "❌ terraform plan could not get the state lock"),
    el("pre", { tabindex: "0", "aria-label": "Terraform output" }, answer.output));
}

async function init() {
  app.setup = await (await fetch("/demo/setup")).json();
  const who = $("who");
  for (const p of app.setup.people) who.append(el("option", { value: p.id }, `${p.real_name} — ${p.role}`));
  $("people").replaceChildren(...app.setup.people.map((p) => el("li", {}, p.real_name, el("span", { class: "role" }, p.role))));
  $("channels").replaceChildren(el("li", {}, el("button", { type: "button", "data-channel": app.setup.channel.id, onclick: () => showConversation(app.setup.channel.id) }, `# ${app.setup.channel.name}`)));
  for (const s of app.setup.states) $("tf-state").append(el("option", { value: s.path }, `${s.name} — ${s.path}`));
  $("tf-state").value = app.setup.stale;
  const story = () => {
    const s = app.setup.states.find((x) => x.path === $("tf-state").value);
    $("tf-story").textContent = s ? `${s.tool}, ${s.locking}: ${s.story}.` : "";
  };
  $("tf-state").addEventListener("change", story);
  story();
  $("tf-run").addEventListener("click", runTerraform);
  const suggestions = [
    `/tflock status ${app.setup.stale}`, "/tflock list", "/tflock help", "/tflock audit", "/tflock audit csv",
  ];
  $("suggestions").replaceChildren(...suggestions.map((s) => el("button", { type: "button", class: "chip", onclick: () => { $("composer-input").value = s; $("composer-input").focus(); } }, s)));
  $("composer").addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = $("composer-input");
    const text = input.value.trim();
    if (!text) return;
    input.value = "";
    const answer = await api("/demo/command", { user: app.me, channel: app.channel, text });
    if (!answer.ok && answer.error) status(answer.error);
  });
  $("modal-form").addEventListener("submit", submitModal);
  $("modal-close").addEventListener("click", () => api("/demo/close", { user: app.me }));
  $("modal").addEventListener("keydown", (e) => { trapFocus($("modal"), e); if (e.key === "Escape") api("/demo/close", { user: app.me }); });
  $("confirm").addEventListener("keydown", (e) => { trapFocus($("confirm"), e); if (e.key === "Escape") closeConfirm(false); });
  $("confirm-ok").addEventListener("click", () => closeConfirm(true));
  $("confirm-deny").addEventListener("click", () => closeConfirm(false));
  who.addEventListener("change", () => becomeUser(who.value));
  const asked = new URL(window.location.href).searchParams.get("as");
  const start = app.setup.people.find((p) => p.name === asked) || app.setup.people[0];
  who.value = start.id;
  becomeUser(start.id);
}

init().catch((error) => status(`The demo page could not start: ${error}`));
