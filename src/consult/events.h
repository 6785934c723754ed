/*
 * events.h - the live view of remote reading: what the dispatch engine and
 * the report workflow change is published to a Redis stream (disp:events,
 * XADD MAXLEN ~ EVENTS_STREAM_MAXLEN), so that every cloudpacs process sees
 * every change; one reader thread per process (XREAD BLOCK) hands each
 * entry to the server-sent event streams (http.h) of this process whose
 * principal should see it:
 *   - a doctor: POOLED and TAKEN of orders they may read
 *     (dispatch_eligible), OFFER made to them, STATUS of orders they hold;
 *   - a clinic (technician, institution admin, API token): STATUS of the
 *     orders of institutions it sees (policy grants);
 *   - a centre's institution admin and the service: ALERT and every STATUS.
 *
 * An entry's payload is one JSON object: kind ("pooled", "taken",
 * "status", "offer", "alert"), order, version, state, event, doctor,
 * requesting, modality, body_part, priority, deadline (µs). It names no
 * patient. The SSE event's name is the kind, its id the stream entry id.
 *
 * Added: an entry {"kind":"resync"} (SSE event "resync", sent to every
 * stream) says "reload": a publish failed (Redis away) and changes were
 * missed. The process whose publish failed puts it into the stream as
 * soon as Redis takes writes again (before its next publish, or from its
 * reader), so that the streams of every process pass it on.
 */
#ifndef CP_CONSULT_EVENTS_H
#define CP_CONSULT_EVENTS_H

#include <stdbool.h>
#include <stdint.h>

#include "auth/directory.h"
#include "auth/policy.h"
#include "consult/dispatch.h"
#include "consult/order.h"
#include "core/status.h"
#include "http/http.h"
#include "kv/kv.h"

typedef struct events_hub events_hub;

typedef struct events_config {
    kv *kv;                             /* none owned */
    directory *dir;                     /* whether an admin's institution is a centre */
} events_config;

cp_status events_hub_create(const events_config *cfg, events_hub **out, cp_error *err);

/* Stops the reader and ends every subscriber's stream. NULL is fine. */
void events_hub_destroy(events_hub *h);

/* The engine doctors' eligibility is asked of (set once dispatch exists). */
void events_hub_set_dispatch(events_hub *h, dispatch *d);

/* Starts / stops the reader thread (from the newest entry on). */
cp_status events_start(events_hub *h, cp_error *err);
void events_stop(events_hub *h);

/*
 * Publishes one change; failures (Redis away) are returned and the change
 * is not kept, but a resync entry is owed (above).
 */
cp_status events_publish(events_hub *h, dispatch_event_kind kind, const order *o,
                         const char *event, int64_t doctor_id, cp_error *err);

/* A dispatch_config.on_event with the hub as ctx: publishes, logs failures. */
void events_on_dispatch(void *ctx, const dispatch_event *e);

/*
 * Adds a subscriber: the hub takes ev (released when the stream ends or
 * the hub goes) and a copy of p. CP_ERR_LIMIT past EVENTS_SUBSCRIBERS_MAX.
 */
cp_status events_subscribe(events_hub *h, const principal *p, http_events *ev,
                           cp_error *err);

/*
 * events_subscribe for a client that reconnects with the id of the last
 * event it got (the Last-Event-ID header, WHATWG HTML 9.2): the stream
 * first sends what it should see of the entries after that id, then the
 * live ones, with nothing missed or repeated. When the stream no longer
 * reaches back that far (trimmed at EVENTS_STREAM_MAXLEN, Redis lost its
 * data) or more than EVENTS_REPLAY_MAX followed, or Redis is away, it
 * sends one "resync" event instead. after NULL or not an entry id: live
 * ones only.
 */
cp_status events_subscribe_from(events_hub *h, const principal *p, http_events *ev,
                                const char *after, cp_error *err);

/* Subscribers now (for tests and metrics). */
unsigned events_subscriber_count(events_hub *h);

#endif
