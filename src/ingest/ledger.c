/*
 * ledger.c - the intake ledger and export state in SQLite (ledger.h). The
 * tables live in the index database beside the index's own; migrations are
 * numbered and recorded in ingest_schema_version, like the index's.
 */
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/alloc.h"
#include "ingest/ledger.h"

/* Milliseconds a statement waits for the index's writer before failing. */
#define LEDGER_BUSY_MS 10000

struct ledger {
    sqlite3 *db;
};

static const char *const migrations[] = {
    "CREATE TABLE intake_ledger ("
    " source TEXT NOT NULL, path TEXT NOT NULL, size INTEGER NOT NULL,"
    " mtime INTEGER NOT NULL, outcome TEXT NOT NULL, sop_instance_uid TEXT,"
    " detail TEXT, time INTEGER NOT NULL,"
    " PRIMARY KEY (source, path, size, mtime));"
    "CREATE INDEX intake_ledger_outcome ON intake_ledger (source, outcome);"
    "CREATE TABLE intake_source ("
    " source TEXT PRIMARY KEY, state TEXT NOT NULL, last_error TEXT,"
    " last_success INTEGER NOT NULL DEFAULT 0, updated INTEGER NOT NULL);"
    "CREATE TABLE export_position (rule TEXT PRIMARY KEY, seq INTEGER NOT NULL);"
    "CREATE TABLE export_job ("
    " rule TEXT NOT NULL, study_uid TEXT NOT NULL, state TEXT NOT NULL,"
    " attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT,"
    " next_try INTEGER NOT NULL, created INTEGER NOT NULL, updated INTEGER NOT NULL,"
    " PRIMARY KEY (rule, study_uid));"
    "CREATE INDEX export_job_due ON export_job (rule, state, next_try);",
    /* 2: jobs of report_released rules, one per released order (0: study_complete). */
    "CREATE TABLE export_job_2 ("
    " rule TEXT NOT NULL, study_uid TEXT NOT NULL, order_id INTEGER NOT NULL DEFAULT 0,"
    " released INTEGER NOT NULL DEFAULT 0, state TEXT NOT NULL,"
    " attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT,"
    " next_try INTEGER NOT NULL, created INTEGER NOT NULL, updated INTEGER NOT NULL,"
    " PRIMARY KEY (rule, study_uid, order_id));"
    "INSERT INTO export_job_2 (rule, study_uid, state, attempts, last_error, next_try,"
    " created, updated) SELECT rule, study_uid, state, attempts, last_error, next_try,"
    " created, updated FROM export_job;"
    "DROP TABLE export_job;"
    "ALTER TABLE export_job_2 RENAME TO export_job;"
    "CREATE INDEX export_job_due ON export_job (rule, state, next_try);",
};

static cp_status db_error(ledger *l, cp_error *err, const char *what)
{
    return cp_error_set(err, CP_ERR_IO, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG, "%s: %s", what,
                        sqlite3_errmsg(l->db));
}

static cp_status exec(ledger *l, const char *sql, cp_error *err)
{
    char *msg = NULL;

    if (sqlite3_exec(l->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        cp_status st = cp_error_set(err, CP_ERR_IO, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                                    "ledger: %s", msg != NULL ? msg : "?");

        sqlite3_free(msg);
        return st;
    }
    return CP_OK;
}

static cp_status migrate(ledger *l, cp_error *err)
{
    int n = (int)(sizeof migrations / sizeof migrations[0]);
    int version = 0;
    sqlite3_stmt *q = NULL;
    cp_status st;

    st = exec(l, "BEGIN IMMEDIATE;"
                 "CREATE TABLE IF NOT EXISTS ingest_schema_version (version INTEGER NOT NULL);",
              err);
    if (st != CP_OK)
        return st;
    if (sqlite3_prepare_v2(l->db, "SELECT max(version) FROM ingest_schema_version", -1, &q,
                           NULL) != SQLITE_OK) {
        st = db_error(l, err, "ledger version");
        goto fail;
    }
    if (sqlite3_step(q) == SQLITE_ROW)
        version = sqlite3_column_int(q, 0);
    sqlite3_finalize(q);
    if (version > n) {
        st = cp_error_set(err, CP_ERR_UNSUPPORTED, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                          "ledger schema %d is newer than this build's %d", version, n);
        goto fail;
    }
    for (int v = version; v < n; v++) {
        char sql[96];

        st = exec(l, migrations[v], err);
        if (st != CP_OK)
            goto fail;
        snprintf(sql, sizeof sql, "INSERT INTO ingest_schema_version VALUES (%d)", v + 1);
        st = exec(l, sql, err);
        if (st != CP_OK)
            goto fail;
    }
    return exec(l, "COMMIT", err);

fail:
    exec(l, "ROLLBACK", NULL);
    return st;
}

cp_status ledger_open(const char *path, ledger **out, cp_error *err)
{
    ledger *l = cp_calloc(1, sizeof *l);
    cp_status st;

    *out = NULL;
    if (l == NULL)
        return CP_ERR_NOMEM;
    if (sqlite3_open_v2(path, &l->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                        SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
        st = db_error(l, err, path);
        goto fail;
    }
    sqlite3_busy_timeout(l->db, LEDGER_BUSY_MS);
    st = exec(l, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;", err);
    if (st == CP_OK)
        st = migrate(l, err);
    if (st != CP_OK)
        goto fail;
    *out = l;
    return CP_OK;

fail:
    ledger_close(l);
    return st;
}

void ledger_close(ledger *l)
{
    if (l == NULL)
        return;
    sqlite3_close(l->db);
    cp_free(l);
}

static cp_status prepare(ledger *l, const char *sql, sqlite3_stmt **q, cp_error *err)
{
    if (sqlite3_prepare_v2(l->db, sql, -1, q, NULL) != SQLITE_OK)
        return db_error(l, err, "ledger");
    return CP_OK;
}

/* Steps a statement to its end and frees it. */
static cp_status run(ledger *l, sqlite3_stmt *q, cp_error *err)
{
    int rc = sqlite3_step(q);
    cp_status st = rc == SQLITE_DONE || rc == SQLITE_ROW ? CP_OK : db_error(l, err, "ledger");

    sqlite3_finalize(q);
    return st;
}

static void bind_text(sqlite3_stmt *q, int i, const char *s)
{
    if (s == NULL)
        sqlite3_bind_null(q, i);
    else
        sqlite3_bind_text(q, i, s, -1, SQLITE_TRANSIENT);
}

cp_status ledger_lookup(ledger *l, const char *source, const char *path, uint64_t size,
                        int64_t mtime_us, bool *found, char *outcome, cp_error *err)
{
    sqlite3_stmt *q;
    cp_status st;
    int rc;

    *found = false;
    outcome[0] = '\0';
    st = prepare(l, "SELECT outcome FROM intake_ledger WHERE source = ?1 AND path = ?2 "
                    "AND size = ?3 AND mtime = ?4", &q, err);
    if (st != CP_OK)
        return st;
    bind_text(q, 1, source);
    bind_text(q, 2, path);
    sqlite3_bind_int64(q, 3, (sqlite3_int64)size);
    sqlite3_bind_int64(q, 4, mtime_us);
    rc = sqlite3_step(q);
    if (rc == SQLITE_ROW) {
        const unsigned char *o = sqlite3_column_text(q, 0);

        *found = true;
        snprintf(outcome, 16, "%s", o != NULL ? (const char *)o : "");
    } else if (rc != SQLITE_DONE) {
        st = db_error(l, err, "ledger lookup");
    }
    sqlite3_finalize(q);
    return st;
}

cp_status ledger_record(ledger *l, const char *source, const char *path, uint64_t size,
                        int64_t mtime_us, const char *outcome, const char *sop_uid,
                        const char *detail, int64_t time_us, cp_error *err)
{
    sqlite3_stmt *q;
    cp_status st;

    st = prepare(l, "INSERT OR REPLACE INTO intake_ledger (source, path, size, mtime, "
                    "outcome, sop_instance_uid, detail, time) VALUES (?1,?2,?3,?4,?5,?6,?7,?8)",
                 &q, err);
    if (st != CP_OK)
        return st;
    bind_text(q, 1, source);
    bind_text(q, 2, path);
    sqlite3_bind_int64(q, 3, (sqlite3_int64)size);
    sqlite3_bind_int64(q, 4, mtime_us);
    bind_text(q, 5, outcome);
    bind_text(q, 6, sop_uid != NULL && sop_uid[0] != '\0' ? sop_uid : NULL);
    bind_text(q, 7, detail != NULL && detail[0] != '\0' ? detail : NULL);
    sqlite3_bind_int64(q, 8, time_us);
    return run(l, q, err);
}

cp_status ledger_source_state(ledger *l, const char *source, const char *state,
                              const char *last_error, int64_t last_success_us,
                              int64_t now_us, cp_error *err)
{
    sqlite3_stmt *q;
    cp_status st;

    st = prepare(l, "INSERT INTO intake_source (source, state, last_error, last_success, "
                    "updated) VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (source) DO UPDATE SET "
                    "state = ?2, last_error = ?3, updated = ?5, last_success = CASE WHEN ?4 > 0 "
                    "THEN ?4 ELSE last_success END", &q, err);
    if (st != CP_OK)
        return st;
    bind_text(q, 1, source);
    bind_text(q, 2, state);
    bind_text(q, 3, last_error != NULL && last_error[0] != '\0' ? last_error : NULL);
    sqlite3_bind_int64(q, 4, last_success_us);
    sqlite3_bind_int64(q, 5, now_us);
    return run(l, q, err);
}

cp_status ledger_position(ledger *l, const char *rule, int64_t *seq, cp_error *err)
{
    sqlite3_stmt *q;
    cp_status st;
    int rc;

    *seq = 0;
    st = prepare(l, "SELECT seq FROM export_position WHERE rule = ?1", &q, err);
    if (st != CP_OK)
        return st;
    bind_text(q, 1, rule);
    rc = sqlite3_step(q);
    if (rc == SQLITE_ROW)
        *seq = sqlite3_column_int64(q, 0);
    else if (rc != SQLITE_DONE)
        st = db_error(l, err, "export position");
    sqlite3_finalize(q);
    return st;
}

cp_status ledger_set_position(ledger *l, const char *rule, int64_t seq, cp_error *err)
{
    sqlite3_stmt *q;
    cp_status st;

    st = prepare(l, "INSERT INTO export_position (rule, seq) VALUES (?1, ?2) "
                    "ON CONFLICT (rule) DO UPDATE SET seq = ?2", &q, err);
    if (st != CP_OK)
        return st;
    bind_text(q, 1, rule);
    sqlite3_bind_int64(q, 2, seq);
    return run(l, q, err);
}

cp_status ledger_job_add(ledger *l, const char *rule, const char *study_uid, int64_t now_us,
                         cp_error *err)
{
    sqlite3_stmt *q;
    cp_status st;

    st = prepare(l, "INSERT INTO export_job (rule, study_uid, state, attempts, next_try, "
                    "created, updated) VALUES (?1, ?2, 'pending', 0, ?3, ?3, ?3) "
                    "ON CONFLICT (rule, study_uid, order_id) DO UPDATE SET state = 'pending', "
                    "attempts = 0, next_try = ?3, updated = ?3", &q, err);
    if (st != CP_OK)
        return st;
    bind_text(q, 1, rule);
    bind_text(q, 2, study_uid);
    sqlite3_bind_int64(q, 3, now_us);
    return run(l, q, err);
}

cp_status ledger_release_add(ledger *l, const char *rule, int64_t order_id,
                             const char *study_uid, int64_t released_us, int64_t due_us,
                             int64_t now_us, bool *added, cp_error *err)
{
    sqlite3_stmt *q;
    cp_status st;

    *added = false;
    st = prepare(l, "INSERT INTO export_job (rule, study_uid, order_id, released, state, "
                    "attempts, next_try, created, updated) "
                    "VALUES (?1, ?2, ?3, ?4, 'pending', 0, ?5, ?6, ?6) "
                    "ON CONFLICT (rule, study_uid, order_id) DO UPDATE SET state = 'pending', "
                    "released = ?4, attempts = 0, last_error = NULL, next_try = ?5, "
                    "updated = ?6 WHERE released != ?4", &q, err);
    if (st != CP_OK)
        return st;
    bind_text(q, 1, rule);
    bind_text(q, 2, study_uid);
    sqlite3_bind_int64(q, 3, order_id);
    sqlite3_bind_int64(q, 4, released_us);
    sqlite3_bind_int64(q, 5, due_us);
    sqlite3_bind_int64(q, 6, now_us);
    st = run(l, q, err);
    if (st == CP_OK)
        *added = sqlite3_changes(l->db) > 0;
    return st;
}

/* Whether the reading orders' table exists yet (the consult service makes it). */
static cp_status orders_exist(ledger *l, bool *exist, cp_error *err)
{
    sqlite3_stmt *q;
    cp_status st;
    int rc;

    *exist = false;
    st = prepare(l, "SELECT 1 FROM sqlite_master WHERE type = 'table' "
                    "AND name = 'reading_order'", &q, err);
    if (st != CP_OK)
        return st;
    rc = sqlite3_step(q);
    if (rc == SQLITE_ROW)
        *exist = true;
    else if (rc != SQLITE_DONE)
        st = db_error(l, err, "reading orders");
    sqlite3_finalize(q);
    return st;
}

cp_status ledger_released_orders(ledger *l, int64_t after_us, int64_t after_id, size_t limit,
                                 ledger_release_fn fn, void *ctx, cp_error *err)
{
    ledger_release *rows = NULL;
    size_t n = 0;
    sqlite3_stmt *q;
    bool exist;
    cp_status st;
    int rc = SQLITE_DONE;

    st = orders_exist(l, &exist, err);
    if (st != CP_OK || !exist)
        return st;
    rows = cp_calloc(limit == 0 ? 1 : limit, sizeof *rows);
    if (rows == NULL)
        return CP_ERR_NOMEM;
    /* 8 is ORDER_RELEASED (consult/order.h), which never changes once written. */
    st = prepare(l, "SELECT id, study_uid, released, requesting_id FROM reading_order "
                    "WHERE state = 8 AND (released > ?1 OR (released = ?1 AND id > ?2)) "
                    "ORDER BY released, id LIMIT ?3", &q, err);
    if (st != CP_OK)
        goto done;
    sqlite3_bind_int64(q, 1, after_us);
    sqlite3_bind_int64(q, 2, after_id);
    sqlite3_bind_int64(q, 3, (sqlite3_int64)limit);
    /* Read them all first: fn writes to the ledger's tables. */
    while (n < limit && (rc = sqlite3_step(q)) == SQLITE_ROW) {
        const unsigned char *uid = sqlite3_column_text(q, 1);

        rows[n].order_id = sqlite3_column_int64(q, 0);
        snprintf(rows[n].study_uid, sizeof rows[n].study_uid, "%s",
                 uid != NULL ? (const char *)uid : "");
        rows[n].released_us = sqlite3_column_int64(q, 2);
        rows[n].institution_id = sqlite3_column_int64(q, 3);
        n++;
    }
    if (n < limit && rc != SQLITE_DONE)
        st = db_error(l, err, "released orders");
    sqlite3_finalize(q);
    for (size_t i = 0; i < n && st == CP_OK; i++)
        st = fn(ctx, &rows[i]);

done:
    cp_free(rows);
    return st;
}

static void read_job(sqlite3_stmt *q, ledger_job *job)
{
    const unsigned char *s;

    memset(job, 0, sizeof *job);
    snprintf(job->rule, sizeof job->rule, "%s", (const char *)sqlite3_column_text(q, 0));
    snprintf(job->study_uid, sizeof job->study_uid, "%s",
             (const char *)sqlite3_column_text(q, 1));
    snprintf(job->state, sizeof job->state, "%s", (const char *)sqlite3_column_text(q, 2));
    job->attempts = sqlite3_column_int64(q, 3);
    s = sqlite3_column_text(q, 4);
    snprintf(job->last_error, sizeof job->last_error, "%s", s != NULL ? (const char *)s : "");
    job->next_try_us = sqlite3_column_int64(q, 5);
    job->order_id = sqlite3_column_int64(q, 6);
    job->released_us = sqlite3_column_int64(q, 7);
}

cp_status ledger_jobs_due(ledger *l, const char *rule, int64_t now_us, size_t limit,
                          ledger_job_fn fn, void *ctx, cp_error *err)
{
    ledger_job *jobs = NULL;
    size_t n = 0;
    sqlite3_stmt *q;
    cp_status st;

    jobs = cp_calloc(limit == 0 ? 1 : limit, sizeof *jobs);
    if (jobs == NULL)
        return CP_ERR_NOMEM;
    st = prepare(l, "SELECT rule, study_uid, state, attempts, last_error, next_try, "
                    "order_id, released FROM export_job "
                    "WHERE rule = ?1 AND state != 'done' AND next_try <= ?2 "
                    "ORDER BY next_try, created LIMIT ?3", &q, err);
    if (st != CP_OK)
        goto done;
    bind_text(q, 1, rule);
    sqlite3_bind_int64(q, 2, now_us);
    sqlite3_bind_int64(q, 3, (sqlite3_int64)limit);
    /* Read them all first: fn writes to the same tables. */
    while (n < limit && sqlite3_step(q) == SQLITE_ROW)
        read_job(q, &jobs[n++]);
    sqlite3_finalize(q);
    for (size_t i = 0; i < n && st == CP_OK; i++)
        st = fn(ctx, &jobs[i]);

done:
    cp_free(jobs);
    return st;
}

cp_status ledger_job_update(ledger *l, const ledger_job *job, int64_t now_us, cp_error *err)
{
    sqlite3_stmt *q;
    cp_status st;

    st = prepare(l, "UPDATE export_job SET state = ?3, attempts = ?4, last_error = ?5, "
                    "next_try = ?6, updated = ?7 WHERE rule = ?1 AND study_uid = ?2 "
                    "AND order_id = ?8", &q, err);
    if (st != CP_OK)
        return st;
    bind_text(q, 1, job->rule);
    bind_text(q, 2, job->study_uid);
    bind_text(q, 3, job->state);
    sqlite3_bind_int64(q, 4, job->attempts);
    bind_text(q, 5, job->last_error[0] != '\0' ? job->last_error : NULL);
    sqlite3_bind_int64(q, 6, job->next_try_us);
    sqlite3_bind_int64(q, 7, now_us);
    sqlite3_bind_int64(q, 8, job->order_id);
    return run(l, q, err);
}

/* --- status ------------------------------------------------------------- */

static json_t *time_json(int64_t us)
{
    char text[32];
    struct tm tm;
    time_t secs = (time_t)(us / 1000000);

    if (us <= 0 || gmtime_r(&secs, &tm) == NULL)
        return json_null();
    strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return json_string(text);
}

static json_t *text_json(sqlite3_stmt *q, int col)
{
    const unsigned char *s = sqlite3_column_text(q, col);

    return s != NULL ? json_string((const char *)s) : json_null();
}

static cp_status status_sources(ledger *l, json_t *list, cp_error *err)
{
    sqlite3_stmt *q;
    cp_status st;
    int rc;

    st = prepare(l,
        "WITH names AS (SELECT source FROM intake_source UNION "
        "               SELECT DISTINCT source FROM intake_ledger) "
        "SELECT n.source, s.state, s.last_error, coalesce(s.last_success, 0), "
        " CASE WHEN s.last_error IS NULL THEN 0 ELSE s.updated END,"
        " (SELECT count(*) FROM intake_ledger WHERE source = n.source AND outcome != 'unpacked'),"
        " (SELECT count(*) FROM intake_ledger WHERE source = n.source AND outcome = 'stored'),"
        " (SELECT count(*) FROM intake_ledger WHERE source = n.source AND outcome = 'duplicate'),"
        " (SELECT count(*) FROM intake_ledger WHERE source = n.source AND outcome = 'failed'),"
        " (SELECT count(*) FROM intake_ledger WHERE source = n.source "
        "  AND outcome IN ('skipped', 'dicomdir')) "
        "FROM names n LEFT JOIN intake_source s ON s.source = n.source ORDER BY n.source",
        &q, err);
    if (st != CP_OK)
        return st;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        json_t *o = json_object();

        if (o == NULL)
            break;
        json_object_set_new(o, "name", text_json(q, 0));
        json_object_set_new(o, "state", sqlite3_column_type(q, 1) == SQLITE_NULL
                            ? json_string("unknown") : text_json(q, 1));
        json_object_set_new(o, "last_error", text_json(q, 2));
        json_object_set_new(o, "last_success", time_json(sqlite3_column_int64(q, 3)));
        json_object_set_new(o, "last_error_time", time_json(sqlite3_column_int64(q, 4)));
        json_object_set_new(o, "seen", json_integer(sqlite3_column_int64(q, 5)));
        json_object_set_new(o, "stored", json_integer(sqlite3_column_int64(q, 6)));
        json_object_set_new(o, "duplicates", json_integer(sqlite3_column_int64(q, 7)));
        json_object_set_new(o, "failed", json_integer(sqlite3_column_int64(q, 8)));
        json_object_set_new(o, "skipped", json_integer(sqlite3_column_int64(q, 9)));
        json_array_append_new(list, o);
    }
    if (rc != SQLITE_DONE)
        st = db_error(l, err, "intake status");
    sqlite3_finalize(q);
    return st;
}

static cp_status status_jobs(ledger *l, const char *rule, json_t *o, cp_error *err)
{
    json_t *jobs = json_array();
    sqlite3_stmt *q;
    cp_status st;
    int rc;

    if (jobs == NULL)
        return CP_ERR_NOMEM;
    json_object_set_new(o, "jobs", jobs);
    st = prepare(l, "SELECT study_uid, state, attempts, last_error, next_try, order_id, "
                    "CASE WHEN last_error IS NULL THEN 0 ELSE updated END FROM export_job "
                    "WHERE rule = ?1 AND state != 'done' ORDER BY next_try LIMIT 100", &q, err);
    if (st != CP_OK)
        return st;
    bind_text(q, 1, rule);
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        json_t *j = json_object();

        if (j == NULL)
            break;
        json_object_set_new(j, "study", text_json(q, 0));
        json_object_set_new(j, "state", text_json(q, 1));
        json_object_set_new(j, "attempts", json_integer(sqlite3_column_int64(q, 2)));
        json_object_set_new(j, "last_error", text_json(q, 3));
        json_object_set_new(j, "next_try", time_json(sqlite3_column_int64(q, 4)));
        json_object_set_new(j, "order", sqlite3_column_int64(q, 5) > 0
                            ? json_integer(sqlite3_column_int64(q, 5)) : json_null());
        json_object_set_new(j, "last_error_time", time_json(sqlite3_column_int64(q, 6)));
        json_array_append_new(jobs, j);
    }
    if (rc != SQLITE_DONE)
        st = db_error(l, err, "export jobs");
    sqlite3_finalize(q);
    return st;
}

static cp_status status_exports(ledger *l, json_t *list, cp_error *err)
{
    sqlite3_stmt *q;
    cp_status st;
    int rc;

    st = prepare(l,
        "WITH names AS (SELECT rule FROM export_position UNION "
        "               SELECT DISTINCT rule FROM export_job) "
        "SELECT n.rule, coalesce(p.seq, 0),"
        " (SELECT count(*) FROM export_job WHERE rule = n.rule AND state = 'pending'),"
        " (SELECT count(*) FROM export_job WHERE rule = n.rule AND state = 'done'),"
        " (SELECT count(*) FROM export_job WHERE rule = n.rule AND state = 'retrying') "
        "FROM names n LEFT JOIN export_position p ON p.rule = n.rule ORDER BY n.rule",
        &q, err);
    if (st != CP_OK)
        return st;
    while (st == CP_OK && (rc = sqlite3_step(q)) == SQLITE_ROW) {
        json_t *o = json_object();
        const char *rule = (const char *)sqlite3_column_text(q, 0);

        if (o == NULL)
            break;
        json_object_set_new(o, "name", json_string(rule));
        json_object_set_new(o, "position", json_integer(sqlite3_column_int64(q, 1)));
        json_object_set_new(o, "pending", json_integer(sqlite3_column_int64(q, 2)));
        json_object_set_new(o, "done", json_integer(sqlite3_column_int64(q, 3)));
        json_object_set_new(o, "retrying", json_integer(sqlite3_column_int64(q, 4)));
        json_array_append_new(list, o);
        st = status_jobs(l, rule, o, err);
    }
    if (st == CP_OK && rc != SQLITE_DONE)
        st = db_error(l, err, "export status");
    sqlite3_finalize(q);
    return st;
}

cp_status ledger_status_json(ledger *l, json_t **out, cp_error *err)
{
    json_t *root = json_object();
    json_t *sources = json_array();
    json_t *exports = json_array();
    cp_status st;

    *out = NULL;
    if (root == NULL || sources == NULL || exports == NULL) {
        json_decref(root);
        json_decref(sources);
        json_decref(exports);
        return CP_ERR_NOMEM;
    }
    json_object_set_new(root, "sources", sources);
    json_object_set_new(root, "exports", exports);
    st = status_sources(l, sources, err);
    if (st == CP_OK)
        st = status_exports(l, exports, err);
    if (st != CP_OK) {
        json_decref(root);
        return st;
    }
    *out = root;
    return CP_OK;
}
