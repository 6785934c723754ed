/*
 * share.c - cloud film share links (share.h): the table share_link in the
 * index database, the second factor kept as a keyed BLAKE2b, the throttle
 * and the share sessions in Redis, and the audit trail of every use, in
 * the shape of the IHE ATNA messages (PS3.15 A.5).
 *
 * Redis keys (under the kv's prefix):
 *   film:fail:link:<id>, film:fail:peer:<peer>   wrong answers, expiring
 *                                                SHARE_BLOCK_S after the
 *                                                first (or the block)
 *   film:wait:link:<id>, film:wait:peer:<peer>   a wait in force (PX)
 *   film:sess:<BLAKE2b of the session token>     the link id, EX
 * The check and the count are Lua scripts, so two tries at once cannot
 * both slip under a limit.
 */
#include "film/share.h"

#include <pthread.h>
#include <sodium.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "auth/credential.h"
#include "core/alloc.h"

#define FAIL(err, st, ...) cp_error_set((err), (st), CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG, \
                                        __VA_ARGS__)

/* The one answer for every token that does not lead to a valid link. */
#define NOT_FOUND(err) FAIL(err, CP_ERR_NOT_FOUND, "share: no such link")

#define SALT_BYTES 16
#define KEY_MAX 320

struct film_share_store {
    sqlite3 *db;
    pthread_mutex_t lock;               /* one statement sequence at a time on db */
    kv *kv;
    audit_log *audit;
    uint8_t key[32];
    int64_t (*now_us)(void);
    unsigned delay_base_ms;
};

/* A row with what never leaves this file: the factor's salt and hash. */
typedef struct link_row {
    film_share_link link;
    char salt[2 * SALT_BYTES + 1];
    char hash[65];
    int64_t parent_revoked_us;
    int64_t parent_expires_us;
} link_row;

/* --- names ------------------------------------------------------------------------ */

static const char *const scope_names[] = {
    [FILM_SHARE_SCOPE_STUDY] = "study",
    [FILM_SHARE_SCOPE_PATIENT_WITH_PRIOR] = "patient_with_prior",
    [FILM_SHARE_SCOPE_PATIENT] = "patient",
};

static const char *const factor_names[] = {
    [FILM_SHARE_FACTOR_BIRTH_DATE] = "birth_date",
    [FILM_SHARE_FACTOR_PHONE_LAST4] = "phone_last4",
};

const char *film_share_scope_name(film_share_scope s)
{
    if (s < FILM_SHARE_SCOPE_STUDY || s > FILM_SHARE_SCOPE_PATIENT)
        return "unknown";
    return scope_names[s];
}

film_share_scope film_share_scope_parse(const char *name)
{
    for (int i = FILM_SHARE_SCOPE_STUDY; name != NULL && i <= FILM_SHARE_SCOPE_PATIENT; i++)
        if (strcmp(name, scope_names[i]) == 0)
            return (film_share_scope)i;
    return (film_share_scope)0;
}

const char *film_share_factor_name(film_share_factor f)
{
    if (f < FILM_SHARE_FACTOR_BIRTH_DATE || f > FILM_SHARE_FACTOR_PHONE_LAST4)
        return "unknown";
    return factor_names[f];
}

film_share_factor film_share_factor_parse(const char *name)
{
    for (int i = FILM_SHARE_FACTOR_BIRTH_DATE; name != NULL && i <= FILM_SHARE_FACTOR_PHONE_LAST4;
         i++)
        if (strcmp(name, factor_names[i]) == 0)
            return (film_share_factor)i;
    return (film_share_factor)0;
}

cp_status film_share_url(const char *base_url, const char *token, char *out, size_t cap)
{
    size_t blen;
    int n;

    if (base_url == NULL || token == NULL || out == NULL)
        return CP_ERR_INVALID;
    blen = strlen(base_url);
    while (blen > 0 && base_url[blen - 1] == '/')
        blen--;
    if (blen > (size_t)SHARE_URL_MAX)
        return CP_ERR_LIMIT;
    n = snprintf(out, cap, "%.*s/film/%s", (int)blen, base_url, token);
    if (n < 0 || (size_t)n >= cap)
        return CP_ERR_LIMIT;
    return CP_OK;
}

/* --- time and the second factor ---------------------------------------------------- */

static int64_t now_us(const film_share_store *s)
{
    struct timespec ts;

    if (s->now_us != NULL)
        return s->now_us();
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/*
 * The digits of an answer as the factor compares them: the eight digits of
 * a date, or the last four of a phone number. Separators people type
 * (space, '-', '/', '.', '+', '(', ')') are dropped; anything else makes
 * the answer invalid. false when the answer cannot be one.
 */
static bool normalise(film_share_factor f, const char *answer, char out[9])
{
    char digits[SHARE_ANSWER_MAX + 1];
    size_t n = 0;

    if (answer == NULL || strlen(answer) > SHARE_ANSWER_MAX)
        return false;
    for (const char *p = answer; *p; p++) {
        if (*p >= '0' && *p <= '9')
            digits[n++] = *p;
        else if (strchr(" -/.+()", *p) == NULL)
            return false;
    }
    digits[n] = '\0';

    if (f == FILM_SHARE_FACTOR_BIRTH_DATE) {
        int month;
        int day;

        if (n != 8)
            return false;
        month = (digits[4] - '0') * 10 + (digits[5] - '0');
        day = (digits[6] - '0') * 10 + (digits[7] - '0');
        if (month < 1 || month > 12 || day < 1 || day > 31)
            return false;
        memcpy(out, digits, 9);
        return true;
    }
    if (f == FILM_SHARE_FACTOR_PHONE_LAST4) {
        if (n < 4)
            return false;
        memcpy(out, digits + n - 4, 5);
        return true;
    }
    return false;
}

/* keyed BLAKE2b-256 over (salt, factor, digits), as hex. */
static void factor_hash(const film_share_store *s, const char *salt_hex, film_share_factor f,
                        const char *digits, char out[65])
{
    crypto_generichash_state h;
    uint8_t salt[SALT_BYTES];
    uint8_t digest[32];
    uint8_t kind = (uint8_t)f;

    sodium_hex2bin(salt, sizeof salt, salt_hex, strlen(salt_hex), NULL, NULL, NULL);
    crypto_generichash_init(&h, s->key, sizeof s->key, sizeof digest);
    crypto_generichash_update(&h, salt, sizeof salt);
    crypto_generichash_update(&h, &kind, 1);
    crypto_generichash_update(&h, (const uint8_t *)digits, strlen(digits));
    crypto_generichash_final(&h, digest, sizeof digest);
    sodium_bin2hex(out, 65, digest, sizeof digest);
    sodium_memzero(&h, sizeof h);
}

/* Fills r's salt and hash for answer; false when the answer cannot be one. */
static bool set_factor(const film_share_store *s, link_row *r, film_share_factor f,
                       const char *answer)
{
    uint8_t salt[SALT_BYTES];
    char digits[9];

    if (!normalise(f, answer, digits))
        return false;
    randombytes_buf(salt, sizeof salt);
    sodium_bin2hex(r->salt, sizeof r->salt, salt, sizeof salt);
    factor_hash(s, r->salt, f, digits, r->hash);
    r->link.factor = f;
    sodium_memzero(digits, sizeof digits);
    return true;
}

static bool factor_matches(const film_share_store *s, const link_row *r, const char *answer)
{
    char digits[9];
    char got[65];
    bool ok;

    if (!normalise(r->link.factor, answer, digits))
        return false;
    factor_hash(s, r->salt, r->link.factor, digits, got);
    ok = sodium_memcmp(got, r->hash, 64) == 0;
    sodium_memzero(digits, sizeof digits);
    return ok;
}

/* --- SQL ---------------------------------------------------------------------------- */

static const char *const migrations[] = {
    "CREATE TABLE share_link("
    " id INTEGER PRIMARY KEY,"
    " token_hash TEXT NOT NULL UNIQUE,"
    " scope TEXT NOT NULL,"
    " study_uid TEXT NOT NULL,"
    " issuer TEXT NOT NULL,"
    " patient_id TEXT NOT NULL,"
    " institution_id INTEGER NOT NULL,"
    " created_by INTEGER NOT NULL,"
    " parent_id INTEGER NOT NULL DEFAULT 0,"
    " created_us INTEGER NOT NULL,"
    " expires_us INTEGER NOT NULL,"
    " revoked_us INTEGER NOT NULL DEFAULT 0,"
    " deidentify INTEGER NOT NULL,"
    " factor TEXT NOT NULL,"
    " factor_salt TEXT NOT NULL,"
    " factor_hash TEXT NOT NULL,"
    " views INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX share_link_patient ON share_link(issuer, patient_id);"
    "CREATE INDEX share_link_study ON share_link(study_uid);"
    "CREATE INDEX share_link_parent ON share_link(parent_id);",
};

#define MIGRATION_COUNT ((int)(sizeof migrations / sizeof migrations[0]))

/* Every column a link_row reads, in read_row's order; p is the parent (LEFT JOIN). */
#define LINK_SELECT                                                                      \
    "SELECT l.id, l.scope, l.study_uid, l.issuer, l.patient_id, l.institution_id,"       \
    " l.created_by, l.parent_id, l.created_us, l.expires_us, l.revoked_us, l.deidentify," \
    " l.factor, l.views, l.factor_salt, l.factor_hash,"                                  \
    " coalesce(p.revoked_us, 0), coalesce(p.expires_us, 0)"                             \
    " FROM share_link l LEFT JOIN share_link p ON p.id = l.parent_id "

static cp_status db_fail(film_share_store *s, cp_error *err, const char *what)
{
    return FAIL(err, CP_ERR_IO, "share: %s: %s", what, sqlite3_errmsg(s->db));
}

static cp_status db_exec(film_share_store *s, const char *sql, const char *what, cp_error *err)
{
    if (sqlite3_exec(s->db, sql, NULL, NULL, NULL) != SQLITE_OK)
        return db_fail(s, err, what);
    return CP_OK;
}

static cp_status prepare(film_share_store *s, const char *sql, sqlite3_stmt **stmt, cp_error *err)
{
    if (sqlite3_prepare_v2(s->db, sql, -1, stmt, NULL) != SQLITE_OK)
        return db_fail(s, err, "prepare");
    return CP_OK;
}

static void column_text(sqlite3_stmt *stmt, int col, char *out, size_t cap)
{
    const unsigned char *t = sqlite3_column_text(stmt, col);

    snprintf(out, cap, "%s", t != NULL ? (const char *)t : "");
}

static void read_row(sqlite3_stmt *stmt, link_row *r)
{
    film_share_link *l = &r->link;
    char name[32];

    memset(r, 0, sizeof *r);
    l->id = sqlite3_column_int64(stmt, 0);
    column_text(stmt, 1, name, sizeof name);
    l->scope = film_share_scope_parse(name);
    column_text(stmt, 2, l->study_uid, sizeof l->study_uid);
    column_text(stmt, 3, l->issuer, sizeof l->issuer);
    column_text(stmt, 4, l->patient_id, sizeof l->patient_id);
    l->institution_id = sqlite3_column_int64(stmt, 5);
    l->created_by = sqlite3_column_int64(stmt, 6);
    l->parent_id = sqlite3_column_int64(stmt, 7);
    l->created_us = sqlite3_column_int64(stmt, 8);
    l->expires_us = sqlite3_column_int64(stmt, 9);
    l->revoked_us = sqlite3_column_int64(stmt, 10);
    l->deidentify = sqlite3_column_int(stmt, 11) != 0;
    column_text(stmt, 12, name, sizeof name);
    l->factor = film_share_factor_parse(name);
    l->views = sqlite3_column_int64(stmt, 13);
    column_text(stmt, 14, r->salt, sizeof r->salt);
    column_text(stmt, 15, r->hash, sizeof r->hash);
    r->parent_revoked_us = sqlite3_column_int64(stmt, 16);
    r->parent_expires_us = sqlite3_column_int64(stmt, 17);
}

static bool row_valid(const film_share_store *s, const link_row *r)
{
    int64_t now = now_us(s);

    if (r->link.revoked_us != 0 || r->link.expires_us <= now)
        return false;
    if (r->link.parent_id != 0 && (r->parent_revoked_us != 0 || r->parent_expires_us <= now))
        return false;
    return true;
}

/* Caller holds the lock. CP_ERR_NOT_FOUND when no row matches. */
static cp_status load_where(film_share_store *s, const char *where, const char *text, int64_t id,
                            link_row *r, cp_error *err)
{
    char sql[sizeof LINK_SELECT + 64];
    sqlite3_stmt *stmt = NULL;
    cp_status st;
    int rc;

    snprintf(sql, sizeof sql, "%s%s", LINK_SELECT, where);
    st = prepare(s, sql, &stmt, err);
    if (st != CP_OK)
        return st;
    if (text != NULL)
        sqlite3_bind_text(stmt, 1, text, -1, SQLITE_STATIC);
    else
        sqlite3_bind_int64(stmt, 1, id);
    rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW)
        read_row(stmt, r);
    else if (rc == SQLITE_DONE)
        st = NOT_FOUND(err);
    else
        st = db_fail(s, err, "read link");
    sqlite3_finalize(stmt);
    return st;
}

/* The valid link of a token, under the lock; one NOT_FOUND for every other case. */
static cp_status load_token(film_share_store *s, const char *token, link_row *r, cp_error *err)
{
    char hash[65];
    cp_status st;

    if (token == NULL ||
        strncmp(token, FILM_SHARE_TOKEN_PREFIX, strlen(FILM_SHARE_TOKEN_PREFIX)) != 0 ||
        strlen(token) >= FILM_SHARE_TOKEN_SIZE)
        return NOT_FOUND(err);
    credential_token_hash(token, hash);

    pthread_mutex_lock(&s->lock);
    st = load_where(s, "WHERE l.token_hash = ?", hash, 0, r, err);
    pthread_mutex_unlock(&s->lock);
    if (st == CP_OK && !row_valid(s, r))
        st = NOT_FOUND(err);
    return st;
}

static cp_status load_id(film_share_store *s, int64_t id, link_row *r, cp_error *err)
{
    cp_status st;

    pthread_mutex_lock(&s->lock);
    st = load_where(s, "WHERE l.id = ?", NULL, id, r, err);
    pthread_mutex_unlock(&s->lock);
    return st;
}

static cp_status insert_row(film_share_store *s, link_row *r, const char *token_hash, cp_error *err)
{
    const film_share_link *l = &r->link;
    sqlite3_stmt *stmt = NULL;
    cp_status st;

    pthread_mutex_lock(&s->lock);
    st = prepare(s, "INSERT INTO share_link(token_hash, scope, study_uid, issuer, patient_id,"
                    " institution_id, created_by, parent_id, created_us, expires_us,"
                    " deidentify, factor, factor_salt, factor_hash)"
                    " VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?)", &stmt, err);
    if (st == CP_OK) {
        sqlite3_bind_text(stmt, 1, token_hash, -1, SQLITE_STATIC);
        sqlite3_bind_text(stmt, 2, film_share_scope_name(l->scope), -1, SQLITE_STATIC);
        sqlite3_bind_text(stmt, 3, l->study_uid, -1, SQLITE_STATIC);
        sqlite3_bind_text(stmt, 4, l->issuer, -1, SQLITE_STATIC);
        sqlite3_bind_text(stmt, 5, l->patient_id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(stmt, 6, l->institution_id);
        sqlite3_bind_int64(stmt, 7, l->created_by);
        sqlite3_bind_int64(stmt, 8, l->parent_id);
        sqlite3_bind_int64(stmt, 9, l->created_us);
        sqlite3_bind_int64(stmt, 10, l->expires_us);
        sqlite3_bind_int(stmt, 11, l->deidentify ? 1 : 0);
        sqlite3_bind_text(stmt, 12, film_share_factor_name(l->factor), -1, SQLITE_STATIC);
        sqlite3_bind_text(stmt, 13, r->salt, -1, SQLITE_STATIC);
        sqlite3_bind_text(stmt, 14, r->hash, -1, SQLITE_STATIC);
        if (sqlite3_step(stmt) != SQLITE_DONE)
            st = db_fail(s, err, "insert link");
        else
            r->link.id = sqlite3_last_insert_rowid(s->db);
    }
    sqlite3_finalize(stmt);
    pthread_mutex_unlock(&s->lock);
    return st;
}

static cp_status migrate(film_share_store *s, cp_error *err)
{
    cp_status st;

    st = db_exec(s, "CREATE TABLE IF NOT EXISTS film_schema_version(version INTEGER NOT NULL)",
                 "create film_schema_version", err);
    for (int next = 1; st == CP_OK && next <= MIGRATION_COUNT; next++) {
        sqlite3_stmt *stmt = NULL;
        int64_t version = 0;

        st = db_exec(s, "BEGIN IMMEDIATE", "begin", err);
        if (st != CP_OK)
            break;
        st = prepare(s, "SELECT coalesce(max(version), 0) FROM film_schema_version", &stmt, err);
        if (st == CP_OK && sqlite3_step(stmt) == SQLITE_ROW)
            version = sqlite3_column_int64(stmt, 0);
        sqlite3_finalize(stmt);
        if (st == CP_OK && version > MIGRATION_COUNT)
            st = FAIL(err, CP_ERR_UNSUPPORTED, "share: the schema is newer than this build");
        if (st == CP_OK && version < next) {
            char sql[80];

            st = db_exec(s, migrations[next - 1], "migrate", err);
            snprintf(sql, sizeof sql, "INSERT INTO film_schema_version VALUES(%d)", next);
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

cp_status film_share_store_open(const film_share_config *cfg, film_share_store **out, cp_error *err)
{
    film_share_store *s;
    cp_status st;

    *out = NULL;
    if (cfg == NULL || cfg->db_path == NULL || cfg->kv == NULL || cfg->audit == NULL ||
        cfg->key_path == NULL)
        return FAIL(err, CP_ERR_INVALID, "share: database, kv, audit and key path are needed");
    if (credential_init() != CP_OK)
        return FAIL(err, CP_ERR_UNAVAILABLE, "share: libsodium did not start");
    s = cp_calloc(1, sizeof *s);
    if (s == NULL)
        return FAIL(err, CP_ERR_NOMEM, "share: store");
    pthread_mutex_init(&s->lock, NULL);
    s->kv = cfg->kv;
    s->audit = cfg->audit;
    s->now_us = cfg->now_us;
    s->delay_base_ms = cfg->delay_base_ms != 0 ? cfg->delay_base_ms : SHARE_DELAY_BASE_MS;

    st = credential_key_load(cfg->key_path, s->key, err);
    if (st != CP_OK)
        goto fail;
    if (sqlite3_open_v2(cfg->db_path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                        SQLITE_OPEN_FULLMUTEX, NULL) != SQLITE_OK) {
        st = FAIL(err, CP_ERR_IO, "share: cannot open %s", cfg->db_path);
        goto fail;
    }
    sqlite3_busy_timeout(s->db, SHARE_BUSY_TIMEOUT_MS);
    st = db_exec(s, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;", "configure", err);
    if (st == CP_OK)
        st = migrate(s, err);
    if (st != CP_OK)
        goto fail;
    *out = s;
    return CP_OK;

fail:
    film_share_store_close(s);
    return st;
}

void film_share_store_close(film_share_store *s)
{
    if (s == NULL)
        return;
    sqlite3_close(s->db);
    pthread_mutex_destroy(&s->lock);
    sodium_memzero(s->key, sizeof s->key);
    cp_free(s);
}

/* --- audit ---------------------------------------------------------------------------- */

typedef struct audit_what {
    audit_event event;
    audit_action action;
    audit_outcome outcome;
    const char *type;
} audit_what;

/* One record about link l; the actor is "share:<id>" (or user_id when staff acted). */
static cp_status audit_link(film_share_store *s, const audit_what *w, const film_share_link *l,
                            int64_t user_id, const char *peer, const char *detail)
{
    audit_record r;

    memset(&r, 0, sizeof r);
    r.event = w->event;
    r.action = w->action;
    r.outcome = w->outcome;
    r.time_us = now_us(s);
    snprintf(r.type, sizeof r.type, "%s", w->type);
    r.user_id = user_id;
    snprintf(r.actor, sizeof r.actor, "share:%lld", (long long)l->id);
    snprintf(r.peer, sizeof r.peer, "%s", peer != NULL ? peer : "");
    if (l->study_uid[0] != '\0') {
        snprintf(r.object_kind, sizeof r.object_kind, "study");
        snprintf(r.object_id, sizeof r.object_id, "%s", l->study_uid);
    } else {
        snprintf(r.object_kind, sizeof r.object_kind, "share_link");
        snprintf(r.object_id, sizeof r.object_id, "%lld", (long long)l->id);
    }
    snprintf(r.patient_id, sizeof r.patient_id, "%.64s", l->patient_id);
    r.institution_id = l->institution_id;
    snprintf(r.detail, sizeof r.detail, "%s", detail != NULL ? detail : "");
    return audit_write(s->audit, &r);
}

static cp_status audit_fail(cp_status st, cp_error *err)
{
    if (st == CP_OK)
        return CP_OK;
    return FAIL(err, st, "share: the audit record could not be written");
}

/* --- making links --------------------------------------------------------------------- */

static bool text_fits(const char *t, size_t cap)
{
    return t != NULL && strlen(t) < cap;
}

cp_status film_share_create(film_share_store *s, const film_share_request *req,
                            film_share_link *out, char *token, cp_error *err)
{
    static const audit_what what = { AUDIT_EXPORT, AUDIT_CREATE, AUDIT_SUCCESS,
                                     "share_link_created" };
    link_row r;
    film_share_link *l = &r.link;
    char hash[65];
    char detail[96];
    int64_t now = now_us(s);
    cp_status st;

    if (req == NULL || token == NULL || req->scope < FILM_SHARE_SCOPE_STUDY ||
        req->scope > FILM_SHARE_SCOPE_PATIENT ||
        !text_fits(req->patient_id, sizeof l->patient_id) || req->patient_id[0] == '\0' ||
        (req->issuer != NULL && !text_fits(req->issuer, sizeof l->issuer)) ||
        (req->study_uid != NULL && !text_fits(req->study_uid, sizeof l->study_uid)))
        return FAIL(err, CP_ERR_INVALID, "share: scope, patient and study are needed");
    if (req->scope != FILM_SHARE_SCOPE_PATIENT &&
        (req->study_uid == NULL || req->study_uid[0] == '\0'))
        return FAIL(err, CP_ERR_INVALID, "share: a study link names its study");
    if (req->expires_us != 0 &&
        (req->expires_us <= now || req->expires_us - now > SHARE_TTL_MAX_S * 1000000))
        return FAIL(err, CP_ERR_INVALID, "share: the expiry is in the past or too far away");

    memset(&r, 0, sizeof r);
    l->scope = req->scope;
    snprintf(l->study_uid, sizeof l->study_uid, "%s", req->study_uid ? req->study_uid : "");
    snprintf(l->issuer, sizeof l->issuer, "%s", req->issuer != NULL ? req->issuer : "");
    snprintf(l->patient_id, sizeof l->patient_id, "%s", req->patient_id);
    l->institution_id = req->institution_id;
    l->created_by = req->created_by;
    l->created_us = now;
    l->expires_us = req->expires_us != 0 ? req->expires_us
                                         : now + (int64_t)SHARE_TTL_DEFAULT_S * 1000000;
    l->deidentify = req->deidentify;
    if (!set_factor(s, &r, req->factor, req->factor_answer))
        return FAIL(err, CP_ERR_INVALID, "share: the factor's answer cannot be one");

    st = credential_token(FILM_SHARE_TOKEN_PREFIX, token, FILM_SHARE_TOKEN_SIZE);
    if (st != CP_OK)
        return FAIL(err, st, "share: no token");
    credential_token_hash(token, hash);
    st = insert_row(s, &r, hash, err);
    if (st != CP_OK) {
        sodium_memzero(token, FILM_SHARE_TOKEN_SIZE);
        return st;
    }

    snprintf(detail, sizeof detail, "{\"scope\":\"%s\",\"factor\":\"%s\",\"deidentify\":%s}",
             film_share_scope_name(l->scope), film_share_factor_name(l->factor),
             l->deidentify ? "true" : "false");
    st = audit_fail(audit_link(s, &what, l, req->created_by, req->peer, detail), err);
    if (st == CP_OK && out != NULL)
        *out = *l;
    return st;
}

cp_status film_share_open(film_share_store *s, const char *token, const char *peer,
                          film_share_link *out, cp_error *err)
{
    static const audit_what what = { AUDIT_INSTANCES_ACCESSED, AUDIT_READ, AUDIT_SUCCESS,
                                     "share_link_opened" };
    sqlite3_stmt *stmt = NULL;
    link_row r;
    cp_status st;

    st = load_token(s, token, &r, err);
    if (st != CP_OK)
        return st;

    pthread_mutex_lock(&s->lock);
    st = prepare(s, "UPDATE share_link SET views = views + 1 WHERE id = ?", &stmt, err);
    if (st == CP_OK) {
        sqlite3_bind_int64(stmt, 1, r.link.id);
        if (sqlite3_step(stmt) != SQLITE_DONE)
            st = db_fail(s, err, "count view");
    }
    sqlite3_finalize(stmt);
    pthread_mutex_unlock(&s->lock);
    if (st != CP_OK)
        return st;
    r.link.views++;

    st = audit_fail(audit_link(s, &what, &r.link, 0, peer, NULL), err);
    if (st == CP_OK && out != NULL)
        *out = r.link;
    return st;
}

/* --- the throttle ------------------------------------------------------------------------ */

/*
 * KEYS: fail link, fail peer, wait link, wait peer. ARGV: block after.
 * Returns {0, 0} to go on, {1, ms} for a wait, {2, s} for a block, with
 * the larger count of wrong answers third.
 */
static const char check_script[] =
    "local a = tonumber(redis.call('GET', KEYS[1]) or '0')\n"
    "local b = tonumber(redis.call('GET', KEYS[2]) or '0')\n"
    "local n = math.max(a, b)\n"
    "if n >= tonumber(ARGV[1]) then\n"
    "  local t = math.max(redis.call('TTL', KEYS[1]), redis.call('TTL', KEYS[2]))\n"
    "  return {2, t, n}\n"
    "end\n"
    "local w = math.max(redis.call('PTTL', KEYS[3]), redis.call('PTTL', KEYS[4]))\n"
    "if w > 0 then return {1, w, n} end\n"
    "return {0, 0, n}\n";

/*
 * Counts a wrong answer. KEYS as above. ARGV: window s, delay after, base
 * ms, max ms, block after. A block restarts the window so it lasts its
 * full time from the last wrong answer. Returns the larger count.
 */
static const char fail_script[] =
    "local n = 0\n"
    "for i = 1, 2 do\n"
    "  local c = redis.call('INCR', KEYS[i])\n"
    "  if c == 1 or c >= tonumber(ARGV[5]) then\n"
    "    redis.call('EXPIRE', KEYS[i], ARGV[1])\n"
    "  end\n"
    "  if c > n then n = c end\n"
    "end\n"
    "local after = tonumber(ARGV[2])\n"
    "if n >= after then\n"
    "  local d = tonumber(ARGV[3]) * 2 ^ (n - after)\n"
    "  if d > tonumber(ARGV[4]) then d = tonumber(ARGV[4]) end\n"
    "  redis.call('SET', KEYS[3], '1', 'PX', math.floor(d))\n"
    "  redis.call('SET', KEYS[4], '1', 'PX', math.floor(d))\n"
    "end\n"
    "return n\n";

typedef struct throttle_keys {
    char fail_link[KEY_MAX];
    char fail_peer[KEY_MAX];
    char wait_link[KEY_MAX];
    char wait_peer[KEY_MAX];
} throttle_keys;

static cp_status make_keys(film_share_store *s, int64_t id, const char *peer, throttle_keys *k)
{
    char ids[24];
    char who[65];
    cp_status st;

    snprintf(ids, sizeof ids, "%lld", (long long)id);
    snprintf(who, sizeof who, "%.64s", peer != NULL && peer[0] != '\0' ? peer : "unknown");
    peer = who;
    st = kv_key(s->kv, k->fail_link, sizeof k->fail_link, "film:fail:link", ids);
    if (st == CP_OK)
        st = kv_key(s->kv, k->fail_peer, sizeof k->fail_peer, "film:fail:peer", peer);
    if (st == CP_OK)
        st = kv_key(s->kv, k->wait_link, sizeof k->wait_link, "film:wait:link", ids);
    if (st == CP_OK)
        st = kv_key(s->kv, k->wait_peer, sizeof k->wait_peer, "film:wait:peer", peer);
    return st;
}

static long long reply_int(const kv_reply *r, size_t i)
{
    if (r == NULL || r->type != KV_REPLY_ARRAY || i >= r->count ||
        r->elements[i]->type != KV_REPLY_INTEGER)
        return 0;
    return r->elements[i]->integer;
}

/* Whether a try may go on now; fills res for a wait or a block. */
static cp_status throttle_check(film_share_store *s, const throttle_keys *k, film_share_result *res,
                                bool *go_on, cp_error *err)
{
    const char *keys[4] = { k->fail_link, k->fail_peer, k->wait_link, k->wait_peer };
    char after[16];
    const char *args[1] = { after };
    kv_reply *reply = NULL;
    long long kind;
    long long amount;
    cp_status st;

    snprintf(after, sizeof after, "%d", SHARE_BLOCK_AFTER);
    st = kv_eval(s->kv, check_script, 4, keys, 1, args, &reply, err);
    if (st != CP_OK)
        return st;
    kind = reply_int(reply, 0);
    amount = reply_int(reply, 1);
    res->failures = (unsigned)reply_int(reply, 2);
    kv_reply_free(reply);

    *go_on = kind == 0;
    if (kind == 2) {
        res->verdict = FILM_SHARE_BLOCKED;
        res->retry_after_s = amount > 0 ? (unsigned)amount : SHARE_BLOCK_S;
    } else if (kind == 1) {
        res->verdict = FILM_SHARE_WAIT;
        res->retry_after_s = (unsigned)((amount + 999) / 1000);
    }
    return CP_OK;
}

static cp_status throttle_fail(film_share_store *s, const throttle_keys *k, unsigned *failures,
                               cp_error *err)
{
    const char *keys[4] = { k->fail_link, k->fail_peer, k->wait_link, k->wait_peer };
    char a[5][16];
    const char *args[5] = { a[0], a[1], a[2], a[3], a[4] };
    kv_reply *reply = NULL;
    cp_status st;

    snprintf(a[0], sizeof a[0], "%d", SHARE_BLOCK_S);
    snprintf(a[1], sizeof a[1], "%d", SHARE_DELAY_AFTER);
    snprintf(a[2], sizeof a[2], "%u", s->delay_base_ms);
    snprintf(a[3], sizeof a[3], "%d", SHARE_DELAY_MAX_MS);
    snprintf(a[4], sizeof a[4], "%d", SHARE_BLOCK_AFTER);
    st = kv_eval(s->kv, fail_script, 4, keys, 5, args, &reply, err);
    if (st == CP_OK && reply->type == KV_REPLY_INTEGER)
        *failures = (unsigned)reply->integer;
    kv_reply_free(reply);
    return st;
}

/* A right answer forgets the link's wrong ones (the peer's stay counted). */
static cp_status throttle_clear(film_share_store *s, const throttle_keys *k, cp_error *err)
{
    return kv_commandv(s->kv, NULL, err, "DEL", k->fail_link, k->wait_link, (char *)NULL);
}

/* --- sessions ----------------------------------------------------------------------------- */

static cp_status session_key(film_share_store *s, const char *session, char *key, size_t cap)
{
    char hash[65];

    credential_token_hash(session, hash);
    return kv_key(s->kv, key, cap, "film:sess", hash);
}

static cp_status session_open(film_share_store *s, const film_share_link *l, film_share_result *res,
                              cp_error *err)
{
    char key[KEY_MAX];
    char id[24];
    char ttl[24];
    int64_t now = now_us(s);
    int64_t life_s = SHARE_SESSION_S;
    cp_status st;

    if ((l->expires_us - now) / 1000000 < life_s)
        life_s = (l->expires_us - now) / 1000000;
    if (life_s < 1)
        life_s = 1;
    st = credential_token(FILM_SHARE_SESSION_PREFIX, res->session, sizeof res->session);
    if (st == CP_OK)
        st = session_key(s, res->session, key, sizeof key);
    if (st != CP_OK)
        return FAIL(err, st, "share: no session token");
    snprintf(id, sizeof id, "%lld", (long long)l->id);
    snprintf(ttl, sizeof ttl, "%lld", (long long)life_s);
    st = kv_commandv(s->kv, NULL, err, "SET", key, id, "EX", ttl, (char *)NULL);
    if (st != CP_OK) {
        sodium_memzero(res->session, sizeof res->session);
        return st;
    }
    res->session_expires_us = now + life_s * 1000000;
    return CP_OK;
}

static cp_status session_link(film_share_store *s, const char *session, link_row *r, cp_error *err)
{
    char key[KEY_MAX];
    kv_reply *reply = NULL;
    long long id = 0;
    cp_status st;

    if (session == NULL ||
        strncmp(session, FILM_SHARE_SESSION_PREFIX, strlen(FILM_SHARE_SESSION_PREFIX)) != 0 ||
        strlen(session) >= FILM_SHARE_TOKEN_SIZE)
        return NOT_FOUND(err);
    st = session_key(s, session, key, sizeof key);
    if (st != CP_OK)
        return NOT_FOUND(err);
    st = kv_commandv(s->kv, &reply, err, "GET", key, (char *)NULL);
    if (st != CP_OK)
        return st;
    if (reply->type == KV_REPLY_STRING)
        sscanf(reply->str, "%lld", &id);
    kv_reply_free(reply);
    if (id <= 0)
        return NOT_FOUND(err);

    st = load_id(s, id, r, err);
    if (st == CP_OK && !row_valid(s, r))
        st = NOT_FOUND(err);
    return st;
}

cp_status film_share_session_check(film_share_store *s, const char *session, film_share_link *out,
                                   cp_error *err)
{
    link_row r;
    cp_status st = session_link(s, session, &r, err);

    if (st == CP_OK && out != NULL)
        *out = r.link;
    return st;
}

cp_status film_share_session_end(film_share_store *s, const char *session, cp_error *err)
{
    char key[KEY_MAX];

    if (session == NULL || session_key(s, session, key, sizeof key) != CP_OK)
        return CP_OK;
    return kv_commandv(s->kv, NULL, err, "DEL", key, (char *)NULL);
}

/* --- verification ----------------------------------------------------------------------------- */

static const audit_what verified_what = { AUDIT_USER_AUTHENTICATION, AUDIT_EXECUTE,
                                          AUDIT_SUCCESS, "share_link_verified" };
static const audit_what refused_what = { AUDIT_USER_AUTHENTICATION, AUDIT_EXECUTE,
                                         AUDIT_MINOR_FAILURE, "share_link_refused" };
static const audit_what blocked_what = { AUDIT_USER_AUTHENTICATION, AUDIT_EXECUTE,
                                         AUDIT_MINOR_FAILURE, "share_link_blocked" };

/* The answer to the valid link r, throttled (film_share_verify). */
static cp_status verify_row(film_share_store *s, const link_row *rp, const char *answer,
                            const char *peer, film_share_result *res, cp_error *err);

cp_status film_share_verify(film_share_store *s, const char *token, const char *answer,
                            const char *peer, film_share_result *res, cp_error *err)
{
    link_row r;
    cp_status st;

    memset(res, 0, sizeof *res);
    st = load_token(s, token, &r, err);
    if (st != CP_OK)
        return st;
    return verify_row(s, &r, answer, peer, res, err);
}

cp_status film_share_verify_id(film_share_store *s, int64_t link_id, const char *answer,
                               const char *peer, film_share_result *res, cp_error *err)
{
    throttle_keys keys;
    link_row r;
    bool go_on = false;
    cp_status st = CP_ERR_NOT_FOUND;

    memset(res, 0, sizeof *res);
    if (link_id > 0) {
        st = load_id(s, link_id, &r, err);
        if (st == CP_OK && !row_valid(s, &r))
            st = NOT_FOUND(err);
    }
    if (st == CP_OK)
        return verify_row(s, &r, answer, peer, res, err);
    if (st != CP_ERR_NOT_FOUND)
        return st;
    /* No such link: counted as a wrong answer of the peer's, under the link key 0. */
    st = make_keys(s, 0, peer, &keys);
    if (st != CP_OK)
        return FAIL(err, st, "share: throttle keys");
    st = throttle_check(s, &keys, res, &go_on, err);
    if (st != CP_OK || !go_on)
        return st;
    st = throttle_fail(s, &keys, &res->failures, err);
    if (st == CP_OK)
        res->verdict = FILM_SHARE_WRONG;
    return st;
}

static cp_status verify_row(film_share_store *s, const link_row *rp, const char *answer,
                            const char *peer, film_share_result *res, cp_error *err)
{
    throttle_keys keys;
    link_row r = *rp;
    char detail[96];
    bool go_on = false;
    cp_status st;

    st = make_keys(s, r.link.id, peer, &keys);
    if (st != CP_OK)
        return FAIL(err, st, "share: throttle keys");

    st = throttle_check(s, &keys, res, &go_on, err);
    if (st != CP_OK)
        return st;
    if (!go_on) {
        snprintf(detail, sizeof detail, "{\"verdict\":\"%s\",\"retry_after_s\":%u}",
                 res->verdict == FILM_SHARE_BLOCKED ? "blocked" : "wait", res->retry_after_s);
        return audit_fail(audit_link(s, &blocked_what, &r.link, 0, peer, detail), err);
    }

    if (!factor_matches(s, &r, answer)) {
        st = throttle_fail(s, &keys, &res->failures, err);
        if (st != CP_OK)
            return st;
        res->verdict = FILM_SHARE_WRONG;
        snprintf(detail, sizeof detail, "{\"failures\":%u}", res->failures);
        return audit_fail(audit_link(s, &refused_what, &r.link, 0, peer, detail), err);
    }

    st = throttle_clear(s, &keys, err);
    if (st == CP_OK)
        st = session_open(s, &r.link, res, err);
    if (st != CP_OK)
        return st;
    res->verdict = FILM_SHARE_VERIFIED;
    res->failures = 0;
    res->link = r.link;
    return audit_fail(audit_link(s, &verified_what, &r.link, 0, peer, NULL), err);
}

/* --- children --------------------------------------------------------------------------------- */

/* Whether a child of scope child may be made from parent (see share.h). */
static bool scope_allowed(const film_share_link *parent, film_share_scope child)
{
    if (child < FILM_SHARE_SCOPE_STUDY || child > FILM_SHARE_SCOPE_PATIENT || child > parent->scope)
        return false;
    return child == FILM_SHARE_SCOPE_PATIENT || parent->study_uid[0] != '\0';
}

cp_status film_share_child(film_share_store *s, const char *session,
                           const film_share_child_request *req, film_share_link *out, char *token,
                           cp_error *err)
{
    static const audit_what what = { AUDIT_INSTANCES_TRANSFERRED, AUDIT_CREATE, AUDIT_SUCCESS,
                                     "share_link_child" };
    link_row parent;
    link_row r;
    film_share_link *l = &r.link;
    char hash[65];
    char detail[128];
    int64_t now = now_us(s);
    cp_status st;

    if (req == NULL || token == NULL)
        return FAIL(err, CP_ERR_INVALID, "share: no request");
    st = session_link(s, session, &parent, err);
    if (st != CP_OK)
        return st;
    if (parent.link.parent_id != 0 || parent.link.created_by == 0)
        return FAIL(err, CP_ERR_FORBIDDEN, "share: a shared link cannot be shared on");
    if (!scope_allowed(&parent.link, req->scope))
        return FAIL(err, CP_ERR_FORBIDDEN, "share: the scope is wider than the link's");
    if (req->expires_us != 0 && req->expires_us <= now)
        return FAIL(err, CP_ERR_INVALID, "share: the expiry is in the past");

    r = parent;
    l->scope = req->scope;
    l->created_by = 0;
    l->parent_id = parent.link.id;
    l->created_us = now;
    l->revoked_us = 0;
    l->views = 0;
    l->expires_us = req->expires_us != 0 ? req->expires_us
                                         : now + (int64_t)SHARE_CHILD_TTL_DEFAULT_S * 1000000;
    if (l->expires_us > parent.link.expires_us)
        l->expires_us = parent.link.expires_us;
    l->deidentify = req->deidentify || parent.link.deidentify;
    if (req->factor != 0 && !set_factor(s, &r, req->factor, req->factor_answer))
        return FAIL(err, CP_ERR_INVALID, "share: the factor's answer cannot be one");

    st = credential_token(FILM_SHARE_TOKEN_PREFIX, token, FILM_SHARE_TOKEN_SIZE);
    if (st != CP_OK)
        return FAIL(err, st, "share: no token");
    credential_token_hash(token, hash);
    st = insert_row(s, &r, hash, err);
    if (st != CP_OK) {
        sodium_memzero(token, FILM_SHARE_TOKEN_SIZE);
        return st;
    }

    snprintf(detail, sizeof detail,
             "{\"child\":%lld,\"scope\":\"%s\",\"factor\":\"%s\",\"deidentify\":%s}",
             (long long)l->id, film_share_scope_name(l->scope), film_share_factor_name(l->factor),
             l->deidentify ? "true" : "false");
    st = audit_fail(audit_link(s, &what, &parent.link, 0, req->peer, detail), err);
    if (st == CP_OK && out != NULL)
        *out = *l;
    return st;
}

/* --- revocation, lookup, listing ----------------------------------------------------------- */

static cp_status revoke_row(film_share_store *s, const film_share_link *l, int64_t actor_id,
                            const char *peer, cp_error *err)
{
    static const audit_what what = { AUDIT_EXPORT, AUDIT_DELETE, AUDIT_SUCCESS,
                                     "share_link_revoked" };
    sqlite3_stmt *stmt = NULL;
    cp_status st;

    pthread_mutex_lock(&s->lock);
    st = prepare(s, "UPDATE share_link SET revoked_us = ?"
                    " WHERE (id = ? OR parent_id = ?) AND revoked_us = 0", &stmt, err);
    if (st == CP_OK) {
        sqlite3_bind_int64(stmt, 1, now_us(s));
        sqlite3_bind_int64(stmt, 2, l->id);
        sqlite3_bind_int64(stmt, 3, l->id);
        if (sqlite3_step(stmt) != SQLITE_DONE)
            st = db_fail(s, err, "revoke");
    }
    sqlite3_finalize(stmt);
    pthread_mutex_unlock(&s->lock);
    if (st != CP_OK)
        return st;
    return audit_fail(audit_link(s, &what, l, actor_id, peer, NULL), err);
}

cp_status film_share_revoke(film_share_store *s, int64_t link_id, int64_t actor_id,
                            const char *peer, cp_error *err)
{
    link_row r;
    cp_status st = load_id(s, link_id, &r, err);

    if (st != CP_OK)
        return st;
    return revoke_row(s, &r.link, actor_id, peer, err);
}

cp_status film_share_revoke_child(film_share_store *s, const char *session, int64_t child_id,
                                  cp_error *err)
{
    link_row parent;
    link_row child;
    cp_status st;

    st = session_link(s, session, &parent, err);
    if (st == CP_OK)
        st = load_id(s, child_id, &child, err);
    if (st != CP_OK)
        return st;
    if (child.link.parent_id != parent.link.id)
        return NOT_FOUND(err);
    return revoke_row(s, &child.link, 0, NULL, err);
}

cp_status film_share_get(film_share_store *s, int64_t link_id, film_share_link *out, cp_error *err)
{
    link_row r;
    cp_status st = load_id(s, link_id, &r, err);

    if (st == CP_OK && out != NULL)
        *out = r.link;
    return st;
}

cp_status film_share_list(film_share_store *s, const film_share_filter *f, film_share_link_fn fn,
                          void *ctx, cp_error *err)
{
    char sql[sizeof LINK_SELECT + 256];
    sqlite3_stmt *stmt = NULL;
    size_t limit;
    cp_status st;
    int rc = SQLITE_DONE;

    if (f == NULL || fn == NULL ||
        (f->patient_id == NULL && f->study_uid == NULL && f->parent_id == 0))
        return FAIL(err, CP_ERR_INVALID, "share: list a patient's, a study's or a link's links");
    limit = f->limit == 0 || f->limit > SHARE_LIST_MAX ? SHARE_LIST_MAX : f->limit;
    snprintf(sql, sizeof sql, "%sWHERE (?1 IS NULL OR (l.issuer = coalesce(?2, '')"
             " AND l.patient_id = ?1)) AND (?3 IS NULL OR l.study_uid = ?3)"
             " AND (?4 = 0 OR l.parent_id = ?4)"
             " AND (?5 = 0 OR (l.revoked_us = 0 AND l.expires_us > ?6))"
             " ORDER BY l.id DESC LIMIT ?7", LINK_SELECT);

    pthread_mutex_lock(&s->lock);
    st = prepare(s, sql, &stmt, err);
    if (st == CP_OK) {
        if (f->patient_id != NULL)
            sqlite3_bind_text(stmt, 1, f->patient_id, -1, SQLITE_STATIC);
        if (f->issuer != NULL)
            sqlite3_bind_text(stmt, 2, f->issuer, -1, SQLITE_STATIC);
        if (f->study_uid != NULL)
            sqlite3_bind_text(stmt, 3, f->study_uid, -1, SQLITE_STATIC);
        sqlite3_bind_int64(stmt, 4, f->parent_id);
        sqlite3_bind_int(stmt, 5, f->valid_only ? 1 : 0);
        sqlite3_bind_int64(stmt, 6, now_us(s));
        sqlite3_bind_int64(stmt, 7, (int64_t)limit);
    }
    while (st == CP_OK && (rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        link_row r;

        read_row(stmt, &r);
        st = fn(ctx, &r.link);
    }
    if (st == CP_OK && rc != SQLITE_DONE)
        st = db_fail(s, err, "list");
    sqlite3_finalize(stmt);
    pthread_mutex_unlock(&s->lock);
    return st == CP_ERR_STOPPED ? CP_OK : st;
}

/* --- de-identification keys ------------------------------------------------------ */

/* keyed BLAKE2b of (label, link id) under the server's secret into out. */
static void link_derive(const film_share_store *s, const char *label, int64_t id, uint8_t *out,
                        size_t len)
{
    crypto_generichash_state h;
    uint8_t le[8];

    for (size_t i = 0; i < sizeof le; i++)
        le[i] = (uint8_t)((uint64_t)id >> (8 * i));
    crypto_generichash_init(&h, s->key, sizeof s->key, len);
    crypto_generichash_update(&h, (const uint8_t *)label, strlen(label) + 1);
    crypto_generichash_update(&h, le, sizeof le);
    crypto_generichash_final(&h, out, len);
    sodium_memzero(&h, sizeof h);
}

void film_share_link_key(const film_share_store *s, const film_share_link *link,
                         uint8_t out[FILM_SHARE_LINK_KEY_BYTES])
{
    link_derive(s, "cloudpacs film deident key", link->id, out, FILM_SHARE_LINK_KEY_BYTES);
}

void film_share_link_pseudonym(const film_share_store *s, const film_share_link *link,
                               char out[FILM_SHARE_PSEUDONYM_SIZE])
{
    uint8_t digest[16];
    char hex[2 * sizeof digest + 1];

    link_derive(s, "cloudpacs film pseudonym", link->id, digest, sizeof digest);
    sodium_bin2hex(hex, sizeof hex, digest, sizeof digest);
    for (size_t i = 0; i < 8; i++)
        hex[i] = (char)(hex[i] >= 'a' ? hex[i] - 'a' + 'A' : hex[i]);
    snprintf(out, FILM_SHARE_PSEUDONYM_SIZE, "ANON-%.8s", hex);
}
