/*
 * report.c - diagnostic reports of remote reading: templates, the author's
 * draft under an edit lock in Redis, versions frozen on submit, two-level
 * signing (a reviewer of a sufficient title approves or rejects), release
 * with an Ed25519 signature, and the clinic's acknowledgement of a critical
 * finding. The order (order.h) moves with its report.
 *
 * Storage: three tables in the index database (own connection, WAL,
 * synchronous FULL), migrated through report_schema_version. Triggers keep
 * a version's text, author and times as first written, and let status,
 * reviewer, release and acknowledgement be set once only (from 0 or '').
 *
 * No part of the DICOM standard is implemented here; sr.c turns a released
 * version into a Basic Text SR (PS3.3 A.35.1).
 */
#include "consult/report.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <sodium.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/limits.h"

#define KEY_SEED_BYTES 32

struct report_store {
    order_store *orders;
    kv *kv;
    int64_t (*now_us)(void);
    unsigned lock_s;
    int min_reviewer_title;
    sqlite3 *db;
    pthread_mutex_t mu;
    unsigned char pk[crypto_sign_PUBLICKEYBYTES];
    unsigned char sk[crypto_sign_SECRETKEYBYTES];
    char pk_b64[sodium_base64_ENCODED_LEN(crypto_sign_PUBLICKEYBYTES,
                                          sodium_base64_VARIANT_ORIGINAL)];
};

/* --- schema ------------------------------------------------------------------- */

/*
 * Migration n (1-based) is migrations[n - 1]. The update trigger refuses a
 * change to what a version says and who wrote it when, and lets each field
 * set later (status, reviewer, times, reason, signature, acknowledgement)
 * go only from its empty value to another, so that history cannot be
 * rewritten even with SQL from outside this module.
 */
static const char *const migrations[] = {
    "CREATE TABLE report_draft("
    " order_id INTEGER PRIMARY KEY,"
    " author INTEGER NOT NULL,"
    " findings TEXT NOT NULL,"
    " impression TEXT NOT NULL,"
    " critical INTEGER NOT NULL,"
    " saved INTEGER NOT NULL);"
    "CREATE TABLE report_version("
    " order_id INTEGER NOT NULL,"
    " version INTEGER NOT NULL,"
    " status INTEGER NOT NULL,"
    " author INTEGER NOT NULL,"
    " reviewer INTEGER NOT NULL DEFAULT 0,"
    " written INTEGER NOT NULL,"
    " reviewed INTEGER NOT NULL DEFAULT 0,"
    " released INTEGER NOT NULL DEFAULT 0,"
    " critical INTEGER NOT NULL,"
    " critical_ack_by INTEGER NOT NULL DEFAULT 0,"
    " critical_ack_us INTEGER NOT NULL DEFAULT 0,"
    " reason TEXT NOT NULL DEFAULT '',"
    " findings TEXT NOT NULL,"
    " impression TEXT NOT NULL,"
    " signature TEXT NOT NULL DEFAULT '',"
    " PRIMARY KEY(order_id, version));"
    "CREATE TRIGGER report_version_frozen BEFORE UPDATE ON report_version"
    " WHEN NEW.order_id IS NOT OLD.order_id OR NEW.version IS NOT OLD.version"
    "  OR NEW.author IS NOT OLD.author OR NEW.written IS NOT OLD.written"
    "  OR NEW.findings IS NOT OLD.findings OR NEW.impression IS NOT OLD.impression"
    "  OR NEW.critical IS NOT OLD.critical"
    " BEGIN SELECT RAISE(ABORT, 'a report version is never changed'); END;"
    "CREATE TRIGGER report_version_set_once BEFORE UPDATE ON report_version"
    " WHEN (NEW.reviewer IS NOT OLD.reviewer AND OLD.reviewer <> 0)"
    "  OR (NEW.reviewed IS NOT OLD.reviewed AND OLD.reviewed <> 0)"
    "  OR (NEW.released IS NOT OLD.released AND OLD.released <> 0)"
    "  OR (NEW.critical_ack_by IS NOT OLD.critical_ack_by AND OLD.critical_ack_by <> 0)"
    "  OR (NEW.critical_ack_us IS NOT OLD.critical_ack_us AND OLD.critical_ack_us <> 0)"
    "  OR (NEW.reason IS NOT OLD.reason AND OLD.reason <> '')"
    "  OR (NEW.signature IS NOT OLD.signature AND OLD.signature <> '')"
    "  OR (NEW.status IS NOT OLD.status AND NOT ("
    "      (OLD.status = 2 AND NEW.status IN (3, 4)) OR (OLD.status = 4 AND NEW.status = 5)))"
    " BEGIN SELECT RAISE(ABORT, 'a report version field is set once'); END;"
    "CREATE TRIGGER report_version_kept BEFORE DELETE ON report_version"
    " BEGIN SELECT RAISE(ABORT, 'a report version is never deleted'); END;"
    "CREATE TABLE report_template("
    " id INTEGER PRIMARY KEY,"
    " modality TEXT NOT NULL,"
    " body_part TEXT NOT NULL,"
    " name TEXT NOT NULL,"
    " findings TEXT NOT NULL,"
    " impression TEXT NOT NULL);"
    "CREATE INDEX report_template_key ON report_template(modality, body_part);",
};

#define MIGRATION_COUNT ((int)(sizeof migrations / sizeof migrations[0]))

/* --- small helpers -------------------------------------------------------------- */

/* A failure with no offset or tag: nothing here parses bytes. */
#define FAIL(err, st, ...) cp_error_set((err), (st), CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG, \
                                        __VA_ARGS__)

static cp_status db_fail(report_store *s, cp_error *err, const char *what)
{
    int rc = sqlite3_extended_errcode(s->db);
    cp_status st = CP_ERR_IO;

    if ((rc & 0xFF) == SQLITE_BUSY || (rc & 0xFF) == SQLITE_LOCKED)
        st = CP_ERR_AGAIN;
    else if ((rc & 0xFF) == SQLITE_CONSTRAINT)
        st = CP_ERR_INVALID;
    return cp_error_set(err, st, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG, "report: %s: %s", what,
                        sqlite3_errmsg(s->db));
}

static int64_t real_now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t now_us(const report_store *s)
{
    return s->now_us != NULL ? s->now_us() : real_now_us();
}

static cp_status db_exec(report_store *s, const char *sql, const char *what, cp_error *err)
{
    if (sqlite3_exec(s->db, sql, NULL, NULL, NULL) != SQLITE_OK)
        return db_fail(s, err, what);
    return CP_OK;
}

static cp_status prepare(report_store *s, const char *sql, sqlite3_stmt **stmt, cp_error *err)
{
    if (sqlite3_prepare_v2(s->db, sql, -1, stmt, NULL) != SQLITE_OK)
        return db_fail(s, err, "prepare");
    return CP_OK;
}

/* Runs a statement to its end (no rows wanted) and finalizes it. */
static cp_status step_done(report_store *s, sqlite3_stmt *stmt, const char *what, cp_error *err)
{
    int rc = sqlite3_step(stmt);
    cp_status st = CP_OK;

    if (rc != SQLITE_DONE)
        st = db_fail(s, err, what);
    sqlite3_finalize(stmt);
    return st;
}

static char *column_dup(sqlite3_stmt *stmt, int col)
{
    const unsigned char *text = sqlite3_column_text(stmt, col);
    int len = sqlite3_column_bytes(stmt, col);

    return cp_strndup(text != NULL ? (const char *)text : "", (size_t)len);
}

static void copy_text(char *out, size_t cap, sqlite3_stmt *stmt, int col)
{
    const unsigned char *text = sqlite3_column_text(stmt, col);

    snprintf(out, cap, "%s", text != NULL ? (const char *)text : "");
}

/* Whether len bytes are well-formed UTF-8 without NUL (RFC 3629). */
static bool utf8_valid(const char *text, size_t len)
{
    const unsigned char *p = (const unsigned char *)text;
    size_t i = 0;

    while (i < len) {
        unsigned c = p[i];
        size_t n;
        unsigned cp;

        if (c == 0)
            return false;
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xC2 && c <= 0xDF) {
            n = 1;
            cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            n = 2;
            cp = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            n = 3;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (len - i <= n)
            return false;
        for (size_t k = 1; k <= n; k++) {
            if ((p[i + k] & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (p[i + k] & 0x3F);
        }
        if ((n == 2 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
            (n == 3 && (cp < 0x10000 || cp > 0x10FFFF)))
            return false;
        i += n + 1;
    }
    return true;
}

static cp_status check_text(const char *text, const char *what, cp_error *err)
{
    size_t len;

    if (text == NULL)
        return CP_OK;
    len = strnlen(text, REPORT_TEXT_MAX + 1);
    if (len > REPORT_TEXT_MAX)
        return FAIL(err, CP_ERR_LIMIT, "report: the %s is too long", what);
    if (!utf8_valid(text, len))
        return FAIL(err, CP_ERR_CHARSET, "report: the %s is not UTF-8", what);
    return CP_OK;
}

/* --- opening and the signing key --------------------------------------------- */

static cp_status migrate(report_store *s, cp_error *err)
{
    cp_status st;

    st = db_exec(s, "CREATE TABLE IF NOT EXISTS report_schema_version("
                    "version INTEGER NOT NULL)", "create report_schema_version", err);
    for (int next = 1; st == CP_OK && next <= MIGRATION_COUNT; next++) {
        sqlite3_stmt *stmt = NULL;
        int64_t version = 0;

        st = db_exec(s, "BEGIN IMMEDIATE", "begin", err);
        if (st != CP_OK)
            break;
        st = prepare(s, "SELECT coalesce(max(version), 0) FROM report_schema_version",
                     &stmt, err);
        if (st == CP_OK && sqlite3_step(stmt) == SQLITE_ROW)
            version = sqlite3_column_int64(stmt, 0);
        sqlite3_finalize(stmt);
        if (st == CP_OK && version > MIGRATION_COUNT)
            st = FAIL(err, CP_ERR_UNSUPPORTED, "report: the schema is newer than this build");
        if (st == CP_OK && version < next) {
            char sql[80];

            st = db_exec(s, migrations[next - 1], "migrate", err);
            snprintf(sql, sizeof sql, "INSERT INTO report_schema_version VALUES(%d)", next);
            if (st == CP_OK)
                st = db_exec(s, sql, "migrate", err);
        }
        if (st == CP_OK)
            st = db_exec(s, "COMMIT", "commit", err);
        else
            sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    }
    return st;
}

static cp_status read_seed(const char *path, unsigned char seed[KEY_SEED_BYTES], cp_error *err)
{
    unsigned char extra;
    FILE *f = fopen(path, "rb");
    cp_status st = CP_OK;

    if (f == NULL)
        return FAIL(err, CP_ERR_IO, "report: cannot open the signing key %s", path);
    if (fread(seed, 1, KEY_SEED_BYTES, f) != KEY_SEED_BYTES || fread(&extra, 1, 1, f) != 0)
        st = FAIL(err, CP_ERR_CONFIG, "report: the signing key %s is not 32 bytes", path);
    fclose(f);
    return st;
}

/*
 * Creates the key file with O_EXCL, so that two processes starting at once
 * never write two keys: the loser reads the winner's.
 */
static cp_status load_key(report_store *s, const char *path, cp_error *err)
{
    unsigned char seed[KEY_SEED_BYTES];
    cp_status st = CP_OK;
    int fd;

    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd >= 0) {
        randombytes_buf(seed, sizeof seed);
        if (write(fd, seed, sizeof seed) != (ssize_t)sizeof seed || fsync(fd) != 0)
            st = FAIL(err, CP_ERR_IO, "report: cannot write the signing key %s", path);
        close(fd);
    } else if (errno == EEXIST) {
        st = read_seed(path, seed, err);
    } else {
        st = FAIL(err, CP_ERR_IO, "report: cannot create the signing key %s", path);
    }

    if (st == CP_OK) {
        crypto_sign_seed_keypair(s->pk, s->sk, seed);
        sodium_bin2base64(s->pk_b64, sizeof s->pk_b64, s->pk, sizeof s->pk,
                          sodium_base64_VARIANT_ORIGINAL);
    }
    sodium_memzero(seed, sizeof seed);
    return st;
}

cp_status report_store_open(const report_config *cfg, report_store **out, cp_error *err)
{
    report_store *s;
    cp_status st;

    if (cfg == NULL || out == NULL || cfg->orders == NULL || cfg->kv == NULL ||
        cfg->db_path == NULL || cfg->key_path == NULL)
        return FAIL(err, CP_ERR_INVALID, "report: incomplete configuration");
    if (sodium_init() < 0)
        return FAIL(err, CP_ERR_UNAVAILABLE, "report: libsodium could not start");
    s = cp_calloc(1, sizeof *s);
    if (s == NULL)
        return FAIL(err, CP_ERR_NOMEM, "report: store");
    if (pthread_mutex_init(&s->mu, NULL) != 0) {
        cp_free(s);
        return FAIL(err, CP_ERR_NOMEM, "report: lock");
    }
    s->orders = cfg->orders;
    s->kv = cfg->kv;
    s->now_us = cfg->now_us;
    s->lock_s = cfg->lock_s != 0 ? cfg->lock_s : REPORT_LOCK_DEFAULT_S;
    s->min_reviewer_title = cfg->min_reviewer_title != 0 ? cfg->min_reviewer_title : 2;

    if (sqlite3_open_v2(cfg->db_path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                        SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
        st = FAIL(err, CP_ERR_IO, "report: cannot open %s", cfg->db_path);
        goto fail;
    }
    sqlite3_extended_result_codes(s->db, 1);
    sqlite3_busy_timeout(s->db, REPORT_BUSY_TIMEOUT_MS);

    /* A submitted or released version must survive a crash: every commit fsynced. */
    st = db_exec(s, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;", "configure", err);
    if (st == CP_OK)
        st = migrate(s, err);
    if (st == CP_OK)
        st = load_key(s, cfg->key_path, err);
    if (st != CP_OK)
        goto fail;
    *out = s;
    return CP_OK;

fail:
    report_store_close(s);
    return st;
}

void report_store_close(report_store *s)
{
    if (s == NULL)
        return;
    sqlite3_close_v2(s->db);
    sodium_memzero(s->sk, sizeof s->sk);
    pthread_mutex_destroy(&s->mu);
    cp_free(s);
}

const char *report_public_key(const report_store *s)
{
    return s->pk_b64;
}

const char *report_status_name(report_status st)
{
    switch (st) {
    case REPORT_DRAFT:
        return "draft";
    case REPORT_SUBMITTED:
        return "submitted";
    case REPORT_REJECTED:
        return "rejected";
    case REPORT_APPROVED:
        return "approved";
    case REPORT_RELEASED:
        return "released";
    }
    return "unknown";
}

void report_version_clear(report_version *v)
{
    if (v == NULL)
        return;
    cp_free(v->findings);
    cp_free(v->impression);
    memset(v, 0, sizeof *v);
}

/* --- templates -------------------------------------------------------------------- */

cp_status report_template_put(report_store *s, report_template *t, cp_error *err)
{
    sqlite3_stmt *stmt = NULL;
    cp_status st;

    if (t == NULL || t->name[0] == '\0')
        return FAIL(err, CP_ERR_INVALID, "report: a template needs a name");
    st = check_text(t->findings, "template findings", err);
    if (st == CP_OK)
        st = check_text(t->impression, "template impression", err);
    if (st != CP_OK)
        return st;

    pthread_mutex_lock(&s->mu);
    st = prepare(s, "INSERT INTO report_template(id, modality, body_part, name, findings,"
                    " impression) VALUES(nullif(?1, 0), ?2, ?3, ?4, ?5, ?6)"
                    " ON CONFLICT(id) DO UPDATE SET modality = ?2, body_part = ?3, name = ?4,"
                    " findings = ?5, impression = ?6", &stmt, err);
    if (st == CP_OK) {
        sqlite3_bind_int64(stmt, 1, t->id);
        sqlite3_bind_text(stmt, 2, t->modality, -1, SQLITE_STATIC);
        sqlite3_bind_text(stmt, 3, t->body_part, -1, SQLITE_STATIC);
        sqlite3_bind_text(stmt, 4, t->name, -1, SQLITE_STATIC);
        sqlite3_bind_text(stmt, 5, t->findings != NULL ? t->findings : "", -1, SQLITE_STATIC);
        sqlite3_bind_text(stmt, 6, t->impression != NULL ? t->impression : "", -1,
                          SQLITE_STATIC);
        st = step_done(s, stmt, "put template", err);
    }
    if (st == CP_OK && t->id == 0)
        t->id = sqlite3_last_insert_rowid(s->db);
    pthread_mutex_unlock(&s->mu);
    return st;
}

/*
 * The templates for a modality and body part: those made for exactly them
 * first, then those for any body part or any modality. NULL or "" takes
 * every template on that key.
 */
cp_status report_template_list(report_store *s, const char *modality, const char *body_part,
                               report_template_fn fn, void *ctx, cp_error *err)
{
    sqlite3_stmt *stmt = NULL;
    cp_status st;
    int rc;

    pthread_mutex_lock(&s->mu);
    st = prepare(s, "SELECT id, modality, body_part, name, findings, impression"
                    " FROM report_template"
                    " WHERE (?1 = '' OR modality = '' OR modality = ?1)"
                    " AND (?2 = '' OR body_part = '' OR body_part = ?2)"
                    " ORDER BY (modality <> '') + (body_part <> '') DESC, name, id",
                 &stmt, err);
    if (st != CP_OK)
        goto done;
    sqlite3_bind_text(stmt, 1, modality != NULL ? modality : "", -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 2, body_part != NULL ? body_part : "", -1, SQLITE_STATIC);
    while (st == CP_OK && (rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        report_template t = { 0 };

        t.id = sqlite3_column_int64(stmt, 0);
        copy_text(t.modality, sizeof t.modality, stmt, 1);
        copy_text(t.body_part, sizeof t.body_part, stmt, 2);
        copy_text(t.name, sizeof t.name, stmt, 3);
        t.findings = column_dup(stmt, 4);
        t.impression = column_dup(stmt, 5);
        if (t.findings == NULL || t.impression == NULL)
            st = FAIL(err, CP_ERR_NOMEM, "report: template");
        else
            st = fn(ctx, &t);
        cp_free(t.findings);
        cp_free(t.impression);
    }
    if (st == CP_OK && rc != SQLITE_DONE)
        st = db_fail(s, err, "list templates");
    if (st == CP_ERR_STOPPED)
        st = CP_OK;

done:
    sqlite3_finalize(stmt);
    pthread_mutex_unlock(&s->mu);
    return st;
}

/* --- the edit lock ------------------------------------------------------------------ */

/*
 * Takes the lock when free, renews it when the caller holds it; answers
 * {1, holder} or {0, holder}. One script, so that no other holder can slip
 * in between the read and the write.
 */
static const char lock_script[] =
    "if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then\n"
    "  return {1, ARGV[1]}\n"
    "end\n"
    "local v = redis.call('GET', KEYS[1])\n"
    "if v == ARGV[1] then\n"
    "  redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"
    "  return {1, v}\n"
    "end\n"
    "return {0, v}\n";

/* Deletes the lock only for its holder: 1 deleted, 0 absent, -1 somebody else's. */
static const char unlock_script[] =
    "local v = redis.call('GET', KEYS[1])\n"
    "if not v then return 0 end\n"
    "if v == ARGV[1] then redis.call('DEL', KEYS[1]) return 1 end\n"
    "return -1\n";

static cp_status lock_names(report_store *s, const principal *p, int64_t order_id,
                            char *key, size_t kcap, char *value, size_t vcap, cp_error *err)
{
    char id[24];

    if (p == NULL || p->kind != PRINCIPAL_USER || p->id <= 0)
        return FAIL(err, CP_ERR_FORBIDDEN, "report: only a user edits a report");
    snprintf(id, sizeof id, "%" PRId64, order_id);
    if (kv_key(s->kv, key, kcap, "rlock", id) != CP_OK)
        return FAIL(err, CP_ERR_LIMIT, "report: lock key");
    snprintf(value, vcap, "%" PRId64 ":%s", p->id, p->session_id);
    return CP_OK;
}

cp_status report_lock(report_store *s, const principal *p, int64_t order_id, int64_t *holder,
                      cp_error *err)
{
    char key[96];
    char value[64];
    char ttl[24];
    kv_reply *r = NULL;
    cp_status st;

    st = lock_names(s, p, order_id, key, sizeof key, value, sizeof value, err);
    if (st != CP_OK)
        return st;
    snprintf(ttl, sizeof ttl, "%llu", (unsigned long long)s->lock_s * 1000u);

    {
        const char *keys[1] = { key };
        const char *args[2] = { value, ttl };

        st = kv_eval(s->kv, lock_script, 1, keys, 2, args, &r, err);
    }
    if (st != CP_OK)
        return st;
    if (r->type != KV_REPLY_ARRAY || r->count != 2 ||
        r->elements[0]->type != KV_REPLY_INTEGER || r->elements[1]->type != KV_REPLY_STRING) {
        st = FAIL(err, CP_ERR_MALFORMED, "report: the lock script answered oddly");
        goto done;
    }
    if (holder != NULL)
        *holder = strtoll(r->elements[1]->str, NULL, 10);
    if (r->elements[0]->integer != 1)
        st = FAIL(err, CP_ERR_EXISTS, "report: another user holds the edit lock");

done:
    kv_reply_free(r);
    return st;
}

cp_status report_unlock(report_store *s, const principal *p, int64_t order_id, cp_error *err)
{
    char key[96];
    char value[64];
    kv_reply *r = NULL;
    cp_status st;

    st = lock_names(s, p, order_id, key, sizeof key, value, sizeof value, err);
    if (st != CP_OK)
        return st;

    {
        const char *keys[1] = { key };
        const char *args[1] = { value };

        st = kv_eval(s->kv, unlock_script, 1, keys, 1, args, &r, err);
    }
    if (st != CP_OK)
        return st;
    if (r->type != KV_REPLY_INTEGER)
        st = FAIL(err, CP_ERR_MALFORMED, "report: the unlock script answered oddly");
    else if (r->integer < 0)
        st = FAIL(err, CP_ERR_FORBIDDEN, "report: the edit lock is somebody else's");
    kv_reply_free(r);
    return st;
}

/* --- reading versions ------------------------------------------------------------- */

#define VERSION_COLUMNS                                                                    \
    "order_id, version, status, author, reviewer, written, reviewed, released, critical," \
    " critical_ack_by, critical_ack_us, reason, findings, impression, signature"

static cp_status version_from_row(sqlite3_stmt *stmt, report_version *v, cp_error *err)
{
    memset(v, 0, sizeof *v);
    v->order_id = sqlite3_column_int64(stmt, 0);
    v->version = sqlite3_column_int(stmt, 1);
    v->status = (report_status)sqlite3_column_int(stmt, 2);
    v->author_id = sqlite3_column_int64(stmt, 3);
    v->reviewer_id = sqlite3_column_int64(stmt, 4);
    v->written_us = sqlite3_column_int64(stmt, 5);
    v->reviewed_us = sqlite3_column_int64(stmt, 6);
    v->released_us = sqlite3_column_int64(stmt, 7);
    v->critical = sqlite3_column_int(stmt, 8) != 0;
    v->critical_ack_by = sqlite3_column_int64(stmt, 9);
    v->critical_ack_us = sqlite3_column_int64(stmt, 10);
    copy_text(v->reason, sizeof v->reason, stmt, 11);
    v->findings = column_dup(stmt, 12);
    v->impression = column_dup(stmt, 13);
    copy_text(v->signature, sizeof v->signature, stmt, 14);
    if (v->findings == NULL || v->impression == NULL) {
        report_version_clear(v);
        return FAIL(err, CP_ERR_NOMEM, "report: version");
    }
    return CP_OK;
}

static cp_status draft_get(report_store *s, int64_t order_id, report_version *v, cp_error *err)
{
    sqlite3_stmt *stmt = NULL;
    cp_status st;
    int rc;

    st = prepare(s, "SELECT author, findings, impression, critical, saved FROM report_draft"
                    " WHERE order_id = ?", &stmt, err);
    if (st != CP_OK)
        return st;
    sqlite3_bind_int64(stmt, 1, order_id);
    rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW) {
        memset(v, 0, sizeof *v);
        v->order_id = order_id;
        v->status = REPORT_DRAFT;
        v->author_id = sqlite3_column_int64(stmt, 0);
        v->findings = column_dup(stmt, 1);
        v->impression = column_dup(stmt, 2);
        v->critical = sqlite3_column_int(stmt, 3) != 0;
        v->written_us = sqlite3_column_int64(stmt, 4);
        if (v->findings == NULL || v->impression == NULL) {
            report_version_clear(v);
            st = FAIL(err, CP_ERR_NOMEM, "report: draft");
        }
    } else if (rc == SQLITE_DONE) {
        st = FAIL(err, CP_ERR_NOT_FOUND, "report: no draft for this order");
    } else {
        st = db_fail(s, err, "get draft");
    }
    sqlite3_finalize(stmt);
    return st;
}

/* A version, or the newest when version < 0; the caller holds s->mu. */
static cp_status version_get(report_store *s, int64_t order_id, int version, report_version *v,
                             cp_error *err)
{
    sqlite3_stmt *stmt = NULL;
    cp_status st;
    int rc;

    st = prepare(s, version < 0
                 ? "SELECT " VERSION_COLUMNS " FROM report_version WHERE order_id = ?1"
                   " ORDER BY version DESC LIMIT 1"
                 : "SELECT " VERSION_COLUMNS " FROM report_version WHERE order_id = ?1"
                   " AND version = ?2", &stmt, err);
    if (st != CP_OK)
        return st;
    sqlite3_bind_int64(stmt, 1, order_id);
    if (version >= 0)
        sqlite3_bind_int(stmt, 2, version);
    rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW)
        st = version_from_row(stmt, v, err);
    else if (rc == SQLITE_DONE)
        st = FAIL(err, CP_ERR_NOT_FOUND, "report: no such version");
    else
        st = db_fail(s, err, "get version");
    sqlite3_finalize(stmt);
    return st;
}

cp_status report_get(report_store *s, int64_t order_id, int version, report_version *out,
                     cp_error *err)
{
    cp_status st;

    pthread_mutex_lock(&s->mu);
    if (version == 0)
        st = draft_get(s, order_id, out, err);
    else
        st = version_get(s, order_id, version, out, err);
    pthread_mutex_unlock(&s->mu);
    return st;
}

cp_status report_versions(report_store *s, int64_t order_id, report_version_fn fn, void *ctx,
                          cp_error *err)
{
    sqlite3_stmt *stmt = NULL;
    cp_status st;
    int rc;

    pthread_mutex_lock(&s->mu);
    st = prepare(s, "SELECT " VERSION_COLUMNS " FROM report_version WHERE order_id = ?"
                    " ORDER BY version", &stmt, err);
    if (st != CP_OK)
        goto done;
    sqlite3_bind_int64(stmt, 1, order_id);
    while (st == CP_OK && (rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        report_version v;

        st = version_from_row(stmt, &v, err);
        if (st == CP_OK)
            st = fn(ctx, &v);
        report_version_clear(&v);
    }
    if (st == CP_OK && rc != SQLITE_DONE)
        st = db_fail(s, err, "list versions");
    if (st == CP_ERR_STOPPED)
        st = CP_OK;

done:
    sqlite3_finalize(stmt);
    pthread_mutex_unlock(&s->mu);
    return st;
}

/* --- drafting and submitting ---------------------------------------------------------- */

/* The order, checked to be the caller's to write now. */
static cp_status author_order(report_store *s, const principal *p, int64_t order_id, order *o,
                              cp_error *err)
{
    cp_status st = order_get(s->orders, order_id, o, err);

    if (st != CP_OK)
        return st;
    if (p == NULL || p->kind != PRINCIPAL_USER || p->id == 0 || p->id != o->doctor_id)
        return FAIL(err, CP_ERR_FORBIDDEN, "report: only the order's doctor writes it");
    if (o->state != ORDER_CLAIMED && o->state != ORDER_RETURNED)
        return FAIL(err, CP_ERR_INVALID, "report: the order is %s, not being written",
                    order_state_name(o->state));
    return CP_OK;
}

cp_status report_save_draft(report_store *s, const principal *p, int64_t order_id,
                            const char *findings, const char *impression, bool critical,
                            cp_error *err)
{
    sqlite3_stmt *stmt = NULL;
    order o;
    cp_status st;

    st = author_order(s, p, order_id, &o, err);
    if (st == CP_OK)
        st = check_text(findings, "findings", err);
    if (st == CP_OK)
        st = check_text(impression, "impression", err);
    if (st == CP_OK)
        st = report_lock(s, p, order_id, NULL, err);
    if (st != CP_OK)
        return st;

    pthread_mutex_lock(&s->mu);
    st = prepare(s, "INSERT INTO report_draft(order_id, author, findings, impression,"
                    " critical, saved) VALUES(?1, ?2, ?3, ?4, ?5, ?6)"
                    " ON CONFLICT(order_id) DO UPDATE SET author = ?2, findings = ?3,"
                    " impression = ?4, critical = ?5, saved = ?6", &stmt, err);
    if (st == CP_OK) {
        sqlite3_bind_int64(stmt, 1, order_id);
        sqlite3_bind_int64(stmt, 2, p->id);
        sqlite3_bind_text(stmt, 3, findings != NULL ? findings : "", -1, SQLITE_STATIC);
        sqlite3_bind_text(stmt, 4, impression != NULL ? impression : "", -1, SQLITE_STATIC);
        sqlite3_bind_int(stmt, 5, critical ? 1 : 0);
        sqlite3_bind_int64(stmt, 6, now_us(s));
        st = step_done(s, stmt, "save draft", err);
    }
    pthread_mutex_unlock(&s->mu);
    return st;
}

/* Writes the draft as version n + 1; *number gets n + 1. The caller holds s->mu. */
static cp_status freeze_draft(report_store *s, const report_version *draft, int64_t author,
                              int64_t now, bool approved, int *number, cp_error *err)
{
    sqlite3_stmt *stmt = NULL;
    cp_status st;

    st = db_exec(s, "BEGIN IMMEDIATE", "begin", err);
    if (st != CP_OK)
        return st;
    st = prepare(s, "INSERT INTO report_version(order_id, version, status, author, reviewer,"
                    " written, reviewed, critical, findings, impression)"
                    " SELECT ?1, coalesce(max(version), 0) + 1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9"
                    " FROM report_version WHERE order_id = ?1", &stmt, err);
    if (st == CP_OK) {
        sqlite3_bind_int64(stmt, 1, draft->order_id);
        sqlite3_bind_int(stmt, 2, approved ? REPORT_APPROVED : REPORT_SUBMITTED);
        sqlite3_bind_int64(stmt, 3, author);
        sqlite3_bind_int64(stmt, 4, approved ? author : 0);
        sqlite3_bind_int64(stmt, 5, now);
        sqlite3_bind_int64(stmt, 6, approved ? now : 0);
        sqlite3_bind_int(stmt, 7, draft->critical ? 1 : 0);
        sqlite3_bind_text(stmt, 8, draft->findings, -1, SQLITE_STATIC);
        sqlite3_bind_text(stmt, 9, draft->impression, -1, SQLITE_STATIC);
        st = step_done(s, stmt, "write version", err);
    }
    if (st == CP_OK) {
        st = prepare(s, "SELECT max(version) FROM report_version WHERE order_id = ?", &stmt,
                     err);
        if (st == CP_OK) {
            sqlite3_bind_int64(stmt, 1, draft->order_id);
            if (sqlite3_step(stmt) == SQLITE_ROW)
                *number = sqlite3_column_int(stmt, 0);
            sqlite3_finalize(stmt);
        }
    }
    if (st == CP_OK)
        st = db_exec(s, "COMMIT", "commit", err);
    else
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    return st;
}

/*
 * The order moves first: its compare-and-set decides between concurrent
 * callers, and only the winner writes the version. The two writes go
 * through two connections, so they are not one transaction (see the known
 * gaps): a failure of the second leaves the order reported with the draft
 * still in place.
 */
cp_status report_submit(report_store *s, const principal *p, int64_t order_id, bool self_approve,
                        int *version_out, cp_error *err)
{
    report_version draft = { 0 };
    order o;
    order_state from;
    int64_t now;
    int number = 0;
    cp_status approve_st = CP_OK;
    cp_status st;

    st = author_order(s, p, order_id, &o, err);
    if (st != CP_OK)
        return st;
    if (self_approve && !p->may_self_approve)
        return FAIL(err, CP_ERR_FORBIDDEN,
                    "report: this doctor may not approve their own report");
    st = report_lock(s, p, order_id, NULL, err);
    if (st != CP_OK)
        return st;
    st = report_get(s, order_id, 0, &draft, err);
    if (st != CP_OK)
        return st;
    if (draft.findings[0] == '\0' && draft.impression[0] == '\0') {
        st = FAIL(err, CP_ERR_INVALID, "report: the draft is empty");
        goto done;
    }

    now = now_us(s);
    from = o.state;
    o.reported_us = now;
    o.state = ORDER_REPORTED;
    st = order_transition(s->orders, &o, from, "reported", p->id, NULL, err);
    if (st != CP_OK)
        goto done;
    if (self_approve) {
        o.state = ORDER_APPROVED;
        o.reviewer_id = p->id;
        o.approved_us = now;
        approve_st = order_transition(s->orders, &o, ORDER_REPORTED, "approved", p->id, NULL,
                                      err);
    }

    /* Reported either way: the version is written, approved only if the order is. */
    pthread_mutex_lock(&s->mu);
    st = freeze_draft(s, &draft, p->id, now, self_approve && approve_st == CP_OK, &number,
                      err);
    pthread_mutex_unlock(&s->mu);
    if (st == CP_OK && version_out != NULL)
        *version_out = number;
    if (st == CP_OK)
        report_unlock(s, p, order_id, NULL);
    if (st == CP_OK)
        st = approve_st;

done:
    report_version_clear(&draft);
    return st;
}

/* --- review, release, acknowledgement ------------------------------------------------- */

static bool principal_sees(const principal *p, int64_t institution_id, const char *modality)
{
    return p->kind == PRINCIPAL_SERVICE || policy_study_visible(p, institution_id, modality);
}

/*
 * Whether the reviewer belongs to the institution the order is read under:
 * the centre's reviewers review its reads whether or not they hold a
 * contract with the requesting clinic (docs/api.md).
 */
static bool reviews_for(const principal *r, const order *o)
{
    size_t own = r->own_grant_count;

    if (o->reading_id == 0)
        return false;
    if (r->institution_id == o->reading_id)
        return true;
    for (size_t i = 0; i < own && i < r->grant_count; i++)
        if (r->grants[i].institution_id == o->reading_id)
            return true;
    return false;
}

/* Sets the fields a review, release or acknowledgement fills; the trigger keeps them once. */
static cp_status version_update(report_store *s, const report_version *v, cp_error *err)
{
    sqlite3_stmt *stmt = NULL;
    cp_status st;

    pthread_mutex_lock(&s->mu);
    st = prepare(s, "UPDATE report_version SET status = ?3, reviewer = ?4, reviewed = ?5,"
                    " released = ?6, critical_ack_by = ?7, critical_ack_us = ?8, reason = ?9,"
                    " signature = ?10 WHERE order_id = ?1 AND version = ?2", &stmt, err);
    if (st == CP_OK) {
        sqlite3_bind_int64(stmt, 1, v->order_id);
        sqlite3_bind_int(stmt, 2, v->version);
        sqlite3_bind_int(stmt, 3, (int)v->status);
        sqlite3_bind_int64(stmt, 4, v->reviewer_id);
        sqlite3_bind_int64(stmt, 5, v->reviewed_us);
        sqlite3_bind_int64(stmt, 6, v->released_us);
        sqlite3_bind_int64(stmt, 7, v->critical_ack_by);
        sqlite3_bind_int64(stmt, 8, v->critical_ack_us);
        sqlite3_bind_text(stmt, 9, v->reason, -1, SQLITE_STATIC);
        sqlite3_bind_text(stmt, 10, v->signature, -1, SQLITE_STATIC);
        st = step_done(s, stmt, "update version", err);
    }
    pthread_mutex_unlock(&s->mu);
    return st;
}

static cp_status check_reviewer(const report_store *s, const principal *r, const order *o,
                                const report_version *v, cp_error *err)
{
    if (r == NULL || r->kind != PRINCIPAL_USER || r->id == 0)
        return FAIL(err, CP_ERR_FORBIDDEN, "report: only a user reviews");
    if ((r->roles & ROLE_REVIEWER) == 0)
        return FAIL(err, CP_ERR_FORBIDDEN, "report: the reviewer role is needed");
    if (r->title < s->min_reviewer_title)
        return FAIL(err, CP_ERR_FORBIDDEN, "report: the reviewer's title is too low");
    if (r->id == v->author_id && !r->may_self_approve)
        return FAIL(err, CP_ERR_FORBIDDEN,
                    "report: the author may not review their own report");
    if (!reviews_for(r, o) && !principal_sees(r, o->requesting_id, o->modality))
        return FAIL(err, CP_ERR_FORBIDDEN, "report: the reviewer may not see this study");
    return CP_OK;
}

cp_status report_review(report_store *s, const principal *reviewer, int64_t order_id,
                        bool approve, const char *reason, cp_error *err)
{
    report_version v = { 0 };
    order o;
    int64_t now;
    cp_status st;

    if (!approve && (reason == NULL || reason[0] == '\0'))
        return FAIL(err, CP_ERR_INVALID, "report: a rejection needs a reason");
    if (reason != NULL && strlen(reason) > ORDER_REASON_MAX)
        return FAIL(err, CP_ERR_LIMIT, "report: the reason is too long");
    st = order_get(s->orders, order_id, &o, err);
    if (st != CP_OK)
        return st;
    if (o.state != ORDER_REPORTED)
        return FAIL(err, CP_ERR_INVALID, "report: the order is %s, not reported",
                    order_state_name(o.state));
    st = report_get(s, order_id, -1, &v, err);
    if (st != CP_OK)
        return st;
    if (v.status != REPORT_SUBMITTED) {
        st = FAIL(err, CP_ERR_INVALID, "report: the newest version is %s",
                  report_status_name(v.status));
        goto done;
    }
    st = check_reviewer(s, reviewer, &o, &v, err);
    if (st != CP_OK)
        goto done;

    now = now_us(s);
    o.reviewer_id = reviewer->id;
    if (approve) {
        o.approved_us = now;
        o.state = ORDER_APPROVED;
        st = order_transition(s->orders, &o, ORDER_REPORTED, "approved", reviewer->id, NULL,
                              err);
    } else {
        o.rejections++;
        o.state = ORDER_RETURNED;
        st = order_transition(s->orders, &o, ORDER_REPORTED, "rejected", reviewer->id, reason,
                              err);
    }
    if (st != CP_OK)
        goto done;

    v.status = approve ? REPORT_APPROVED : REPORT_REJECTED;
    v.reviewer_id = reviewer->id;
    v.reviewed_us = now;
    if (!approve)
        snprintf(v.reason, sizeof v.reason, "%s", reason);
    st = version_update(s, &v, err);

done:
    report_version_clear(&v);
    return st;
}

/* Fills v->signature: Ed25519 over the signed text of v (released_us set) and o. */
static cp_status sign_version(report_store *s, report_version *v, const order *o)
{
    unsigned char sig[crypto_sign_BYTES];
    cp_buf text = CP_BUF_INIT;
    cp_status st = report_signed_text(v, o, &text);

    if (st == CP_OK) {
        crypto_sign_detached(sig, NULL, text.data, text.len, s->sk);
        sodium_bin2base64(v->signature, sizeof v->signature, sig, sizeof sig,
                          sodium_base64_VARIANT_ORIGINAL);
    }
    cp_buf_free(&text);
    return st;
}

cp_status report_release(report_store *s, int64_t order_id, int64_t actor_id, cp_error *err)
{
    report_version v = { 0 };
    order o;
    cp_status st;

    st = order_get(s->orders, order_id, &o, err);
    if (st != CP_OK)
        return st;
    if (o.state != ORDER_APPROVED)
        return FAIL(err, CP_ERR_INVALID, "report: the order is %s, not approved",
                    order_state_name(o.state));
    st = report_get(s, order_id, -1, &v, err);
    if (st != CP_OK)
        return st;
    if (v.status != REPORT_APPROVED) {
        st = FAIL(err, CP_ERR_INVALID, "report: the newest version is %s",
                  report_status_name(v.status));
        goto done;
    }

    v.status = REPORT_RELEASED;
    v.released_us = now_us(s);
    st = sign_version(s, &v, &o);
    if (st != CP_OK)
        goto done;

    o.released_us = v.released_us;
    o.state = ORDER_RELEASED;
    st = order_transition(s->orders, &o, ORDER_APPROVED, "released", actor_id, NULL, err);
    if (st == CP_OK)
        st = version_update(s, &v, err);

done:
    report_version_clear(&v);
    return st;
}

/* A member of the requesting institution itself: a contract's reader is not one. */
static bool of_requesting(const principal *p, int64_t institution_id)
{
    if (p == NULL || (p->roles & (ROLE_TECHNICIAN | ROLE_INSTITUTION_ADMIN)) == 0)
        return false;
    for (size_t i = 0; i < p->grant_count; i++)
        if (p->grants[i].institution_id == institution_id)
            return true;
    return p->institution_id == institution_id;
}

cp_status report_ack_critical(report_store *s, const principal *p, int64_t order_id,
                              cp_error *err)
{
    report_version v = { 0 };
    order o;
    cp_status st;

    st = order_get(s->orders, order_id, &o, err);
    if (st != CP_OK)
        return st;
    if (!of_requesting(p, o.requesting_id))
        return FAIL(err, CP_ERR_FORBIDDEN,
                    "report: only the requesting institution acknowledges");
    st = report_get(s, order_id, -1, &v, err);
    if (st != CP_OK)
        return st;
    if (v.status != REPORT_RELEASED || !v.critical)
        st = FAIL(err, CP_ERR_INVALID, "report: no released critical finding to ack");
    else if (v.critical_ack_by != 0)
        st = FAIL(err, CP_ERR_EXISTS, "report: the critical finding was acknowledged");
    if (st != CP_OK)
        goto done;

    v.critical_ack_by = p->id;
    v.critical_ack_us = now_us(s);
    st = version_update(s, &v, err);
    if (st == CP_OK)
        st = order_note(s->orders, order_id, "critical_acked", p->id, NULL, err);

done:
    report_version_clear(&v);
    return st;
}

/* --- repair after a crash between the two writes ------------------------------------ */

/* The version status each state of an order read to its end expects. */
static report_status status_for(order_state state)
{
    switch (state) {
    case ORDER_REPORTED: return REPORT_SUBMITTED;
    case ORDER_RETURNED: return REPORT_REJECTED;
    case ORDER_APPROVED: return REPORT_APPROVED;
    case ORDER_RELEASED: return REPORT_RELEASED;
    default: return 0;
    }
}

/*
 * Ids of orders (at most cap, ids above after) whose state is ahead of
 * their newest version: one query on the shared database, so that a
 * start-up does not read every released report.
 */
static cp_status behind_ids(report_store *s, int64_t after, int64_t *ids, size_t cap,
                            size_t *count, cp_error *err)
{
    sqlite3_stmt *stmt = NULL;
    cp_status st;
    int rc;

    *count = 0;
    pthread_mutex_lock(&s->mu);
    st = prepare(s, "SELECT o.id FROM reading_order o WHERE o.id > ?1 AND o.state IN (5, 6, 7, 8)"
                    " AND coalesce((SELECT v.status FROM report_version v"
                    "  WHERE v.order_id = o.id ORDER BY v.version DESC LIMIT 1), 0)"
                    " <> CASE o.state WHEN 5 THEN 2 WHEN 6 THEN 3 WHEN 7 THEN 4 ELSE 5 END"
                    " ORDER BY o.id LIMIT ?2", &stmt, err);
    if (st == CP_OK) {
        sqlite3_bind_int64(stmt, 1, after);
        sqlite3_bind_int64(stmt, 2, (sqlite3_int64)cap);
        while ((rc = sqlite3_step(stmt)) == SQLITE_ROW)
            ids[(*count)++] = sqlite3_column_int64(stmt, 0);
        if (rc != SQLITE_DONE)
            st = db_fail(s, err, "find orders ahead of their report");
    }
    sqlite3_finalize(stmt);
    pthread_mutex_unlock(&s->mu);
    return st;
}

typedef struct last_rejection {
    int64_t time_us;
    char reason[ORDER_REASON_MAX + 1];
} last_rejection;

static cp_status on_history(void *ctx, const order_event *e)
{
    last_rejection *r = ctx;

    if (strcmp(e->event, "rejected") == 0) {
        r->time_us = e->time_us;
        snprintf(r->reason, sizeof r->reason, "%s", e->reason);
    }
    return CP_OK;
}

/* The frozen draft as the next version, written as the order's move said. */
static cp_status repair_freeze(report_store *s, const order *o, bool approved, cp_error *err)
{
    report_version draft = { 0 };
    int number = 0;
    cp_status st = report_get(s, o->id, 0, &draft, err);

    if (st != CP_OK)
        return st;
    pthread_mutex_lock(&s->mu);
    st = freeze_draft(s, &draft, o->doctor_id, approved ? o->approved_us : o->reported_us,
                      approved, &number, err);
    pthread_mutex_unlock(&s->mu);
    report_version_clear(&draft);
    return st;
}

/* Finishes the version write the order's last move stands for; *what says how. */
static cp_status repair_one(report_store *s, int64_t id, const char **what, cp_error *err)
{
    report_version v = { 0 };
    last_rejection rej = { 0 };
    bool none = false;
    order o;
    cp_status st = order_get(s->orders, id, &o, err);

    if (st != CP_OK)
        return st;
    st = report_get(s, id, -1, &v, err);
    if (st == CP_ERR_NOT_FOUND) {
        none = true;
        st = CP_OK;
    }
    if (st != CP_OK)
        return st;
    if (!none && v.status == status_for(o.state)) {
        *what = "none";
        goto done;
    }

    /* A submit (or a self-approving one) moved the order; the draft was not frozen. */
    if ((o.state == ORDER_REPORTED || o.state == ORDER_APPROVED) &&
        (none || v.status == REPORT_REJECTED)) {
        *what = "version_written";
        st = repair_freeze(s, &o, o.state == ORDER_APPROVED, err);
        goto done;
    }
    if (none) {
        st = FAIL(err, CP_ERR_INVALID, "report: order %lld is %s without a version",
                  (long long)id, order_state_name(o.state));
        goto done;
    }
    if (v.status == REPORT_SUBMITTED && o.state == ORDER_APPROVED) {
        *what = "version_approved";
        v.status = REPORT_APPROVED;
        v.reviewer_id = o.reviewer_id;
        v.reviewed_us = o.approved_us;
    } else if (v.status == REPORT_SUBMITTED && o.state == ORDER_RETURNED) {
        *what = "version_rejected";
        st = order_history(s->orders, id, on_history, &rej, err);
        if (st != CP_OK)
            goto done;
        v.status = REPORT_REJECTED;
        v.reviewer_id = o.reviewer_id;
        v.reviewed_us = rej.time_us;
        snprintf(v.reason, sizeof v.reason, "%s", rej.reason[0] ? rej.reason : "(unknown)");
    } else if (v.status == REPORT_APPROVED && o.state == ORDER_RELEASED) {
        *what = "version_released";
        v.status = REPORT_RELEASED;
        v.released_us = o.released_us;
        st = sign_version(s, &v, &o);
        if (st != CP_OK)
            goto done;
    } else {
        st = FAIL(err, CP_ERR_INVALID, "report: order %lld is %s, its version %d is %s",
                  (long long)id, order_state_name(o.state), v.version,
                  report_status_name(v.status));
        goto done;
    }
    st = version_update(s, &v, err);

done:
    report_version_clear(&v);
    return st;
}

cp_status report_repair(report_store *s, report_repair_fn fn, void *ctx, size_t *repaired,
                        cp_error *err)
{
    int64_t ids[REPORT_REPAIR_PAGE];
    int64_t after = 0;
    size_t count, done = 0;
    cp_status st;

    do {
        st = behind_ids(s, after, ids, REPORT_REPAIR_PAGE, &count, err);
        for (size_t i = 0; st == CP_OK && i < count; i++) {
            const char *what = "none";
            cp_error one;
            cp_status rs;

            cp_error_clear(&one);
            rs = repair_one(s, ids[i], &what, &one);
            if (rs == CP_OK && strcmp(what, "none") != 0)
                done++;
            if (fn != NULL)
                fn(ctx, ids[i], rs == CP_OK ? what : "failed", rs == CP_OK ? NULL : &one);
            after = ids[i];
        }
    } while (st == CP_OK && count == REPORT_REPAIR_PAGE);
    if (repaired != NULL)
        *repaired = done;
    return st;
}

/* --- the signed text ------------------------------------------------------------------- */

/* Appends value escaped as the header describes: \\ \n \r, \xHH for other controls. */
static cp_status append_escaped(cp_buf *out, const char *value)
{
    cp_status st = CP_OK;

    for (const unsigned char *p = (const unsigned char *)value; st == CP_OK && *p; p++) {
        if (*p == '\\')
            st = cp_buf_append_str(out, "\\\\");
        else if (*p == '\n')
            st = cp_buf_append_str(out, "\\n");
        else if (*p == '\r')
            st = cp_buf_append_str(out, "\\r");
        else if (*p < 0x20 || *p == 0x7F)
            st = cp_buf_appendf(out, "\\x%02X", *p);
        else
            st = cp_buf_append_byte(out, *p);
    }
    return st;
}

static cp_status line_text(cp_buf *out, const char *key, const char *value)
{
    cp_status st = cp_buf_appendf(out, "%s: ", key);

    if (st == CP_OK)
        st = append_escaped(out, value != NULL ? value : "");
    if (st == CP_OK)
        st = cp_buf_append_byte(out, '\n');
    return st;
}

static cp_status line_int(cp_buf *out, const char *key, int64_t value)
{
    return cp_buf_appendf(out, "%s: %" PRId64 "\n", key, value);
}

cp_status report_signed_text(const report_version *v, const order *o, cp_buf *out)
{
    cp_status st;

    if (v == NULL || o == NULL || out == NULL)
        return CP_ERR_INVALID;
    st = cp_buf_append_str(out, "cloudpacs-report: 1\n");
    if (st == CP_OK)
        st = line_int(out, "order", o->id);
    if (st == CP_OK)
        st = line_text(out, "study", o->study_uid);
    if (st == CP_OK)
        st = line_text(out, "accession", o->accession);
    if (st == CP_OK)
        st = line_text(out, "issuer", o->issuer);
    if (st == CP_OK)
        st = line_text(out, "patient", o->patient_id);
    if (st == CP_OK)
        st = line_int(out, "requesting", o->requesting_id);
    if (st == CP_OK)
        st = line_int(out, "reading", o->reading_id);
    if (st == CP_OK)
        st = line_int(out, "version", v->version);
    if (st == CP_OK)
        st = line_int(out, "author", v->author_id);
    if (st == CP_OK)
        st = line_int(out, "reviewer", v->reviewer_id);
    if (st == CP_OK)
        st = line_int(out, "written", v->written_us);
    if (st == CP_OK)
        st = line_int(out, "reviewed", v->reviewed_us);
    if (st == CP_OK)
        st = line_int(out, "released", v->released_us);
    if (st == CP_OK)
        st = line_text(out, "critical", v->critical ? "yes" : "no");
    if (st == CP_OK)
        st = line_text(out, "findings", v->findings);
    if (st == CP_OK)
        st = line_text(out, "impression", v->impression);
    return st;
}

bool report_verify(const report_store *s, const report_version *v, const order *o)
{
    unsigned char sig[crypto_sign_BYTES];
    cp_buf text = CP_BUF_INIT;
    size_t sig_len = 0;
    bool ok = false;

    if (s == NULL || v == NULL || o == NULL || v->status != REPORT_RELEASED ||
        v->order_id != o->id)
        return false;
    if (sodium_base642bin(sig, sizeof sig, v->signature, strlen(v->signature), NULL, &sig_len,
                          NULL, sodium_base64_VARIANT_ORIGINAL) != 0 ||
        sig_len != sizeof sig)
        return false;
    if (report_signed_text(v, o, &text) == CP_OK)
        ok = crypto_sign_verify_detached(sig, text.data, text.len, s->pk) == 0;
    cp_buf_free(&text);
    return ok;
}
