/**
 * When to tell the room that this user is typing.
 *
 * At most one `{"typing": true}` per `every` ms, whether or not a `false`
 * went in between, and a `false` only after a `true`: someone who sends
 * line after line (a paste, a burst) costs two frames in all, not three
 * per line. The server drops updates past 2 a second anyway, but every
 * frame counts against the connection's frame budget, and a client that
 * overdraws it is disconnected.
 */
export type TypingUpdate = boolean | null;

export class TypingThrottle {
  private on = false;
  private at = Number.NEGATIVE_INFINITY;

  constructor(private readonly every: number) {}

  /** What to send (true, false) for the user typing or not at `now`, or null for nothing. */
  update(typing: boolean, now: number): TypingUpdate {
    if (typing) {
      if (now - this.at < this.every) return null;
      this.on = true;
      this.at = now;
      return true;
    }
    if (!this.on) return null;
    this.on = false;
    return false;
  }

  /** The connection is gone: the room forgets us, so start afresh. */
  reset(): void {
    this.on = false;
    this.at = Number.NEGATIVE_INFINITY;
  }
}
