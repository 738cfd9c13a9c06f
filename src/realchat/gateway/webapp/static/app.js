// RealChat's web client. Uses the public API only: REST under /v1 and the WebSocket /v1/ws
// (contract api-v1). Each message is shown once and in order: a Timeline per conversation keeps
// the highest contiguous seq, and every (re)connect sends `sync` from those positions. Sends carry
// a client_msg_id and are written again after a reconnect until their send_ok comes (the server
// stores an id once). User text is only ever set with textContent.

import { Timeline } from "./timeline.js";

/** Messages a conversation shows from when the page opens (older ones are not loaded). */
const HISTORY_WINDOW = 500;
/** How long a gap may last before the page asks the server to sync that conversation. */
const GAP_SYNC_MS = 2000;
/** While live delivery is paused (the gateway lost its event bus), sync this often. */
const PAUSED_SYNC_MS = 2000;
const RECONNECT_MIN_MS = 250;
const RECONNECT_MAX_MS = 5000;
/** Acks wait this long, so a burst of messages costs one ack. */
const ACK_DELAY_MS = 150;
/** A send refused "not now" (`rate_limited`, `chat_unavailable`) is written again after this. */
const SEND_RETRY_MS = 1000;
/** While the user types, the page repeats `typing` this often; a member's "typing…" ends this
 * long after their last one (docs/protocol.md, "Typing"). */
const TYPING_REPEAT_MS = 3000;
const TYPING_EXPIRY_MS = 6000;
const SESSION_KEY = "realchat.session";

const $ = (id) => document.getElementById(id);

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

const state = {
  /** @type {{token: string, username: string, expiresAt: number} | null} */
  session: null,
  userId: null,
  /** @type {Map<string, object>} conversation id -> conversation */
  conversations: new Map(),
  activeId: null,
  /** @type {WebSocket | null} */
  socket: null,
  /** The current connection sent its sync / got the answer (then sends may go out). */
  syncSent: false,
  synced: false,
  attempt: 0,
  reconnectTimer: 0,
  heartbeatTimer: 0,
  lastFrameAt: 0,
  /** The gateway paused live delivery (its event bus is away): sync every PAUSED_SYNC_MS. */
  livePaused: false,
  pausedSyncTimer: 0,
  /** @type {Map<string, {clientMsgId: string, conversationId: string, content: string, status: string, error: string}>} */
  outbox: new Map(),
  /** @type {Map<string, string>} user id -> "online" | "offline" */
  presence: new Map(),
  /** @type {Map<string, number>} user id -> when its last presence frame came */
  presenceHeardAt: new Map(),
  /** @type {Map<string, string>} user id -> username, for the names this page has learned */
  names: new Map(),
  presenceEndpoint: true,
  refreshing: null,
  /** @type {Map<string, number>} conversation id -> change counter of the last sync_done */
  changeCounters: new Map(),
  /** When this page last told the active conversation its user is typing (0: not typing). */
  typingSentAt: 0,
  typingTimer: 0,
};

// -- session ------------------------------------------------------------------------------------

function loadSession() {
  try {
    const saved = JSON.parse(sessionStorage.getItem(SESSION_KEY) ?? "null");
    if (saved && typeof saved.token === "string" && saved.expiresAt > Date.now() + 10_000) {
      return saved;
    }
  } catch {
    // unreadable: sign in again
  }
  sessionStorage.removeItem(SESSION_KEY);
  return null;
}

async function api(method, path, body) {
  const headers = {};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (state.session) headers.Authorization = `Bearer ${state.session.token}`;
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
    });
  } catch {
    throw new ApiError(0, "unreachable", "The server cannot be reached.");
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    // not JSON: keep the status
  }
  if (!response.ok) {
    const error = data && data.error ? data.error : {};
    if (response.status === 401 && state.session && path !== "/v1/tokens") {
      signOut("Your session has expired: sign in again.");
    }
    throw new ApiError(response.status, error.code ?? `http_${response.status}`,
      error.message ?? response.statusText);
  }
  return data;
}

async function authenticate(action, username, password) {
  let name = username.trim().toLowerCase();
  if (action === "sign-up") {
    name = (await api("POST", "/v1/users", { username: name, password })).username;
  }
  const token = await api("POST", "/v1/tokens", { username: name, password });
  const session = {
    token: token.access_token,
    username: name,
    expiresAt: Date.now() + token.expires_in * 1000,
  };
  sessionStorage.setItem(SESSION_KEY, JSON.stringify(session));
  start(session);
}

function start(session) {
  state.session = session;
  $("auth-view").hidden = true;
  $("chat-view").hidden = false;
  $("account").hidden = false;
  $("me").textContent = session.username;
  document.body.dataset.view = "list";
  renderConversations();
  connect();
}

function signOut(notice = "") {
  const socket = state.socket;
  state.session = null;
  state.socket = null;
  if (socket) socket.close(1000, "signed out");
  clearTimeout(state.reconnectTimer);
  clearInterval(state.heartbeatTimer);
  for (const conversation of state.conversations.values()) {
    clearTimeout(conversation.gapTimer);
    clearTimeout(conversation.ackTimer);
  }
  sessionStorage.removeItem(SESSION_KEY);
  Object.assign(state, {
    userId: null, activeId: null, syncSent: false, synced: false, attempt: 0,
    conversations: new Map(), outbox: new Map(), presence: new Map(), names: new Map(),
    presenceHeardAt: new Map(),
  });
  $("messages").replaceChildren();
  $("outgoing").replaceChildren();
  $("chat-view").hidden = true;
  $("account").hidden = true;
  $("auth-view").hidden = false;
  $("auth-error").textContent = notice;
  $("password").value = "";
  setConnection("signed-out", "Signed out");
}

// -- connection ---------------------------------------------------------------------------------

function setConnection(stateName, text) {
  $("connection").dataset.state = stateName;
  $("connection-text").textContent = text;
  const ready = stateName === "online";
  $("message-input").disabled = !state.activeId;
  $("send").disabled = !state.activeId;
  document.body.dataset.connection = stateName;
  if (ready) renderOutgoing();
}

function connect() {
  if (!state.session) return;
  if (state.session.expiresAt <= Date.now()) {
    signOut("Your session has expired: sign in again.");
    return;
  }
  const url = new URL("/v1/ws", location.href);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  url.searchParams.set("token", state.session.token);
  const socket = new WebSocket(url);
  state.socket = socket;
  state.syncSent = false;
  state.synced = false;
  setConnection("connecting", "Connecting…");
  socket.addEventListener("message", (event) => {
    if (socket !== state.socket) return;
    state.lastFrameAt = Date.now();
    let frame;
    try {
      frame = JSON.parse(event.data);
    } catch {
      return;
    }
    onFrame(socket, frame);
  });
  socket.addEventListener("close", (event) => onClose(socket, event.code));
}

function onClose(socket, code) {
  if (socket !== state.socket) return;
  state.socket = null;
  state.syncSent = false;
  state.synced = false;
  clearInterval(state.heartbeatTimer);
  clearInterval(state.pausedSyncTimer);
  state.livePaused = false;
  if (!state.session) return;
  if (code === 4001) {
    signOut("Your session has expired: sign in again.");
    return;
  }
  const ceiling = Math.min(RECONNECT_MAX_MS, RECONNECT_MIN_MS * 2 ** state.attempt);
  const delay = Math.round(ceiling * (0.5 + Math.random() / 2));
  state.attempt += 1;
  setConnection("reconnecting", `Offline: reconnecting in ${Math.max(1, Math.round(delay / 1000))} s…`);
  clearTimeout(state.reconnectTimer);
  state.reconnectTimer = setTimeout(connect, delay);
}

function reconnectNow() {
  if (state.session && !state.socket) {
    clearTimeout(state.reconnectTimer);
    connect();
  }
}

function transmit(frame) {
  if (state.socket && state.socket.readyState === WebSocket.OPEN) {
    state.socket.send(JSON.stringify(frame));
    return true;
  }
  return false;
}

function startHeartbeat(socket, heartbeatS) {
  const periodMs = Math.max(5, Number(heartbeatS) || 20) * 1000;
  clearInterval(state.heartbeatTimer);
  state.heartbeatTimer = setInterval(() => {
    if (socket !== state.socket) return;
    if (Date.now() - state.lastFrameAt > 2 * periodMs + 5000) {
      // Nothing heard for two periods: the connection is dead even if nobody closed it.
      onClose(socket, 1006);
      socket.close();
      return;
    }
    transmit({ type: "ping" });
  }, periodMs);
}

function onFrame(socket, frame) {
  switch (frame.type) {
    case "hello":
      void onHello(socket, frame);
      break;
    case "message":
      receive(frame.message);
      break;
    case "send_ok":
      onSendOk(frame);
      break;
    case "sync_done":
      for (const [id, counter] of Object.entries(frame.changes ?? {})) {
        if (Number.isInteger(counter)) state.changeCounters.set(id, counter);
      }
      onSyncDone();
      break;
    case "message_update":
      onMessageUpdate(frame.message);
      break;
    case "conversation_update":
      onConversationUpdate(frame);
      break;
    case "typing":
      onTyping(frame);
      break;
    case "read":
      onRead(frame);
      break;
    case "receipt":
      onReceipt(frame);
      break;
    case "presence":
      state.presenceHeardAt.set(frame.user_id, performance.now());
      setPresence(frame.user_id, frame.status);
      break;
    case "member":
      onMember(frame);
      break;
    case "live":
      onLive(socket, frame.paused === true);
      break;
    case "error":
      onError(frame);
      break;
    default:
      break; // pong and frame types this page does not know
  }
}

async function onHello(socket, frame) {
  state.userId = frame.user_id;
  state.names.set(frame.user_id, state.session.username);
  startHeartbeat(socket, frame.heartbeat_s);
  setConnection("syncing", "Syncing…");
  try {
    await refreshConversations();
  } catch {
    // sync with what the page knows; conversations it lacks show up with their messages
  }
  if (socket !== state.socket) return;
  for (const conversation of state.conversations.values()) {
    conversation.ackSent = 0; // an ack in flight when the last connection died may be lost
  }
  transmit(syncFrame(positions()));
  state.syncSent = true;
  renderConversations();
  if (state.activeId) renderActive();
  void fetchPresence();
}

/** What this page holds of each conversation: where a sync continues from. */
function positions() {
  const found = {};
  for (const conversation of state.conversations.values()) {
    found[conversation.id] = conversation.timeline.have;
  }
  return found;
}

function showConnected() {
  const text = state.livePaused ? "Connected · live updates paused, catching up every few seconds" : "Connected";
  setConnection("online", text);
}

/** The gateway lost its event bus: messages are still stored and served by `sync`, only not
 * pushed, so the page syncs every few seconds until live delivery resumes (docs/protocol.md). */
function onLive(socket, paused) {
  clearInterval(state.pausedSyncTimer);
  state.livePaused = paused;
  if (paused) {
    state.pausedSyncTimer = setInterval(() => {
      if (socket !== state.socket || !state.livePaused) {
        clearInterval(state.pausedSyncTimer);
        return;
      }
      if (state.syncSent) transmit(syncFrame(positions()));
    }, PAUSED_SYNC_MS);
  }
  if (state.synced) showConnected();
}

function onSyncDone() {
  if (state.synced || !state.syncSent) return;
  state.synced = true;
  state.attempt = 0;
  showConnected();
  for (const item of state.outbox.values()) {
    if (item.status !== "failed") sendItem(item);
  }
  const active = state.conversations.get(state.activeId);
  if (active) scheduleAck(active);
}

// -- conversations and messages -----------------------------------------------------------------

function conversationFrom(summary, base) {
  return {
    id: summary.conversation_id,
    title: summary.title ?? null,
    memberIds: summary.member_ids ?? [],
    timeline: new Timeline(base),
    /** Messages up to this seq were there when the page first saw the conversation. */
    seenUpTo: summary.last_seq ?? 0,
    receipts: new Map(),
    ackSent: 0,
    ackTimer: 0,
    gapTimer: 0,
    /** The server's count of messages after the user's read position that others sent. */
    unread: summary.unread_count ?? 0,
    /** @type {Map<string, number>} user id -> when their "typing…" ends (performance.now) */
    typing: new Map(),
    lastActivity: summary.created_at ?? "",
  };
}

/** Every conversation of the user, page by page (the server pages its lists). */
async function listConversations() {
  const all = [];
  let cursor = null;
  do {
    const query = cursor ? `?limit=200&cursor=${encodeURIComponent(cursor)}` : "?limit=200";
    const page = await api("GET", `/v1/conversations${query}`);
    all.push(...page.conversations);
    cursor = page.next_cursor ?? null;
  } while (cursor);
  return all;
}

/** A conversation the user left or was removed from: it goes from the page. */
function forgetConversation(id) {
  if (!state.conversations.delete(id)) return;
  if (state.activeId === id) {
    state.activeId = null;
    document.body.dataset.view = "list";
    $("conversation-title").textContent = "Pick a conversation";
    $("leave").hidden = true;
    $("messages").replaceChildren();
    $("outgoing").replaceChildren();
    $("message-input").disabled = true;
    $("send").disabled = true;
  }
  renderConversations();
}

function onMember(frame) {
  if (frame.change !== "added" && frame.user_ids.includes(state.userId)) {
    forgetConversation(frame.conversation_id);
  } else {
    void refreshConversations(); // the member list changed
  }
}

/** Lists the user's conversations (REST) and adds the ones the page does not know yet. */
async function refreshConversations() {
  if (state.refreshing) return state.refreshing;
  state.refreshing = (async () => {
    try {
      const fresh = {};
      for (const summary of await listConversations()) {
        const known = state.conversations.get(summary.conversation_id);
        if (known) {
          known.title = summary.title ?? null;
          known.memberIds = summary.member_ids;
          if (Number.isInteger(summary.unread_count) && !isRead(known)) {
            // The server counted up to last_seq: messages up to it add nothing more here.
            known.unread = summary.unread_count;
            known.seenUpTo = Math.max(known.seenUpTo, summary.last_seq ?? 0);
          }
          continue;
        }
        const base = Math.max(0, summary.last_seq - HISTORY_WINDOW);
        const conversation = conversationFrom(summary, base);
        state.conversations.set(conversation.id, conversation);
        if (state.syncSent && summary.last_seq > base) fresh[conversation.id] = base;
      }
      if (Object.keys(fresh).length) transmit(syncFrame(fresh));
      const unknown = [...state.conversations.values()]
        .some((c) => othersOf(c).some((id) => !state.presence.has(id)));
      if (unknown && state.syncSent) void fetchPresence();
      renderConversations();
      if (state.activeId) renderHeader();
    } finally {
      state.refreshing = null;
    }
  })();
  return state.refreshing;
}

function receive(message) {
  if (!message || typeof message.conversation_id !== "string") return;
  let conversation = state.conversations.get(message.conversation_id);
  if (!conversation) {
    // New to this page (created by someone else): from its first message, details over REST.
    conversation = conversationFrom({ conversation_id: message.conversation_id }, 0);
    state.conversations.set(conversation.id, conversation);
    if (message.seq > 1) transmit({ type: "sync", positions: { [conversation.id]: 0 } });
    refreshConversations().catch(() => {});
  } else if (!conversation.memberIds.length) {
    // Its details could not be read yet (the chat service away): ask again with each message.
    refreshConversations().catch(() => {});
  }
  const shown = conversation.timeline.add(message);
  if (shown.length) {
    const active = conversation.id === state.activeId;
    for (const m of shown) {
      if (m.sender_id !== state.userId && m.seq > conversation.seenUpTo && !isRead(conversation)
          && !m.deleted) {
        conversation.unread += 1;
      }
      conversation.typing.delete(m.sender_id); // what they typed is sent
      conversation.lastActivity = m.created_at;
    }
    if (active) appendMessages(conversation, shown);
    renderConversations();
    scheduleAck(conversation);
  }
  if (conversation.timeline.hasGap) scheduleGapSync(conversation);
}

/** A `sync` of `wanted` ({conversation id: position}) with those conversations' change
 * counters: without them the `sync_done` would move the counters past edits whose live frame
 * was lost (a cut connection, a paused bus), and those edits would never come. A conversation
 * no `sync_done` has named yet (it came live) names 0: every change of what the page holds
 * (a change of a message the page does not hold is ignored). */
function syncFrame(wanted) {
  const changes = {};
  for (const id of Object.keys(wanted)) changes[id] = state.changeCounters.get(id) ?? 0;
  return { type: "sync", positions: wanted, changes };
}

function scheduleGapSync(conversation) {
  if (conversation.gapTimer) return;
  conversation.gapTimer = setTimeout(() => {
    conversation.gapTimer = 0;
    if (!conversation.timeline.hasGap) return;
    if (state.syncSent) {
      transmit(syncFrame({ [conversation.id]: conversation.timeline.have }));
    }
    scheduleGapSync(conversation);
  }, GAP_SYNC_MS);
}

/** The user is looking at this conversation now. */
function isRead(conversation) {
  return conversation.id === state.activeId && document.visibilityState === "visible";
}

function scheduleAck(conversation) {
  if (conversation.ackTimer || !isRead(conversation)) return;
  conversation.ackTimer = setTimeout(() => {
    conversation.ackTimer = 0;
    if (!isRead(conversation) || !state.synced) return;
    const seq = conversation.timeline.have;
    if (seq > conversation.ackSent && transmit({ type: "ack", conversation_id: conversation.id, seq })) {
      conversation.ackSent = seq;
    }
    if (conversation.unread) {
      conversation.unread = 0;
      renderConversations();
    }
  }, ACK_DELAY_MS);
}

/** A message was edited or deleted: the page shows its new state if it is newer. */
function onMessageUpdate(message) {
  if (!message || typeof message.conversation_id !== "string") return;
  const conversation = state.conversations.get(message.conversation_id);
  if (!conversation) return;
  const held = conversation.timeline.update(message);
  if (!held || conversation.id !== state.activeId) return;
  const node = $("messages").querySelector(`li[data-seq="${message.seq}"]`);
  if (node) {
    node.replaceWith(messageElement(held, othersOf(conversation).length > 1, readUpTo(conversation)));
  }
}

function onConversationUpdate(frame) {
  const conversation = state.conversations.get(frame.conversation_id);
  if (!conversation || typeof frame.title !== "string") return;
  conversation.title = frame.title || null;
  renderConversations();
  if (conversation.id === state.activeId) renderHeader();
}

/** Another device of this user read up to `seq`: the badge counts what others sent after it. */
function onRead(frame) {
  const conversation = state.conversations.get(frame.conversation_id);
  if (!conversation || !Number.isInteger(frame.seq)) return;
  conversation.ackSent = Math.max(conversation.ackSent, frame.seq);
  const after = conversation.timeline.messages.filter((m) =>
    m.seq > frame.seq && m.sender_id !== state.userId && !m.deleted);
  if (after.length < conversation.unread) {
    conversation.unread = after.length;
    renderConversations();
  }
}

function onTyping(frame) {
  const conversation = state.conversations.get(frame.conversation_id);
  if (!conversation || typeof frame.user_id !== "string") return;
  if (frame.typing === true) conversation.typing.set(frame.user_id, performance.now() + TYPING_EXPIRY_MS);
  else conversation.typing.delete(frame.user_id);
  if (conversation.id === state.activeId) renderTyping();
}

/** The "… is typing" line of the open conversation; entries past their expiry are dropped. */
function renderTyping() {
  const conversation = state.conversations.get(state.activeId);
  const now = performance.now();
  const names = [];
  if (conversation) {
    for (const [userId, until] of conversation.typing) {
      if (until <= now) conversation.typing.delete(userId);
      else names.push(nameOf(userId));
    }
  }
  const line = $("typing");
  line.textContent = names.length === 0 ? ""
    : names.length === 1 ? `${names[0]} is typing…` : `${names.join(", ")} are typing…`;
  line.hidden = names.length === 0;
}

/** The user typed in the composer: tell the members, at most every TYPING_REPEAT_MS. */
function noteTyping() {
  const id = state.activeId;
  if (!id || !state.synced) return;
  const now = performance.now();
  // 0: not told yet (performance.now() counts from the page's load, so a page younger than
  // TYPING_REPEAT_MS would otherwise wait that long before its first signal).
  if (!state.typingSentAt || now - state.typingSentAt >= TYPING_REPEAT_MS) {
    if (transmit({ type: "typing", conversation_id: id, typing: true })) state.typingSentAt = now;
  }
  clearTimeout(state.typingTimer);
  state.typingTimer = setTimeout(() => stopTyping(id), TYPING_REPEAT_MS);
}

function stopTyping(id) {
  clearTimeout(state.typingTimer);
  if (state.typingSentAt && id) transmit({ type: "typing", conversation_id: id, typing: false });
  state.typingSentAt = 0;
}

function onReceipt(frame) {
  const conversation = state.conversations.get(frame.conversation_id);
  if (!conversation || !Number.isInteger(frame.seq)) return;
  const before = conversation.receipts.get(frame.user_id) ?? 0;
  if (frame.seq <= before) return;
  conversation.receipts.set(frame.user_id, frame.seq);
  if (conversation.id === state.activeId) renderStatuses(conversation);
}

function othersOf(conversation) {
  return conversation.memberIds.filter((id) => id !== state.userId);
}

function nameOf(userId) {
  return state.names.get(userId) ?? `user ${userId.slice(0, 8)}`;
}

function titleOf(conversation) {
  if (conversation.title) return conversation.title;
  const others = othersOf(conversation);
  if (!others.length) return conversation.memberIds.length ? "Just you" : "Conversation";
  return others.map(nameOf).join(", ");
}

// -- sending ------------------------------------------------------------------------------------

function newClientMsgId() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function queueSend(conversationId, content) {
  const item = { clientMsgId: newClientMsgId(), conversationId, content, status: "queued", error: "" };
  state.outbox.set(item.clientMsgId, item);
  sendItem(item);
  renderOutgoing();
}

function sendItem(item) {
  // Before the sync is answered a send would race it; it goes out right after instead.
  if (state.synced && transmit({
    type: "send",
    conversation_id: item.conversationId,
    client_msg_id: item.clientMsgId,
    content: item.content,
  })) {
    item.status = "sending";
  } else {
    item.status = "queued";
  }
}

function onSendOk(frame) {
  if (state.outbox.delete(frame.client_msg_id)) renderOutgoing();
  receive(frame.message);
}

/** Errors that refuse a whole sync: `sync_failed` (its history could not be read) and, with no
 * client_msg_id, `chat_unavailable` (the conversations could not even be listed). */
function refusesSync(frame) {
  return frame.code === "sync_failed" || (frame.code === "chat_unavailable" && !frame.client_msg_id);
}

function onError(frame) {
  if (refusesSync(frame) && state.syncSent && !state.synced && state.socket) {
    // The sync that would bring this connection up was refused (the chat service away): its
    // sync_done never comes, though live frames do. Reconnect and sync again, with backoff.
    const socket = state.socket;
    onClose(socket, 1011);
    socket.close();
    return;
  }
  const item = frame.client_msg_id ? state.outbox.get(frame.client_msg_id) : undefined;
  if (!item) {
    console.warn("realchat:", frame.code, frame.message);
    return;
  }
  if (frame.code === "rate_limited" || frame.code === "chat_unavailable") {
    // "Not now": written again a moment later with the same client_msg_id, so it is stored
    // once whatever became of this attempt (the chat service may have died mid-write).
    item.status = "queued";
    setTimeout(() => {
      if (state.outbox.has(item.clientMsgId)) sendItem(item);
    }, SEND_RETRY_MS);
  } else {
    item.status = "failed";
    item.error = frame.message || frame.code;
  }
  renderOutgoing();
}

// -- presence -----------------------------------------------------------------------------------

function setPresence(userId, status) {
  if (typeof userId !== "string" || (status !== "online" && status !== "offline")) return;
  state.presence.set(userId, status);
  renderConversations();
  if (state.activeId) renderHeader();
}

/** The initial presence of everyone the user shares a conversation with, when the server offers
 * `GET /v1/presence`; later changes come as `presence` frames. */
async function fetchPresence() {
  const ids = [...new Set([...state.conversations.values()].flatMap(othersOf))];
  if (!state.presenceEndpoint || !ids.length) return;
  for (let i = 0; i < ids.length; i += 100) {
    const chunk = ids.slice(i, i + 100);
    const asked = performance.now();
    let data;
    try {
      data = await api("GET", `/v1/presence?user_ids=${chunk.map(encodeURIComponent).join(",")}`);
    } catch (error) {
      // A server without the endpoint: presence comes from frames only.
      if (error.code === "not_found" || error.status === 405) state.presenceEndpoint = false;
      return;
    }
    for (const [userId, status] of presenceEntries(data)) {
      // A frame that came while the request was out is newer than this snapshot.
      if ((state.presenceHeardAt.get(userId) ?? -1) < asked) setPresence(userId, status);
    }
  }
}

/** `{"users": [{"user_id", "status", "since"}]}` as (user id, status) pairs. */
function presenceEntries(data) {
  const users = data && Array.isArray(data.users) ? data.users : [];
  return users.filter((u) => u && typeof u === "object").map((u) => [u.user_id, u.status]);
}

function presenceOf(conversation) {
  const statuses = othersOf(conversation).map((id) => state.presence.get(id));
  if (statuses.includes("online")) return "online";
  if (statuses.length && statuses.every((s) => s === "offline")) return "offline";
  return "unknown";
}

const PRESENCE_TEXT = { online: "online", offline: "offline", unknown: "presence unknown" };

// -- rendering ----------------------------------------------------------------------------------

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function renderConversations() {
  const list = $("conversations");
  const focused = list.contains(document.activeElement) ? document.activeElement.dataset.conversation : null;
  const sorted = [...state.conversations.values()].sort((a, b) =>
    String(b.lastActivity).localeCompare(String(a.lastActivity)));
  list.replaceChildren(...sorted.map((conversation) => {
    const item = element("li");
    const button = element("button", "conversation-item");
    button.type = "button";
    button.dataset.conversation = conversation.id;
    if (conversation.id === state.activeId) button.setAttribute("aria-current", "true");
    const presence = presenceOf(conversation);
    const dot = element("span", `presence ${presence}`);
    dot.dataset.presence = presence;
    button.append(dot, element("span", "visually-hidden", `${PRESENCE_TEXT[presence]}: `),
      element("span", "title", titleOf(conversation)));
    if (conversation.unread) {
      const badge = element("span", "unread", String(conversation.unread));
      badge.setAttribute("aria-label", `${conversation.unread} unread`);
      button.append(badge);
    }
    button.addEventListener("click", () => openConversation(conversation.id));
    item.append(button);
    return item;
  }));
  $("no-conversations").hidden = state.conversations.size > 0;
  if (focused) list.querySelector(`[data-conversation="${CSS.escape(focused)}"]`)?.focus();
}

function renderHeader() {
  const conversation = state.conversations.get(state.activeId);
  if (!conversation) return;
  const presence = presenceOf(conversation);
  $("conversation-title").textContent = titleOf(conversation);
  $("leave").hidden = false;
  $("conversation-presence").className = `presence ${presence}`;
  $("conversation-presence").dataset.presence = presence;
  $("conversation-status").textContent = PRESENCE_TEXT[presence];
}

function openConversation(id) {
  state.activeId = id;
  document.body.dataset.view = "conversation";
  renderActive();
  renderConversations();
  const conversation = state.conversations.get(id);
  $("message-input").disabled = false;
  $("send").disabled = false;
  $("message-input").focus();
  scheduleAck(conversation);
}

function renderActive() {
  const conversation = state.conversations.get(state.activeId);
  if (!conversation) return;
  renderHeader();
  $("earlier").hidden = conversation.timeline.base === 0;
  $("messages").replaceChildren();
  appendMessages(conversation, conversation.timeline.messages);
  renderOutgoing();
  renderTyping();
  scrollToEnd(true);
}

function appendMessages(conversation, messages) {
  const stick = nearEnd();
  const group = othersOf(conversation).length > 1;
  const read = readUpTo(conversation);
  $("messages").append(...messages.map((m) => messageElement(m, group, read)));
  scrollToEnd(stick);
}

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });

function messageElement(message, group, read) {
  const own = message.sender_id === state.userId;
  const item = element("li", own ? "message own" : "message");
  item.dataset.seq = String(message.seq);
  item.dataset.sender = message.sender_id;
  if (group && !own) item.append(element("span", "sender", nameOf(message.sender_id)));
  if (message.deleted) {
    item.classList.add("deleted");
    item.append(element("p", "content", "Message deleted"));
  } else {
    item.append(element("p", "content", message.content));
  }
  const meta = element("span", "meta");
  const time = element("time");
  const at = new Date(message.created_at);
  if (!Number.isNaN(at.getTime())) {
    time.dateTime = message.created_at;
    time.textContent = timeFormat.format(at);
  }
  meta.append(time);
  if ((message.version ?? 1) > 1 && !message.deleted) meta.append(" ", element("span", "edited", "edited"));
  if (own) {
    const status = element("span", "status");
    setStatus(status, message.seq, read);
    meta.append(" ", status);
  }
  item.append(meta);
  if (own && !message.deleted) item.append(messageMenu(message));
  return item;
}

/** Edit and Delete for one's own message. */
function messageMenu(message) {
  const menu = element("span", "message-menu");
  const edit = element("button", "link", "Edit");
  edit.type = "button";
  edit.setAttribute("aria-label", `Edit message ${message.seq}`);
  edit.addEventListener("click", () => startEditing(message));
  const remove = element("button", "link", "Delete");
  remove.type = "button";
  remove.setAttribute("aria-label", `Delete message ${message.seq}`);
  remove.addEventListener("click", () => void changeMessage(message, "DELETE"));
  menu.append(edit, " ", remove);
  return menu;
}

function startEditing(message) {
  const node = $("messages").querySelector(`li[data-seq="${message.seq}"]`);
  if (!node) return;
  const form = element("form", "edit-form");
  const box = element("textarea");
  box.value = message.content;
  box.maxLength = 4000;
  box.setAttribute("aria-label", "Edited message");
  const save = element("button", "", "Save");
  save.type = "submit";
  const cancel = element("button", "secondary", "Cancel");
  cancel.type = "button";
  cancel.addEventListener("click", () => node.replaceWith(messageElement(message,
    othersOf(state.conversations.get(message.conversation_id)).length > 1,
    readUpTo(state.conversations.get(message.conversation_id)))));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const content = box.value.trim();
    if (content && content !== message.content) void changeMessage(message, "PATCH", content);
  });
  form.append(box, save, cancel);
  node.querySelector(".content").replaceWith(form);
  node.querySelector(".message-menu")?.remove();
  box.focus();
}

/** Edit (PATCH, with a fresh client_change_id) or delete (DELETE) a message over REST; the
 * page shows the answer at once, and the `message_update` that follows changes nothing. */
async function changeMessage(message, method, content) {
  const path = `/v1/conversations/${encodeURIComponent(message.conversation_id)}/messages/${message.seq}`;
  try {
    const changed = await api(method, path,
      method === "PATCH" ? { client_change_id: newClientMsgId(), content } : undefined);
    onMessageUpdate(changed);
  } catch (error) {
    console.warn("realchat:", error.code ?? error, error.message ?? "");
    if (message.conversation_id === state.activeId) renderActive(); // back to what it was
  }
}

/** Per seq of the user's own messages: how many of the other members have acknowledged it. */
function readUpTo(conversation) {
  const others = othersOf(conversation);
  return { others: others.length, seqs: others.map((id) => conversation.receipts.get(id) ?? 0) };
}

function setStatus(node, seq, read) {
  const readers = read.seqs.filter((s) => s >= seq).length;
  if (readers === 0) {
    node.dataset.status = "sent";
    node.textContent = "✓ Sent";
  } else {
    node.dataset.status = readers === read.others ? "read" : "read-by-some";
    node.textContent = readers === read.others ? "✓✓ Read" : `✓✓ Read by ${readers}/${read.others}`;
  }
}

function renderStatuses(conversation) {
  const read = readUpTo(conversation);
  for (const node of $("messages").querySelectorAll("li.own .status")) {
    setStatus(node, Number(node.closest("li").dataset.seq), read);
  }
}

function renderOutgoing() {
  const items = [...state.outbox.values()].filter((i) => i.conversationId === state.activeId);
  const stick = nearEnd();
  $("outgoing").replaceChildren(...items.map((item) => {
    const li = element("li", "message own pending");
    li.dataset.clientMsgId = item.clientMsgId;
    li.append(element("p", "content", item.content));
    let text = "Sending…";
    if (item.status === "failed") text = `Not sent: ${item.error}`;
    else if (!state.synced) text = "Waiting for the connection…";
    const meta = element("span", "meta");
    meta.append(element("span", "status", text));
    if (item.status === "failed") {
      const retry = element("button", "link", "Retry");
      retry.type = "button";
      retry.addEventListener("click", () => {
        item.status = "queued";
        sendItem(item);
        renderOutgoing();
      });
      const discard = element("button", "link", "Discard");
      discard.type = "button";
      discard.addEventListener("click", () => {
        state.outbox.delete(item.clientMsgId);
        renderOutgoing();
      });
      meta.append(" ", retry, " ", discard);
    }
    li.append(meta);
    return li;
  }));
  scrollToEnd(stick);
}

function nearEnd() {
  const scroller = $("scroller");
  return scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 80;
}

function scrollToEnd(really) {
  if (really) $("scroller").scrollTop = $("scroller").scrollHeight;
}

// -- forms --------------------------------------------------------------------------------------

function wire() {
  $("auth-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = event.currentTarget;
    const action = event.submitter?.value ?? "sign-in";
    const username = $("username").value;
    const password = $("password").value;
    $("auth-error").textContent = "";
    if (!form.checkValidity()) {
      $("auth-error").textContent =
        "Username: 3-32 characters (a-z, 0-9, _ . -); password: at least 8 characters.";
      return;
    }
    for (const button of form.querySelectorAll("button")) button.disabled = true;
    try {
      await authenticate(action, username, password);
    } catch (error) {
      $("auth-error").textContent = error.code === "username_taken"
        ? "That username is taken."
        : error.status === 401 ? "Wrong username or password." : error.message;
    } finally {
      for (const button of form.querySelectorAll("button")) button.disabled = false;
    }
  });

  $("sign-out").addEventListener("click", () => {
    // Revokes the user's tokens (every device); the request leaves before the token is dropped.
    api("DELETE", "/v1/tokens").catch(() => {});
    signOut();
  });

  $("leave").addEventListener("click", async () => {
    const id = state.activeId;
    if (!id) return;
    try {
      await api("DELETE", `/v1/conversations/${encodeURIComponent(id)}/members/${state.userId}`);
      forgetConversation(id);
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      if (error.code === "not_a_member" || error.code === "conversation_not_found") {
        forgetConversation(id);
      }
    }
  });

  $("new-conversation").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = event.currentTarget;
    $("new-error").textContent = "";
    const names = [...new Set($("new-members").value.toLowerCase().split(/[\s,]+/).filter(Boolean))]
      .filter((name) => name !== state.session.username);
    if (!names.length) {
      $("new-error").textContent = "Give at least one other username.";
      return;
    }
    form.querySelector("button").disabled = true;
    try {
      const ids = [];
      for (const name of names) {
        let user;
        try {
          user = await api("GET", `/v1/users/by-username/${encodeURIComponent(name)}`);
        } catch (error) {
          throw error.status === 404 ? new Error(`No user is called “${name}”.`) : error;
        }
        state.names.set(user.user_id, user.username);
        ids.push(user.user_id);
      }
      const title = $("new-title").value.trim() || [state.session.username, ...names].join(", ");
      const created = await api("POST", "/v1/conversations", {
        member_ids: ids,
        title: title.slice(0, 200),
      });
      if (!state.conversations.has(created.conversation_id)) {
        state.conversations.set(created.conversation_id, conversationFrom(created, 0));
      }
      form.reset();
      openConversation(created.conversation_id);
      void fetchPresence();
    } catch (error) {
      $("new-error").textContent = error.message;
    } finally {
      form.querySelector("button").disabled = false;
    }
  });

  $("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = $("message-input");
    const content = input.value.trim();
    if (!content || !state.activeId) return;
    stopTyping(state.activeId);
    queueSend(state.activeId, content);
    input.value = "";
    input.style.height = "";
    input.focus();
  });

  $("message-input").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $("composer").requestSubmit();
    }
  });

  $("message-input").addEventListener("input", (event) => {
    noteTyping();
    const input = event.currentTarget;
    input.style.height = "";
    input.style.height = `${Math.min(input.scrollHeight, 160)}px`;
  });

  $("back").addEventListener("click", () => {
    document.body.dataset.view = "list";
  });

  document.addEventListener("visibilitychange", () => {
    const active = state.conversations.get(state.activeId);
    if (active) scheduleAck(active);
  });
  window.addEventListener("online", reconnectNow);
  setInterval(renderTyping, 1000); // "typing…" ends by itself
}

wire();
const saved = loadSession();
if (saved) start(saved);
else setConnection("signed-out", "Signed out");
