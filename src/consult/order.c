/*
 * order.c - reading orders on SQLite: the table reading_order (one row per
 * order, every field of struct order) and its history order_event, in the
 * index's database file under their own migration list (table
 * consult_schema_version).
 *
 * Not a part of DICOM: an order names a study by its Study Instance UID
 * (PS3.3 C.7.2.1) and the patient by Patient ID and Issuer of Patient ID
 * (PS3.3 C.7.1.1), never by name; what happens to it is the workflow of a
 * reading centre (DESIGN.md, "The reading-order model").
 *
 * One connection per store, under a mutex. Every transition is one
 * transaction: the row is updated only where (id, state, version) still
 * match, and the event is appended in the same commit, so two concurrent
 * changes can never both win and no change is ever without its event.
 * Listings gather rows under the lock and call back after releasing it, so
 * a callback may use the store again.
 */
#include "consult/order.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/limits.h"

/* How long a writer waits for another connection's lock. */
#define ORDER_BUSY_TIMEOUT_MS 5000

/* Rows one listing may gather before calling back. */
#define ORDER_LIST_HARD_MAX 10000

/* Values one IN (...) list of a filter may hold. */
#define ORDER_FILTER_IN_MAX 1000

struct order_store {
    sqlite3 *db;
    pthread_mutex_t lock;
    int64_t (*now_us)(void);
};

static const char *const state_names[] = {
    [ORDER_SUBMITTED] = "submitted", [ORDER_POOLED] = "pooled",
    [ORDER_OFFERED] = "offered",     [ORDER_CLAIMED] = "claimed",
    [ORDER_REPORTED] = "reported",   [ORDER_RETURNED] = "returned",
    [ORDER_APPROVED] = "approved",   [ORDER_RELEASED] = "released",
    [ORDER_CANCELLED] = "cancelled",
};

#define STATE_LAST ORDER_CANCELLED

/*
 * The moves of the model (order.h): the diagram, the withdrawals, and the
 * ways back to the pool (a declined offer, a lapsed or returned claim).
 * A new order may go straight to offered (a wanted doctor) or claimed (the
 * doctor holding the patient's other unread orders).
 */
static const struct {
    order_state from;
    order_state to;
} moves[] = {
    { ORDER_SUBMITTED, ORDER_POOLED },  { ORDER_SUBMITTED, ORDER_OFFERED },
    { ORDER_SUBMITTED, ORDER_CLAIMED }, { ORDER_SUBMITTED, ORDER_CANCELLED },
    { ORDER_POOLED, ORDER_CLAIMED },    { ORDER_POOLED, ORDER_OFFERED },
    { ORDER_POOLED, ORDER_CANCELLED },  { ORDER_OFFERED, ORDER_CLAIMED },
    { ORDER_OFFERED, ORDER_POOLED },    { ORDER_OFFERED, ORDER_CANCELLED },
    { ORDER_CLAIMED, ORDER_POOLED },    { ORDER_CLAIMED, ORDER_REPORTED },
    { ORDER_REPORTED, ORDER_APPROVED }, { ORDER_REPORTED, ORDER_RETURNED },
    { ORDER_RETURNED, ORDER_REPORTED }, { ORDER_APPROVED, ORDER_RELEASED },
};

/* --- schema --------------------------------------------------------------- */

/*
 * Migration n (1-based) is migrations[n - 1]; consult_schema_version holds
 * every n applied. Append only. The partial unique index is what makes a
 * second open order for one study impossible, even between processes.
 */
static const char *const migrations[] = {
    "CREATE TABLE reading_order("
    " id INTEGER PRIMARY KEY,"
    " version INTEGER NOT NULL,"
    " state INTEGER NOT NULL,"
    " priority INTEGER NOT NULL,"
    " study_uid TEXT NOT NULL,"
    " patient_id TEXT NOT NULL,"
    " issuer TEXT NOT NULL,"
    " accession TEXT NOT NULL,"
    " modality TEXT NOT NULL,"
    " body_part TEXT NOT NULL,"
    " clinical_notes TEXT NOT NULL,"
    " weight INTEGER NOT NULL,"
    " requesting_id INTEGER NOT NULL,"
    " requested_by INTEGER NOT NULL,"
    " wanted_doctor_id INTEGER NOT NULL,"
    " reading_id INTEGER NOT NULL,"
    " doctor_id INTEGER NOT NULL,"
    " reviewer_id INTEGER NOT NULL,"
    " created INTEGER NOT NULL,"
    " pooled INTEGER NOT NULL,"
    " deadline INTEGER NOT NULL,"
    " claimed INTEGER NOT NULL,"
    " opened INTEGER NOT NULL,"
    " reported INTEGER NOT NULL,"
    " approved INTEGER NOT NULL,"
    " released INTEGER NOT NULL,"
    " returns INTEGER NOT NULL,"
    " rejections INTEGER NOT NULL);"
    "CREATE INDEX reading_order_state ON reading_order(state);"
    "CREATE INDEX reading_order_study ON reading_order(study_uid);"
    "CREATE INDEX reading_order_doctor ON reading_order(doctor_id);"
    "CREATE INDEX reading_order_requesting ON reading_order(requesting_id);"
    "CREATE INDEX reading_order_patient ON reading_order(patient_id, issuer);"
    "CREATE UNIQUE INDEX reading_order_open_study ON reading_order(study_uid)"
    " WHERE state NOT IN (8, 9);"
    "CREATE TABLE order_event("
    " order_id INTEGER NOT NULL REFERENCES reading_order(id),"
    " seq INTEGER NOT NULL,"
    " time INTEGER NOT NULL,"
    " from_state INTEGER NOT NULL,"
    " to_state INTEGER NOT NULL,"
    " event TEXT NOT NULL,"
    " actor INTEGER NOT NULL,"
    " reason TEXT NOT NULL,"
    " PRIMARY KEY(order_id, seq));",
    /* The cloud film's other second factor: the last four digits, never the number. */
    "ALTER TABLE reading_order ADD COLUMN phone_last4 TEXT NOT NULL DEFAULT '';",
};

#define MIGRATION_COUNT ((int)(sizeof migrations / sizeof migrations[0]))

#define ORDER_COLS "id, version, state, priority, study_uid, patient_id, issuer, " \
                   "accession, modality, body_part, clinical_notes, weight, " \
                   "requesting_id, requested_by, wanted_doctor_id, reading_id, " \
                   "doctor_id, reviewer_id, created, pooled, deadline, claimed, " \
                   "opened, reported, approved, released, returns, rejections, " \
                   "phone_last4"

/* --- names ---------------------------------------------------------------- */

const char *order_state_name(order_state s)
{
    if (s < ORDER_SUBMITTED || s > STATE_LAST)
        return NULL;
    return state_names[s];
}

order_state order_state_parse(const char *name)
{
    if (name == NULL)
        return 0;
    for (int s = ORDER_SUBMITTED; s <= STATE_LAST; s++)
        if (strcmp(name, state_names[s]) == 0)
            return (order_state)s;
    return 0;
}

const char *order_priority_name(order_priority p)
{
    switch (p) {
    case ORDER_ROUTINE:
        return "routine";
    case ORDER_URGENT:
        return "urgent";
    }
    return NULL;
}

int order_priority_parse(const char *name)
{
    if (name == NULL)
        return -1;
    if (strcmp(name, "routine") == 0)
        return ORDER_ROUTINE;
    if (strcmp(name, "urgent") == 0)
        return ORDER_URGENT;
    return -1;
}

bool order_state_open(order_state s)
{
    return s >= ORDER_SUBMITTED && s <= ORDER_APPROVED;
}

static bool move_allowed(order_state from, order_state to)
{
    for (size_t i = 0; i < sizeof moves / sizeof moves[0]; i++)
        if (moves[i].from == from && moves[i].to == to)
            return true;
    return false;
}

/* --- helpers -------------------------------------------------------------- */

static int64_t real_now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t store_now(const order_store *s)
{
    return s->now_us != NULL ? s->now_us() : real_now_us();
}

static void copy_text(char *dst, size_t cap, const char *src)
{
    size_t len = src != NULL ? strnlen(src, cap - 1) : 0;

    if (len > 0)
        memcpy(dst, src, len);
    dst[len] = '\0';
}

static cp_status db_fail(order_store *s, int rc, const char *what, cp_error *err)
{
    int base = rc & 0xff;
    cp_status st = CP_ERR_IO;

    if (base == SQLITE_BUSY || base == SQLITE_LOCKED)
        st = CP_ERR_UNAVAILABLE;
    else if (base == SQLITE_NOMEM)
        st = CP_ERR_NOMEM;
    else if (rc == SQLITE_CONSTRAINT_UNIQUE)
        st = CP_ERR_EXISTS;
    return cp_error_set(err, st, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG, "orders: %s: %s",
                        what, sqlite3_errmsg(s->db));
}

static cp_status prepare(order_store *s, const char *sql, sqlite3_stmt **out,
                         cp_error *err)
{
    int rc = sqlite3_prepare_v2(s->db, sql, -1, out, NULL);

    if (rc != SQLITE_OK)
        return db_fail(s, rc, "prepare", err);
    return CP_OK;
}

static cp_status exec(order_store *s, const char *sql, const char *what, cp_error *err)
{
    int rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL);

    if (rc != SQLITE_OK)
        return db_fail(s, rc, what, err);
    return CP_OK;
}

/* Ends a transaction: commit when st is CP_OK, else roll back and keep st. */
static cp_status tx_end(order_store *s, cp_status st, cp_error *err)
{
    if (st == CP_OK)
        return exec(s, "COMMIT", "commit", err);
    sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    return st;
}

static void bind_text(sqlite3_stmt *stmt, int i, const char *v)
{
    sqlite3_bind_text(stmt, i, v != NULL ? v : "", -1, SQLITE_TRANSIENT);
}

static const char *col_text(sqlite3_stmt *stmt, int i)
{
    const unsigned char *t = sqlite3_column_text(stmt, i);

    return t != NULL ? (const char *)t : "";
}

static void read_order(sqlite3_stmt *st, order *o)
{
    memset(o, 0, sizeof *o);
    o->id = sqlite3_column_int64(st, 0);
    o->version = sqlite3_column_int64(st, 1);
    o->state = (order_state)sqlite3_column_int(st, 2);
    o->priority = sqlite3_column_int(st, 3) == ORDER_URGENT ? ORDER_URGENT : ORDER_ROUTINE;
    copy_text(o->study_uid, sizeof o->study_uid, col_text(st, 4));
    copy_text(o->patient_id, sizeof o->patient_id, col_text(st, 5));
    copy_text(o->issuer, sizeof o->issuer, col_text(st, 6));
    copy_text(o->accession, sizeof o->accession, col_text(st, 7));
    copy_text(o->modality, sizeof o->modality, col_text(st, 8));
    copy_text(o->body_part, sizeof o->body_part, col_text(st, 9));
    copy_text(o->clinical_notes, sizeof o->clinical_notes, col_text(st, 10));
    o->weight = (unsigned)sqlite3_column_int64(st, 11);
    o->requesting_id = sqlite3_column_int64(st, 12);
    o->requested_by = sqlite3_column_int64(st, 13);
    o->wanted_doctor_id = sqlite3_column_int64(st, 14);
    o->reading_id = sqlite3_column_int64(st, 15);
    o->doctor_id = sqlite3_column_int64(st, 16);
    o->reviewer_id = sqlite3_column_int64(st, 17);
    o->created_us = sqlite3_column_int64(st, 18);
    o->pooled_us = sqlite3_column_int64(st, 19);
    o->deadline_us = sqlite3_column_int64(st, 20);
    o->claimed_us = sqlite3_column_int64(st, 21);
    o->opened_us = sqlite3_column_int64(st, 22);
    o->reported_us = sqlite3_column_int64(st, 23);
    o->approved_us = sqlite3_column_int64(st, 24);
    o->released_us = sqlite3_column_int64(st, 25);
    o->returns = (unsigned)sqlite3_column_int64(st, 26);
    o->rejections = (unsigned)sqlite3_column_int64(st, 27);
    copy_text(o->phone_last4, sizeof o->phone_last4, col_text(st, 28));
}

/*
 * Binds every field but id, version and state, from parameter `first` on,
 * in the order of ORDER_COLS.
 */
static void bind_fields(sqlite3_stmt *st, int first, const order *o)
{
    int i = first;

    sqlite3_bind_int(st, i++, (int)o->priority);
    bind_text(st, i++, o->study_uid);
    bind_text(st, i++, o->patient_id);
    bind_text(st, i++, o->issuer);
    bind_text(st, i++, o->accession);
    bind_text(st, i++, o->modality);
    bind_text(st, i++, o->body_part);
    bind_text(st, i++, o->clinical_notes);
    sqlite3_bind_int64(st, i++, (sqlite3_int64)o->weight);
    sqlite3_bind_int64(st, i++, o->requesting_id);
    sqlite3_bind_int64(st, i++, o->requested_by);
    sqlite3_bind_int64(st, i++, o->wanted_doctor_id);
    sqlite3_bind_int64(st, i++, o->reading_id);
    sqlite3_bind_int64(st, i++, o->doctor_id);
    sqlite3_bind_int64(st, i++, o->reviewer_id);
    sqlite3_bind_int64(st, i++, o->created_us);
    sqlite3_bind_int64(st, i++, o->pooled_us);
    sqlite3_bind_int64(st, i++, o->deadline_us);
    sqlite3_bind_int64(st, i++, o->claimed_us);
    sqlite3_bind_int64(st, i++, o->opened_us);
    sqlite3_bind_int64(st, i++, o->reported_us);
    sqlite3_bind_int64(st, i++, o->approved_us);
    sqlite3_bind_int64(st, i++, o->released_us);
    sqlite3_bind_int64(st, i++, (sqlite3_int64)o->returns);
    sqlite3_bind_int64(st, i++, (sqlite3_int64)o->rejections);
    bind_text(st, i, o->phone_last4);
}

static bool valid_text(const char *s, size_t max)
{
    return strnlen(s, max + 1) <= max;
}

static cp_status check_order(const order *o, cp_error *err)
{
    if (o->study_uid[0] == '\0' || !valid_text(o->study_uid, INDEX_UID_MAX))
        return cp_error_set(err, CP_ERR_INVALID, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "order: no or bad study UID");
    if (!valid_text(o->patient_id, INDEX_LO_MAX) || !valid_text(o->issuer, INDEX_LO_MAX) ||
        !valid_text(o->accession, INDEX_SH_MAX) || !valid_text(o->modality, INDEX_CS_MAX) ||
        !valid_text(o->body_part, INDEX_CS_MAX) ||
        !valid_text(o->clinical_notes, ORDER_NOTES_MAX))
        return cp_error_set(err, CP_ERR_LIMIT, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "order: a text field is too long");
    if (o->priority != ORDER_ROUTINE && o->priority != ORDER_URGENT)
        return cp_error_set(err, CP_ERR_INVALID, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "order: unknown priority");
    if (o->phone_last4[0] != '\0' && (strnlen(o->phone_last4, sizeof o->phone_last4) != 4 ||
                                      strspn(o->phone_last4, "0123456789") != 4))
        return cp_error_set(err, CP_ERR_INVALID, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "order: phone_last4 is four digits or none");
    return CP_OK;
}

/* --- opening -------------------------------------------------------------- */

static cp_status migrate(order_store *s, cp_error *err)
{
    sqlite3_stmt *st = NULL;
    int have = 0;
    cp_status rs;

    rs = exec(s, "BEGIN IMMEDIATE", "begin", err);
    if (rs != CP_OK)
        return rs;
    rs = exec(s, "CREATE TABLE IF NOT EXISTS consult_schema_version("
                 " version INTEGER PRIMARY KEY, applied INTEGER NOT NULL)",
              "create consult_schema_version", err);
    if (rs == CP_OK)
        rs = prepare(s, "SELECT coalesce(max(version), 0) FROM consult_schema_version",
                     &st, err);
    if (rs == CP_OK) {
        if (sqlite3_step(st) == SQLITE_ROW)
            have = sqlite3_column_int(st, 0);
        sqlite3_finalize(st);
    }

    for (int n = have + 1; rs == CP_OK && n <= MIGRATION_COUNT; n++) {
        char sql[128];

        rs = exec(s, migrations[n - 1], "migrate", err);
        snprintf(sql, sizeof sql, "INSERT INTO consult_schema_version VALUES(%d, %lld)", n,
                 (long long)real_now_us());
        if (rs == CP_OK)
            rs = exec(s, sql, "record migration", err);
    }
    return tx_end(s, rs, err);
}

cp_status order_store_open_sqlite(const char *path, order_store **out, cp_error *err)
{
    order_store *s;
    cp_status st;
    int rc;

    if (path == NULL || out == NULL)
        return cp_error_set(err, CP_ERR_INVALID, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "orders: no database path");
    *out = NULL;
    s = cp_calloc(1, sizeof *s);
    if (s == NULL)
        return cp_error_set(err, CP_ERR_NOMEM, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "orders");
    if (pthread_mutex_init(&s->lock, NULL) != 0) {
        cp_free(s);
        return cp_error_set(err, CP_ERR_NOMEM, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "orders lock");
    }

    rc = sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                         SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        st = cp_error_set(err, CP_ERR_IO, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                          "orders: open %s: %s", path,
                          s->db != NULL ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
        goto fail;
    }
    sqlite3_extended_result_codes(s->db, 1);
    sqlite3_busy_timeout(s->db, ORDER_BUSY_TIMEOUT_MS);

    /* A claim or a report acknowledged to a doctor must survive a crash. */
    st = exec(s, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;", "configure", err);
    if (st == CP_OK)
        st = migrate(s, err);
    if (st != CP_OK)
        goto fail;
    *out = s;
    return CP_OK;

fail:
    order_store_close(s);
    return st;
}

void order_store_close(order_store *s)
{
    if (s == NULL)
        return;
    sqlite3_close_v2(s->db);
    pthread_mutex_destroy(&s->lock);
    cp_free(s);
}

void order_store_set_clock(order_store *s, int64_t (*now_us)(void))
{
    pthread_mutex_lock(&s->lock);
    s->now_us = now_us;
    pthread_mutex_unlock(&s->lock);
}

/* --- writing -------------------------------------------------------------- */

/* Appends the next event of an order; inside the caller's transaction. */
static cp_status event_append(order_store *s, int64_t id, int64_t time_us, order_state from,
                              order_state to, const char *event, int64_t actor,
                              const char *reason, cp_error *err)
{
    sqlite3_stmt *st = NULL;
    cp_status rs;
    int rc;

    rs = prepare(s, "INSERT INTO order_event(order_id, seq, time, from_state, to_state,"
                    " event, actor, reason) VALUES(?1, (SELECT coalesce(max(seq), 0) + 1"
                    " FROM order_event WHERE order_id = ?1), ?2, ?3, ?4, ?5, ?6, ?7)",
                 &st, err);
    if (rs != CP_OK)
        return rs;
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int64(st, 2, time_us);
    sqlite3_bind_int(st, 3, (int)from);
    sqlite3_bind_int(st, 4, (int)to);
    bind_text(st, 5, event);
    sqlite3_bind_int64(st, 6, actor);
    bind_text(st, 7, reason);
    rc = sqlite3_step(st);
    if (rc != SQLITE_DONE)
        rs = db_fail(s, rc, "append event", err);
    sqlite3_finalize(st);
    return rs;
}

static cp_status check_event(const char *event, const char *reason, cp_error *err)
{
    if (event == NULL || event[0] == '\0' ||
        strlen(event) >= sizeof(((order_event *)0)->event))
        return cp_error_set(err, CP_ERR_INVALID, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "order: bad event name");
    if (reason != NULL && !valid_text(reason, ORDER_REASON_MAX))
        return cp_error_set(err, CP_ERR_LIMIT, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "order: reason longer than %d bytes", ORDER_REASON_MAX);
    return CP_OK;
}

cp_status order_create(order_store *s, order *o, int64_t actor_id, cp_error *err)
{
    sqlite3_stmt *st = NULL;
    int64_t now;
    cp_status rs;
    int rc;

    if (s == NULL || o == NULL)
        return CP_ERR_INVALID;
    rs = check_order(o, err);
    if (rs != CP_OK)
        return rs;

    pthread_mutex_lock(&s->lock);
    now = store_now(s);
    rs = exec(s, "BEGIN IMMEDIATE", "begin", err);
    if (rs != CP_OK)
        goto done;
    rs = prepare(s, "INSERT INTO reading_order(" ORDER_COLS ") VALUES(NULL, 1, ?,"
                    " ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?,"
                    " ?, ?)",
                 &st, err);
    if (rs == CP_OK) {
        order tmp = *o;

        tmp.created_us = o->created_us > 0 ? o->created_us : now;
        sqlite3_bind_int(st, 1, (int)ORDER_SUBMITTED);
        bind_fields(st, 2, &tmp);
        rc = sqlite3_step(st);
        if (rc == SQLITE_CONSTRAINT_UNIQUE)
            rs = cp_error_set(err, CP_ERR_EXISTS, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                              "an open order for this study exists already");
        else if (rc != SQLITE_DONE)
            rs = db_fail(s, rc, "create order", err);
        sqlite3_finalize(st);
        if (rs == CP_OK) {
            o->id = sqlite3_last_insert_rowid(s->db);
            o->version = 1;
            o->state = ORDER_SUBMITTED;
            o->created_us = tmp.created_us;
        }
    }
    if (rs == CP_OK)
        rs = event_append(s, o->id, now, 0, ORDER_SUBMITTED, "submitted", actor_id, "", err);
    rs = tx_end(s, rs, err);

done:
    pthread_mutex_unlock(&s->lock);
    return rs;
}

static cp_status get_locked(order_store *s, int64_t id, order *out, cp_error *err)
{
    sqlite3_stmt *st = NULL;
    cp_status rs;
    int rc;

    rs = prepare(s, "SELECT " ORDER_COLS " FROM reading_order WHERE id = ?", &st, err);
    if (rs != CP_OK)
        return rs;
    sqlite3_bind_int64(st, 1, id);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        read_order(st, out);
    else if (rc == SQLITE_DONE)
        rs = cp_error_set(err, CP_ERR_NOT_FOUND, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                          "order %lld not found", (long long)id);
    else
        rs = db_fail(s, rc, "read order", err);
    sqlite3_finalize(st);
    return rs;
}

cp_status order_get(order_store *s, int64_t id, order *out, cp_error *err)
{
    cp_status rs;

    if (s == NULL || out == NULL)
        return CP_ERR_INVALID;
    pthread_mutex_lock(&s->lock);
    rs = get_locked(s, id, out, err);
    pthread_mutex_unlock(&s->lock);
    return rs;
}

cp_status order_transition(order_store *s, order *o, order_state from, const char *event,
                           int64_t actor_id, const char *reason, cp_error *err)
{
    sqlite3_stmt *st = NULL;
    cp_status rs;
    int rc;

    if (s == NULL || o == NULL)
        return CP_ERR_INVALID;
    if (!move_allowed(from, o->state))
        return cp_error_set(err, CP_ERR_INVALID, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "order: no move from %s to %s",
                            order_state_name(from) ? order_state_name(from) : "?",
                            order_state_name(o->state) ? order_state_name(o->state) : "?");
    rs = check_event(event, reason, err);
    if (rs == CP_OK)
        rs = check_order(o, err);
    if (rs != CP_OK)
        return rs;

    pthread_mutex_lock(&s->lock);
    rs = exec(s, "BEGIN IMMEDIATE", "begin", err);
    if (rs != CP_OK)
        goto done;
    rs = prepare(s, "UPDATE reading_order SET version = version + 1, state = ?,"
                    " priority = ?, study_uid = ?, patient_id = ?, issuer = ?, accession = ?,"
                    " modality = ?, body_part = ?, clinical_notes = ?, weight = ?,"
                    " requesting_id = ?, requested_by = ?, wanted_doctor_id = ?,"
                    " reading_id = ?, doctor_id = ?, reviewer_id = ?, created = ?, pooled = ?,"
                    " deadline = ?, claimed = ?, opened = ?, reported = ?, approved = ?,"
                    " released = ?, returns = ?, rejections = ?, phone_last4 = ?"
                    " WHERE id = ? AND state = ? AND version = ?",
                 &st, err);
    if (rs == CP_OK) {
        sqlite3_bind_int(st, 1, (int)o->state);
        bind_fields(st, 2, o);
        sqlite3_bind_int64(st, 28, o->id);
        sqlite3_bind_int(st, 29, (int)from);
        sqlite3_bind_int64(st, 30, o->version);
        rc = sqlite3_step(st);
        if (rc == SQLITE_CONSTRAINT_UNIQUE)
            rs = cp_error_set(err, CP_ERR_EXISTS, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                              "an open order for this study exists already");
        else if (rc != SQLITE_DONE)
            rs = db_fail(s, rc, "update order", err);
        else if (sqlite3_changes(s->db) != 1)
            rs = cp_error_set(err, CP_ERR_AGAIN, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                              "order %lld moved meanwhile", (long long)o->id);
        sqlite3_finalize(st);
    }
    if (rs == CP_OK)
        rs = event_append(s, o->id, store_now(s), from, o->state, event, actor_id, reason,
                          err);
    rs = tx_end(s, rs, err);
    if (rs == CP_OK)
        o->version++;

done:
    pthread_mutex_unlock(&s->lock);
    return rs;
}

cp_status order_note(order_store *s, int64_t id, const char *event, int64_t actor_id,
                     const char *reason, cp_error *err)
{
    order cur;
    cp_status rs;

    if (s == NULL)
        return CP_ERR_INVALID;
    rs = check_event(event, reason, err);
    if (rs != CP_OK)
        return rs;

    pthread_mutex_lock(&s->lock);
    rs = exec(s, "BEGIN IMMEDIATE", "begin", err);
    if (rs != CP_OK)
        goto done;
    rs = get_locked(s, id, &cur, err);
    if (rs == CP_OK)
        rs = event_append(s, id, store_now(s), cur.state, cur.state, event, actor_id, reason,
                          err);
    rs = tx_end(s, rs, err);

done:
    pthread_mutex_unlock(&s->lock);
    return rs;
}

/* --- reading -------------------------------------------------------------- */

static cp_status append_in(cp_buf *sql, const char *column, size_t count)
{
    cp_status st = cp_buf_appendf(sql, " AND %s IN (", column);

    for (size_t i = 0; st == CP_OK && i < count; i++)
        st = cp_buf_append_str(sql, i == 0 ? "?" : ",?");
    if (st == CP_OK)
        st = cp_buf_append_str(sql, ")");
    return st;
}

static cp_status filter_sql(const order_filter *f, cp_buf *sql)
{
    cp_status st = cp_buf_append_str(sql, "SELECT " ORDER_COLS " FROM reading_order"
                                          " WHERE id > ?");

    if (st == CP_OK && f->states != NULL)
        st = append_in(sql, "state", f->state_count);
    if (st == CP_OK && f->requesting != NULL)
        st = append_in(sql, "requesting_id", f->requesting_count);
    if (st == CP_OK && f->doctor_id != 0)
        st = cp_buf_append_str(sql, " AND doctor_id = ?");
    if (st == CP_OK && f->reviewer_id != 0)
        st = cp_buf_append_str(sql, " AND reviewer_id = ?");
    if (st == CP_OK && f->study_uid != NULL)
        st = cp_buf_append_str(sql, " AND study_uid = ?");
    if (st == CP_OK && f->patient_id != NULL)
        st = cp_buf_append_str(sql, " AND patient_id = ?");
    if (st == CP_OK && f->from_us != 0)
        st = cp_buf_append_str(sql, " AND created >= ?");
    if (st == CP_OK && f->to_us != 0)
        st = cp_buf_append_str(sql, " AND created < ?");
    if (st == CP_OK)
        st = cp_buf_append_str(sql, " ORDER BY id LIMIT ?");
    return st;
}

static void filter_bind(sqlite3_stmt *st, const order_filter *f, size_t limit)
{
    int i = 1;

    sqlite3_bind_int64(st, i++, f->after_id);
    for (size_t k = 0; f->states != NULL && k < f->state_count; k++)
        sqlite3_bind_int(st, i++, (int)f->states[k]);
    for (size_t k = 0; f->requesting != NULL && k < f->requesting_count; k++)
        sqlite3_bind_int64(st, i++, f->requesting[k]);
    if (f->doctor_id != 0)
        sqlite3_bind_int64(st, i++, f->doctor_id);
    if (f->reviewer_id != 0)
        sqlite3_bind_int64(st, i++, f->reviewer_id);
    if (f->study_uid != NULL)
        bind_text(st, i++, f->study_uid);
    if (f->patient_id != NULL)
        bind_text(st, i++, f->patient_id);
    if (f->from_us != 0)
        sqlite3_bind_int64(st, i++, f->from_us);
    if (f->to_us != 0)
        sqlite3_bind_int64(st, i++, f->to_us);
    sqlite3_bind_int64(st, i, (sqlite3_int64)limit);
}

cp_status order_list(order_store *s, const order_filter *f, order_fn fn, void *ctx,
                     cp_error *err)
{
    static const order_filter none = { 0 };
    cp_buf sql = CP_BUF_INIT;
    sqlite3_stmt *st = NULL;
    order *rows = NULL;
    size_t count = 0, cap = 0, limit;
    cp_status rs;
    int rc;

    if (s == NULL || fn == NULL)
        return CP_ERR_INVALID;
    if (f == NULL)
        f = &none;
    if ((f->states != NULL && f->state_count > ORDER_FILTER_IN_MAX) ||
        (f->requesting != NULL && f->requesting_count > ORDER_FILTER_IN_MAX))
        return cp_error_set(err, CP_ERR_LIMIT, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "order filter: more than %d values", ORDER_FILTER_IN_MAX);
    limit = f->limit != 0 ? f->limit : ORDER_LIST_DEFAULT;
    if (limit > ORDER_LIST_HARD_MAX)
        limit = ORDER_LIST_HARD_MAX;
    rs = filter_sql(f, &sql);
    if (rs != CP_OK)
        return rs;

    pthread_mutex_lock(&s->lock);
    rs = prepare(s, (const char *)sql.data, &st, err);
    if (rs == CP_OK) {
        filter_bind(st, f, limit);
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            rs = cp_array_grow(&rows, &cap, count, sizeof *rows, 16, ORDER_LIST_HARD_MAX);
            if (rs != CP_OK)
                break;
            read_order(st, &rows[count++]);
        }
        if (rs == CP_OK && rc != SQLITE_DONE)
            rs = db_fail(s, rc, "list orders", err);
        sqlite3_finalize(st);
    }
    pthread_mutex_unlock(&s->lock);

    for (size_t i = 0; rs == CP_OK && i < count; i++)
        rs = fn(ctx, &rows[i]);
    cp_free(rows);
    cp_buf_free(&sql);
    return rs;
}

cp_status order_history(order_store *s, int64_t id, order_event_fn fn, void *ctx,
                        cp_error *err)
{
    sqlite3_stmt *st = NULL;
    order_event *rows = NULL;
    size_t count = 0, cap = 0;
    cp_status rs;
    int rc;

    if (s == NULL || fn == NULL)
        return CP_ERR_INVALID;

    pthread_mutex_lock(&s->lock);
    rs = prepare(s, "SELECT order_id, seq, time, from_state, to_state, event, actor, reason"
                    " FROM order_event WHERE order_id = ? ORDER BY seq", &st, err);
    if (rs == CP_OK) {
        sqlite3_bind_int64(st, 1, id);
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            order_event *e;

            rs = cp_array_grow(&rows, &cap, count, sizeof *rows, 16, ORDER_LIST_HARD_MAX);
            if (rs != CP_OK)
                break;
            e = &rows[count++];
            memset(e, 0, sizeof *e);
            e->order_id = sqlite3_column_int64(st, 0);
            e->seq = sqlite3_column_int64(st, 1);
            e->time_us = sqlite3_column_int64(st, 2);
            e->from = (order_state)sqlite3_column_int(st, 3);
            e->to = (order_state)sqlite3_column_int(st, 4);
            copy_text(e->event, sizeof e->event, col_text(st, 5));
            e->actor_id = sqlite3_column_int64(st, 6);
            copy_text(e->reason, sizeof e->reason, col_text(st, 7));
        }
        if (rs == CP_OK && rc != SQLITE_DONE)
            rs = db_fail(s, rc, "order history", err);
        sqlite3_finalize(st);
    }
    pthread_mutex_unlock(&s->lock);

    for (size_t i = 0; rs == CP_OK && i < count; i++)
        rs = fn(ctx, &rows[i]);
    cp_free(rows);
    return rs;
}
