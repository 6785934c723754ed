/*
 * order.h - reading orders as the index database keeps them: the truth of
 * who asked for which study to be read, who reads it under whose
 * registration, and every transition with its time, actor and reason.
 * Redis (dispatch.h) holds the fast copy of the open orders and is rebuilt
 * from here.
 *
 * The life of an order (DESIGN.md, "The reading-order model"):
 *
 *   submitted -> pooled -> claimed -> reported -> approved -> released
 *                  |  ^       |          |
 *                  v  |       |          +-> returned -> reported (again)
 *               offered ------+  (assign: the named doctor accepts)
 *   cancelled: from submitted, pooled or offered (a withdrawal)
 *
 * A claim that lapses, is given back or is declined sends the order back to
 * pooled with its original pooled time, so it keeps its age. Each change is
 * a compare-and-set on (state, version): of two concurrent changes one
 * wins, the other gets CP_ERR_AGAIN and nothing is written.
 */
#ifndef CP_CONSULT_ORDER_H
#define CP_CONSULT_ORDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/limits.h"
#include "core/status.h"

typedef struct order_store order_store;

typedef enum order_state {
    ORDER_SUBMITTED = 1,
    ORDER_POOLED = 2,
    ORDER_OFFERED = 3,                  /* assigned to a named doctor, awaiting accept */
    ORDER_CLAIMED = 4,
    ORDER_REPORTED = 5,                 /* submitted for review */
    ORDER_RETURNED = 6,                 /* the reviewer sent it back to its author */
    ORDER_APPROVED = 7,
    ORDER_RELEASED = 8,
    ORDER_CANCELLED = 9,
} order_state;

typedef enum order_priority {
    ORDER_ROUTINE = 0,
    ORDER_URGENT = 1,
} order_priority;

/* "submitted", ..., "cancelled"; and back (0 when unknown). */
const char *order_state_name(order_state s);
order_state order_state_parse(const char *name);
const char *order_priority_name(order_priority p);
int order_priority_parse(const char *name);     /* -1 when unknown */

/* Whether the order is still waiting for or under a read (not released or cancelled). */
bool order_state_open(order_state s);

typedef struct order {
    int64_t id;
    int64_t version;                    /* bumped by every transition */
    order_state state;
    order_priority priority;
    char study_uid[INDEX_UID_MAX + 1];
    char patient_id[INDEX_LO_MAX + 1];  /* with issuer: who the patient is, never a name */
    char issuer[INDEX_LO_MAX + 1];
    char accession[INDEX_SH_MAX + 1];
    char modality[INDEX_CS_MAX + 1];    /* the study's main modality: "CR", "CT" */
    char body_part[INDEX_CS_MAX + 1];   /* "CHEST" */
    char clinical_notes[ORDER_NOTES_MAX + 1];
    unsigned weight;                    /* units against a doctor's cap (CR 1, CT 3, MR 4) */
    int64_t requesting_id;              /* the institution that asked */
    int64_t requested_by;               /* the user who asked (0: a rule) */
    int64_t wanted_doctor_id;           /* 0: anyone */
    int64_t reading_id;                 /* the institution the doctor reads for; 0 until claimed */
    int64_t doctor_id;                  /* the author; 0 until claimed (or offered: the offeree) */
    int64_t reviewer_id;                /* 0 until reviewed */
    int64_t created_us;
    int64_t pooled_us;                  /* first entry into the pool: the order's age */
    int64_t deadline_us;                /* the report is due */
    int64_t claimed_us;
    int64_t opened_us;                  /* the doctor opened the study (lease kept) */
    int64_t reported_us;
    int64_t approved_us;
    int64_t released_us;
    unsigned returns;                   /* times given back or lapsed */
    unsigned rejections;                /* times the reviewer sent it back */
    /*
     * Added for cloud film: the last four digits of the patient's phone ("":
     * not given), the second factor where the institution asks for it
     * ([film] factor = phone_last4). The whole number is never kept.
     */
    char phone_last4[5];
} order;

/* One line of an order's history. */
typedef struct order_event {
    int64_t order_id;
    int64_t seq;                        /* per order, from 1 */
    int64_t time_us;
    order_state from;
    order_state to;
    char event[24];                     /* "submitted", "grabbed", "offered", "declined",
                                           "lapsed", "given_back", "opened", "reported",
                                           "approved", "rejected", "released", "cancelled",
                                           "fallback", "escalated", ... */
    int64_t actor_id;                   /* a user, or 0 for cloudpacs itself */
    char reason[ORDER_REASON_MAX + 1];
} order_event;

/* Opens (creating its tables) in the SQLite database at path. */
cp_status order_store_open_sqlite(const char *path, order_store **out, cp_error *err);
void order_store_close(order_store *s);

/*
 * Added: the clock event times and created_us are taken from (NULL: the
 * real clock), so that a dispatch engine under a test clock writes
 * histories in its own time. dispatch_create sets it from its config.
 */
void order_store_set_clock(order_store *s, int64_t (*now_us)(void));

/*
 * Creates an order in state submitted (o->id, version, created_us set),
 * with its first event. CP_ERR_EXISTS when an open order for the same study
 * exists already.
 */
cp_status order_create(order_store *s, order *o, int64_t actor_id, cp_error *err);

cp_status order_get(order_store *s, int64_t id, order *out, cp_error *err);

/*
 * Moves an order: only if it is in state `from` at version o->version; then
 * writes every field of *o (the caller set the new ones), bumps the version
 * (o->version is updated) and appends the event, in one transaction.
 * CP_ERR_AGAIN when the order moved meanwhile; CP_ERR_INVALID for a
 * transition the model does not have.
 */
cp_status order_transition(order_store *s, order *o, order_state from, const char *event,
                           int64_t actor_id, const char *reason, cp_error *err);

/* Appends an event that changes no state (an alert, an escalation notice). */
cp_status order_note(order_store *s, int64_t id, const char *event, int64_t actor_id,
                     const char *reason, cp_error *err);

typedef struct order_filter {
    const order_state *states;          /* NULL: any */
    size_t state_count;
    const int64_t *requesting;          /* NULL: any institution */
    size_t requesting_count;
    int64_t doctor_id;                  /* 0: any */
    int64_t reviewer_id;
    const char *study_uid;              /* NULL: any */
    const char *patient_id;
    int64_t from_us;                    /* created at or after; 0: any */
    int64_t to_us;                      /* created before; 0: any */
    int64_t after_id;                   /* paging: ids greater than */
    size_t limit;                       /* 0: ORDER_LIST_DEFAULT */
} order_filter;

typedef cp_status (*order_fn)(void *ctx, const order *o);

/* Orders that match, by id. */
cp_status order_list(order_store *s, const order_filter *f, order_fn fn, void *ctx,
                     cp_error *err);

typedef cp_status (*order_event_fn)(void *ctx, const order_event *e);
cp_status order_history(order_store *s, int64_t id, order_event_fn fn, void *ctx,
                        cp_error *err);

#endif
