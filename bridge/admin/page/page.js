"use strict";
// The status page: reads the JSON API every few seconds and drives its
// actions. Everything is written with textContent, never as HTML.
(() => {
  const tokenKey = "pollbridge.admin.token";
  const $ = (sel) => document.querySelector(sel);
  let busy = false;
  let again = false;
  const expanded = new Set(); // sinks whose retrying and dead deliveries are shown

  function token() { return sessionStorage.getItem(tokenKey) || ""; }

  function showAuth(show) { $("#auth").hidden = !show; }

  function say(text, bad) {
    const m = $("#message");
    m.textContent = text;
    m.className = bad ? "bad" : "";
  }

  async function api(method, path) {
    const headers = { "Accept": "application/json" };
    if (token()) headers["Authorization"] = "Bearer " + token();
    const res = await fetch(path, { method, headers, cache: "no-store" });
    if (res.status === 401) {
      showAuth(true);
      throw new Error(token() ? "the admin token was refused" : "enter the admin token");
    }
    const body = await res.json().catch(() => ({}));
    if (!res.ok) throw new Error(body.error || (res.status + " " + res.statusText));
    return body;
  }

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v;
      else if (k.startsWith("data-")) e.setAttribute(k, v);
      else e[k] = v;
    }
    for (const c of children) {
      if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
    }
    return e;
  }

  function ago(iso) {
    if (!iso) return "never";
    const s = Math.round((Date.now() - Date.parse(iso)) / 1000);
    if (s < -1) return "in " + span(-s);
    if (s < 2) return "just now";
    return span(s) + " ago";
  }

  function span(s) {
    if (s < 90) return s + "s";
    if (s < 5400) return Math.round(s / 60) + "m";
    if (s < 172800) return Math.round(s / 3600) + "h";
    return Math.round(s / 86400) + "d";
  }

  function when(iso) {
    const t = el("time", { dateTime: iso || "", title: iso ? new Date(iso).toLocaleString() : "" }, ago(iso));
    return t;
  }

  const healthText = { ok: "ok", failing: "failing", backing_off: "backing off", pending: "not polled yet" };

  function button(label, cls, action, disabled) {
    const b = el("button", { type: "button", class: cls, disabled: !!disabled }, label);
    b.addEventListener("click", () => act(b, action));
    return b;
  }

  async function act(btn, action) {
    btn.disabled = true;
    try {
      say(await action(), false);
    } catch (err) {
      say(err.message, true);
    } finally {
      btn.disabled = false;
      refresh();
    }
  }

  const enc = encodeURIComponent;

  function renderSources(list) {
    const body = $("#sources tbody");
    body.replaceChildren(...list.map((s) => {
      const health = el("td", {},
        el("span", { class: "badge health " + s.health }, healthText[s.health] || s.health));
      if (s.last_error) {
        health.append(el("div", { class: "error" }, s.last_error));
      }
      if (s.health === "backing_off" && s.backoff_until) {
        health.append(el("div", { class: "muted" }, "paused until ", when(s.backoff_until)));
      }
      return el("tr", { "data-source": s.name },
        el("td", {}, el("strong", {}, s.name)),
        health,
        el("td", {}, el("code", {}, s.schedule)),
        el("td", {}, when(s.last_poll), s.last_poll ? el("span", { class: "muted" }, " (" + Math.round(s.last_duration / 1e6) + " ms)") : null),
        el("td", {}, when(s.last_change)),
        el("td", { class: "num items" }, s.items),
        el("td", {}, s.next_poll ? when(s.next_poll) : "—"),
        el("td", { class: "actions" },
          button("Poll now", "poll", async () => {
            const r = await api("POST", "/api/sources/" + enc(s.name) + "/poll");
            return "Polled " + s.name + ": " + r.items + " item(s), " + r.events + " event(s)";
          })));
    }));
  }

  const stateText = { active: "active", open: "circuit open", probing: "probing", paused: "paused", disabled: "disabled" };

  // deliveryTable lists deliveries of one state ("Retrying" or "Dead") of
  // a sink, as /api/deliveries gave them.
  function deliveryTable(title, data, dead) {
    const shown = data.deliveries.length;
    const count = data.total > shown ? " (first " + shown + " of " + data.total + ")" : " (" + data.total + ")";
    const box = el("div", { class: "deliveries " + title.toLowerCase() },
      el("h3", {}, title, el("span", { class: "muted" }, count)));
    if (shown === 0) {
      box.append(el("p", { class: "muted" }, "none"));
      return box;
    }
    box.append(el("table", {},
      el("thead", {}, el("tr", {},
        el("th", {}, "Delivery"), el("th", {}, "Item"), el("th", {}, "Type"), el("th", { class: "num" }, "Attempts"),
        el("th", {}, dead ? "Dead since" : "Next attempt"), el("th", {}, "Last error"))),
      el("tbody", {}, ...data.deliveries.map((d) =>
        el("tr", { "data-delivery": d.id },
          el("td", {}, el("code", {}, d.id)),
          el("td", {}, d.source + "/" + d.key),
          el("td", {}, d.type),
          el("td", { class: "num attempts" }, d.attempts),
          el("td", {}, when(dead ? d.dead : d.due)),
          el("td", { class: "error" }, d.last_error || ""))))));
    return box;
  }

  // detailRow shows a sink's retrying and dead deliveries under its row.
  function detailRow(name, d) {
    const cell = el("td", { colSpan: 6 });
    if (!d) cell.append(el("p", { class: "muted" }, "loading…"));
    else if (d.error) cell.append(el("p", { class: "error" }, "Deliveries unavailable: " + d.error));
    else cell.append(deliveryTable("Retrying", d.retrying, false), deliveryTable("Dead", d.dead, true));
    return el("tr", { class: "detail", "data-sink-detail": name }, cell);
  }

  function renderSinks(data, details) {
    const body = $("#sinks tbody");
    body.replaceChildren(...data.sinks.flatMap((k) => {
      const o = k.outbox || {};
      const n = (v) => (v === undefined ? "?" : v);
      const state = el("td", {}, el("span", { class: "badge state " + k.state }, stateText[k.state] || k.state));
      if (k.reason) state.append(el("div", { class: "muted" }, k.reason));
      const stopped = k.state === "paused" || k.state === "disabled";
      const open = expanded.has(k.name);
      const toggle = el("button", { type: "button", class: "details", "data-expanded": String(open) },
        open ? "Hide deliveries" : "Deliveries");
      toggle.addEventListener("click", () => {
        if (open) expanded.delete(k.name); else expanded.add(k.name);
        refresh();
      });
      const row = el("tr", { "data-sink": k.name },
        el("td", {}, el("strong", {}, k.name)),
        state,
        el("td", { class: "num pending" }, n(o.pending)),
        el("td", { class: "num retrying" }, n(o.retrying)),
        el("td", { class: "num dead" }, n(o.dead)),
        el("td", { class: "actions" },
          button("Replay dead letters", "replay", async () => {
            const r = await api("POST", "/api/sinks/" + enc(k.name) + "/replay");
            return "Replayed " + r.replayed + " dead letter(s) of " + k.name;
          }, !o.dead),
          " ",
          stopped
            ? button("Resume", "resume", async () => {
                await api("POST", "/api/sinks/" + enc(k.name) + "/resume");
                return "Resumed " + k.name;
              })
            : button("Pause", "pause", async () => {
                await api("POST", "/api/sinks/" + enc(k.name) + "/pause");
                return "Paused " + k.name;
              }),
          " ",
          toggle));
      return open ? [row, detailRow(k.name, details[k.name])] : [row];
    }));
    const oe = $("#outbox-error");
    oe.hidden = !data.outbox_error;
    oe.textContent = data.outbox_error ? "Outbox counts unavailable: " + data.outbox_error : "";
  }

  function renderDead(data) {
    $("#dead-total").textContent = data.total > data.dead.length
      ? "(oldest " + data.dead.length + " of " + data.total + ")" : "(" + data.total + ")";
    $("#dead tbody").replaceChildren(...data.dead.map((d) =>
      el("tr", { "data-dead": d.id },
        el("td", {}, el("code", {}, d.id)),
        el("td", {}, d.sink),
        el("td", {}, d.source + "/" + d.key),
        el("td", { class: "num" }, d.attempts),
        el("td", {}, when(d.dead)),
        el("td", { class: "error" }, d.last_error || ""),
        el("td", { class: "actions" },
          button("Replay", "replay-one", async () => {
            await api("POST", "/api/dead/" + enc(d.id) + "/replay");
            return "Replayed " + d.id;
          })))));
  }

  async function refresh() {
    if (busy) {
      again = true; // an action finished mid-refresh: read once more
      return;
    }
    busy = true;
    try {
      const [info, sources, sinks, dead] = await Promise.all([
        api("GET", "/api/info"), api("GET", "/api/sources"), api("GET", "/api/sinks"), api("GET", "/api/dead?limit=50"),
      ]);
      const details = {};
      await Promise.all([...expanded].map(async (name) => {
        const q = "/api/deliveries?limit=20&sink=" + enc(name) + "&state=";
        try {
          const [retrying, dead] = await Promise.all([api("GET", q + "retrying"), api("GET", q + "dead")]);
          details[name] = { retrying, dead };
        } catch (err) {
          details[name] = { error: err.message };
        }
      }));
      $("#version").textContent = "version " + info.version + (info.draining ? " — shutting down" : "");
      renderSources(sources.sources);
      renderSinks(sinks, details);
      renderDead(dead);
      $("#updated").textContent = "updated " + new Date().toLocaleTimeString();
      document.body.dataset.loaded = "true";
      showAuth(false);
    } catch (err) {
      say(err.message, true);
    } finally {
      busy = false;
      if (again) {
        again = false;
        refresh();
      }
    }
  }

  $("#save-token").addEventListener("click", () => {
    sessionStorage.setItem(tokenKey, $("#token").value.trim());
    $("#token").value = "";
    say("", false);
    refresh();
  });
  $("#token").addEventListener("keydown", (e) => { if (e.key === "Enter") $("#save-token").click(); });
  $("#refresh").addEventListener("click", refresh);
  if (document.body.dataset.tokenRequired === "true" && !token()) showAuth(true);
  refresh();
  setInterval(refresh, 5000);
})();
