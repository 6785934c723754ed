// The reading workbench beside the admin console: who sees which part of it
// (the roles and the institution's kind in /api/me decide, since the API
// has no permission names for orders), the live updates from /api/events
// with a fallback poll, the doctor's heartbeat, and the clock that the
// deadline countdowns run on.
import { onMounted, onUnmounted, ref } from 'vue';

import { api, type Order, type OrderState } from './api';
import { session } from './session';

// doctor: the pool, my orders, the reading page; reviewer: the review
// queue; clinic: request a read and follow it; centre: the board and the
// statistics.
export type Area = 'doctor' | 'reviewer' | 'clinic' | 'centre';

export function inArea(area: Area): boolean {
  const me = session.me;
  if (!me || me.enrol_required)
    return false;
  const roles: string[] = me.roles ?? [];
  const kind = me.institution?.kind;
  switch (area) {
    case 'doctor':
      return roles.includes('radiologist') || roles.includes('reviewer');
    case 'reviewer':
      return roles.includes('reviewer');
    case 'clinic':
      return (roles.includes('technician') || roles.includes('institution_admin')) &&
        (kind === 'clinic' || kind === 'hospital');
    case 'centre':
      return roles.includes('institution_admin') && kind === 'centre';
  }
  return false;
}

// The events /api/events sends, named by their kind (src/consult/events.h);
// any of them makes a live page fetch its list again.
const EVENT_NAMES = ['pooled', 'taken', 'status', 'offer', 'alert', 'resync'];
export const POLL_MS = 10000;
export const HEARTBEAT_MS = 20000;

// What an event carries (src/consult/events.h; the deadline in µs). The
// page fetches again anyway: only the order id is used, to skip others.
export interface LiveEvent {
  kind?: string;
  order?: number;
  version?: number;
  state?: OrderState;
  event?: string;
  doctor?: number;
  requesting?: number;
  modality?: string;
  body_part?: string;
  priority?: string;
  deadline?: number;
}

/*
 * Calls refresh (at most every half second) when /api/events reports a
 * change, and every POLL_MS while the event stream is not open (no
 * EventSource, or it failed). The state is exposed for a "live" badge.
 */
export function useLive(refresh: (e: LiveEvent | null) => void) {
  const live = ref(false);
  let source: EventSource | null = null;
  let poll = 0;
  let pending = 0;

  const fire = (e: LiveEvent | null) => {
    if (pending)
      return;
    pending = window.setTimeout(() => {
      pending = 0;
      refresh(e);
    }, 500);
  };

  const onMessage = (m: MessageEvent) => {
    let data: LiveEvent | null = null;
    try {
      data = JSON.parse(String(m.data)) as LiveEvent;
    } catch {
      data = null;
    }
    // "resync": changes were missed (the server says so); reload everything.
    fire(data?.kind === 'resync' ? null : data);
  };
  // Set once the stream failed: its next open (the browser reconnects with
  // Last-Event-ID and gets what it missed) reloads once more to be sure.
  let broken = false;

  onMounted(() => {
    if (typeof EventSource !== 'undefined') {
      source = new EventSource('/api/events');
      source.onopen = () => {
        live.value = true;
        if (broken)
          fire(null);
        broken = false;
      };
      source.onerror = () => {
        live.value = source?.readyState === EventSource.OPEN;
        broken = true;
      };
      source.onmessage = onMessage;
      for (const name of EVENT_NAMES)
        source.addEventListener(name, onMessage as EventListener);
    }
    poll = window.setInterval(() => {
      if (!live.value)
        refresh(null);
    }, POLL_MS);
  });

  onUnmounted(() => {
    source?.close();
    source = null;
    window.clearInterval(poll);
    window.clearTimeout(pending);
  });

  return { live };
}

// A doctor's presence: one heartbeat now and every HEARTBEAT_MS while the
// page is open (GET /api/pool counts too, but the pool may be served from
// the events alone).
export function useHeartbeat() {
  let timer = 0;
  const beat = () => {
    api.presence().catch(() => {
      // The next beat tries again; the banner shows an outage.
    });
  };
  onMounted(() => {
    beat();
    timer = window.setInterval(beat, HEARTBEAT_MS);
  });
  onUnmounted(() => window.clearInterval(timer));
}

// The current time (ms), ticking every second, for the countdowns.
export function useNow() {
  const now = ref(Date.now());
  let timer = 0;
  onMounted(() => {
    timer = window.setInterval(() => {
      now.value = Date.now();
    }, 1000);
  });
  onUnmounted(() => window.clearInterval(timer));
  return now;
}

// Within this of its deadline an order shows red.
export const NEAR_MS = 15 * 60 * 1000;

// Milliseconds to the deadline (negative when past), or null without one.
export function msLeft(deadline: string | null | undefined, now: number): number | null {
  if (!deadline)
    return null;
  const d = Date.parse(deadline);
  return Number.isNaN(d) ? null : d - now;
}

// "1:05:09" or "4:07" (minutes and seconds under an hour).
export function formatLeft(ms: number): string {
  const total = Math.floor(Math.abs(ms) / 1000);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  const p = (n: number) => String(n).padStart(2, '0');
  return h > 0 ? `${h}:${p(m)}:${p(s)}` : `${m}:${p(s)}`;
}

// The orders a clinic may still withdraw: nobody has taken them.
export function cancellable(o: Order): boolean {
  return o.state === 'submitted' || o.state === 'pooled' || o.state === 'offered';
}

// Urgent first, then the nearest deadline.
export function byUrgency(a: Order, b: Order): number {
  if (a.priority !== b.priority)
    return a.priority === 'urgent' ? -1 : 1;
  return (a.deadline ?? '').localeCompare(b.deadline ?? '') || a.id - b.id;
}

// The OHIF viewer's address for a study (scripts/viewer.sh installs it at /viewer/).
export function viewerUrl(studyUid: string): string {
  return `/viewer/viewer?StudyInstanceUIDs=${encodeURIComponent(studyUid)}`;
}

// Whether the screen is phone-sized (the viewer then opens on its own page).
export function usePhone() {
  const phone = ref(false);
  let mq: MediaQueryList | null = null;
  const update = () => {
    phone.value = mq?.matches ?? false;
  };
  onMounted(() => {
    mq = window.matchMedia('(max-width: 720px)');
    update();
    mq.addEventListener('change', update);
  });
  onUnmounted(() => mq?.removeEventListener('change', update));
  return phone;
}
