/*
 * audit.h - the audit trail: an append-only record of every access to
 * patient data and every change of rights, in the shape of the IHE ATNA
 * audit messages (DICOM PS3.15 Annex A.5): event, action, outcome, active
 * participant, network access point and participant objects.
 *
 * Records are kept in the index database (table audit_record, with
 * triggers that refuse UPDATE and DELETE). Each record carries the
 * BLAKE2b-256 hash of its canonical form and of the previous record's hash,
 * so that a record changed, removed or inserted is found by audit_verify;
 * a separate row holds the hash of the newest record, so that cutting the
 * tail is found too.
 *
 * audit_write queues and returns: a writer thread commits what is queued
 * in one transaction every AUDIT_FLUSH_MS (or sooner when AUDIT_BATCH_MAX
 * wait), so that recording every look costs the request almost nothing.
 * audit_flush and audit_close wait for the queue to be committed. A full
 * queue makes audit_write wait: records are never dropped.
 *
 * A record never holds a password, a token or a patient's name: patients
 * are identified by Patient ID (and issuer), studies by their UID.
 */
#ifndef CP_AUTH_AUDIT_H
#define CP_AUTH_AUDIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/status.h"

typedef struct audit_log audit_log;

/*
 * Events, each with its PS3.16 code (CID 400 audit event ID, DCM scheme)
 * and, where the event needs one, its event type code (CID 401 and
 * cloudpacs's own, scheme "99CLOUDPACS").
 */
#define AUDIT_EVENT_LIST(X)                                                                     \
    X(AUDIT_APPLICATION_ACTIVITY, "application_activity", "110100", "Application Activity")     \
    X(AUDIT_LOG_USED,             "audit_log_used",       "110101", "Audit Log Used")           \
    X(AUDIT_INSTANCES_ACCESSED,   "instances_accessed",   "110103", "DICOM Instances Accessed") \
    X(AUDIT_INSTANCES_TRANSFERRED, "instances_transferred", "110104",                           \
      "DICOM Instances Transferred")                                                            \
    X(AUDIT_STUDY_DELETED,        "study_deleted",        "110105", "DICOM Study Deleted")      \
    X(AUDIT_EXPORT,               "export",               "110106", "Export")                   \
    X(AUDIT_IMPORT,               "import",               "110107", "Import")                   \
    X(AUDIT_QUERY,                "query",                "110112", "Query")                    \
    X(AUDIT_SECURITY_ALERT,       "security_alert",       "110113", "Security Alert")           \
    X(AUDIT_USER_AUTHENTICATION,  "user_authentication",  "110114", "User Authentication")      \
    X(AUDIT_ORDER_RECORD,         "order_record",         "110109", "Order Record")             \
    X(AUDIT_PATIENT_RECORD,       "patient_record",       "110110", "Patient Record")

typedef enum audit_event {
    AUDIT_EVENT_NONE = 0,
#define AUDIT_EVENT_ENUM(id, name, code, display) id,
    AUDIT_EVENT_LIST(AUDIT_EVENT_ENUM)
#undef AUDIT_EVENT_ENUM
    AUDIT_EVENT_COUNT
} audit_event;

/* The stable short name ("instances_accessed"), the code and its meaning. */
const char *audit_event_name(audit_event e);
const char *audit_event_code(audit_event e);
const char *audit_event_display(audit_event e);
audit_event audit_event_parse(const char *name);

/* EventActionCode: Create, Read, Update, Delete, Execute. */
typedef enum audit_action {
    AUDIT_CREATE = 'C',
    AUDIT_READ = 'R',
    AUDIT_UPDATE = 'U',
    AUDIT_DELETE = 'D',
    AUDIT_EXECUTE = 'E',
} audit_action;

/* EventOutcomeIndicator. */
typedef enum audit_outcome {
    AUDIT_SUCCESS = 0,
    AUDIT_MINOR_FAILURE = 4,            /* refused: wrong password, forbidden */
    AUDIT_SERIOUS_FAILURE = 8,
    AUDIT_MAJOR_FAILURE = 12,
} audit_outcome;

typedef struct audit_record {
    int64_t seq;                        /* set by the log; ignored by audit_write */
    int64_t time_us;                    /* 0: now */
    audit_event event;
    audit_action action;
    audit_outcome outcome;
    /*
     * The event type: "login", "logout", "user_created", "roles_changed",
     * "share_link_opened", "wado", "qido", "c-find", ... ("" none).
     */
    char type[32];
    /* Who: a user id (0 when none), and a name: username, token, AE title. */
    int64_t user_id;
    char actor[65];
    char actor_roles[96];               /* "radiologist,reviewer" */
    int64_t actor_institution_id;
    char peer[64];                      /* network access point */
    char session_id[17];
    /* What: "study", "series", "instance", "order", "share_link", "user",
     * "institution", "token", "ae", "contract", "query", "audit". */
    char object_kind[16];
    char object_id[129];                /* a UID, an id, or the query text */
    char patient_id[65];                /* Patient ID when known; never a name */
    int64_t institution_id;             /* the institution the data belongs to */
    char detail[512];                   /* a JSON object as text, or "" */
} audit_record;

/*
 * Opens the trail in the SQLite database at path (its tables created if
 * needed) and starts its writer thread.
 */
cp_status audit_open_sqlite(const char *path, audit_log **out, cp_error *err);

/* Commits everything queued, stops the writer and frees. NULL is fine. */
void audit_close(audit_log *a);

/*
 * Queues a record (copied). CP_ERR_INVALID for a record without event or
 * actor; text fields are cut at their size and control characters replaced.
 */
cp_status audit_write(audit_log *a, const audit_record *r);

/* Waits until every record queued before the call is committed. */
cp_status audit_flush(audit_log *a, cp_error *err);

typedef struct audit_filter {
    int64_t from_us;                    /* 0: from the start */
    int64_t to_us;                      /* 0: until now */
    int64_t user_id;                    /* 0: any */
    const char *actor;                  /* NULL: any */
    const char *patient_id;             /* NULL: any */
    const char *object_id;              /* NULL: any; a study UID, order id, ... */
    audit_event event;                  /* NONE: any */
    int64_t after_seq;                  /* records after this seq (paging) */
    bool newest_first;                  /* then before_seq pages backwards */
    int64_t before_seq;                 /* 0: none */
    size_t limit;                       /* 0: AUDIT_QUERY_DEFAULT */
} audit_filter;

typedef cp_status (*audit_record_fn)(void *ctx, const audit_record *r);

/* The records that match, in seq order (or newest first); commits the queue first. */
cp_status audit_query(audit_log *a, const audit_filter *f, audit_record_fn fn, void *ctx,
                      cp_error *err);

/*
 * One record as a JSON object (no newline) in the shape of the ATNA
 * message: EventIdentification (EventID code/scheme/display, EventActionCode,
 * EventDateTime ISO 8601 UTC, EventOutcomeIndicator, EventTypeCode),
 * ActiveParticipant (UserID, UserName, RoleIDCode, NetworkAccessPointID,
 * UserIsRequestor), AuditSourceIdentification (AuditSourceID: the source
 * name given), ParticipantObjectIdentification (type, role, ID type code,
 * ID), plus "seq" and "hash".
 */
cp_status audit_record_json(const audit_record *r, const char *source_id, cp_buf *out);

typedef struct audit_verify_result {
    int64_t records;                    /* checked */
    int64_t first_bad_seq;              /* 0 when the chain is whole */
    char problem[160];                  /* what is wrong there */
} audit_verify_result;

/*
 * Walks the whole chain. CP_OK with first_bad_seq == 0 when whole; CP_OK
 * with first_bad_seq and problem set when not (CP_ERR_* only for failures
 * to read).
 */
cp_status audit_verify(audit_log *a, audit_verify_result *res, cp_error *err);

/*
 * Added for `cloudpacs audit export`: audit_record carries no hash, so
 * audit_record_json writes "hash": null; these two give each record with
 * the hash stored beside it.
 */
#define AUDIT_HASH_SIZE 32

typedef cp_status (*audit_entry_fn)(void *ctx, const audit_record *r,
                                    const uint8_t hash[AUDIT_HASH_SIZE]);

/* audit_query, handing each record with its stored hash. */
cp_status audit_query_hashed(audit_log *a, const audit_filter *f, audit_entry_fn fn, void *ctx,
                             cp_error *err);

/* audit_record_json with "hash" set from hash (AUDIT_HASH_SIZE bytes; NULL: null). */
cp_status audit_record_json_hashed(const audit_record *r, const uint8_t *hash,
                                   const char *source_id, cp_buf *out);

#endif
