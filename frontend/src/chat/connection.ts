/* One chat connection that keeps itself up: @stomp/stompjs over
 * sockjs-client (or a raw WebSocket), reconnecting with backoff and
 * jitter, resuming /topic/chat with x-since-id and keeping the nickname
 * with x-rejoin-token. Each attempt is a fresh stompjs Client: its own
 * reconnect loop is off, so the page can say when the next try is. */

import { Client } from '@stomp/stompjs';
import type { IFrame, IMessage, StompHeaders } from '@stomp/stompjs';
import SockJS from 'sockjs-client';

import { asAppError } from './errors';
import { asChatMessage } from './types';
import type { AppError, ChatMessage, OnlineUser, TypingEvent } from './types';

/** sockjs-client's own transport names: one of them alone, for trying each by hand. */
export const SOCKJS_TRANSPORTS = [
  'xhr-streaming', 'xhr-polling', 'iframe-eventsource', 'iframe-htmlfile', 'iframe-xhr-polling', 'jsonp-polling',
] as const;

/** `sockjs`: SockJS choosing its best transport; `websocket`: STOMP on a plain WebSocket. */
export type Transport = 'sockjs' | 'websocket' | (typeof SOCKJS_TRANSPORTS)[number];

export type Status =
  | { kind: 'connecting'; attempt: number }
  | { kind: 'connected'; transport: string }
  | { kind: 'waiting'; seconds: number }
  | { kind: 'offline' };

export interface ChatEvents {
  status(status: Status): void;
  /** CONNECTED: this connection's nickname. */
  connected(name: string): void;
  /** MESSAGEs on /topic/chat; `gapAfter` set on a replay that skipped some (x-resume-gap). */
  message(message: ChatMessage, gapAfter: string | null): void;
  users(users: OnlineUser[]): void;
  typing(event: TypingEvent): void;
  appError(error: AppError): void;
  /** An ERROR frame: the server closed the connection for a reason it names. */
  serverError(text: string): void;
  /** Subscribed to /topic/chat without a resume point: load `recent`. */
  needRecent(): void;
  /** The connection is gone (sends still waiting will get no answer). */
  closed(): void;
}

export interface Timers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
  random(): number;
}

const browserTimers: Timers = {
  setTimeout: (fn, ms) => window.setTimeout(fn, ms),
  clearTimeout: (handle) => window.clearTimeout(handle as number),
  random: () => Math.random(),
};

const ENDPOINT = '/ws-chat';
const HEARTBEAT_MS = 10000;
const REJOIN_KEY = 'anonchat.rejoin';

/** Backoff: 0.5 s, 1 s, 2 s … up to 15 s, +-20 % so a restarted server is
 * not met by every page at the same instant. */
export function reconnectDelay(attempt: number, random: number): number {
  return Math.min(15000, 500 * 2 ** attempt) * (0.8 + random * 0.4);
}

export class ChatConnection {
  private client: Client | null = null;
  private connected = false;
  private attempt = 0;
  private timer: unknown = null;
  private fallbackRaw = false;
  private receiptSeq = 0;
  private stopped = false;
  connects = 0;

  constructor(
    private readonly events: ChatEvents,
    private readonly transport: Transport,
    /** Where /topic/chat resumes from (the newest id shown), read at each subscribe. */
    private readonly resumeFrom: () => string | null,
    private readonly timers: Timers = browserTimers,
    private readonly base: string = location.href,
  ) {}

  get isConnected(): boolean {
    return this.connected;
  }

  start(): void {
    this.stopped = false;
    this.connect();
  }

  /** Leave for good (the page is going away): DISCONNECT, so the LEAVE is at once. */
  stop(): void {
    this.stopped = true;
    this.timers.clearTimeout(this.timer);
    const client = this.client;
    this.client = null;
    this.connected = false;
    if (client) void client.deactivate();
  }

  /** Cut the socket as a network failure would (offline, or by hand). */
  drop(): void {
    this.client?.forceDisconnect();
  }

  /** The network is back: try at once, from a fresh backoff. */
  retryNow(): void {
    if (this.stopped || this.client) return;
    this.attempt = 0;
    this.connect();
  }

  offline(): void {
    this.events.status({ kind: 'offline' });
    this.drop();
  }

  private useRaw(): boolean {
    return this.transport === 'websocket' || (this.transport === 'sockjs' && this.fallbackRaw);
  }

  private socket(): WebSocket {
    const url = new URL(ENDPOINT, this.base);
    if (this.useRaw()) {
      url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
      return new WebSocket(url.href, ['v12.stomp', 'v11.stomp', 'v10.stomp']);
    }
    const transports = this.transport === 'sockjs' ? undefined : [this.transport];
    return new SockJS(url.href, null, { transports }) as unknown as WebSocket;
  }

  private connect(): void {
    this.timers.clearTimeout(this.timer);
    this.timer = null;
    if (this.client || this.stopped) return;
    this.events.status({ kind: 'connecting', attempt: this.attempt });
    const headers: StompHeaders = {};
    const token = rejoinToken();
    if (token) headers['x-rejoin-token'] = token;
    let socket: WebSocket | null = null;
    const client: Client = new Client({
      webSocketFactory: () => (socket = this.socket()),
      connectHeaders: headers,
      heartbeatIncoming: HEARTBEAT_MS,
      heartbeatOutgoing: HEARTBEAT_MS,
      connectionTimeout: 10000,
      reconnectDelay: 0,
      onConnect: (frame) => this.onConnect(client, frame, socket),
      onStompError: (frame) => {
        if (client === this.client) this.events.serverError(frame.headers.message || frame.body || '');
      },
      onWebSocketClose: (event: CloseEvent) => this.onClose(client, event),
    });
    this.client = client;
    client.activate();
  }

  private onConnect(client: Client, frame: IFrame, socket: WebSocket | null): void {
    if (client !== this.client) return;
    this.connected = true;
    this.attempt = 0;
    this.connects++;
    const name = frame.headers['user-name'] || '익명';
    const token = frame.headers['x-rejoin-token'];
    if (token) saveRejoinToken(token);
    this.events.connected(name);
    const transport = this.useRaw() ? 'websocket' : `sockjs/${(socket as unknown as { transport?: string })?.transport ?? '?'}`;
    this.events.status({ kind: 'connected', transport });

    client.subscribe('/user/queue/errors', (m) => {
      const error = asAppError(parse(m));
      if (error) this.events.appError(error);
    });
    client.subscribe('/topic/chat.users', (m) => {
      const users = (parse(m) as { users?: unknown } | null)?.users;
      if (Array.isArray(users)) {
        this.events.users(users.filter((u): u is OnlineUser => typeof u?.name === 'string'));
      }
    });
    client.subscribe('/topic/chat.typing', (m) => {
      const t = parse(m) as Partial<TypingEvent> | null;
      if (t && typeof t.sender === 'string') this.events.typing({ sender: t.sender, typing: t.typing === true });
    });
    const since = this.resumeFrom();
    const chatHeaders: StompHeaders = since ? { 'x-since-id': since } : {};
    client.subscribe('/topic/chat', (m) => {
      const message = asChatMessage(parse(m));
      if (message) this.events.message(message, since && m.headers['x-resume-gap'] === 'true' ? since : null);
    }, chatHeaders);
    // Nothing to resume from: whatever came between a REST read and this
    // subscription is in `recent` (duplicates are dropped by id).
    if (!since) this.events.needRecent();
  }

  private onClose(client: Client, event: CloseEvent): void {
    if (client !== this.client) return;
    const wasConnected = this.connected;
    this.client = null;
    this.connected = false;
    void client.deactivate();
    if (this.transport === 'sockjs' && !wasConnected) {
      // SockJS not usable here (a server or proxy without it): try the
      // plain WebSocket next, and SockJS again if that fails too.
      this.fallbackRaw = !this.fallbackRaw && (event?.code === 2000 || event?.code === 1002);
    }
    this.events.closed();
    if (this.stopped) return;
    if (typeof navigator !== 'undefined' && navigator.onLine === false) {
      this.events.status({ kind: 'offline' });
      return;
    }
    const delay = reconnectDelay(this.attempt, this.timers.random());
    this.attempt++;
    this.events.status({ kind: 'waiting', seconds: Math.ceil(delay / 1000) });
    this.timer = this.timers.setTimeout(() => this.connect(), delay);
  }

  /** SEND with a receipt (returned; null when not connected): `onReceipt` runs on the
   * RECEIPT, a refusal comes as an appError naming the receipt. */
  send(destination: string, body: unknown, onReceipt?: () => void): string | null {
    const client = this.client;
    if (!client || !this.connected) return null;
    const receipt = `r-${++this.receiptSeq}-${Date.now().toString(36)}`;
    if (onReceipt) client.watchForReceipt(receipt, () => onReceipt());
    client.publish({ destination, body: JSON.stringify(body), headers: { receipt } });
    return receipt;
  }

  /** SEND without a receipt (typing). */
  notify(destination: string, body: unknown): void {
    if (this.client && this.connected) this.client.publish({ destination, body: JSON.stringify(body) });
  }
}

function parse(m: IMessage): unknown {
  try {
    return JSON.parse(m.body);
  } catch {
    return null;
  }
}

/* The rejoin token lives in this tab only (sessionStorage): a reload
 * within the grace keeps the nickname too. */
let tokenInMemory: string | null = null;

function rejoinToken(): string | null {
  try {
    return sessionStorage.getItem(REJOIN_KEY) ?? tokenInMemory;
  } catch {
    return tokenInMemory;
  }
}

function saveRejoinToken(token: string): void {
  tokenInMemory = token;
  try {
    sessionStorage.setItem(REJOIN_KEY, token);
  } catch {
    /* storage off: this page load still rejoins, from memory */
  }
}
