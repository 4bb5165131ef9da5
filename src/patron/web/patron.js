/*
 * patron.js: Patron's browser snippet. Segment's call shape (page, track, identify, alias,
 * group, reset) plus consent; messages are batched to {apiHost}/v1/batch.
 *
 * Install: a one-line stub that queues calls into `window.patron`, then this script loaded
 * async with data-write-key (and optionally data-api-host). See docs/snippet.md.
 */
(function (window, document) {
  "use strict";

  var VERSION = "__PATRON_VERSION__";
  var COOKIE = "patron_aid";
  var COOKIE_MAX_AGE = 365 * 24 * 3600;
  var USER_KEY = "patron_uid";
  var CONSENT_KEY = "patron_consent";
  var QUEUE_KEY = "patron_queue";
  var MAX_QUEUE = 1000;
  var MAX_FETCH_BYTES = 400 * 1024; // the server takes 500 KB a batch
  var MAX_BEACON_BYTES = 60 * 1024; // browsers refuse beacons over 64 KB in flight
  var MAX_BACKOFF_MS = 60 * 1000;

  var existing = window.patron;
  if (existing && existing.loaded) return; // the script was included twice

  var script = document.currentScript || document.querySelector("script[data-write-key]");
  var config = readConfig(script);
  if (!config.writeKey) {
    console.error("patron.js: no data-write-key on the script tag; nothing will be sent");
  }

  function readConfig(tag) {
    var data = (tag && tag.dataset) || {};
    var host = data.apiHost || (tag && tag.src ? new URL(tag.src, location.href).origin : "");
    return {
      writeKey: data.writeKey || "",
      apiHost: host.replace(/\/+$/, ""),
      flushAt: positive(data.flushAt, 20),
      flushInterval: positive(data.flushInterval, 1000),
    };
  }

  function positive(text, fallback) {
    var n = parseInt(text, 10);
    return n > 0 ? n : fallback;
  }

  // --- storage that never throws (private modes, blocked storage) -------------------------

  function load(key) {
    try {
      var text = window.localStorage.getItem(key);
      return text === null ? null : JSON.parse(text);
    } catch (e) {
      return null;
    }
  }

  function save(key, value) {
    try {
      if (value === null) window.localStorage.removeItem(key);
      else window.localStorage.setItem(key, JSON.stringify(value));
    } catch (e) {
      // Full or blocked storage: the in-memory queue still works for this page.
    }
  }

  function readCookie(name) {
    var pairs = document.cookie ? document.cookie.split("; ") : [];
    for (var i = 0; i < pairs.length; i++) {
      var at = pairs[i].indexOf("=");
      if (pairs[i].slice(0, at) === name) return decodeURIComponent(pairs[i].slice(at + 1));
    }
    return null;
  }

  function writeCookie(name, value, maxAge) {
    var secure = location.protocol === "https:" ? "; Secure" : "";
    document.cookie =
      name + "=" + encodeURIComponent(value) + "; Max-Age=" + maxAge +
      "; Path=/; SameSite=Lax" + secure;
  }

  function uuid() {
    var c = window.crypto;
    if (c && typeof c.randomUUID === "function") return c.randomUUID();
    var b = new Uint8Array(16);
    if (c && c.getRandomValues) c.getRandomValues(b);
    else for (var i = 0; i < 16; i++) b[i] = Math.floor(Math.random() * 256);
    b[6] = (b[6] & 0x0f) | 0x40; // version 4
    b[8] = (b[8] & 0x3f) | 0x80; // RFC 4122 variant
    var hex = Array.prototype.map.call(b, function (x) {
      return (x + 0x100).toString(16).slice(1);
    }).join("");
    return [hex.slice(0, 8), hex.slice(8, 12), hex.slice(12, 16), hex.slice(16, 20), hex.slice(20)]
      .join("-");
  }

  // --- who: the anonymous id cookie, the remembered user id, consent ---------------------

  var state = {
    anonymousId: readCookie(COOKIE) || uuid(),
    userId: load(USER_KEY),
    consent: load(CONSENT_KEY),
  };
  // Rewritten on every load so the year counts from the last visit.
  writeCookie(COOKIE, state.anonymousId, COOKIE_MAX_AGE);

  function pageContext() {
    return {
      path: location.pathname,
      referrer: document.referrer,
      search: location.search,
      title: document.title,
      url: location.href,
    };
  }

  function isObject(value) {
    return value !== null && typeof value === "object" && !Array.isArray(value);
  }

  function message(type, fields) {
    var context = {
      library: { name: "patron.js", version: VERSION },
      page: pageContext(),
      locale: navigator.language,
      userAgent: navigator.userAgent,
    };
    try {
      context.timezone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    } catch (e) {
      // Old engines without Intl: the timezone is optional.
    }
    if (state.consent) context.consent = { categoryPreferences: state.consent };
    var msg = {
      type: type,
      messageId: uuid(),
      timestamp: new Date().toISOString(),
      anonymousId: state.anonymousId,
      context: context,
    };
    if (state.userId) msg.userId = state.userId;
    return Object.assign(msg, fields);
  }

  // --- the queue: persisted, batched, retried -----------------------------------------------

  var queue = (load(QUEUE_KEY) || []).filter(isObject); // a reload adopts what was left
  var sending = false;
  var timer = null;
  var failures = 0;
  var healthy = true; // did the last send reach the server?

  function enqueue(msg) {
    queue.push(msg);
    if (queue.length > MAX_QUEUE) queue.splice(0, queue.length - MAX_QUEUE); // drop the oldest
    save(QUEUE_KEY, queue);
    if (queue.length >= config.flushAt) flush();
    else schedule(config.flushInterval);
  }

  function schedule(delay) {
    if (timer === null) timer = setTimeout(function () {
      timer = null;
      flush();
    }, delay);
  }

  function body(batch) {
    return JSON.stringify({ batch: batch, writeKey: config.writeKey, sentAt: new Date().toISOString() });
  }

  // The head of the queue, as many messages as fit in one request of at most maxBytes.
  function takeBatch(maxBytes, from) {
    var batch = [];
    var size = 200;
    for (var i = from; i < queue.length && batch.length < 100; i++) {
      var bytes = JSON.stringify(queue[i]).length + 1;
      if (batch.length && size + bytes > maxBytes) break;
      batch.push(queue[i]);
      size += bytes;
    }
    return batch;
  }

  function remove(batch) {
    var ids = new Set(batch.map(function (m) { return m.messageId; }));
    queue = queue.filter(function (m) { return !ids.has(m.messageId); });
    save(QUEUE_KEY, queue);
  }

  function flush() {
    if (sending || !queue.length || !config.writeKey) return;
    if (timer !== null) {
      clearTimeout(timer);
      timer = null;
    }
    var batch = takeBatch(MAX_FETCH_BYTES, 0);
    var text = body(batch);
    sending = true;
    fetch(config.apiHost + "/v1/batch", {
      method: "POST",
      // text/plain keeps this a "simple" request: no CORS preflight.
      headers: { "Content-Type": "text/plain" },
      body: text,
      keepalive: text.length < MAX_BEACON_BYTES,
      credentials: "omit",
    }).then(function (response) {
      var status = response.status;
      if (status < 400 || (status < 500 && status !== 429)) {
        // Delivered, or refused for good (bad key, invalid messages): retrying cannot help.
        if (status >= 400) console.warn("patron.js: the server refused a batch with " + status);
        delivered(batch);
      } else {
        failed();
      }
    }, failed);
  }

  function delivered(batch) {
    sending = false;
    failures = 0;
    healthy = true;
    remove(batch);
    if (queue.length >= config.flushAt) flush();
    else if (queue.length) schedule(config.flushInterval);
  }

  function failed() {
    sending = false;
    healthy = false;
    failures += 1;
    var delay = Math.min(1000 * Math.pow(2, failures - 1), MAX_BACKOFF_MS);
    schedule(delay / 2 + Math.random() * (delay / 2)); // jitter, so tabs do not retry in step
  }

  // The page may be going away: hand everything to the browser, which sends it even after
  // the page is gone. When the server was failing, the messages also stay in storage for the
  // next page to send again (a messageId is stored once, so a repeat is harmless).
  function beaconAll() {
    if (!queue.length || !config.writeKey || !navigator.sendBeacon) return;
    var url = config.apiHost + "/v1/batch";
    var from = 0;
    var sent = [];
    while (from < queue.length) {
      var batch = takeBatch(MAX_BEACON_BYTES, from);
      if (!navigator.sendBeacon(url, body(batch))) break;
      sent = sent.concat(batch);
      from += batch.length;
    }
    if (healthy && sent.length) remove(sent);
  }

  window.addEventListener("pagehide", beaconAll);
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "hidden") beaconAll();
  });
  window.addEventListener("online", function () {
    if (timer !== null) {
      clearTimeout(timer);
      timer = null;
    }
    flush();
  });

  // --- the public API -----------------------------------------------------------------------

  var patron = {
    loaded: true,
    version: VERSION,

    page: function (name, properties) {
      if (isObject(name)) {
        properties = name;
        name = undefined;
      }
      var fields = { properties: Object.assign(pageContext(), properties || {}) };
      if (typeof name === "string" && name) fields.name = name;
      enqueue(message("page", fields));
    },

    track: function (event, properties) {
      enqueue(message("track", { event: String(event), properties: properties || {} }));
    },

    identify: function (userId, traits) {
      if (isObject(userId)) {
        traits = userId;
        userId = undefined;
      }
      if (userId !== undefined && userId !== null && userId !== "") {
        state.userId = String(userId);
        save(USER_KEY, state.userId);
      }
      enqueue(message("identify", { traits: traits || {} }));
    },

    alias: function (userId, previousId) {
      var previous = previousId || state.userId || state.anonymousId;
      enqueue(message("alias", { userId: String(userId), previousId: String(previous) }));
    },

    group: function (groupId, traits) {
      enqueue(message("group", { groupId: String(groupId), traits: traits || {} }));
    },

    // Log out: forget the user and start a new anonymous visitor. Consent stays: it is the
    // browser's choice, not the user's account.
    reset: function () {
      state.userId = null;
      save(USER_KEY, null);
      state.anonymousId = uuid();
      writeCookie(COOKIE, state.anonymousId, COOKIE_MAX_AGE);
    },

    // categories: {analytics: true, marketing: false, ...}; sent with every later message
    // as context.consent.categoryPreferences.
    consent: function (categories) {
      if (!isObject(categories)) return;
      var preferences = {};
      Object.keys(categories).forEach(function (key) {
        preferences[key] = Boolean(categories[key]);
      });
      state.consent = preferences;
      save(CONSENT_KEY, preferences);
    },

    anonymousId: function () {
      return state.anonymousId;
    },

    flush: flush,
  };

  // Replay what the stub queued. Consent first: nothing has been sent yet, so the preferences
  // the page stated before this script loaded apply to every queued call.
  var pending = Array.isArray(existing) ? existing.slice() : [];
  window.patron = patron;
  pending
    .filter(function (call) { return Array.isArray(call) && call[0] === "consent"; })
    .concat(pending.filter(function (call) { return Array.isArray(call) && call[0] !== "consent"; }))
    .forEach(function (call) {
      var method = patron[call[0]];
      if (typeof method === "function") method.apply(patron, call.slice(1));
    });
  if (queue.length) schedule(0);
})(window, document);
