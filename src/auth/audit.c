/*
 * audit.c - the audit trail of audit.h, kept in the index database file:
 * who looked at or changed what, in the terms of the IHE ATNA audit
 * messages (DICOM PS3.15 Annex A.5, RFC 3881 codes), hash-chained so that
 * a changed, removed or inserted record is found.
 *
 * Tables (migrations below, version in audit_schema_version):
 *
 *   audit_record  seq | time_us | event | action | outcome | type | user_id
 *                 | actor | actor_roles | actor_institution_id | peer
 *                 | session_id | object_kind | object_id | patient_id
 *                 | institution_id | detail | prev_hash | hash
 *   audit_head    id = 1 | seq | hash           (the newest record)
 *
 * Triggers refuse UPDATE and DELETE of audit_record and DELETE of the
 * head; they stop mistakes, not someone who owns the file, which is what
 * the chain is for:
 *
 *   hash(n) = BLAKE2b-256(hash(n - 1) || canonical(record n))
 *   hash(0) = 32 zero bytes
 *
 * canonical(record) is the domain string "cloudpacs.audit.v1" and then
 * every field in the order of struct audit_record, each integer as 8 bytes
 * little-endian (action and outcome as 4), each text as a 4-byte
 * little-endian length and its bytes; the event is its stable name, not
 * the enum value, so that the list may grow. Seq numbers are consecutive:
 * the writer reads the head and appends head.seq + 1, ... in the same
 * transaction that moves the head, so several processes may append.
 *
 * audit_write puts a cleaned copy on a bounded ring; one writer thread per
 * log takes up to AUDIT_BATCH_MAX records after AUDIT_FLUSH_MS (or at once
 * for a flush, a full batch or close) and commits them in one transaction.
 * A failed commit is logged and retried with back-off; only audit_close
 * gives up, after AUDIT_CLOSE_RETRIES, and logs what it dropped.
 * audit_query and audit_verify read through a second connection, so a
 * long query never holds up the writer.
 */
#include "auth/audit.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <sodium.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/alloc.h"
#include "core/limits.h"
#include "core/log.h"

#define AUDIT_DOMAIN "cloudpacs.audit.v1"
#define AUDIT_LOCAL_SCHEME "99CLOUDPACS"

/* Size of the longest text field (detail), the buffer text is cleaned into. */
#define AUDIT_TEXT_MAX sizeof(((audit_record *)0)->detail)

struct audit_log {
    sqlite3 *wdb;                       /* the writer thread's connection */
    sqlite3 *rdb;                       /* queries and verify, under rlock */
    pthread_mutex_t rlock;

    pthread_mutex_t lock;               /* guards everything below */
    pthread_cond_t work;                /* to the writer: records, a flush, stop */
    pthread_cond_t room;                /* to audit_write: the ring has room */
    pthread_cond_t committed;           /* to audit_flush: done or failures moved */
    audit_record *ring;                 /* AUDIT_QUEUE_MAX records */
    size_t ring_head;
    size_t ring_count;
    uint64_t queued;                    /* records ever queued: the tickets */
    uint64_t done;                      /* records committed or given up */
    uint64_t flush_target;              /* the highest ticket a flusher waits for */
    uint64_t failures;                  /* failed commits so far */
    char last_error[160];
    bool stopping;

    pthread_t thread;
    audit_record *batch;                /* AUDIT_BATCH_MAX, the writer's own */
};

/* --- events ------------------------------------------------------------------ */

typedef struct event_info {
    const char *name;
    const char *code;
    const char *display;
} event_info;

static const event_info events[AUDIT_EVENT_COUNT] = {
    [AUDIT_EVENT_NONE] = { "", "", "" },
#define AUDIT_EVENT_INFO(id, name, code, display) [id] = { name, code, display },
    AUDIT_EVENT_LIST(AUDIT_EVENT_INFO)
#undef AUDIT_EVENT_INFO
};

static const event_info *event_get(audit_event e)
{
    if ((int)e <= AUDIT_EVENT_NONE || (int)e >= AUDIT_EVENT_COUNT)
        return &events[AUDIT_EVENT_NONE];
    return &events[e];
}

const char *audit_event_name(audit_event e)
{
    return event_get(e)->name;
}

const char *audit_event_code(audit_event e)
{
    return event_get(e)->code;
}

const char *audit_event_display(audit_event e)
{
    return event_get(e)->display;
}

audit_event audit_event_parse(const char *name)
{
    if (name == NULL || name[0] == '\0')
        return AUDIT_EVENT_NONE;
    for (int e = AUDIT_EVENT_NONE + 1; e < AUDIT_EVENT_COUNT; e++)
        if (strcmp(events[e].name, name) == 0)
            return (audit_event)e;
    return AUDIT_EVENT_NONE;
}

static bool action_valid(int action)
{
    return action == AUDIT_CREATE || action == AUDIT_READ || action == AUDIT_UPDATE ||
           action == AUDIT_DELETE || action == AUDIT_EXECUTE;
}

static bool outcome_valid(int outcome)
{
    return outcome == AUDIT_SUCCESS || outcome == AUDIT_MINOR_FAILURE ||
           outcome == AUDIT_SERIOUS_FAILURE || outcome == AUDIT_MAJOR_FAILURE;
}

/* --- text cleaning ----------------------------------------------------------- */

/* Bytes of the well-formed UTF-8 character at s (n bytes left), 0 if none. */
static size_t utf8_char_len(const unsigned char *s, size_t n)
{
    unsigned char lo = 0x80, hi = 0xBF;
    size_t len;

    if (s[0] < 0x80)
        return 1;
    if (s[0] >= 0xC2 && s[0] <= 0xDF) {
        len = 2;
    } else if (s[0] >= 0xE0 && s[0] <= 0xEF) {
        len = 3;
        lo = s[0] == 0xE0 ? 0xA0 : 0x80;
        hi = s[0] == 0xED ? 0x9F : 0xBF;
    } else if (s[0] >= 0xF0 && s[0] <= 0xF4) {
        len = 4;
        lo = s[0] == 0xF0 ? 0x90 : 0x80;
        hi = s[0] == 0xF4 ? 0x8F : 0xBF;
    } else {
        return 0;
    }
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xBF)
            return 0;
    return len;
}

/*
 * Copies a text field of `size` bytes (not always NUL-terminated: a caller
 * may fill it to the last byte) into dst of the same size: cut to size - 1
 * bytes on a character boundary, C0 and C1 control characters replaced by
 * spaces (they would let a value fake a line of a text export), bytes that
 * are not UTF-8 by '?' (so that every record can be written as JSON).
 */
static void clean_text(char *dst, const char *src, size_t size)
{
    const unsigned char *s = (const unsigned char *)src;
    size_t len = strnlen(src, size), i = 0, o = 0;

    while (i < len) {
        size_t n = utf8_char_len(s + i, len - i);

        if (n == 0 || (n == 1 && (s[i] < 0x20 || s[i] == 0x7F)) ||
            (n == 2 && s[i] == 0xC2 && s[i + 1] < 0xA0)) {
            if (o + 1 > size - 1)
                break;
            dst[o++] = n == 0 ? '?' : ' ';
            i += n == 0 ? 1 : n;
            continue;
        }
        if (o + n > size - 1)
            break;
        memcpy(dst + o, s + i, n);
        o += n;
        i += n;
    }
    dst[o] = '\0';
}

#define CLEAN(dst, src, field) clean_text((dst)->field, (src)->field, sizeof (dst)->field)

static void clean_record(audit_record *dst, const audit_record *src)
{
    memset(dst, 0, sizeof *dst);
    dst->time_us = src->time_us;
    dst->event = src->event;
    dst->action = src->action;
    dst->outcome = src->outcome;
    dst->user_id = src->user_id;
    dst->actor_institution_id = src->actor_institution_id;
    dst->institution_id = src->institution_id;
    CLEAN(dst, src, type);
    CLEAN(dst, src, actor);
    CLEAN(dst, src, actor_roles);
    CLEAN(dst, src, peer);
    CLEAN(dst, src, session_id);
    CLEAN(dst, src, object_kind);
    CLEAN(dst, src, object_id);
    CLEAN(dst, src, patient_id);
    CLEAN(dst, src, detail);
}

static int64_t now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* --- the chain ---------------------------------------------------------------- */

static void hash_u64(crypto_generichash_state *h, uint64_t v, size_t width)
{
    uint8_t b[8];

    for (size_t i = 0; i < width; i++)
        b[i] = (uint8_t)(v >> (8 * i));
    crypto_generichash_update(h, b, width);
}

static void hash_text(crypto_generichash_state *h, const char *s)
{
    size_t n = strlen(s);

    hash_u64(h, n, 4);
    crypto_generichash_update(h, (const unsigned char *)s, n);
}

/*
 * hash = BLAKE2b-256(prev || canonical(r)); event_name is passed apart so
 * that audit_verify hashes the stored name, whatever it is.
 */
static void record_hash(const uint8_t prev[AUDIT_HASH_SIZE], const audit_record *r,
                        const char *event_name, uint8_t out[AUDIT_HASH_SIZE])
{
    crypto_generichash_state h;

    crypto_generichash_init(&h, NULL, 0, AUDIT_HASH_SIZE);
    crypto_generichash_update(&h, prev, AUDIT_HASH_SIZE);
    hash_text(&h, AUDIT_DOMAIN);
    hash_u64(&h, (uint64_t)r->seq, 8);
    hash_u64(&h, (uint64_t)r->time_us, 8);
    hash_text(&h, event_name);
    hash_u64(&h, (uint32_t)r->action, 4);
    hash_u64(&h, (uint32_t)r->outcome, 4);
    hash_text(&h, r->type);
    hash_u64(&h, (uint64_t)r->user_id, 8);
    hash_text(&h, r->actor);
    hash_text(&h, r->actor_roles);
    hash_u64(&h, (uint64_t)r->actor_institution_id, 8);
    hash_text(&h, r->peer);
    hash_text(&h, r->session_id);
    hash_text(&h, r->object_kind);
    hash_text(&h, r->object_id);
    hash_text(&h, r->patient_id);
    hash_u64(&h, (uint64_t)r->institution_id, 8);
    hash_text(&h, r->detail);
    crypto_generichash_final(&h, out, AUDIT_HASH_SIZE);
}

/* --- SQLite -------------------------------------------------------------------- */

/*
 * Migration n (1-based) is migrations[n - 1]; never edit an applied one,
 * append another.
 */
static const char *const migrations[] = {
    "CREATE TABLE audit_record("
    " seq INTEGER PRIMARY KEY, time_us INTEGER NOT NULL, event TEXT NOT NULL,"
    " action TEXT NOT NULL, outcome INTEGER NOT NULL, type TEXT NOT NULL,"
    " user_id INTEGER NOT NULL, actor TEXT NOT NULL, actor_roles TEXT NOT NULL,"
    " actor_institution_id INTEGER NOT NULL, peer TEXT NOT NULL,"
    " session_id TEXT NOT NULL, object_kind TEXT NOT NULL, object_id TEXT NOT NULL,"
    " patient_id TEXT NOT NULL, institution_id INTEGER NOT NULL,"
    " detail TEXT NOT NULL, prev_hash BLOB NOT NULL, hash BLOB NOT NULL);"
    "CREATE INDEX audit_record_time ON audit_record(time_us);"
    "CREATE INDEX audit_record_user ON audit_record(user_id);"
    "CREATE INDEX audit_record_actor ON audit_record(actor);"
    "CREATE INDEX audit_record_patient ON audit_record(patient_id);"
    "CREATE INDEX audit_record_object ON audit_record(object_id);"
    "CREATE INDEX audit_record_event ON audit_record(event);"
    "CREATE TRIGGER audit_record_no_update BEFORE UPDATE ON audit_record"
    " BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;"
    "CREATE TRIGGER audit_record_no_delete BEFORE DELETE ON audit_record"
    " BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;"
    "CREATE TABLE audit_head(id INTEGER PRIMARY KEY CHECK (id = 1),"
    " seq INTEGER NOT NULL, hash BLOB NOT NULL);"
    "INSERT INTO audit_head VALUES(1, 0, zeroblob(32));"
    "CREATE TRIGGER audit_head_no_delete BEFORE DELETE ON audit_head"
    " BEGIN SELECT RAISE(ABORT, 'the audit head is kept'); END;",
};

#define MIGRATION_COUNT ((int)(sizeof migrations / sizeof migrations[0]))

/* The columns of audit_record in the order load_row and bind_row use. */
#define AUDIT_COLUMNS                                                               \
    "seq, time_us, event, action, outcome, type, user_id, actor, actor_roles, "     \
    "actor_institution_id, peer, session_id, object_kind, object_id, patient_id, " \
    "institution_id, detail, prev_hash, hash"

static cp_status db_fail(sqlite3 *db, cp_error *err, const char *what)
{
    return cp_error_set(err, CP_ERR_IO, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                        "audit: %s: %s", what, db != NULL ? sqlite3_errmsg(db) : "no memory");
}

static cp_status db_exec(sqlite3 *db, const char *sql, cp_error *err, const char *what)
{
    if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
        return db_fail(db, err, what);
    return CP_OK;
}

static cp_status db_open(const char *path, bool reader, sqlite3 **out, cp_error *err)
{
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX;
    sqlite3 *db = NULL;
    cp_status st;

    if (!reader)
        flags |= SQLITE_OPEN_CREATE;
    if (sqlite3_open_v2(path, &db, flags, NULL) != SQLITE_OK) {
        st = db_fail(db, err, path);
        goto fail;
    }
    sqlite3_busy_timeout(db, AUDIT_BUSY_TIMEOUT_MS);

    /* FULL: a committed audit record must survive a power cut. */
    st = db_exec(db, reader ? "PRAGMA query_only=1" : "PRAGMA synchronous=FULL", err,
                 "pragma");
    if (st == CP_OK && !reader)
        st = db_exec(db, "PRAGMA journal_mode=WAL", err, "journal_mode");
    if (st != CP_OK)
        goto fail;
    *out = db;
    return CP_OK;

fail:
    sqlite3_close(db);
    return st;
}

static cp_status db_version(sqlite3 *db, int *version, cp_error *err)
{
    sqlite3_stmt *s = NULL;
    int rc;

    if (sqlite3_prepare_v2(db, "SELECT coalesce(max(version), 0) FROM audit_schema_version",
                           -1, &s, NULL) != SQLITE_OK)
        return db_fail(db, err, "read schema version");
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        *version = sqlite3_column_int(s, 0);
    sqlite3_finalize(s);
    if (rc != SQLITE_ROW)
        return db_fail(db, err, "read schema version");
    return CP_OK;
}

/*
 * Each missing migration in an IMMEDIATE transaction of its own, the
 * version read again inside it, so that two processes opening the file at
 * once apply each migration once.
 */
static cp_status db_migrate(sqlite3 *db, cp_error *err)
{
    char insert[96];
    int version = 0;
    cp_status st;

    st = db_exec(db, "CREATE TABLE IF NOT EXISTS audit_schema_version("
                     "version INTEGER NOT NULL)", err, "create audit_schema_version");
    if (st != CP_OK)
        return st;

    for (int next = 1; next <= MIGRATION_COUNT; next++) {
        if ((st = db_exec(db, "BEGIN IMMEDIATE", err, "begin")) != CP_OK)
            return st;
        st = db_version(db, &version, err);
        if (st == CP_OK && version > MIGRATION_COUNT)
            st = cp_error_set(err, CP_ERR_UNSUPPORTED, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                              "audit schema %d is newer than this build (%d)", version,
                              MIGRATION_COUNT);
        if (st == CP_OK && version < next) {
            snprintf(insert, sizeof insert, "INSERT INTO audit_schema_version VALUES(%d)",
                     next);
            st = db_exec(db, migrations[next - 1], err, "migrate");
            if (st == CP_OK)
                st = db_exec(db, insert, err, "migrate");
        }
        if (st == CP_OK)
            st = db_exec(db, "COMMIT", err, "commit");
        if (st != CP_OK) {
            sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
            return st;
        }
    }
    return CP_OK;
}

/* --- rows ---------------------------------------------------------------------- */

/* A record as stored, with what only the table holds. */
typedef struct audit_row {
    audit_record r;
    char event[32];                     /* the stored name, hashed as it is */
    uint8_t prev_hash[AUDIT_HASH_SIZE];
    uint8_t hash[AUDIT_HASH_SIZE];
    bool misfit;                        /* a value of the wrong type or size */
} audit_row;

static int64_t col_int(sqlite3_stmt *s, int i, bool *misfit)
{
    if (sqlite3_column_type(s, i) != SQLITE_INTEGER)
        *misfit = true;
    return sqlite3_column_int64(s, i);
}

/*
 * A text column into a field of `size` bytes. One that does not fit, or
 * holds a NUL, marks the row: cutting it could hide a change.
 */
static void col_text(sqlite3_stmt *s, int i, char *dst, size_t size, bool *misfit)
{
    const unsigned char *t = sqlite3_column_text(s, i);
    size_t n = (size_t)sqlite3_column_bytes(s, i);

    dst[0] = '\0';
    if (sqlite3_column_type(s, i) != SQLITE_TEXT || t == NULL || n >= size ||
        memchr(t, '\0', n) != NULL) {
        *misfit = true;
        return;
    }
    memcpy(dst, t, n);
    dst[n] = '\0';
}

static void col_hash(sqlite3_stmt *s, int i, uint8_t *dst, bool *misfit)
{
    const void *b = sqlite3_column_blob(s, i);

    memset(dst, 0, AUDIT_HASH_SIZE);
    if (sqlite3_column_type(s, i) != SQLITE_BLOB || b == NULL ||
        sqlite3_column_bytes(s, i) != AUDIT_HASH_SIZE) {
        *misfit = true;
        return;
    }
    memcpy(dst, b, AUDIT_HASH_SIZE);
}

#define COL_TEXT(s, i, row, field) \
    col_text(s, i, (row)->r.field, sizeof (row)->r.field, &(row)->misfit)

static void load_row(sqlite3_stmt *s, audit_row *row)
{
    char action[2];

    memset(row, 0, sizeof *row);
    row->r.seq = col_int(s, 0, &row->misfit);
    row->r.time_us = col_int(s, 1, &row->misfit);
    col_text(s, 2, row->event, sizeof row->event, &row->misfit);
    row->r.event = audit_event_parse(row->event);
    col_text(s, 3, action, sizeof action, &row->misfit);
    row->r.action = (audit_action)(unsigned char)action[0];
    row->r.outcome = (audit_outcome)col_int(s, 4, &row->misfit);
    COL_TEXT(s, 5, row, type);
    row->r.user_id = col_int(s, 6, &row->misfit);
    COL_TEXT(s, 7, row, actor);
    COL_TEXT(s, 8, row, actor_roles);
    row->r.actor_institution_id = col_int(s, 9, &row->misfit);
    COL_TEXT(s, 10, row, peer);
    COL_TEXT(s, 11, row, session_id);
    COL_TEXT(s, 12, row, object_kind);
    COL_TEXT(s, 13, row, object_id);
    COL_TEXT(s, 14, row, patient_id);
    row->r.institution_id = col_int(s, 15, &row->misfit);
    COL_TEXT(s, 16, row, detail);
    col_hash(s, 17, row->prev_hash, &row->misfit);
    col_hash(s, 18, row->hash, &row->misfit);
}

static int bind_row(sqlite3_stmt *s, const audit_record *r, const uint8_t *prev,
                    const uint8_t *hash)
{
    char action[2] = { (char)r->action, '\0' };
    int rc = SQLITE_OK;

#define BIND_INT(i, v) \
    if (rc == SQLITE_OK) rc = sqlite3_bind_int64(s, i, (sqlite3_int64)(v))
#define BIND_TEXT(i, v) \
    if (rc == SQLITE_OK) rc = sqlite3_bind_text(s, i, v, -1, SQLITE_TRANSIENT)
    BIND_INT(1, r->seq);
    BIND_INT(2, r->time_us);
    BIND_TEXT(3, audit_event_name(r->event));
    BIND_TEXT(4, action);
    BIND_INT(5, r->outcome);
    BIND_TEXT(6, r->type);
    BIND_INT(7, r->user_id);
    BIND_TEXT(8, r->actor);
    BIND_TEXT(9, r->actor_roles);
    BIND_INT(10, r->actor_institution_id);
    BIND_TEXT(11, r->peer);
    BIND_TEXT(12, r->session_id);
    BIND_TEXT(13, r->object_kind);
    BIND_TEXT(14, r->object_id);
    BIND_TEXT(15, r->patient_id);
    BIND_INT(16, r->institution_id);
    BIND_TEXT(17, r->detail);
#undef BIND_INT
#undef BIND_TEXT
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_blob(s, 18, prev, AUDIT_HASH_SIZE, SQLITE_TRANSIENT);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_blob(s, 19, hash, AUDIT_HASH_SIZE, SQLITE_TRANSIENT);
    return rc;
}

/* Reads the head row: seq and hash of the newest record. */
static int read_head(sqlite3 *db, int64_t *seq, uint8_t hash[AUDIT_HASH_SIZE], bool *found)
{
    sqlite3_stmt *s = NULL;
    bool misfit = false;
    int rc;

    *found = false;
    rc = sqlite3_prepare_v2(db, "SELECT seq, hash FROM audit_head WHERE id = 1", -1, &s,
                            NULL);
    if (rc != SQLITE_OK)
        return rc;
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        *seq = col_int(s, 0, &misfit);
        col_hash(s, 1, hash, &misfit);
        *found = !misfit;
        rc = SQLITE_OK;
    } else if (rc == SQLITE_DONE) {
        rc = SQLITE_OK;
    }
    sqlite3_finalize(s);
    return rc;
}

/* --- the writer ------------------------------------------------------------------ */

/*
 * Raises *seq to the highest seq stored. Rows beyond the head were not
 * written by a trail (verify reports them); numbering past them keeps the
 * trail writable instead of failing every commit on their seq.
 */
static int read_max_seq(sqlite3 *db, int64_t *seq)
{
    sqlite3_stmt *s = NULL;
    int rc;

    rc = sqlite3_prepare_v2(db, "SELECT max(seq) FROM audit_record", -1, &s, NULL);
    if (rc != SQLITE_OK)
        return rc;
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        if (sqlite3_column_type(s, 0) == SQLITE_INTEGER && sqlite3_column_int64(s, 0) > *seq)
            *seq = sqlite3_column_int64(s, 0);
        rc = SQLITE_OK;
    }
    sqlite3_finalize(s);
    return rc;
}

/*
 * Appends n records after the head in one transaction. On failure the
 * transaction is rolled back and why says what went wrong.
 */
static bool commit_batch(sqlite3 *db, audit_record *batch, size_t n, char *why, size_t size)
{
    uint8_t prev[AUDIT_HASH_SIZE], hash[AUDIT_HASH_SIZE];
    sqlite3_stmt *ins = NULL, *upd = NULL;
    int64_t seq = 0;
    bool found = false;
    int rc;

    rc = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        goto fail;
    rc = read_head(db, &seq, prev, &found);
    if (rc == SQLITE_OK && !found) {
        snprintf(why, size, "the audit_head row is missing or damaged");
        goto rollback;
    }
    if (rc == SQLITE_OK)
        rc = read_max_seq(db, &seq);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(db, "INSERT INTO audit_record(" AUDIT_COLUMNS ") VALUES"
                                "(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", -1, &ins, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(db, "UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1",
                                -1, &upd, NULL);

    for (size_t i = 0; i < n && rc == SQLITE_OK; i++) {
        batch[i].seq = ++seq;
        record_hash(prev, &batch[i], audit_event_name(batch[i].event), hash);
        rc = bind_row(ins, &batch[i], prev, hash);
        if (rc == SQLITE_OK && (rc = sqlite3_step(ins)) == SQLITE_DONE)
            rc = SQLITE_OK;
        sqlite3_reset(ins);
        memcpy(prev, hash, AUDIT_HASH_SIZE);
    }

    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(upd, 1, seq);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_blob(upd, 2, prev, AUDIT_HASH_SIZE, SQLITE_TRANSIENT);
    if (rc == SQLITE_OK && (rc = sqlite3_step(upd)) == SQLITE_DONE)
        rc = SQLITE_OK;
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_finalize(ins);
        sqlite3_finalize(upd);
        return true;
    }

fail:
    snprintf(why, size, "%s", sqlite3_errmsg(db));
rollback:
    sqlite3_finalize(ins);
    sqlite3_finalize(upd);
    if (!sqlite3_get_autocommit(db))
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return false;
}

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        continue;
}

/*
 * Commits a batch, retrying with back-off until it holds; each failure is
 * logged and counted (which wakes flushers with an error). Once the log is
 * closing, gives up after AUDIT_CLOSE_RETRIES attempts.
 */
static void commit_with_retry(audit_log *a, size_t n)
{
    char why[sizeof a->last_error];
    long wait = AUDIT_RETRY_FIRST_MS;
    bool stopping;

    for (int attempt = 1;; attempt++) {
        if (commit_batch(a->wdb, a->batch, n, why, sizeof why))
            return;
        cp_log_error("audit.commit_failed", "records=%zu attempt=%d error=\"%s\"", n, attempt,
                     why);

        pthread_mutex_lock(&a->lock);
        a->failures++;
        snprintf(a->last_error, sizeof a->last_error, "%s", why);
        stopping = a->stopping;
        pthread_cond_broadcast(&a->committed);
        pthread_mutex_unlock(&a->lock);

        if (stopping && attempt >= AUDIT_CLOSE_RETRIES) {
            cp_log_error("audit.dropped", "records=%zu first_time_us=%lld error=\"%s\"", n,
                         (long long)a->batch[0].time_us, why);
            return;
        }
        sleep_ms(wait);
        wait = wait * 2 > AUDIT_RETRY_MAX_MS ? AUDIT_RETRY_MAX_MS : wait * 2;
    }
}

static void deadline_after_ms(struct timespec *ts, long ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

/* Whether the writer should commit now rather than wait for more. Under lock. */
static bool commit_due(const audit_log *a)
{
    return a->ring_count >= AUDIT_BATCH_MAX || a->stopping || a->flush_target > a->done;
}

static void *writer_main(void *arg)
{
    audit_log *a = arg;
    struct timespec deadline;
    size_t n;

    pthread_mutex_lock(&a->lock);
    for (;;) {
        while (a->ring_count == 0 && !a->stopping)
            pthread_cond_wait(&a->work, &a->lock);
        if (a->ring_count == 0)
            break;

        /* Gather for AUDIT_FLUSH_MS unless someone needs the records now. */
        deadline_after_ms(&deadline, AUDIT_FLUSH_MS);
        while (!commit_due(a))
            if (pthread_cond_timedwait(&a->work, &a->lock, &deadline) == ETIMEDOUT)
                break;

        n = a->ring_count < AUDIT_BATCH_MAX ? a->ring_count : AUDIT_BATCH_MAX;
        for (size_t i = 0; i < n; i++)
            a->batch[i] = a->ring[(a->ring_head + i) % AUDIT_QUEUE_MAX];
        a->ring_head = (a->ring_head + n) % AUDIT_QUEUE_MAX;
        a->ring_count -= n;
        pthread_cond_broadcast(&a->room);
        pthread_mutex_unlock(&a->lock);

        commit_with_retry(a, n);

        pthread_mutex_lock(&a->lock);
        a->done += n;
        pthread_cond_broadcast(&a->committed);
    }
    pthread_mutex_unlock(&a->lock);
    return NULL;
}

/* --- open, write, flush, close ------------------------------------------------------ */

static cp_status log_init_sync(audit_log *a, cp_error *err)
{
    pthread_condattr_t attr;
    bool ok;

    /* The writer's deadline is on the monotonic clock: a clock step must not stall it. */
    if (pthread_condattr_init(&attr) != 0)
        return cp_error_set(err, CP_ERR_NOMEM, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "audit: condition attributes");
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    ok = pthread_mutex_init(&a->lock, NULL) == 0 && pthread_mutex_init(&a->rlock, NULL) == 0 &&
         pthread_cond_init(&a->work, &attr) == 0 && pthread_cond_init(&a->room, NULL) == 0 &&
         pthread_cond_init(&a->committed, NULL) == 0;
    pthread_condattr_destroy(&attr);
    if (!ok)
        return cp_error_set(err, CP_ERR_NOMEM, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "audit: locks");
    return CP_OK;
}

static void log_free(audit_log *a)
{
    sqlite3_close(a->wdb);
    sqlite3_close(a->rdb);
    pthread_mutex_destroy(&a->lock);
    pthread_mutex_destroy(&a->rlock);
    pthread_cond_destroy(&a->work);
    pthread_cond_destroy(&a->room);
    pthread_cond_destroy(&a->committed);
    cp_free(a->ring);
    cp_free(a->batch);
    cp_free(a);
}

cp_status audit_open_sqlite(const char *path, audit_log **out, cp_error *err)
{
    audit_log *a;
    cp_status st;

    if (path == NULL || out == NULL)
        return cp_error_set(err, CP_ERR_INVALID, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "audit: no path");
    *out = NULL;
    if (sodium_init() < 0)
        return cp_error_set(err, CP_ERR_UNAVAILABLE, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "audit: libsodium could not start");
    a = cp_calloc(1, sizeof *a);
    if (a == NULL)
        return cp_error_set(err, CP_ERR_NOMEM, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "audit: no memory");
    st = log_init_sync(a, err);
    if (st != CP_OK) {
        cp_free(a);
        return st;
    }

    a->ring = cp_calloc(AUDIT_QUEUE_MAX, sizeof *a->ring);
    a->batch = cp_calloc(AUDIT_BATCH_MAX, sizeof *a->batch);
    if (a->ring == NULL || a->batch == NULL) {
        st = cp_error_set(err, CP_ERR_NOMEM, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                          "audit: no memory for the queue");
        goto fail;
    }
    st = db_open(path, false, &a->wdb, err);
    if (st == CP_OK)
        st = db_migrate(a->wdb, err);
    if (st == CP_OK)
        st = db_open(path, true, &a->rdb, err);
    if (st != CP_OK)
        goto fail;
    if (pthread_create(&a->thread, NULL, writer_main, a) != 0) {
        st = cp_error_set(err, CP_ERR_UNAVAILABLE, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                          "audit: the writer thread could not start");
        goto fail;
    }
    *out = a;
    return CP_OK;

fail:
    log_free(a);
    return st;
}

void audit_close(audit_log *a)
{
    if (a == NULL)
        return;
    pthread_mutex_lock(&a->lock);
    a->stopping = true;
    pthread_cond_broadcast(&a->work);
    pthread_cond_broadcast(&a->room);
    pthread_mutex_unlock(&a->lock);
    pthread_join(a->thread, NULL);
    log_free(a);
}

cp_status audit_write(audit_log *a, const audit_record *r)
{
    audit_record c;
    cp_status st = CP_OK;

    if (a == NULL || r == NULL || r->event <= AUDIT_EVENT_NONE ||
        r->event >= AUDIT_EVENT_COUNT || !action_valid((int)r->action) ||
        !outcome_valid((int)r->outcome))
        return CP_ERR_INVALID;
    clean_record(&c, r);
    if (c.actor[0] == '\0')
        return CP_ERR_INVALID;
    if (c.time_us == 0)
        c.time_us = now_us();

    pthread_mutex_lock(&a->lock);
    while (a->ring_count == AUDIT_QUEUE_MAX && !a->stopping)
        pthread_cond_wait(&a->room, &a->lock);
    if (a->stopping) {
        st = CP_ERR_UNAVAILABLE;
    } else {
        a->ring[(a->ring_head + a->ring_count) % AUDIT_QUEUE_MAX] = c;
        a->ring_count++;
        a->queued++;
        pthread_cond_signal(&a->work);
    }
    pthread_mutex_unlock(&a->lock);
    return st;
}

cp_status audit_flush(audit_log *a, cp_error *err)
{
    uint64_t ticket, failures;
    cp_status st = CP_OK;

    if (a == NULL)
        return cp_error_set(err, CP_ERR_INVALID, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "audit: no log");
    pthread_mutex_lock(&a->lock);
    ticket = a->queued;
    failures = a->failures;
    if (ticket > a->flush_target)
        a->flush_target = ticket;
    pthread_cond_signal(&a->work);

    /* A failed commit ends the wait: the records stay queued and are retried. */
    while (a->done < ticket && a->failures == failures)
        pthread_cond_wait(&a->committed, &a->lock);
    if (a->done < ticket)
        st = cp_error_set(err, CP_ERR_IO, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                          "audit: commit failed (records kept and retried): %s",
                          a->last_error);
    pthread_mutex_unlock(&a->lock);
    return st;
}

/* --- query --------------------------------------------------------------------------- */

typedef struct query_page {
    audit_row *rows;
    size_t count;
    size_t cap;
} query_page;

/* SELECT ... WHERE <the filter's terms> ORDER BY seq LIMIT n, all values bound. */
static cp_status query_prepare(sqlite3 *db, const audit_filter *f, size_t limit,
                               sqlite3_stmt **out, cp_error *err)
{
    cp_buf sql = CP_BUF_INIT;
    sqlite3_stmt *s = NULL;
    int64_t to = f->to_us != 0 ? f->to_us : now_us();
    cp_status st;
    int i = 1, rc;

    st = cp_buf_append_str(&sql, "SELECT " AUDIT_COLUMNS " FROM audit_record"
                                 " WHERE time_us >= ? AND time_us <= ? AND seq > ?");
    if (st == CP_OK && f->user_id != 0)
        st = cp_buf_append_str(&sql, " AND user_id = ?");
    if (st == CP_OK && f->actor != NULL)
        st = cp_buf_append_str(&sql, " AND actor = ?");
    if (st == CP_OK && f->patient_id != NULL)
        st = cp_buf_append_str(&sql, " AND patient_id = ?");
    if (st == CP_OK && f->object_id != NULL)
        st = cp_buf_append_str(&sql, " AND object_id = ?");
    if (st == CP_OK && f->event != AUDIT_EVENT_NONE)
        st = cp_buf_append_str(&sql, " AND event = ?");
    if (st == CP_OK && f->before_seq != 0)
        st = cp_buf_append_str(&sql, " AND seq < ?");
    if (st == CP_OK)
        st = cp_buf_appendf(&sql, " ORDER BY seq %s LIMIT ?", f->newest_first ? "DESC" : "ASC");
    if (st != CP_OK) {
        cp_buf_free(&sql);
        return cp_error_set(err, st, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG, "audit: query text");
    }

    rc = sqlite3_prepare_v2(db, (const char *)sql.data, -1, &s, NULL);
    cp_buf_free(&sql);
    if (rc != SQLITE_OK)
        return db_fail(db, err, "prepare query");
    rc = sqlite3_bind_int64(s, i++, f->from_us);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(s, i++, to);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(s, i++, f->after_seq);
    if (rc == SQLITE_OK && f->user_id != 0)
        rc = sqlite3_bind_int64(s, i++, f->user_id);
    if (rc == SQLITE_OK && f->actor != NULL)
        rc = sqlite3_bind_text(s, i++, f->actor, -1, SQLITE_TRANSIENT);
    if (rc == SQLITE_OK && f->patient_id != NULL)
        rc = sqlite3_bind_text(s, i++, f->patient_id, -1, SQLITE_TRANSIENT);
    if (rc == SQLITE_OK && f->object_id != NULL)
        rc = sqlite3_bind_text(s, i++, f->object_id, -1, SQLITE_TRANSIENT);
    if (rc == SQLITE_OK && f->event != AUDIT_EVENT_NONE)
        rc = sqlite3_bind_text(s, i++, audit_event_name(f->event), -1, SQLITE_STATIC);
    if (rc == SQLITE_OK && f->before_seq != 0)
        rc = sqlite3_bind_int64(s, i++, f->before_seq);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(s, i++, (sqlite3_int64)limit);
    if (rc != SQLITE_OK) {
        st = db_fail(db, err, "bind query");
        sqlite3_finalize(s);
        return st;
    }
    *out = s;
    return CP_OK;
}

/* Reads one page into memory, so that no lock is held while the caller's callback runs. */
static cp_status query_read(audit_log *a, const audit_filter *f, size_t limit, query_page *page,
                            cp_error *err)
{
    sqlite3_stmt *s = NULL;
    cp_status st;
    int rc = SQLITE_DONE;

    pthread_mutex_lock(&a->rlock);
    st = query_prepare(a->rdb, f, limit, &s, err);
    while (st == CP_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        st = cp_array_grow(&page->rows, &page->cap, page->count, sizeof *page->rows, 16,
                           limit + 1);
        if (st != CP_OK)
            st = cp_error_set(err, st, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                              "audit: no memory for the results");
        else
            load_row(s, &page->rows[page->count++]);
    }
    if (st == CP_OK && rc != SQLITE_DONE)
        st = db_fail(a->rdb, err, "query");
    sqlite3_finalize(s);
    pthread_mutex_unlock(&a->rlock);
    return st;
}

static cp_status query_run(audit_log *a, const audit_filter *f, audit_record_fn rfn,
                           audit_entry_fn efn, void *ctx, cp_error *err)
{
    static const audit_filter none;
    query_page page = { NULL, 0, 0 };
    size_t limit;
    cp_status st;

    if (a == NULL)
        return cp_error_set(err, CP_ERR_INVALID, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "audit: no log");
    if (f == NULL)
        f = &none;
    limit = f->limit == 0 ? AUDIT_QUERY_DEFAULT : f->limit;
    if (limit > AUDIT_QUERY_MAX)
        limit = AUDIT_QUERY_MAX;

    st = audit_flush(a, err);
    if (st == CP_OK)
        st = query_read(a, f, limit, &page, err);
    for (size_t i = 0; st == CP_OK && i < page.count; i++)
        st = rfn != NULL ? rfn(ctx, &page.rows[i].r)
                         : efn(ctx, &page.rows[i].r, page.rows[i].hash);
    cp_free(page.rows);
    return st;
}

cp_status audit_query(audit_log *a, const audit_filter *f, audit_record_fn fn, void *ctx,
                      cp_error *err)
{
    if (fn == NULL)
        return cp_error_set(err, CP_ERR_INVALID, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "audit: no callback");
    return query_run(a, f, fn, NULL, ctx, err);
}

cp_status audit_query_hashed(audit_log *a, const audit_filter *f, audit_entry_fn fn, void *ctx,
                             cp_error *err)
{
    if (fn == NULL)
        return cp_error_set(err, CP_ERR_INVALID, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "audit: no callback");
    return query_run(a, f, NULL, fn, ctx, err);
}

/* --- verify ---------------------------------------------------------------------------- */

static void verify_bad(audit_verify_result *res, int64_t seq, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void verify_bad(audit_verify_result *res, int64_t seq, const char *fmt, ...)
{
    va_list ap;

    res->first_bad_seq = seq;
    va_start(ap, fmt);
    vsnprintf(res->problem, sizeof res->problem, fmt, ap);
    va_end(ap);
}

/* Checks one row against the chain so far; false (with res set) at the first fault. */
static bool verify_row(const audit_row *row, int64_t expect, const uint8_t *prev,
                       audit_verify_result *res)
{
    uint8_t hash[AUDIT_HASH_SIZE];

    if (row->r.seq > expect) {
        verify_bad(res, expect, "seq %lld follows %lld: records %lld to %lld are missing",
                   (long long)row->r.seq, (long long)(expect - 1), (long long)expect,
                   (long long)(row->r.seq - 1));
        return false;
    }
    if (row->r.seq < expect) {
        verify_bad(res, row->r.seq, "seq %lld where %lld was expected",
                   (long long)row->r.seq, (long long)expect);
        return false;
    }
    if (row->misfit) {
        verify_bad(res, expect, "a stored value has the wrong type or size (changed)");
        return false;
    }
    if (sodium_memcmp(row->prev_hash, prev, AUDIT_HASH_SIZE) != 0) {
        verify_bad(res, expect, "prev_hash is not the hash of the record before");
        return false;
    }
    record_hash(prev, &row->r, row->event, hash);
    if (sodium_memcmp(row->hash, hash, AUDIT_HASH_SIZE) != 0) {
        verify_bad(res, expect, "the record does not match its hash (changed)");
        return false;
    }
    return true;
}

/* The head must name the last record checked, with its hash. */
static void verify_head(sqlite3 *db, int64_t last, const uint8_t *last_hash,
                        audit_verify_result *res, int *rc)
{
    uint8_t head_hash[AUDIT_HASH_SIZE];
    int64_t head = 0;
    bool found = false;

    *rc = read_head(db, &head, head_hash, &found);
    if (*rc != SQLITE_OK)
        return;
    if (!found)
        verify_bad(res, last + 1, "the audit_head row is missing or damaged");
    else if (head > last)
        verify_bad(res, last + 1, "the head names seq %lld but the last record is %lld: "
                   "the tail was cut", (long long)head, (long long)last);
    else if (head < last)
        verify_bad(res, head + 1, "records after the head (seq %lld) were added outside "
                   "the trail", (long long)head);
    else if (sodium_memcmp(head_hash, last_hash, AUDIT_HASH_SIZE) != 0)
        verify_bad(res, last, "the head's hash is not the hash of the last record");
}

/* The walk, in one read transaction so that the head and the records agree. */
static cp_status verify_walk(sqlite3 *db, audit_verify_result *res, cp_error *err)
{
    uint8_t prev[AUDIT_HASH_SIZE] = { 0 };
    sqlite3_stmt *s = NULL;
    audit_row *row;
    int64_t expect = 1;
    cp_status st = CP_OK;
    int rc;

    row = cp_malloc(sizeof *row);
    if (row == NULL)
        return cp_error_set(err, CP_ERR_NOMEM, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "audit: no memory");
    rc = sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(db, "SELECT " AUDIT_COLUMNS " FROM audit_record ORDER BY seq",
                                -1, &s, NULL);
    while (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        load_row(s, row);
        if (!verify_row(row, expect, prev, res))
            break;
        memcpy(prev, row->hash, AUDIT_HASH_SIZE);
        res->records++;
        expect++;
        rc = SQLITE_OK;
    }
    if (rc == SQLITE_DONE)
        verify_head(db, expect - 1, prev, res, &rc);
    if (rc != SQLITE_OK && rc != SQLITE_ROW)
        st = db_fail(db, err, "verify");
    sqlite3_finalize(s);
    if (!sqlite3_get_autocommit(db))
        sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    cp_free(row);
    return st;
}

cp_status audit_verify(audit_log *a, audit_verify_result *res, cp_error *err)
{
    cp_status st;

    if (a == NULL || res == NULL)
        return cp_error_set(err, CP_ERR_INVALID, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "audit: no log");
    memset(res, 0, sizeof *res);
    st = audit_flush(a, err);
    if (st != CP_OK)
        return st;
    pthread_mutex_lock(&a->rlock);
    st = verify_walk(a->rdb, res, err);
    pthread_mutex_unlock(&a->rlock);
    return st;
}

/* --- JSON (the ATNA message shape) ----------------------------------------------------- */

/* A JSON string of a text field, cleaned again: the record may come from a changed file. */
static json_t *jtext(const char *s, size_t size)
{
    char clean[AUDIT_TEXT_MAX];

    clean_text(clean, s, size < sizeof clean ? size : sizeof clean);
    return json_string(clean);
}

#define JTEXT(r, field) jtext((r)->field, sizeof (r)->field)

/* A coded value: {"csd-code", "codeSystemName", "originalText"}. */
static json_t *jcode(const char *code, const char *scheme, const char *text)
{
    return json_pack("{s:s, s:s, s:s}", "csd-code", code, "codeSystemName", scheme,
                     "originalText", text);
}

/* "2026-12-03T17:40:01.123456Z" */
static json_t *jtime(int64_t us)
{
    int64_t sec = us / 1000000, frac = us % 1000000;
    time_t t;
    struct tm tm;
    char text[64];

    if (frac < 0) {
        frac += 1000000;
        sec--;
    }
    t = (time_t)sec;
    if (gmtime_r(&t, &tm) == NULL)
        return json_string("");
    snprintf(text, sizeof text, "%04d-%02d-%02dT%02d:%02d:%02d.%06lldZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (long long)frac);
    return json_string(text);
}

static json_t *event_identification(const audit_record *r)
{
    const event_info *ev = event_get(r->event);
    char action[2] = { (char)r->action, '\0' };
    json_t *o = json_object();
    bool ok = o != NULL;

    if (!action_valid((int)r->action))
        action[0] = '\0';
    ok = ok && json_object_set_new(o, "EventID", jcode(ev->code, "DCM", ev->display)) == 0;
    ok = ok && json_object_set_new(o, "EventActionCode", json_string(action)) == 0;
    ok = ok && json_object_set_new(o, "EventDateTime", jtime(r->time_us)) == 0;
    ok = ok && json_object_set_new(o, "EventOutcomeIndicator",
                                   json_integer((json_int_t)r->outcome)) == 0;
    if (ok && r->type[0] != '\0') {
        json_t *type = JTEXT(r, type);

        ok = type != NULL &&
             json_object_set_new(o, "EventTypeCode",
                                 json_pack("[{s:O, s:s, s:O}]", "csd-code", type,
                                           "codeSystemName", AUDIT_LOCAL_SCHEME,
                                           "originalText", type)) == 0;
        json_decref(type);
    }
    if (!ok) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* RoleIDCode: one coded value per role of "radiologist,reviewer". */
static json_t *role_codes(const audit_record *r)
{
    char roles[sizeof r->actor_roles];
    json_t *list = json_array();
    char *save = NULL;

    clean_text(roles, r->actor_roles, sizeof roles);
    for (char *role = strtok_r(roles, ", ", &save); list != NULL && role != NULL;
         role = strtok_r(NULL, ", ", &save)) {
        if (json_array_append_new(list, jcode(role, AUDIT_LOCAL_SCHEME, role)) != 0) {
            json_decref(list);
            return NULL;
        }
    }
    return list;
}

/* NetworkAccessPointTypeCode (RFC 3881): "2" for an IP address, "1" for a machine name. */
static const char *access_point_type(const char *peer)
{
    unsigned char addr[sizeof(struct in6_addr)];

    if (inet_pton(AF_INET, peer, addr) == 1 || inet_pton(AF_INET6, peer, addr) == 1)
        return "2";
    return "1";
}

static json_t *active_participant(const audit_record *r)
{
    char user_id[24];
    json_t *p = json_object(), *list;
    bool ok = p != NULL;

    snprintf(user_id, sizeof user_id, "%lld", (long long)r->user_id);
    ok = ok && json_object_set_new(p, "UserID", JTEXT(r, actor)) == 0;
    if (ok && r->user_id != 0)
        ok = json_object_set_new(p, "AlternativeUserID", json_string(user_id)) == 0;
    ok = ok && json_object_set_new(p, "UserName", JTEXT(r, actor)) == 0;
    ok = ok && json_object_set_new(p, "UserIsRequestor", json_true()) == 0;
    if (ok && r->actor_roles[0] != '\0')
        ok = json_object_set_new(p, "RoleIDCode", role_codes(r)) == 0;
    if (ok && r->peer[0] != '\0') {
        char peer[sizeof r->peer];

        clean_text(peer, r->peer, sizeof peer);
        ok = json_object_set_new(p, "NetworkAccessPointID", json_string(peer)) == 0 &&
             json_object_set_new(p, "NetworkAccessPointTypeCode",
                                 json_string(access_point_type(peer))) == 0;
    }
    list = ok ? json_array() : NULL;
    if (list == NULL || json_array_append_new(list, p) != 0) {
        json_decref(list);
        if (list == NULL)
            json_decref(p);
        return NULL;
    }
    return list;
}

/*
 * How each object kind is described (PS3.15 A.5.2, RFC 3881 5.5): type
 * code (1 person, 2 system object), role (3 report, 11 security user,
 * 13 security resource, 20 job, 24 query) and ID type.
 */
typedef struct object_kind_info {
    const char *kind;
    int type;
    int role;
    const char *id_code;
    const char *id_scheme;
    const char *id_text;
} object_kind_info;

static const object_kind_info object_kinds[] = {
    { "study", 2, 3, "110180", "DCM", "Study Instance UID" },
    { "series", 2, 3, "series", AUDIT_LOCAL_SCHEME, "Series Instance UID" },
    { "instance", 2, 3, "instance", AUDIT_LOCAL_SCHEME, "SOP Instance UID" },
    { "query", 2, 24, "10", "RFC-3881", "Search Criteria" },
    { "user", 1, 11, "11", "RFC-3881", "User Identifier" },
    { "order", 2, 20, "order", AUDIT_LOCAL_SCHEME, "Reading Order" },
};

static json_t *object_identification(const audit_record *r)
{
    char kind[sizeof r->object_kind];
    object_kind_info other = { kind, 2, 13, kind, AUDIT_LOCAL_SCHEME, kind };
    const object_kind_info *k = &other;
    json_t *list = json_array(), *o;

    clean_text(kind, r->object_kind, sizeof kind);
    for (size_t i = 0; i < sizeof object_kinds / sizeof object_kinds[0]; i++)
        if (strcmp(object_kinds[i].kind, kind) == 0)
            k = &object_kinds[i];
    if (list != NULL && (r->object_kind[0] != '\0' || r->object_id[0] != '\0')) {
        o = json_pack("{s:i, s:i, s:o, s:o}", "ParticipantObjectTypeCode", k->type,
                      "ParticipantObjectTypeCodeRole", k->role, "ParticipantObjectIDTypeCode",
                      jcode(k->id_code, k->id_scheme, k->id_text), "ParticipantObjectID",
                      JTEXT(r, object_id));
        if (json_array_append_new(list, o) != 0)
            goto fail;
    }
    if (list != NULL && r->patient_id[0] != '\0') {
        o = json_pack("{s:i, s:i, s:o, s:o}", "ParticipantObjectTypeCode", 1,
                      "ParticipantObjectTypeCodeRole", 1, "ParticipantObjectIDTypeCode",
                      jcode("2", "RFC-3881", "Patient Number"), "ParticipantObjectID",
                      JTEXT(r, patient_id));
        if (json_array_append_new(list, o) != 0)
            goto fail;
    }
    return list;

fail:
    json_decref(list);
    return NULL;
}

/* What ATNA has no place for: kept under "cloudpacs". */
static json_t *local_fields(const audit_record *r)
{
    char detail[sizeof r->detail];
    json_t *o, *d;

    clean_text(detail, r->detail, sizeof detail);
    d = json_loads(detail, JSON_REJECT_DUPLICATES, NULL);
    if (d != NULL && !json_is_object(d)) {
        json_decref(d);
        d = NULL;
    }
    if (d == NULL && detail[0] != '\0')
        d = json_string(detail);
    o = json_pack("{s:o, s:o, s:I, s:I}", "object_kind", JTEXT(r, object_kind), "session_id",
                  JTEXT(r, session_id), "actor_institution_id",
                  (json_int_t)r->actor_institution_id, "institution_id",
                  (json_int_t)r->institution_id);
    if (o != NULL && d != NULL && json_object_set_new(o, "detail", d) != 0) {
        json_decref(o);
        return NULL;
    }
    if (o == NULL)
        json_decref(d);
    return o;
}

static int dump_to_buf(const char *text, size_t len, void *ctx)
{
    return cp_buf_append(ctx, text, len) == CP_OK ? 0 : -1;
}

cp_status audit_record_json_hashed(const audit_record *r, const uint8_t *hash,
                                   const char *source_id, cp_buf *out)
{
    char hex[AUDIT_HASH_SIZE * 2 + 1];
    json_t *root;
    cp_status st = CP_OK;

    if (r == NULL || out == NULL)
        return CP_ERR_INVALID;
    if (hash != NULL)
        sodium_bin2hex(hex, sizeof hex, hash, AUDIT_HASH_SIZE);
    root = json_pack("{s:o, s:o, s:{s:s}, s:o, s:o, s:I, s:o}",
                     "EventIdentification", event_identification(r),
                     "ActiveParticipant", active_participant(r),
                     "AuditSourceIdentification", "AuditSourceID",
                     source_id != NULL && source_id[0] != '\0' ? source_id : "cloudpacs",
                     "ParticipantObjectIdentification", object_identification(r),
                     "cloudpacs", local_fields(r),
                     "seq", (json_int_t)r->seq,
                     "hash", hash != NULL ? json_string(hex) : json_null());
    if (root == NULL)
        return CP_ERR_NOMEM;
    if (json_dump_callback(root, dump_to_buf, out, JSON_COMPACT) != 0)
        st = CP_ERR_NOMEM;
    json_decref(root);
    return st;
}

cp_status audit_record_json(const audit_record *r, const char *source_id, cp_buf *out)
{
    return audit_record_json_hashed(r, NULL, source_id, out);
}
