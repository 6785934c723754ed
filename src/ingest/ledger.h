/*
 * ledger.h - what the intake and the export remember across restarts, in
 * tables of the index database (<data_dir>/index.sqlite) on a connection
 * of their own, with their own migration list (ingest_schema_version):
 *
 *   intake_ledger   one row per file taken or skipped: (source, path, size,
 *                   mtime) is the key a file is recognised by, so no file
 *                   is taken twice, even after a restart
 *   intake_source   per source: state, last error, last success
 *   export_position per export rule: the change-log seq handled last
 *   export_job      per rule and study (and, for report_released rules, per
 *                   released order): state, attempts, last error, next try
 *
 * A ledger is used by one thread at a time; each service thread opens its
 * own. SQLite's busy timeout absorbs the index's writers.
 */
#ifndef CP_INGEST_LEDGER_H
#define CP_INGEST_LEDGER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "core/status.h"

typedef struct ledger ledger;

/* Ledger outcomes of a file. */
#define LEDGER_STORED    "stored"       /* a new instance (or a replacement) */
#define LEDGER_DUPLICATE "duplicate"    /* the archive had it already */
#define LEDGER_FAILED    "failed"       /* DICOM the archive refused */
#define LEDGER_SKIPPED   "skipped"      /* not DICOM: left alone */
#define LEDGER_DICOMDIR  "dicomdir"     /* a DICOMDIR: its files come on their own */
#define LEDGER_UNPACKED  "unpacked"     /* a ZIP archive whose entries have rows of their own */

/* Export job states. */
#define LEDGER_JOB_PENDING "pending"
#define LEDGER_JOB_DONE    "done"
#define LEDGER_JOB_RETRY   "retrying"

typedef struct ledger_job {
    char rule[128];
    char study_uid[65];
    char state[16];
    int64_t attempts;
    char last_error[256];
    int64_t next_try_us;
    int64_t order_id;           /* the released order; 0 for a study_complete job */
    int64_t released_us;        /* when that order was released; 0 for study_complete */
} ledger_job;

typedef cp_status (*ledger_job_fn)(void *ctx, const ledger_job *job);

/* A released reading order, as the consult service's table holds it (consult/order.h). */
typedef struct ledger_release {
    int64_t order_id;
    char study_uid[65];
    int64_t released_us;
    int64_t institution_id;     /* the institution that asked for the read */
} ledger_release;

typedef cp_status (*ledger_release_fn)(void *ctx, const ledger_release *r);

/* Opens the database at path and applies the migrations. */
cp_status ledger_open(const char *path, ledger **out, cp_error *err);

void ledger_close(ledger *l);

/* Whether (source, path, size, mtime) was recorded; its outcome into outcome[16]. */
cp_status ledger_lookup(ledger *l, const char *source, const char *path, uint64_t size,
                        int64_t mtime_us, bool *found, char *outcome, cp_error *err);

/* Records a file (replacing a row with the same key). sop_uid and detail may be NULL. */
cp_status ledger_record(ledger *l, const char *source, const char *path, uint64_t size,
                        int64_t mtime_us, const char *outcome, const char *sop_uid,
                        const char *detail, int64_t time_us, cp_error *err);

/* The state of a source ("up", "down", ...); last_success_us 0 keeps the stored one. */
cp_status ledger_source_state(ledger *l, const char *source, const char *state,
                              const char *last_error, int64_t last_success_us,
                              int64_t now_us, cp_error *err);

/* The change-log position of an export rule (0 when it has none). */
cp_status ledger_position(ledger *l, const char *rule, int64_t *seq, cp_error *err);
cp_status ledger_set_position(ledger *l, const char *rule, int64_t seq, cp_error *err);

/* A study to export: a new pending job, or a finished one made pending again. */
cp_status ledger_job_add(ledger *l, const char *rule, const char *study_uid, int64_t now_us,
                         cp_error *err);

/*
 * A released order to export: a new pending job due at due_us, or, when the
 * order's job exists with another release time (released again), that job
 * made pending again. A job for the same release is left as it is, so a
 * scan that sees an order twice exports it once. *added says whether a job
 * became pending.
 */
cp_status ledger_release_add(ledger *l, const char *rule, int64_t order_id,
                             const char *study_uid, int64_t released_us, int64_t due_us,
                             int64_t now_us, bool *added, cp_error *err);

/*
 * The released orders after (after_us, after_id) in (release time, id)
 * order, at most limit, read from the reading_order table of the same
 * database; none when that table does not exist (no consult service yet).
 */
cp_status ledger_released_orders(ledger *l, int64_t after_us, int64_t after_id, size_t limit,
                                 ledger_release_fn fn, void *ctx, cp_error *err);

/* The jobs of rule not done whose next try is due at now_us, oldest first, at most limit. */
cp_status ledger_jobs_due(ledger *l, const char *rule, int64_t now_us, size_t limit,
                          ledger_job_fn fn, void *ctx, cp_error *err);

/* Records the result of an attempt. */
cp_status ledger_job_update(ledger *l, const ledger_job *job, int64_t now_us, cp_error *err);

/*
 * The status of every source and rule in the tables:
 *   {"sources": [{"name", "state", "last_error", "last_error_time",
 *                 "last_success", "seen", "stored", "duplicates", "failed",
 *                 "skipped"}],
 *    "exports": [{"name", "position", "pending", "done", "retrying",
 *                 "jobs": [{"study", "order", "state", "attempts", "last_error",
 *                           "last_error_time", "next_try"}]}]}
 * jobs lists those not done. Times are ISO 8601 UTC strings or null.
 */
cp_status ledger_status_json(ledger *l, json_t **out, cp_error *err);

#endif
