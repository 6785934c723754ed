/*
 * api_orders.h - reading orders under /api/orders, the doctors' pool and
 * presence, the fallback roster and the live event stream (docs/api.md,
 * "Orders and reports"); and what api_reports.c shares with it: who sees
 * an order, its JSON form and its audit record.
 */
#ifndef CP_API_API_ORDERS_H
#define CP_API_API_ORDERS_H

#include <stdbool.h>

#include <jansson.h>

#include "api/api.h"
#include "auth/directory.h"
#include "consult/order.h"

/* Registers the routes of this part of the API. */
cp_status api_orders_register(api_service *a, http_server *s);

/* A user who reads (radiologist or reviewer). */
bool api_is_doctor(const principal *p);

/* An institution admin of a reading centre, or the service. */
bool api_is_centre_admin(api_service *a, const principal *p);

/* Whether institution_id is the principal's own (its subtree, not a contract). */
bool api_own_institution(const principal *p, int64_t institution_id);

/*
 * Whether p may see the order: the clinic that asked, the doctor who holds
 * or is offered it or may take it, a reviewer of its reading centre, the
 * admin of a centre it is asked of or read by or whose doctors are
 * contracted with the clinic, the service.
 */
bool api_order_visible(api_service *a, const principal *p, const order *o);

/* Whether p reviews for the order's reading institution. */
bool api_order_reviewer(const principal *p, const order *o);

/*
 * Loads the order of the path's {id} that p may see; answers 503 (no
 * consult service), 404 (none, or hidden) itself and returns false then.
 */
bool api_order_load(api_service *a, http_request *req, order *o);

/* The order as JSON (a new reference, NULL when out of memory). */
json_t *api_order_json(const order *o);

/* Display names looked up while one request runs: a list asks once per id. */
#define API_NAMES_MAX 32

typedef struct api_name {
    int64_t id;
    bool institution;                   /* else a user */
    char name[DIRECTORY_NAME_MAX + 1];
} api_name;

typedef struct api_names {
    size_t count;
    size_t next;                        /* the slot replaced once all are used */
    api_name e[API_NAMES_MAX];
} api_names;

/*
 * The display name of a user (its username when it has none) or of an
 * institution; NULL for id 0 or one the directory does not have. The
 * pointer lives as long as c and until the next call with c.
 */
const char *api_name_of(api_service *a, api_names *c, bool institution, int64_t id);

/*
 * api_order_json with the names of the people and institutions it names:
 * doctor_name, reviewer_name, requesting_institution_name,
 * reading_institution_name (null when unset). Professional names, not
 * patient data: a report must name its author. c may be NULL (no cache).
 */
json_t *api_order_json_named(api_service *a, api_names *c, const order *o);

/* Writes the audit record of an order: an Order Record (PS3.15 A.5.3.9) or what event says. */
void api_order_audit(api_service *a, const http_request *req, audit_event event,
                     audit_action action, const char *type, const order *o);

#endif
