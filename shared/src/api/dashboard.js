"use strict";
(function () {
  var KEY_STORE = "convosPoolKey";
  var REFRESH_MS = 5000;
  var POLL_MS = 1000;
  var AGENTS_PAGE = 50;         // agents shown at first, and added by "Load more"
  var AGENTS_MAX_LIMIT = 200;   // the most /api/pool/agents gives in one page
  var STATUSES = ["provisioning", "idle", "claiming", "claimed", "recycling", "destroying", "crashed"];

  var $ = function (id) { return document.getElementById(id); };

  // ---- State --------------------------------------------------------------------------
  var environment = null;       // dev | staging | production, from /version or /status
  var agentCache = new Map();   // instanceId -> last agent object seen
  var agentNodes = new Map();   // instanceId -> card element
  var agentsWanted = AGENTS_PAGE; // how many agents the list shows (grows with "Load more")
  var qrCache = new Map();      // instanceId -> {invite, svg: Promise<string>} for listed agents
  var pending = new Map();      // instanceId -> {action: "recycling"|"destroying"}
  var refreshing = false;
  var refreshAgain = false;
  var lastOk = null;

  // ---- Small helpers ------------------------------------------------------------------
  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (name) {
        var value = attrs[name];
        if (value == null || value === false) return;
        if (name === "text") node.textContent = String(value);
        else if (name === "className") node.className = value;
        else node.setAttribute(name, value === true ? "" : String(value));
      });
    }
    (children || []).forEach(function (child) {
      if (child == null) return;
      node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    });
    return node;
  }
  function setText(node, text) {
    text = text == null ? "" : String(text);
    if (node.textContent !== text) node.textContent = text;
  }
  function duration(ms) {
    if (!isFinite(ms)) return "";
    var s = Math.max(0, Math.floor(ms / 1000));
    if (s < 60) return s + "s";
    var m = Math.floor(s / 60); s %= 60;
    if (m < 60) return m + "m " + String(s).padStart(2, "0") + "s";
    var h = Math.floor(m / 60); m %= 60;
    if (h < 24) return h + "h " + String(m).padStart(2, "0") + "m";
    var d = Math.floor(h / 24); h %= 24;
    return d + "d " + h + "h";
  }
  function since(iso) {
    var t = Date.parse(iso);
    return isNaN(t) ? "" : duration(Date.now() - t);
  }
  function clock(iso) {
    var d = new Date(iso);
    return isNaN(d) ? "" : d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
  }
  function fullTime(iso) {
    var d = new Date(iso);
    return isNaN(d) ? "" : d.toLocaleString();
  }
  // A live duration: the 1 s ticker below keeps every [data-since] element current.
  function ago(iso, suffix) {
    return el("span", { "data-since": iso, "data-suffix": suffix || "", title: fullTime(iso), text: since(iso) + (suffix || "") });
  }
  function statusPill(status) {
    return el("span", { className: "pill s-" + status, text: status });
  }
  function isHttpUrl(url) { return /^https?:\/\//i.test(url || ""); }
  // Only relative same-origin paths are followed, whatever the server sends.
  function samePath(url, fallback) { return typeof url === "string" && /^\/[^\/\\]/.test(url) ? url : fallback; }

  function showNotice(text) { setText($("notice-text"), text); $("notice").hidden = false; }
  $("notice-close").addEventListener("click", function () { $("notice").hidden = true; });

  function copyText(text, button) {
    var done = function (ok) {
      var label = button.textContent;
      button.textContent = ok ? "Copied" : "Copy failed";
      setTimeout(function () { button.textContent = label === "Copied" || label === "Copy failed" ? "Copy" : label; }, 1500);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(function () { done(true); }, function () { done(fallbackCopy(text)); });
    } else {
      done(fallbackCopy(text));
    }
  }
  function fallbackCopy(text) {
    var area = el("textarea", { style: "position:fixed;left:-9999px;top:0", readonly: true });
    area.value = text;
    document.body.appendChild(area);
    area.select();
    var ok = false;
    try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
    area.remove();
    return ok;
  }

  function setBusy(button, busy, busyLabel) {
    if (busy) {
      if (!button.dataset.label) button.dataset.label = button.textContent;
      button.disabled = true;
      button.setAttribute("aria-busy", "true");
      if (busyLabel) button.textContent = busyLabel;
    } else {
      button.disabled = false;
      button.removeAttribute("aria-busy");
      if (button.dataset.label) { button.textContent = button.dataset.label; delete button.dataset.label; }
    }
  }

  // ---- The key and the API --------------------------------------------------------------
  function getKey() {
    try { return localStorage.getItem(KEY_STORE) || ""; } catch (e) { return ""; }
  }
  function setKey(key) {
    try {
      if (key) localStorage.setItem(KEY_STORE, key); else localStorage.removeItem(KEY_STORE);
    } catch (e) { /* storage blocked: the key lives only until the page is closed */ }
  }

  function AuthError() { this.message = "wrong or missing key"; }
  function ApiError(status, body) {
    this.status = status;
    this.body = body || {};
    this.message = (body && body.error) || ("HTTP " + status);
  }

  function askForKey(wrong) {
    $("key-panel").hidden = false;
    $("key-error").hidden = !wrong;
    $("authed").hidden = true;
    $("forget-key").hidden = true;
    $("breaker").hidden = true;
    setTimeout(function () { $("key-input").focus(); }, 0);
  }
  function keyAccepted() {
    $("key-panel").hidden = true;
    $("key-error").hidden = true;
    $("authed").hidden = false;
    $("forget-key").hidden = false;
  }

  // fetch() to this origin only, with the key as a Bearer token. A 401 forgets the key
  // (unless another key was saved meanwhile) and asks for it again.
  function keyed(method, path, accept, body) {
    var key = getKey();
    if (!key) { askForKey(false); return Promise.reject(new AuthError()); }
    var init = { method: method, headers: { "Authorization": "Bearer " + key, "Accept": accept }, cache: "no-store", credentials: "omit" };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    return fetch(path, init).then(function (response) {
      if (response.status === 401) {
        if (getKey() === key) { setKey(""); askForKey(true); }
        throw new AuthError();
      }
      return response;
    });
  }
  function api(method, path, body) {
    return keyed(method, path, "application/json", body).then(function (response) {
      return response.text().then(function (text) {
        var data = {};
        if (text) { try { data = JSON.parse(text); } catch (e) { data = { error: text.slice(0, 300) }; } }
        if (!response.ok) throw new ApiError(response.status, data);
        data.__status = response.status;
        return data;
      });
    });
  }
  // An agent's invite QR code: an SVG our own server draws (GET /api/pool/agents/{id}/qr).
  function qrSvg(id) {
    return keyed("GET", "/api/pool/agents/" + encodeURIComponent(id) + "/qr", "image/svg+xml").then(function (response) {
      if (!response.ok || !/^image\/svg\+xml/.test(response.headers.get("Content-Type") || "")) throw new ApiError(response.status, null);
      return response.text();
    });
  }
  // One request per agent and invite URL; a failure is asked again at the next refresh.
  function agentQr(id, invite) {
    var known = qrCache.get(id);
    if (known && known.invite === invite) return known.svg;
    var entry = { invite: invite, svg: qrSvg(id) };
    entry.svg.catch(function () { if (qrCache.get(id) === entry) qrCache.delete(id); });
    qrCache.set(id, entry);
    return entry.svg;
  }
  function publicGet(path) {
    return fetch(path, { cache: "no-store", credentials: "omit", headers: { "Accept": "application/json" } }).then(function (r) {
      if (!r.ok) throw new ApiError(r.status, null);
      return r.json();
    });
  }

  // Production asks once more before anything that destroys or interrupts.
  function confirmDestructive(what) {
    if (environment !== "production") return true;
    return window.confirm("PRODUCTION: " + what + "\n\nReally do this?");
  }

  $("key-form").addEventListener("submit", function (event) {
    event.preventDefault();
    var input = $("key-input");
    var key = input.value.trim();
    input.value = "";
    if (!key) { askForKey(true); return; }
    setKey(key);
    keyAccepted();
    refresh();
  });
  $("forget-key").addEventListener("click", function () {
    setKey("");
    askForKey(false);
  });

  // ---- Environment and version (public) --------------------------------------------------
  function setEnvironment(env) {
    if (!env || env === environment) return;
    environment = env;
    var badge = $("env-badge");
    badge.className = "badge env-" + env;
    setText(badge, env);
    $("top").classList.toggle("production", env === "production");
    document.title = "Convos agent pool · " + env;
  }
  function loadVersion() {
    publicGet("/version").then(function (v) {
      setEnvironment(v.environment);
      setText($("version"), v.version || "");
    }).catch(function () { /* shown by the counts refresh */ });
  }

  // ---- Counts (public) ---------------------------------------------------------------------
  function buildCounts() {
    var box = $("counts");
    STATUSES.forEach(function (status) {
      box.appendChild(el("div", { className: "count zero", id: "count-box-" + status }, [
        el("div", { className: "k" }, [el("span", { className: "dot s-" + status }), status]),
        el("div", { className: "v", id: "count-" + status, "data-testid": "count-" + status, text: "–" })
      ]));
    });
  }
  function renderCounts(counts) {
    STATUSES.forEach(function (status) {
      var n = Number(counts[status] || 0);
      setText($("count-" + status), n);
      $("count-box-" + status).classList.toggle("zero", n === 0);
    });
  }

  // ---- Breaker -----------------------------------------------------------------------------
  // Version rollout (issue 15.3): "7 of 10 current", and what is still to do.
  function renderRollout(rollout) {
    if (!rollout) { setText($("rollout"), ""); return; }
    var text = "Version " + rollout.desired + ": " + rollout.current + " of " + rollout.total + " current";
    if (rollout.stale > 0) {
      text += " · rolling out (" + rollout.staleIdle + " idle to replace, " + (rollout.stale - rollout.staleIdle) + " others replaced when released or idle)";
    }
    setText($("rollout"), text);
  }

  // Sizing (issue 15.2): what the refill keeps warm, and adaptive's latest figures.
  function renderSizing(sizing) {
    if (!sizing) { setText($("sizing"), ""); return; }
    var text = (sizing.mode === "adaptive" ? "Adaptive sizing: " : "Fixed sizing: ") + sizing.inForce + " kept warm";
    var a = sizing.adaptive;
    if (a) {
      text += " · demand " + a.claimRatePerHour.toFixed(1) + " claims/h × lead time " + Math.round(a.leadTimeSeconds) + " s" +
        (a.leadMeasured ? "" : " (assumed)") + " → target " + a.target + " (floor " + sizing.floor + ", ceiling " + sizing.ceiling + ")";
    }
    setText($("sizing"), text);
  }

  function renderBreaker(breaker) {
    var box = $("breaker");
    var until = breaker && breaker.openUntil ? Date.parse(breaker.openUntil) : NaN;
    if (!(until > Date.now())) { box.hidden = true; return; }
    box.textContent = "";
    box.appendChild(el("strong", { text: "Creation paused" }));
    box.appendChild(document.createTextNode(" until " + clock(breaker.openUntil) + " (in " + duration(until - Date.now()) + ")"));
    if (breaker.lastFailure) box.appendChild(document.createTextNode(": " + breaker.lastFailure));
    if (breaker.consecutiveFailures) {
      box.appendChild(el("span", { className: "muted", text: " · " + breaker.consecutiveFailures + " failures in a row" }));
    }
    box.hidden = false;
  }

  // ---- Agents -------------------------------------------------------------------------------
  function agentCard(agent) {
    var id = agent.instanceId;
    var card = el("article", { className: "agent", "data-testid": "agent-row", "data-instance-id": id });
    var qr = el("div", { className: "qr", "data-testid": "agent-qr", title: "Invite QR code" });
    var body = el("div", { style: "min-width:0" });
    var state = el("div", { className: "state", "data-testid": "agent-state", hidden: true });
    var name = el("div", { className: "name", "data-testid": "agent-name" });
    var sub = el("div", { className: "sub" }, [
      el("span", { "data-testid": "agent-status" }),
      el("span", { "data-testid": "agent-uptime" }),
      el("span", { className: "mono", "data-testid": "agent-id", text: id }),
      el("span", { "data-testid": "agent-join" })
    ]);
    var instructions = el("div", { className: "instructions", "data-testid": "agent-instructions", title: "Click to expand" });
    instructions.addEventListener("click", function () { instructions.classList.toggle("open"); });
    var url = el("code", { "data-testid": "agent-invite-url" });
    var copy = el("button", { className: "small", type: "button", "data-testid": "agent-copy", text: "Copy" });
    copy.addEventListener("click", function () {
      var current = agentCache.get(id);
      if (current && current.inviteUrl) copyText(current.inviteUrl, copy);
    });
    var recycle = el("button", { type: "button", "data-testid": "agent-recycle", text: "Recycle", title: "Wipe this agent and return the instance to the pool" });
    var destroy = el("button", { className: "danger", type: "button", "data-testid": "agent-destroy", text: "Destroy", title: "Delete this instance for good" });
    recycle.addEventListener("click", function () { instanceAction(id, "recycle"); });
    destroy.addEventListener("click", function () { instanceAction(id, "destroy"); });
    body.appendChild(state);
    body.appendChild(name);
    body.appendChild(sub);
    body.appendChild(instructions);
    body.appendChild(el("div", { className: "urlbox", "data-testid": "agent-invite" }, [url, copy]));
    body.appendChild(el("div", { className: "row actions" }, [recycle, destroy]));
    card.appendChild(qr);
    card.appendChild(body);
    return card;
  }
  function q(card, testid) { return card.querySelector('[data-testid="' + testid + '"]'); }

  function updateCard(card, agent) {
    var busy = pending.get(agent.instanceId);
    setText(q(card, "agent-name"), agent.agentName || "(unnamed)");
    var statusSlot = q(card, "agent-status");
    if (statusSlot.dataset.status !== agent.status) {
      statusSlot.textContent = "";
      statusSlot.appendChild(statusPill(agent.status));
      statusSlot.dataset.status = agent.status;
    }
    var uptime = q(card, "agent-uptime");
    if (agent.claimedAt) {
      if (uptime.dataset.claimedAt !== agent.claimedAt) {
        uptime.textContent = "";
        uptime.appendChild(document.createTextNode("up "));
        uptime.appendChild(ago(agent.claimedAt));
        uptime.dataset.claimedAt = agent.claimedAt;
      }
    } else {
      setText(uptime, "");
    }
    setText(q(card, "agent-join"), agent.joinStatus ? "join: " + agent.joinStatus.replace(/_/g, " ") : "");
    // Instructions are arbitrary text: textContent, never markup.
    setText(q(card, "agent-instructions"), agent.instructions || "");
    q(card, "agent-instructions").hidden = !agent.instructions;
    setText(q(card, "agent-invite-url"), agent.inviteUrl || "no invite URL");
    q(card, "agent-invite-url").title = agent.inviteUrl || "";
    q(card, "agent-copy").disabled = !agent.inviteUrl;
    // The one string inserted as markup: the QR code our own server drew.
    var qr = q(card, "agent-qr");
    var invite = agent.inviteUrl || "";
    if (qr.dataset.for !== invite) {
      qr.dataset.for = invite;
      qr.innerHTML = "";
      if (invite) {
        agentQr(agent.instanceId, invite).then(function (svg) {
          if (qr.dataset.for === invite) qr.innerHTML = svg;
        }, function () {
          if (qr.dataset.for === invite) delete qr.dataset.for; // drawn at the next refresh
        });
      }
    }
    var state = q(card, "agent-state");
    var recycle = q(card, "agent-recycle");
    var destroy = q(card, "agent-destroy");
    card.classList.toggle("busy", !!busy);
    card.setAttribute("data-state", busy ? busy.action : agent.status);
    if (busy) {
      state.textContent = "";
      state.appendChild(el("span", { className: "spinner" }));
      state.appendChild(document.createTextNode(busy.action === "recycling" ? "Recycling…" : "Destroying…"));
      state.hidden = false;
      setBusy(recycle, true, busy.action === "recycling" ? "Recycling…" : null);
      setBusy(destroy, true, busy.action === "destroying" ? "Destroying…" : null);
      if (busy.action !== "recycling") recycle.removeAttribute("aria-busy");
      if (busy.action !== "destroying") destroy.removeAttribute("aria-busy");
    } else {
      state.hidden = true;
      setBusy(recycle, false);
      setBusy(destroy, false);
      // A crashed instance has nothing to recycle; it can only be destroyed.
      recycle.disabled = agent.status !== "claimed";
    }
  }

  function renderAgents(list) {
    var seen = new Set();
    list.forEach(function (agent) { agentCache.set(agent.instanceId, agent); seen.add(agent.instanceId); });
    // An instance being recycled or destroyed leaves the server's list at once; it stays here,
    // as it was last seen, until its statusUrl says the action is over.
    pending.forEach(function (_, id) { if (agentCache.has(id)) seen.add(id); });
    var order = Array.from(seen).map(function (id) { return agentCache.get(id); });
    // The server's order (newest claimed first); one kept while busy keeps its place.
    order.sort(function (a, b) { return a.rank - b.rank || a.instanceId.localeCompare(b.instanceId); });
    var box = $("agents");
    agentNodes.forEach(function (node, id) {
      if (!seen.has(id)) { node.remove(); agentNodes.delete(id); agentCache.delete(id); qrCache.delete(id); }
    });
    order.forEach(function (agent, index) {
      var card = agentNodes.get(agent.instanceId);
      if (!card) { card = agentCard(agent); agentNodes.set(agent.instanceId, card); }
      updateCard(card, agent);
      if (box.children[index] !== card) box.insertBefore(card, box.children[index] || null);
    });
    $("agents-empty").hidden = order.length > 0;
    var more = !$("agents-more").hidden;
    setText($("agents-count"), order.length ? "(" + order.length + (more ? "+" : "") + ")" : "");
  }
  // The first agentsWanted agents, page after page (a page may end early: the server keeps
  // each answer small). "Load more" shows when the server has more than that.
  function loadAgents() {
    var list = [];
    function page(cursor) {
      var limit = Math.min(AGENTS_MAX_LIMIT, agentsWanted - list.length);
      var path = "/api/pool/agents?limit=" + limit + (cursor ? "&cursor=" + encodeURIComponent(cursor) : "");
      return api("GET", path).then(function (a) {
        list = list.concat(a.agents || []);
        if (a.nextCursor && list.length < agentsWanted) return page(a.nextCursor);
        return !!a.nextCursor;
      });
    }
    return page(null).then(function (more) {
      list.forEach(function (agent, index) { agent.rank = index; });
      $("agents-more").hidden = !more;
      renderAgents(list);
    });
  }
  $("agents-more").addEventListener("click", function () {
    agentsWanted += AGENTS_PAGE;
    refresh();
  });
  function rerenderAgents() {
    renderAgents(Array.from(agentCache.values()).filter(function (a) { return !pending.has(a.instanceId); }));
  }

  // Recycle or destroy, then watch the instance until the action is over.
  function instanceAction(id, action) {
    var agent = agentCache.get(id);
    var label = (agent && agent.agentName ? "“" + agent.agentName + "” (" + id + ")" : id);
    if (!confirmDestructive((action === "recycle" ? "recycle " : "destroy ") + label)) return;
    if (pending.has(id)) return;
    pending.set(id, { action: action === "recycle" ? "recycling" : "destroying" });
    rerenderAgents();
    var path = "/api/pool/instances/" + encodeURIComponent(id) + (action === "destroy" ? "/destroy" : "");
    api("DELETE", path).then(function (reply) {
      return watchInstance(id, action, samePath(reply.statusUrl, "/api/pool/instances/" + encodeURIComponent(id)));
    }).catch(function (err) {
      if (!(err instanceof AuthError)) showNotice("Could not " + action + " " + label + ": " + err.message);
    }).then(function () {
      pending.delete(id);
      agentCache.delete(id);
      refresh();
    });
  }
  function sleep(ms) { return new Promise(function (resolve) { setTimeout(resolve, ms); }); }
  function watchInstance(id, action, url) {
    var deadline = Date.now() + 15 * 60 * 1000;
    function poll() {
      return sleep(POLL_MS).then(function () { return api("GET", url); }).then(function (inst) {
        if (inst.status === "recycling" || inst.status === "destroying") {
          if (Date.now() > deadline) throw new Error("still " + inst.status + " after 15 minutes");
          var busy = pending.get(id);
          if (busy && busy.action !== inst.status) { busy.action = inst.status; rerenderAgents(); }
          return poll();
        }
        if (inst.status === "crashed") showNotice("Instance " + id + " crashed while being " + (action === "recycle" ? "recycled" : "destroyed") + (inst.lastError ? ": " + inst.lastError : ""));
        return inst;
      }, function (err) {
        if (err instanceof ApiError && err.status === 404) return null; // destroyed: gone
        if (err instanceof AuthError) throw err;
        if (Date.now() > deadline) throw err;
        return poll(); // a network hiccup: keep watching
      });
    }
    return poll();
  }

  // ---- Instances table and activity feed ---------------------------------------------------
  function renderInstances(instances) {
    var body = $("instances");
    body.textContent = "";
    instances.slice().sort(function (a, b) {
      return STATUSES.indexOf(a.status) - STATUSES.indexOf(b.status) || String(a.createdAt).localeCompare(String(b.createdAt));
    }).forEach(function (inst) {
      body.appendChild(el("tr", { "data-testid": "instance-row", "data-instance-id": inst.id }, [
        el("td", { className: "mono", title: inst.spriteName || "", text: inst.id }),
        el("td", null, [statusPill(inst.status), inst.heartbeatFailures ? el("span", { className: "muted", text: " ♥×" + inst.heartbeatFailures, title: "missed heartbeats" }) : null]),
        el("td", { className: "mono", text: (inst.step || "") + (inst.attempts > 1 ? " (try " + inst.attempts + ")" : "") }),
        el("td", { className: "num" }, [ago(inst.createdAt)]),
        el("td", { className: "num" }, [ago(inst.statusChangedAt)]),
        el("td", { text: inst.agentName || "" }),
        el("td", { className: "err-cell", text: inst.lastError || "" })
      ]));
    });
    $("instances-empty").hidden = instances.length > 0;
    setText($("instances-count"), "(" + instances.length + ")");
  }
  function renderEvents(events) {
    var list = $("events");
    list.textContent = "";
    events.forEach(function (ev) {
      // A pool event (settings, breaker, drain, orphan deleted) has no instance and a JSON detail.
      var what = ev.instanceId ? el("div", { className: "what" }, [
        el("span", { className: "mono", text: ev.instanceId }), " ",
        ev.kind !== "status" ? el("span", { className: "mono muted", text: ev.kind.replace("_", " ") + " " }) : null,
        ev.fromStatus ? statusPill(ev.fromStatus) : el("span", { className: "muted", text: "new" }),
        ev.kind === "status" ? " → " : null, ev.kind === "status" ? statusPill(ev.toStatus) : null,
        ev.step ? el("span", { className: "mono muted", text: " " + ev.step }) : null,
        " ", el("span", { text: ev.reason || "" })
      ]) : el("div", { className: "what" }, [
        el("span", { className: "mono", text: "pool " + ev.kind.replace("_", " ") })
      ]);
      what.appendChild(el("span", { className: "mono muted", text: " · " + ev.actor }));
      var detail = ev.instanceId ? ev.detail : JSON.stringify(ev.detail);
      if (detail) what.appendChild(el("div", { className: "detail", text: detail }));
      list.appendChild(el("li", { "data-testid": "event-row" }, [
        el("span", { className: "when", title: fullTime(ev.at), text: clock(ev.at) }), what
      ]));
    });
    $("events-empty").hidden = events.length > 0;
  }

  // ---- Refresh ------------------------------------------------------------------------------
  function refresh() {
    if (refreshing) { refreshAgain = true; return Promise.resolve(); }
    refreshing = true;
    var jobs = [publicGet("/api/pool/counts").then(renderCounts)];
    if (getKey()) {
      jobs.push(api("GET", "/api/pool/status").then(function (s) {
        keyAccepted();
        setEnvironment(s.environment);
        setText($("pool-id"), s.poolId ? "pool " + s.poolId : "");
        renderCounts(s.counts || {});
        renderBreaker(s.breaker);
        renderRollout(s.rollout);
        renderSizing(s.sizing);
        renderInstances(s.instances || []);
        var r = s.running, awake = r ? r.busy + r.hotIdle + r.dozingIdle : null;
        setText($("counts-foot"), s.total + " instances in all · at least " + s.minIdle + " idle wanted · at most " + s.maxTotal +
          (r ? " · " + awake + " running, " + r.sleepingIdle + " idle asleep" : ""));
        renderSettings(s.settings);
      }));
      jobs.push(loadAgents());
      jobs.push(api("GET", "/api/pool/events?limit=50").then(function (e) { renderEvents(e.events || []); }));
    }
    return Promise.allSettled(jobs).then(function (results) {
      var failed = results.filter(function (r) { return r.status === "rejected" && !(r.reason instanceof AuthError); });
      var status = $("refreshed");
      if (failed.length) {
        status.className = "meta bad";
        setText(status, "Refresh failed: " + (failed[0].reason && failed[0].reason.message || "cannot reach the pool") + (lastOk ? " · last good " + clock(lastOk.toISOString()) : ""));
      } else {
        lastOk = new Date();
        status.className = "meta";
        setText(status, "Updated " + clock(lastOk.toISOString()) + " · every " + REFRESH_MS / 1000 + " s");
      }
    }).finally(function () {
      refreshing = false;
      if (refreshAgain) { refreshAgain = false; refresh(); }
    });
  }
  $("refresh-now").addEventListener("click", function () { loadVersion(); refresh(); });

  // ---- Launch -------------------------------------------------------------------------------
  var launchForm = $("launch-form");
  function mode() { return launchForm.querySelector('input[name="mode"]:checked').value; }
  launchForm.querySelectorAll('input[name="mode"]').forEach(function (radio) {
    radio.addEventListener("change", function () { $("join-row").hidden = mode() !== "join"; });
  });
  function fieldInput(field) {
    return { agentName: $("launch-name"), instructions: $("launch-instructions"), joinUrl: $("launch-join-url") }[field];
  }
  function launchError(text, field) {
    var box = $("launch-error");
    setText(box, text);
    box.hidden = !text;
    ["agentName", "instructions", "joinUrl"].forEach(function (f) { fieldInput(f).removeAttribute("aria-invalid"); });
    if (field && fieldInput(field)) { fieldInput(field).setAttribute("aria-invalid", "true"); fieldInput(field).focus(); }
  }
  function showResult(result) {
    var box = $("launch-result");
    box.hidden = false;
    var heads = {
      pending: "Joining…",
      created: "Agent created",
      joined: "Agent joined the conversation",
      waiting_for_acceptance: "Join requested; waiting for the conversation's creator to accept",
      failed: "Launch failed"
    };
    var head = $("result-head");
    head.textContent = "";
    if (result.status === "pending") head.appendChild(el("span", { className: "spinner" }));
    head.appendChild(document.createTextNode((result.status === "pending" ? " " : "") + (heads[result.status] || result.status)));
    head.style.color = result.status === "failed" ? "var(--danger)" : "";
    var sub = [];
    if (result.agentName) sub.push(result.agentName);
    if (result.instanceId) sub.push("instance " + result.instanceId);
    if (result.conversationId) sub.push("conversation " + result.conversationId);
    if (result.error) sub.push(result.error);
    setText($("result-sub"), sub.join(" · "));
    $("result-invite").hidden = !result.inviteUrl;
    setText($("result-invite-url"), result.inviteUrl || "");
    $("result-invite-url").title = result.inviteUrl || "";
    $("result-qr").innerHTML = "";
    $("result-qr").dataset.instance = result.instanceId || "";
    if (result.inviteUrl) showResultQr(result.instanceId, result.inviteUrl, 0);
  }
  // The claim's answer has no QR code; the agent's QR route draws it on our server.
  function showResultQr(instanceId, invite, tries) {
    agentQr(instanceId, invite).then(function (svg) {
      if ($("result-qr").dataset.instance === instanceId) $("result-qr").innerHTML = svg;
    }, function (err) {
      if (tries < 5 && !(err instanceof AuthError)) {
        sleep(1000).then(function () { showResultQr(instanceId, invite, tries + 1); });
      }
    });
  }
  $("result-close").addEventListener("click", function () { $("launch-result").hidden = true; });
  $("result-copy").addEventListener("click", function () {
    var text = $("result-invite-url").textContent;
    if (text) copyText(text, $("result-copy"));
  });

  launchForm.addEventListener("submit", function (event) {
    event.preventDefault();
    var submit = $("launch-submit");
    if (submit.disabled) return;
    var body = { agentName: $("launch-name").value.trim(), instructions: $("launch-instructions").value };
    if (!body.agentName) { launchError("Give the agent a name.", "agentName"); return; }
    if (mode() === "join") {
      body.joinUrl = $("launch-join-url").value.trim();
      if (!body.joinUrl) { launchError("Paste the conversation's join URL.", "joinUrl"); return; }
    }
    launchError("");
    $("launch-result").hidden = true;
    setBusy(submit, true, mode() === "join" ? "Joining…" : "Launching…");
    setText($("launch-status"), "");
    api("POST", "/api/pool/claim", body).then(function (reply) {
      if (reply.__status === 202) {
        showResult({ status: "pending", instanceId: reply.instanceId, agentName: body.agentName });
        setText($("launch-status"), "");
        return pollClaim(samePath(reply.statusUrl, "/api/pool/claims/" + encodeURIComponent(reply.claimId)), body.agentName);
      }
      return reply;
    }).then(function (result) {
      showResult(result);
      if (result.status !== "failed") {
        $("launch-name").value = "";
        $("launch-instructions").value = "";
        $("launch-join-url").value = "";
      }
      refresh();
    }).catch(function (err) {
      if (err instanceof AuthError) return;
      var text = err.message || "The launch failed.";
      if (err.status === 503) text += " The pool is filling; try again in a moment.";
      launchError(text, err.body && err.body.field);
    }).then(function () {
      setBusy(submit, false);
    });
  });
  function pollClaim(url, agentName) {
    var deadline = Date.now() + 15 * 60 * 1000;
    function poll() {
      return sleep(1500).then(function () { return api("GET", url); }).then(function (claim) {
        if (claim.status !== "pending") return claim;
        if (Date.now() > deadline) throw new Error("The claim is still pending after 15 minutes; it continues in the background.");
        setText($("result-sub"), (agentName || "") + (claim.instanceId ? " · instance " + claim.instanceId : "") + " · still waiting");
        return poll();
      }, function (err) {
        if (err instanceof AuthError || Date.now() > deadline) throw err;
        if (err instanceof ApiError && err.status < 500) throw err;
        return poll();
      });
    }
    return poll();
  }

  // ---- Drain and replenish --------------------------------------------------------------------
  function controlsMessage(text, bad) {
    var box = $("controls-msg");
    box.className = bad ? "err" : "okmsg";
    setText(box, text);
  }
  function countOf(input) {
    var n = Number(input.value);
    if (!Number.isInteger(n) || n < 1 || n > 20) { input.setAttribute("aria-invalid", "true"); return null; }
    input.removeAttribute("aria-invalid");
    return n;
  }
  $("replenish-form").addEventListener("submit", function (event) {
    event.preventDefault();
    var n = countOf($("replenish-count"));
    if (n == null) { controlsMessage("Replenish: a whole number from 1 to 20.", true); return; }
    var button = $("replenish-submit");
    setBusy(button, true, "Starting…");
    api("POST", "/api/pool/replenish", { count: n }).then(function (r) {
      var text = r.breakerOpen ? "Creation is paused (circuit breaker); started " + r.created + "."
        : "Started " + r.created + " instance" + (r.created === 1 ? "" : "s") + (r.ids && r.ids.length ? ": " + r.ids.join(", ") : "") + ".";
      // `reason` says why fewer were started than asked (the cap, the breaker).
      var why = r.reason ? " " + r.reason + "." : "";
      controlsMessage(text + why + " " + r.warm + " warm, " + r.total + " in all.", !!r.breakerOpen || !!r.reason);
      refresh();
    }).catch(function (err) {
      if (!(err instanceof AuthError)) controlsMessage("Replenish failed: " + err.message, true);
    }).then(function () { setBusy(button, false); });
  });
  $("drain-form").addEventListener("submit", function (event) {
    event.preventDefault();
    var n = countOf($("drain-count"));
    if (n == null) { controlsMessage("Drain: a whole number from 1 to 20.", true); return; }
    if (!confirmDestructive("destroy " + n + " idle instance" + (n === 1 ? "" : "s"))) return;
    var button = $("drain-submit");
    setBusy(button, true, "Draining…");
    api("POST", "/api/pool/drain", { count: n }).then(function (r) {
      controlsMessage("Draining " + r.drained + " idle instance" + (r.drained === 1 ? "" : "s") + (r.ids && r.ids.length ? ": " + r.ids.join(", ") : "") + ".", false);
      refresh();
    }).catch(function (err) {
      if (!(err instanceof AuthError)) controlsMessage("Drain failed: " + err.message, true);
    }).then(function () { setBusy(button, false); });
  });

  // ---- Settings (issue 15.1) ---------------------------------------------------------------
  // The form shows the stored settings unless the operator is editing it.
  var SETTINGS_FIELDS = { minIdle: "settings-min-idle", maxTotal: "settings-max-total", openclawRef: "settings-openclaw-ref",
    runtimeImage: "settings-runtime-image",
    hotIdle: "settings-hot-idle", maxRunning: "settings-max-running",
    mode: "settings-mode", floor: "settings-floor", ceiling: "settings-ceiling" };
  // Left empty, these mean their unbounded default (null): every idle instance hot, no limit,
  // no floor (0) or ceiling (max total) for adaptive sizing.
  var NULLABLE = { hotIdle: true, maxRunning: true, floor: true, ceiling: true };
  function settingValue(field, input) {
    if (field === "openclawRef" || field === "runtimeImage" || field === "mode") return input.value.trim();
    if (NULLABLE[field] && input.value.trim() === "") return null;
    return Number(input.value);
  }
  var shownSettings = null;
  function settingsEditing() {
    var form = $("settings-form");
    return form.contains(document.activeElement) || form.dataset.dirty === "true";
  }
  function renderSettings(stored) {
    if (!stored || !stored.settings) return;
    shownSettings = stored.settings;
    // Only a provider that runs an image (Railway) has one to change.
    $("settings-runtime-image-row").hidden = stored.settings.runtimeImage == null;
    setText($("settings-meta"), "Revision " + stored.revision + " · last changed by " + stored.updatedBy + " " + since(stored.updatedAt) + " ago");
    if (settingsEditing()) return;
    Object.keys(SETTINGS_FIELDS).forEach(function (field) {
      var value = stored.settings[field];
      $(SETTINGS_FIELDS[field]).value = value == null ? "" : value;
    });
  }
  function settingsMessage(text, bad) {
    var box = $("settings-msg");
    box.className = bad ? "err" : "okmsg";
    setText(box, text);
  }
  $("settings-form").addEventListener("input", function () { $("settings-form").dataset.dirty = "true"; });
  $("settings-form").addEventListener("submit", function (event) {
    event.preventDefault();
    var patch = {}, changed = [];
    Object.keys(SETTINGS_FIELDS).forEach(function (field) {
      var input = $(SETTINGS_FIELDS[field]);
      input.removeAttribute("aria-invalid");
      if (input.closest("[hidden]")) return;
      var value = settingValue(field, input);
      if (!shownSettings || value !== shownSettings[field]) {
        patch[field] = value;
        changed.push(field + " " + (shownSettings ? shownSettings[field] : "?") + " → " + value);
      }
    });
    if (!changed.length) { settingsMessage("Nothing changed.", false); return; }
    if (!confirmDestructive("change the pool settings: " + changed.join(", "))) return;
    var button = $("settings-submit");
    setBusy(button, true, "Saving…");
    api("PUT", "/api/pool/settings", patch).then(function (r) {
      $("settings-form").dataset.dirty = "false";
      settingsMessage("Saved (revision " + r.revision + "): " + changed.join(", ") + ".", false);
      refresh();
    }).catch(function (err) {
      if (err instanceof AuthError) return;
      Object.keys((err.body && err.body.fields) || {}).forEach(function (field) {
        if (SETTINGS_FIELDS[field]) $(SETTINGS_FIELDS[field]).setAttribute("aria-invalid", "true");
      });
      settingsMessage("Not saved: " + err.message, true);
    }).then(function () { setBusy(button, false); });
  });

  // ---- Start -----------------------------------------------------------------------------------
  buildCounts();
  if (getKey()) keyAccepted(); else askForKey(false);
  loadVersion();
  refresh();
  setInterval(function () { if (!document.hidden) refresh(); }, REFRESH_MS);
  document.addEventListener("visibilitychange", function () { if (!document.hidden) refresh(); });
  // Uptimes and ages tick every second between refreshes.
  setInterval(function () {
    document.querySelectorAll("[data-since]").forEach(function (node) {
      setText(node, since(node.getAttribute("data-since")) + (node.getAttribute("data-suffix") || ""));
    });
  }, 1000);
})();
