/* The page's state and the actions it offers, in one hook: the connection
 * feeds the pure timeline and pending lists (timeline.ts, pending.ts), and
 * React renders snapshots of them. The timeline lives in a ref as well, so
 * the connection reads the current resume point at each (re)subscribe. */

import { useCallback, useEffect, useMemo, useRef, useState } from 'react';

import * as api from './api';
import { ChatConnection } from './connection';
import type { Status, Transport } from './connection';
import { errorText, refusesSend } from './errors';
import {
  addPending, adoptPending, failUnanswered, removePending, settlePending,
} from './pending';
import type { PendingSend } from './pending';
import { emptyTimeline, markGap, merge, mergeGapPage, mergeOlder, oldestId } from './timeline';
import type { Timeline } from './timeline';
import { TypingThrottle } from './typing';
import { DEFAULT_SETTINGS } from './types';
import type { AppError, ChatMessage, OnlineUser, ServerSettings } from './types';

const TYPING_EVERY = 2000;   // ms between {"typing":true} while typing
const TYPING_EXPIRES = 6000; // ms a peer's indicator lasts without news
const NOTICE_MS = 8000;
const NAMES_KEY = 'anonchat.names';
const ADMIN_KEY = 'anonchat.admin';

export interface Banner {
  kind: 'error' | 'info';
  text: string;
  seq: number;
}

export type HistoryState = 'idle' | 'loading' | 'failed';

export interface ChatOptions {
  transport: Transport;
  pageSize: number;
}

export function useChat({ transport, pageSize }: ChatOptions) {
  const [timeline, setTimelineState] = useState<Timeline>(emptyTimeline);
  const timelineRef = useRef<Timeline>(emptyTimeline);
  const setTimeline = useCallback((update: (t: Timeline) => Timeline) => {
    const next = update(timelineRef.current);
    if (next !== timelineRef.current) {
      timelineRef.current = next;
      setTimelineState(next);
    }
  }, []);

  const [pending, setPendingState] = useState<readonly PendingSend[]>([]);
  const pendingRef = useRef<readonly PendingSend[]>([]);
  const setPending = useCallback((update: (p: readonly PendingSend[]) => readonly PendingSend[]) => {
    pendingRef.current = update(pendingRef.current);
    setPendingState(pendingRef.current);
  }, []);

  const [status, setStatus] = useState<Status>({ kind: 'connecting', attempt: 0 });
  const [me, setMe] = useState<string | null>(null);
  const [myNames, setMyNames] = useState<ReadonlySet<string>>(rememberedNames);
  const myNamesRef = useRef(myNames);
  const [users, setUsers] = useState<OnlineUser[]>([]);
  const [typers, setTypers] = useState<readonly string[]>([]);
  const typerTimers = useRef(new Map<string, number>());
  const [settings, setSettings] = useState<ServerSettings>(DEFAULT_SETTINGS);
  const settingsRef = useRef(settings);
  settingsRef.current = settings;
  const [banner, setBanner] = useState<Banner | null>(null);
  const [history, setHistory] = useState<HistoryState>('idle');
  const [adminToken, setAdminToken] = useState<string | null>(() => storageGet(ADMIN_KEY));
  const [liveCount, setLiveCount] = useState(0);
  const [typingSent] = useState(() => new TypingThrottle(TYPING_EVERY));

  const notify = useCallback((kind: Banner['kind'], text: string) => {
    setBanner((b) => ({ kind, text, seq: (b?.seq ?? 0) + 1 }));
  }, []);

  useEffect(() => {
    if (!banner) return;
    const timer = window.setTimeout(() => setBanner(null), NOTICE_MS);
    return () => window.clearTimeout(timer);
  }, [banner]);

  const clearTypers = useCallback(() => {
    typerTimers.current.forEach((t) => window.clearTimeout(t));
    typerTimers.current.clear();
    setTypers([]);
  }, []);

  const onAppError = useCallback((error: AppError) => {
    if (refusesSend(error)) {
      // Refusals name the SEND's receipt; without one, the oldest waiting is it
      // (answers come in the order the frames went).
      const key = error.receipt ?? pendingRef.current.find((p) => p.state === 'sending')?.key;
      if (key) setPending((p) => settlePending(p, key, 'failed'));
    }
    notify('error', errorText(error, { maxContent: settingsRef.current.max_content }));
  }, [notify, setPending]);

  const connection = useMemo(() => new ChatConnection({
    status: setStatus,
    connected(name) {
      setMe(name);
      if (!myNamesRef.current.has(name)) {
        const names = new Set(myNamesRef.current).add(name);
        myNamesRef.current = names;
        setMyNames(names);
        storageSet(NAMES_KEY, JSON.stringify(Array.from(names).slice(-20)));
      }
    },
    message(message: ChatMessage, gapAfter: string | null) {
      setLiveCount((n) => n + 1);
      setTimeline((t) => {
        const marked = gapAfter !== null && t.gap === null && !t.ids.has(message.id) ? markGap(t, gapAfter, message.id) : t;
        return merge(marked, [message], 'live');
      });
      if (message.type === 'CHAT' && myNamesRef.current.has(message.sender)) {
        setPending((p) => adoptPending(p, message));
      }
    },
    users: setUsers,
    typing(event) {
      if (myNamesRef.current.has(event.sender)) return;
      const timers = typerTimers.current;
      window.clearTimeout(timers.get(event.sender));
      timers.delete(event.sender);
      if (event.typing) {
        timers.set(event.sender, window.setTimeout(() => {
          timers.delete(event.sender);
          setTypers(Array.from(timers.keys()));
        }, TYPING_EXPIRES));
      }
      setTypers(Array.from(timers.keys()));
    },
    appError: onAppError,
    serverError(text) {
      notify('error', '서버 오류: ' + (text || '알 수 없는 오류'));
    },
    needRecent() {
      void api.fetchRecent(pageSize).then((messages) => setTimeline((t) => merge(t, messages, 'recent')), () => {});
    },
    closed() {
      typingSent.reset();
      clearTypers();
      setPending(failUnanswered);
    },
  }, transport, () => timelineRef.current.lastSeen), [transport, pageSize, setTimeline, setPending, notify, clearTypers, onAppError, typingSent]);

  // Someone who left is not typing any more.
  useEffect(() => {
    const online = new Set(users.map((u) => u.name));
    const timers = typerTimers.current;
    let changed = false;
    timers.forEach((t, name) => {
      if (!online.has(name)) {
        window.clearTimeout(t);
        timers.delete(name);
        changed = true;
      }
    });
    if (changed) setTypers(Array.from(timers.keys()));
  }, [users]);

  // Start: settings and the newest page, then the connection.
  useEffect(() => {
    let cancelled = false;
    void api.fetchSettings().then((s) => !cancelled && setSettings(s));
    api.fetchRecent(pageSize).then(
      (messages) => !cancelled && setTimeline((t) => merge(t, messages, 'recent')),
      () => !cancelled && notify('error', '최근 메시지를 불러오지 못했어요'),
    ).finally(() => !cancelled && connection.start());

    const offline = () => connection.offline();
    const online = () => connection.retryNow();
    const leave = () => connection.stop();
    const back = (event: PageTransitionEvent) => event.persisted && connection.start();
    window.addEventListener('offline', offline);
    window.addEventListener('online', online);
    window.addEventListener('pagehide', leave);
    window.addEventListener('pageshow', back);
    return () => {
      cancelled = true;
      window.removeEventListener('offline', offline);
      window.removeEventListener('online', online);
      window.removeEventListener('pagehide', leave);
      window.removeEventListener('pageshow', back);
      connection.stop();
    };
  }, [connection, pageSize, setTimeline, notify]);

  // For the browser tests and for curious people at the console.
  useEffect(() => {
    const w = window as unknown as { anonchat?: object };
    w.anonchat = {
      drop: () => connection.drop(),
      get connects() { return connection.connects; },
      get duplicates() { return timelineRef.current.duplicates; },
      get lastSeen() { return timelineRef.current.lastSeen; },
    };
    return () => { delete w.anonchat; };
  }, [connection]);

  const loadOlder = useCallback(async () => {
    const t = timelineRef.current;
    if (t.reachedStart || history === 'loading') return;
    setHistory('loading');
    try {
      const page = await api.fetchHistory(oldestId(t), pageSize);
      setTimeline((cur) => mergeOlder(cur, page));
      setHistory('idle');
    } catch {
      setHistory('failed');
    }
  }, [history, pageSize, setTimeline]);

  const fillGap = useCallback(async () => {
    const gap = timelineRef.current.gap;
    if (!gap) return;
    try {
      const page = await api.fetchHistory(gap.before, pageSize);
      setTimeline((cur) => mergeGapPage(cur, page));
    } catch {
      notify('error', '놓친 메시지를 불러오지 못했어요');
    }
  }, [pageSize, setTimeline, notify]);

  const sendTyping = useCallback((on: boolean) => {
    if (on && !connection.isConnected) return;
    const update = typingSent.update(on, Date.now());
    if (update !== null) connection.notify('/app/chat.typing', { typing: update });
  }, [connection, typingSent]);

  const send = useCallback((content: string) => {
    const local = { content, at: new Date().toISOString() };
    const receipt = connection.send('/app/chat.sendMessage', { content }, () => {
      setPending((p) => settlePending(p, receipt as string, 'sent'));
    });
    const key = receipt ?? `local-${Date.now()}-${Math.random().toString(36).slice(2)}`;
    setPending((p) => addPending(p, { key, ...local, state: receipt ? 'sending' : 'failed' }));
  }, [connection, setPending]);

  const retry = useCallback((key: string) => {
    const p = pendingRef.current.find((x) => x.key === key);
    if (!p) return;
    setPending((list) => removePending(list, key));
    send(p.content);
  }, [send, setPending]);

  const report = useCallback((id: string, reason: string) => {
    const receipt = connection.send('/app/chat.report', { id, reason }, () => notify('info', '신고했어요. 고마워요.'));
    if (receipt === null) notify('error', '연결이 끊겨 신고하지 못했어요.');
  }, [connection, notify]);

  /* ---- moderation ---------------------------------------------------- */

  const enterModeration = useCallback(async (token: string): Promise<api.AdminCheck> => {
    const result = await api.checkAdminToken(token);
    if (result === 'ok') {
      storageSet(ADMIN_KEY, token);
      setAdminToken(token);
    }
    return result;
  }, []);

  const leaveModeration = useCallback(() => {
    storageRemove(ADMIN_KEY);
    setAdminToken(null);
  }, []);

  const moderate = useCallback(async (what: string, action: () => Promise<void>) => {
    try {
      await action();
      notify('info', what);
    } catch (e) {
      const status = e instanceof api.HttpError ? e.status : 0;
      if (status === 401 || status === 403) leaveModeration();
      notify('error', status === 404 ? '대상을 찾을 수 없어요.' : `관리 작업에 실패했어요 (${status || '네트워크'}).`);
    }
  }, [notify, leaveModeration]);

  const moderation = useMemo(() => (adminToken === null ? null : {
    remove: (id: string) => moderate('메시지를 지웠어요.', () => api.deleteMessage(adminToken, id)),
    mute: (s: api.Sanction) => moderate(`${s.name} 님의 채팅을 제한했어요.`, () => api.muteUser(adminToken, s)),
    ban: (s: api.Sanction) => moderate(`${s.name} 님을 차단했어요.`, () => api.banUser(adminToken, s)),
  }), [adminToken, moderate]);

  return {
    timeline, pending, status, me, myNames, users, typers, settings, banner, history, liveCount,
    connected: status.kind === 'connected',
    connection,
    moderation,
    actions: {
      send, retry, sendTyping, loadOlder, fillGap, report, enterModeration, leaveModeration,
      dismissBanner: () => setBanner(null),
      notify,
    },
  };
}

export type ChatView = ReturnType<typeof useChat>;

function rememberedNames(): ReadonlySet<string> {
  try {
    const names: unknown = JSON.parse(storageGet(NAMES_KEY) || '[]');
    return new Set(Array.isArray(names) ? names.filter((n): n is string => typeof n === 'string') : []);
  } catch {
    return new Set();
  }
}

function storageGet(key: string): string | null {
  try {
    return sessionStorage.getItem(key);
  } catch {
    return null;
  }
}

function storageSet(key: string, value: string): void {
  try {
    sessionStorage.setItem(key, value);
  } catch {
    /* storage may be off; then only this page load remembers */
  }
}

function storageRemove(key: string): void {
  try {
    sessionStorage.removeItem(key);
  } catch {
    /* nothing stored */
  }
}
