/*
 * dispatch.h - the dispatch engine: the live pool of open reading orders in
 * Redis, grab, assign and fallback, leases and deadlines.
 *
 * Redis keys (in the kv's namespace, all rebuilt from SQL by
 * dispatch_rebuild):
 *   disp:pool              sorted set of pooled order ids by deadline (so a
 *                          routine order that has waited long overtakes a
 *                          fresh urgent one: waiting orders age upwards)
 *   disp:ord:<id>          hash: state, version, modality, body_part,
 *                          requesting, patient key, weight, deadline, holder,
 *                          lease (when the claim lapses), excluded doctors
 *   disp:load:<doctor>     units the doctor holds now
 *   disp:claims:<doctor>   set of order ids the doctor holds
 *   disp:patient:<key>     the doctor holding this patient's unread orders
 *   disp:online            sorted set: doctor id -> presence expiry
 *   disp:duty              sorted set: fallback reader id -> end of duty
 *   disp:timers            sorted set: "<kind>:<order id>" -> due time
 *   disp:leader            the timer lease: one process runs the timers
 *   disp:epoch             present while the keys above are whole; its
 *                          absence (Redis lost its data) triggers a rebuild
 *
 * Grab is one Lua script: it checks that the order is pooled at the version
 * the doctor saw, that the doctor is not excluded from it and is under the
 * cap, and claims it; of any number of simultaneous grabs exactly one wins.
 * Whether the doctor may read the order at all (qualification for modality
 * and body part, a contract with the requesting institution) is checked in
 * C from the directory before the script runs. The SQL row (order.h) is
 * written right after the script, with a compare-and-set on its version;
 * when that fails, the script's claim is undone.
 *
 * Every function takes the time from the configured clock, so tests drive
 * leases, windows and deadlines with a test clock.
 */
#ifndef CP_CONSULT_DISPATCH_H
#define CP_CONSULT_DISPATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth/directory.h"
#include "auth/policy.h"
#include "consult/order.h"
#include "core/config.h"
#include "core/status.h"
#include "kv/kv.h"

typedef struct dispatch dispatch;

/* A deadline or window that differs for one modality and priority. */
typedef struct dispatch_override {
    char modality[INDEX_CS_MAX + 1];
    order_priority priority;
    unsigned deadline_s;
} dispatch_override;

/* The timings and caps; every duration in seconds, indexed by order_priority. */
typedef struct dispatch_rules {
    unsigned deadline_s[2];             /* report due: routine 7200, urgent 1800 */
    /*
     * Unclaimed this long: given to the least-loaded online doctor who may
     * read it and has room under the cap; 600, 180.
     */
    unsigned grab_window_s[2];
    unsigned open_s[2];                 /* a claim must be opened within; 300, 120 */
    unsigned report_s[2];               /* claim to report, else back or escalate; 3600, 1200 */
    unsigned ack_s;                     /* an offer must be answered within; 120 */
    unsigned alert_percent;             /* alert the centre at this share of the deadline; 80 */
    unsigned cap_units;                 /* units a doctor may hold at once; 6 */
    unsigned visible_max;               /* orders a doctor sees in the pool; 5 */
    unsigned presence_s;                /* a heartbeat keeps a doctor online this long; 60 */
    unsigned cooldown_s;                /* a doctor who gave an order back may not grab it; 600 */
    char weights[128];                  /* "CR:1,DX:1,DR:1,MG:2,CT:3,MR:4,*:2" */
    dispatch_override overrides[16];
    size_t override_count;
    /*
     * Still unclaimed at this share of the way to its deadline (nobody
     * online had room): the on-duty fallback reader with the least load
     * takes it, past the cap if need be; 60.
     */
    unsigned fallback_percent;
    /*
     * Added: the expected reading time of one weight unit (300: a CR five
     * minutes, a CT fifteen, an MR twenty), and the margin kept before a
     * deadline (300). An order whose deadline, less the margin, its own
     * read and the work already queued at the least-loaded doctor online,
     * has come is given to that doctor even past the cap: nobody waits in
     * the pool until too late, and nobody is handed an order to queue
     * behind others while the pool could still reach a free doctor first.
     */
    unsigned unit_read_s;
    unsigned margin_s;
} dispatch_rules;

/* The defaults above. */
void dispatch_rules_default(dispatch_rules *r);

/*
 * From the [dispatch] section: deadline_routine_minutes, deadline_urgent_minutes,
 * deadline_<MODALITY>_<routine|urgent>_minutes, grab_window_routine_minutes,
 * grab_window_urgent_minutes, open_routine_minutes, open_urgent_minutes,
 * report_routine_minutes, report_urgent_minutes, ack_minutes, alert_percent,
 * fallback_percent,
 * cap_units, visible_max, presence_seconds, cooldown_minutes, weights,
 * unit_read_seconds, deadline_margin_minutes.
 */
cp_status dispatch_rules_from_config(const cp_config *cfg, dispatch_rules *r, cp_error *err);

/* The weight of a modality under the rules. */
unsigned dispatch_weight(const dispatch_rules *r, const char *modality);

/* What the engine tells the live views (server-sent events) as it happens. */
typedef enum dispatch_event_kind {
    DISPATCH_EVENT_POOLED = 1,          /* new or returned to the pool: doctors may see it */
    DISPATCH_EVENT_TAKEN,               /* claimed, offered or cancelled: gone from the pool */
    DISPATCH_EVENT_STATUS,              /* any transition: for the requesting clinic */
    DISPATCH_EVENT_OFFER,               /* offered to one doctor */
    DISPATCH_EVENT_ALERT,               /* near its deadline, or escalated: for the centre */
} dispatch_event_kind;

typedef struct dispatch_event {
    dispatch_event_kind kind;
    const order *order;                 /* after the change */
    const char *event;                  /* the order_event name */
    int64_t doctor_id;                  /* the doctor concerned, or 0 */
} dispatch_event;

typedef struct dispatch_config {
    kv *kv;                             /* none owned */
    order_store *orders;
    directory *dir;
    dispatch_rules rules;
    const char *instance_id;            /* this process, for the timer lease; NULL: host:pid */
    int64_t (*now_us)(void);            /* NULL: the real clock */
    void (*on_event)(void *ctx, const dispatch_event *e);  /* may be NULL */
    void *event_ctx;
    /*
     * Added: how long the timer lease lives without renewal, in
     * milliseconds (0: DISPATCH_LEASE_MS). Tests lower it; it must stay
     * well above the one-second tick that renews it.
     */
    unsigned lease_ms;
} dispatch_config;

cp_status dispatch_create(const dispatch_config *cfg, dispatch **out, cp_error *err);
void dispatch_destroy(dispatch *d);

/*
 * A request for a read: o carries the study, patient, modality, body part,
 * notes, priority, requesting institution, requested_by and wanted doctor
 * (the caller fills them from the index); weight and deadline are set here.
 * The order is created (order_create) and pooled, or offered at once to the
 * wanted doctor, or claimed for the doctor already holding this patient's
 * unread orders. o gets the stored order back.
 */
cp_status dispatch_submit(dispatch *d, order *o, cp_error *err);

/* Whether the doctor may read this order: role, qualification, contract. */
bool dispatch_eligible(dispatch *d, const principal *doctor, const order *o);

/* Presence: a heartbeat keeps the doctor online for presence_s. */
cp_status dispatch_heartbeat(dispatch *d, const principal *doctor, cp_error *err);
cp_status dispatch_offline(dispatch *d, int64_t doctor_id, cp_error *err);

/* The fallback roster: on duty until until_us (0: off duty now). */
cp_status dispatch_set_duty(dispatch *d, int64_t doctor_id, int64_t until_us, cp_error *err);

/* Called per doctor on duty now; CP_ERR_STOPPED ends the list early. */
typedef cp_status (*dispatch_duty_fn)(void *ctx, int64_t doctor_id, int64_t until_us);

/* The fallback roster as it is now: the doctors whose duty has not ended. */
cp_status dispatch_duty_list(dispatch *d, dispatch_duty_fn fn, void *ctx, cp_error *err);

/*
 * When the offer of an offered order must be answered by (µs since 1970);
 * 0 when no answer is awaited.
 */
cp_status dispatch_offer_expires(dispatch *d, int64_t order_id, int64_t *due_us,
                                 cp_error *err);

/*
 * The orders this doctor sees in the pool: at most visible_max of those they
 * may take, in pool order (deadline first). Into out (cap entries).
 */
cp_status dispatch_visible(dispatch *d, const principal *doctor, order *out, size_t cap,
                           size_t *count, cp_error *err);

typedef enum dispatch_grab_result {
    DISPATCH_GRABBED = 0,
    DISPATCH_GONE,                      /* someone else has it, or it left the pool */
    DISPATCH_OVER_CAP,                  /* the doctor holds too much already */
    DISPATCH_NOT_ELIGIBLE,              /* qualification, contract, excluded or cooling down */
} dispatch_grab_result;

/* Grabs a pooled order. *order_out (may be NULL) gets the claimed order. */
cp_status dispatch_grab(dispatch *d, const principal *doctor, int64_t order_id,
                        dispatch_grab_result *result, order *order_out, cp_error *err);

/* The doctor opened the study: the open lease is met, the report lease runs. */
cp_status dispatch_open(dispatch *d, const principal *doctor, int64_t order_id, cp_error *err);

/* Gives a claim back with a reason; it returns to the pool with its age. */
cp_status dispatch_give_back(dispatch *d, const principal *doctor, int64_t order_id,
                             const char *reason, cp_error *err);

/* An admin offers an order (pooled) to a named doctor, who must answer within ack_s. */
cp_status dispatch_assign(dispatch *d, const principal *admin, int64_t order_id,
                          int64_t doctor_id, cp_error *err);

/* The offered doctor accepts (claimed) or declines with a reason (back to the pool). */
cp_status dispatch_answer(dispatch *d, const principal *doctor, int64_t order_id, bool accept,
                          const char *reason, cp_error *err);

/* The requesting clinic withdraws an order nobody has taken. */
cp_status dispatch_cancel(dispatch *d, const principal *requester, int64_t order_id,
                          const char *reason, cp_error *err);

/*
 * The author submitted the report (state reported: the claim's units are
 * freed), or the reviewer returned it (state returned: the author holds it
 * again), approved or released it. Called by the report workflow after its
 * own writes, with the order as it now is in SQL.
 */
cp_status dispatch_after_report(dispatch *d, const order *o, cp_error *err);

/*
 * Runs what is due: lapsed claims back to the pool, unanswered offers
 * declined, orders past their grab window assigned to the on-duty fallback
 * reader with the least load (online and eligible), unreported claims
 * escalated, deadline alerts. Only in the process holding the timer lease
 * (taken or renewed here; lost when not renewed for a few seconds, so
 * another process takes over when this one dies). Rebuilds first when
 * disp:epoch is gone. *fired (may be NULL) counts what was done.
 */
cp_status dispatch_tick(dispatch *d, unsigned *fired, cp_error *err);

/* Whether this process holds the timer lease now. */
bool dispatch_is_leader(const dispatch *d);

/* Rebuilds every disp:* key from the open orders in SQL. */
cp_status dispatch_rebuild(dispatch *d, cp_error *err);

/* Starts / stops a thread that calls dispatch_tick every second. */
cp_status dispatch_start(dispatch *d, cp_error *err);
void dispatch_stop(dispatch *d);

#endif
