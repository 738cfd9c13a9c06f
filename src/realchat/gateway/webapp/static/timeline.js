// One conversation's messages as the page shows them: each (conversation_id, seq) once, in seq
// order, no gaps. Pure (no I/O, no timers): the page feeds it every message it gets (live frames,
// sync backfill, send_ok replies) and asks it what to show and where to sync from.

export class Timeline {
  /** @param {number} base the seq the page starts after (0: from the first message) */
  constructor(base = 0) {
    this.base = base;
    /** Highest contiguous seq held: everything in (base, have] is in `messages`. */
    this.have = base;
    /** @type {object[]} */
    this.messages = [];
    /** @type {Map<number, object>} messages ahead of a gap, held back until it is filled */
    this.held = new Map();
  }

  /**
   * Take one message. Returns the messages that became showable, in order (empty for a
   * duplicate, or for one held back behind a gap).
   */
  add(message) {
    const seq = message.seq;
    if (!Number.isInteger(seq) || seq <= this.have || this.held.has(seq)) return [];
    if (seq !== this.have + 1) {
      this.held.set(seq, message);
      return [];
    }
    const shown = [message];
    this.have = seq;
    while (this.held.has(this.have + 1)) {
      this.have += 1;
      shown.push(this.held.get(this.have));
      this.held.delete(this.have);
    }
    this.messages.push(...shown);
    return shown;
  }

  /**
   * A newer state of a message (an edit or delete, `version` grown). Returns the message as
   * held now if it changed, else null (an older or repeated update, or a message not held).
   */
  update(message) {
    const version = message.version ?? 1;
    const index = this.messages.findIndex((m) => m.seq === message.seq);
    if (index >= 0) {
      if ((this.messages[index].version ?? 1) >= version) return null;
      this.messages[index] = message;
      return message;
    }
    const ahead = this.held.get(message.seq);
    if (ahead && (ahead.version ?? 1) < version) this.held.set(message.seq, message);
    return null;
  }

  /** True while a message is held back: the page should sync from `have` if it lasts. */
  get hasGap() {
    return this.held.size > 0;
  }
}
