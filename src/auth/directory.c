/*
 * directory.c - the identity store on SQLite: institutions in a tree, users
 * with their roles, qualifications and contracts, API tokens and DICOM
 * application entities, in the index's database file under their own
 * migration list (table auth_schema_version).
 *
 * Not a part of DICOM itself: it holds who may act, which PS3.15 Annex A.5
 * audit messages name as active participants, and the AEs of PS3.8 that the
 * DICOM service recognises.
 *
 * One connection per directory, shared by every thread under a mutex; the
 * data is small and changes rarely, so no reader pool is worth its cost.
 * Listings gather their rows under the lock and call back after it is
 * released, so a callback may use the directory again.
 *
 * Every change to a user (or to what their rights derive from) adds one to
 * the user's profile_version inside the same transaction; a change to an
 * institution adds one to every user's, since subtrees are cached in
 * principals.
 */
#include "auth/directory.h"

#include <pthread.h>
#include <sodium.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "auth/credential.h"
#include "core/alloc.h"
#include "core/buf.h"
#include "core/limits.h"

struct directory {
    sqlite3 *db;
    pthread_mutex_t lock;
    uint8_t key[32];
    bool has_key;
};

/* The highest radiologist title (4: chief). */
#define USER_TITLE_MAX 4

/* Bytes of a qualification's modality or body part. */
#define QUAL_ITEM_MAX 16

static const char *const role_names[] = {
    "institution_admin", "technician", "radiologist", "reviewer",
    "system_admin", "security_admin", "audit_admin", "kiosk",
};

#define ROLE_COUNT (sizeof role_names / sizeof role_names[0])

/* --- schema ---------------------------------------------------------------- */

/*
 * Migration n (1-based) is migrations[n - 1]; auth_schema_version holds
 * every n applied. Append only: a released migration never changes.
 * A root institution has a NULL parent (foreign keys need one).
 */
static const char *const migrations[] = {
    "CREATE TABLE institution("
    " id INTEGER PRIMARY KEY,"
    " parent_id INTEGER REFERENCES institution(id),"
    " kind INTEGER NOT NULL,"
    " code TEXT NOT NULL UNIQUE COLLATE NOCASE,"
    " name TEXT NOT NULL,"
    " disabled INTEGER NOT NULL DEFAULT 0,"
    " created INTEGER NOT NULL);"
    "CREATE INDEX institution_parent ON institution(parent_id);"
    "CREATE TABLE app_user("
    " id INTEGER PRIMARY KEY,"
    " username TEXT NOT NULL UNIQUE COLLATE NOCASE,"
    " display_name TEXT NOT NULL,"
    " institution_id INTEGER NOT NULL REFERENCES institution(id),"
    " roles INTEGER NOT NULL,"
    " title INTEGER NOT NULL DEFAULT 0,"
    " may_self_approve INTEGER NOT NULL DEFAULT 0,"
    " disabled INTEGER NOT NULL DEFAULT 0,"
    " password_hash TEXT NOT NULL,"
    " totp_sealed TEXT NOT NULL DEFAULT '',"
    " profile_version INTEGER NOT NULL DEFAULT 1,"
    " created INTEGER NOT NULL,"
    " password_changed INTEGER NOT NULL);"
    "CREATE INDEX app_user_institution ON app_user(institution_id);"
    "CREATE TABLE qualification("
    " user_id INTEGER NOT NULL REFERENCES app_user(id),"
    " modality TEXT NOT NULL,"
    " body_part TEXT NOT NULL,"
    " PRIMARY KEY(user_id, modality, body_part));"
    "CREATE TABLE contract("
    " id INTEGER PRIMARY KEY,"
    " user_id INTEGER NOT NULL REFERENCES app_user(id),"
    " requesting_id INTEGER NOT NULL REFERENCES institution(id),"
    " reading_id INTEGER NOT NULL REFERENCES institution(id),"
    " start_date TEXT NOT NULL,"
    " end_date TEXT NOT NULL,"
    " modalities TEXT NOT NULL,"
    " body_parts TEXT NOT NULL,"
    " revoked INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX contract_user ON contract(user_id);"
    "CREATE INDEX contract_requesting ON contract(requesting_id);"
    "CREATE INDEX contract_reading ON contract(reading_id);"
    "CREATE TABLE api_token("
    " id INTEGER PRIMARY KEY,"
    " name TEXT NOT NULL,"
    " institution_id INTEGER NOT NULL REFERENCES institution(id),"
    " roles INTEGER NOT NULL,"
    " token_hash TEXT NOT NULL UNIQUE,"
    " created INTEGER NOT NULL,"
    " expires INTEGER NOT NULL,"
    " revoked INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE dicom_ae("
    " title TEXT PRIMARY KEY,"
    " institution_id INTEGER NOT NULL REFERENCES institution(id),"
    " host TEXT NOT NULL,"
    " port INTEGER NOT NULL,"
    " allow TEXT NOT NULL);",
};

#define MIGRATION_COUNT ((int)(sizeof migrations / sizeof migrations[0]))

#define INST_COLS "id, coalesce(parent_id, 0), kind, code, name, disabled, created"
#define USER_COLS "id, username, display_name, institution_id, roles, title, " \
                  "may_self_approve, disabled, totp_sealed <> '', profile_version, " \
                  "created, password_changed"
#define CONTRACT_COLS "id, user_id, requesting_id, reading_id, start_date, end_date, " \
                      "modalities, body_parts, revoked"
#define TOKEN_COLS "id, name, institution_id, roles, created, expires, revoked"
#define AE_COLS "title, institution_id, host, port, allow"

/* --- names ------------------------------------------------------------------- */

const char *directory_role_name(unsigned role)
{
    for (size_t i = 0; i < ROLE_COUNT; i++)
        if (role == 1u << i)
            return role_names[i];
    return NULL;
}

unsigned directory_role_parse(const char *name)
{
    if (name == NULL)
        return 0;
    for (size_t i = 0; i < ROLE_COUNT; i++)
        if (strcmp(name, role_names[i]) == 0)
            return 1u << i;
    return 0;
}

cp_status directory_roles_format(unsigned roles, char *out, size_t cap)
{
    size_t o = 0;

    if (out == NULL || cap == 0)
        return CP_ERR_LIMIT;
    if ((roles & ~ROLE_ALL) != 0)
        return CP_ERR_INVALID;

    out[0] = '\0';
    for (size_t i = 0; i < ROLE_COUNT; i++) {
        size_t n;

        if ((roles & (1u << i)) == 0)
            continue;
        n = strlen(role_names[i]);
        if (o + (o > 0) + n >= cap) {
            out[0] = '\0';
            return CP_ERR_LIMIT;
        }
        if (o > 0)
            out[o++] = ',';
        memcpy(out + o, role_names[i], n + 1);
        o += n;
    }
    return CP_OK;
}

cp_status directory_roles_parse(const char *list, unsigned *roles, cp_error *err)
{
    unsigned mask = 0;
    const char *p;

    if (list == NULL || roles == NULL)
        return cp_error_set(err, CP_ERR_INVALID, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "no role list");

    /* Items are separated by commas; blanks around them are ignored. */
    for (p = list; *p != '\0';) {
        char name[32];
        const char *end;
        size_t n;
        unsigned bit;

        while (*p == ' ' || *p == ',')
            p++;
        if (*p == '\0')
            break;
        end = p;
        while (*end != '\0' && *end != ',')
            end++;
        n = (size_t)(end - p);
        while (n > 0 && p[n - 1] == ' ')
            n--;
        bit = 0;
        if (n < sizeof name) {
            memcpy(name, p, n);
            name[n] = '\0';
            bit = directory_role_parse(name);
        }
        if (bit == 0)
            return cp_error_set(err, CP_ERR_INVALID, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                                "unknown role \"%.*s\"", (int)(n > 64 ? 64 : n), p);
        mask |= bit;
        p = end;
    }
    *roles = mask;
    return CP_OK;
}

const char *directory_kind_name(directory_institution_kind kind)
{
    switch (kind) {
    case DIRECTORY_CENTRE:
        return "centre";
    case DIRECTORY_HOSPITAL:
        return "hospital";
    case DIRECTORY_CLINIC:
        return "clinic";
    }
    return NULL;
}

directory_institution_kind directory_kind_parse(const char *name)
{
    if (name == NULL)
        return (directory_institution_kind)0;
    if (strcmp(name, "centre") == 0)
        return DIRECTORY_CENTRE;
    if (strcmp(name, "hospital") == 0)
        return DIRECTORY_HOSPITAL;
    if (strcmp(name, "clinic") == 0)
        return DIRECTORY_CLINIC;
    return (directory_institution_kind)0;
}

/* --- validation ---------------------------------------------------------------- */

static cp_status invalid(cp_error *err, const char *what, const char *value)
{
    return cp_error_set(err, CP_ERR_INVALID, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                        "invalid %s \"%.64s\"", what, value != NULL ? value : "");
}

/* 1..max characters of [A-Za-z0-9] and the characters of `extra`. */
static bool valid_word(const char *s, size_t max, const char *extra)
{
    size_t n;

    if (s == NULL)
        return false;
    n = strnlen(s, max + 1);
    if (n == 0 || n > max)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];

        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              (c != '\0' && strchr(extra, c) != NULL)))
            return false;
    }
    return true;
}

/* Well-formed UTF-8 (no overlong forms, surrogates or code points past U+10FFFF). */
static bool utf8_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;

    while (i < n) {
        unsigned c = s[i];
        size_t more;
        uint32_t cp;

        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xC2 && c <= 0xDF) {
            more = 1;
            cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            more = 2;
            cp = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            more = 3;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (n - i <= more)
            return false;
        for (size_t k = 1; k <= more; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if ((more == 2 && cp < 0x800) || (more == 3 && (cp < 0x10000 || cp > 0x10FFFF)) ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += more + 1;
    }
    return true;
}

/* UTF-8 text of at most max bytes, without control characters. */
static bool valid_text(const char *s, size_t max, bool allow_empty)
{
    size_t n;

    if (s == NULL)
        return false;
    n = strnlen(s, max + 1);
    if (n > max || (n == 0 && !allow_empty))
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7F)
            return false;
    return utf8_valid((const unsigned char *)s, n);
}

static cp_status check_roles(unsigned roles, bool token, cp_error *err)
{
    unsigned separated = roles & ROLE_SEPARATED;

    if ((roles & ~ROLE_ALL) != 0)
        return cp_error_set(err, CP_ERR_INVALID, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "unknown role bits 0x%x", roles & ~ROLE_ALL);
    if (token && separated != 0)
        return cp_error_set(err, CP_ERR_FORBIDDEN, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "an API token never holds a separated administrator role");
    if ((roles & ROLE_KIOSK) != 0 && roles != ROLE_KIOSK)
        return cp_error_set(err, CP_ERR_FORBIDDEN, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "a kiosk holds no other role");
    if (separated != 0 && roles != separated)
        return cp_error_set(err, CP_ERR_FORBIDDEN, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "a system, security or audit administrator holds no other role");
    if ((separated & (separated - 1)) != 0)
        return cp_error_set(err, CP_ERR_FORBIDDEN, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "the system, security and audit administrators are three "
                            "different people");
    return CP_OK;
}

static bool valid_hash(const char *hash)
{
    size_t n;

    if (hash == NULL)
        return false;
    n = strnlen(hash, DIRECTORY_HASH_MAX + 1);
    return n <= DIRECTORY_HASH_MAX && strncmp(hash, "$argon2id$", 10) == 0;
}

/* "" or a real YYYYMMDD date. */
static bool valid_date(const char *s)
{
    static const int days[] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
    int y, m, d;

    if (s[0] == '\0')
        return true;
    if (strnlen(s, 9) != 8)
        return false;
    for (int i = 0; i < 8; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    y = (s[0] - '0') * 1000 + (s[1] - '0') * 100 + (s[2] - '0') * 10 + (s[3] - '0');
    m = (s[4] - '0') * 10 + (s[5] - '0');
    d = (s[6] - '0') * 10 + (s[7] - '0');
    if (y < 1900 || m < 1 || m > 12 || d < 1 || d > days[m - 1])
        return false;
    return !(m == 2 && d == 29 && (y % 4 != 0 || (y % 100 == 0 && y % 400 != 0)));
}

/* "" or comma-separated items of [A-Za-z0-9_*], each at most QUAL_ITEM_MAX. */
static bool valid_code_list(const char *s)
{
    size_t n = strnlen(s, DIRECTORY_LIST_MAX + 1), item = 0;

    if (n > DIRECTORY_LIST_MAX)
        return false;
    for (size_t i = 0; i <= n; i++) {
        char c = s[i];

        if (c == ',' || c == '\0') {
            if (item == 0 && n > 0)
                return false;
            item = 0;
        } else if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                   (c >= '0' && c <= '9') || c == '_' || c == '*') {
            if (++item > QUAL_ITEM_MAX)
                return false;
        } else {
            return false;
        }
    }
    return true;
}

/* An AE title (PS3.5 6.2, AE): 1-16 characters, no control or backslash. */
static bool valid_ae_title(const char *s)
{
    size_t n = strnlen(s, 17);

    if (n == 0 || n > 16 || s[0] == ' ' || s[n - 1] == ' ')
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] < 0x20 || s[i] > 0x7E || s[i] == '\\')
            return false;
    return true;
}

/* "" or a comma list of store, query, retrieve. */
static bool valid_allow(const char *s)
{
    const char *p = s;

    if (strnlen(s, 64) >= 64)
        return false;
    while (*p != '\0') {
        size_t n = strcspn(p, ",");

        if (!((n == 5 && strncmp(p, "store", 5) == 0) ||
              (n == 5 && strncmp(p, "query", 5) == 0) ||
              (n == 8 && strncmp(p, "retrieve", 8) == 0)))
            return false;
        p += n;
        if (*p == ',' && *++p == '\0')
            return false;
    }
    return true;
}

/* --- SQL helpers -------------------------------------------------------------------- */

static int64_t now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static cp_status db_fail(directory *d, int rc, const char *what, cp_error *err)
{
    cp_status st = CP_ERR_IO;

    if (rc == SQLITE_CONSTRAINT_UNIQUE || rc == SQLITE_CONSTRAINT_PRIMARYKEY)
        st = CP_ERR_EXISTS;
    else if (rc == SQLITE_CONSTRAINT_FOREIGNKEY)
        st = CP_ERR_NOT_FOUND;
    else if ((rc & 0xFF) == SQLITE_BUSY || (rc & 0xFF) == SQLITE_LOCKED)
        st = CP_ERR_AGAIN;
    else if (rc == SQLITE_NOMEM)
        st = CP_ERR_NOMEM;
    if (st == CP_ERR_EXISTS)
        return cp_error_set(err, st, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "directory: %s is taken", what);
    return cp_error_set(err, st, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG, "directory: %s: %s",
                        what, d->db != NULL ? sqlite3_errmsg(d->db) : sqlite3_errstr(rc));
}

/*
 * Prepares sql and binds its parameters from the arguments as `types`
 * says: 'i' an int64_t, 'n' an int64_t bound as NULL when 0, 't' a string.
 */
static cp_status stmt_vopen(directory *d, sqlite3_stmt **out, cp_error *err, const char *sql,
                            const char *types, va_list ap)
{
    sqlite3_stmt *st = NULL;
    int rc;

    rc = sqlite3_prepare_v2(d->db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK)
        return db_fail(d, rc, "prepare", err);

    for (int i = 0; types[i] != '\0' && rc == SQLITE_OK; i++) {
        if (types[i] == 't') {
            rc = sqlite3_bind_text(st, i + 1, va_arg(ap, const char *), -1, SQLITE_STATIC);
        } else {
            int64_t v = va_arg(ap, int64_t);

            rc = types[i] == 'n' && v == 0 ? sqlite3_bind_null(st, i + 1)
                                           : sqlite3_bind_int64(st, i + 1, v);
        }
    }
    if (rc != SQLITE_OK) {
        cp_status s = db_fail(d, rc, "bind", err);

        sqlite3_finalize(st);
        return s;
    }
    *out = st;
    return CP_OK;
}

static cp_status stmt_open(directory *d, sqlite3_stmt **out, cp_error *err, const char *sql,
                           const char *types, ...)
{
    va_list ap;
    cp_status st;

    va_start(ap, types);
    st = stmt_vopen(d, out, err, sql, types, ap);
    va_end(ap);
    return st;
}

/* Runs a statement that returns no rows; *changed (may be NULL) gets the row count. */
static cp_status stmt_run(directory *d, cp_error *err, int64_t *changed, const char *what,
                          const char *sql, const char *types, ...)
{
    sqlite3_stmt *st = NULL;
    va_list ap;
    cp_status s;
    int rc;

    va_start(ap, types);
    s = stmt_vopen(d, &st, err, sql, types, ap);
    va_end(ap);
    if (s != CP_OK)
        return s;

    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        ;
    if (rc != SQLITE_DONE)
        s = db_fail(d, rc, what, err);
    else if (changed != NULL)
        *changed = sqlite3_changes64(d->db);
    sqlite3_finalize(st);
    return s;
}

/* One int64 from a query of one row; CP_ERR_NOT_FOUND when it has none. */
static cp_status stmt_int(directory *d, cp_error *err, int64_t *out, const char *what,
                          const char *sql, const char *types, ...)
{
    sqlite3_stmt *st = NULL;
    va_list ap;
    cp_status s;
    int rc;

    va_start(ap, types);
    s = stmt_vopen(d, &st, err, sql, types, ap);
    va_end(ap);
    if (s != CP_OK)
        return s;

    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *out = sqlite3_column_int64(st, 0);
    else if (rc == SQLITE_DONE)
        s = cp_error_set(err, CP_ERR_NOT_FOUND, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                         "%s not found", what);
    else
        s = db_fail(d, rc, what, err);
    sqlite3_finalize(st);
    return s;
}

static cp_status db_exec(directory *d, const char *sql, const char *what, cp_error *err)
{
    int rc = sqlite3_exec(d->db, sql, NULL, NULL, NULL);

    return rc == SQLITE_OK ? CP_OK : db_fail(d, rc, what, err);
}

static cp_status tx_begin(directory *d, cp_error *err)
{
    return db_exec(d, "BEGIN IMMEDIATE", "begin", err);
}

/* Commits when st is CP_OK, rolls back otherwise; returns the outcome. */
static cp_status tx_end(directory *d, cp_status st, cp_error *err)
{
    if (st == CP_OK) {
        st = db_exec(d, "COMMIT", "commit", err);
        if (st == CP_OK)
            return CP_OK;
    }
    sqlite3_exec(d->db, "ROLLBACK", NULL, NULL, NULL);
    return st;
}

/* Copies a text column, cut to cap (only rows edited by hand are ever longer). */
static void col_text(sqlite3_stmt *st, int col, char *out, size_t cap)
{
    const unsigned char *t = sqlite3_column_text(st, col);
    size_t n = (size_t)sqlite3_column_bytes(st, col);

    if (t == NULL)
        n = 0;
    if (n >= cap)
        n = cap - 1;
    if (n > 0)
        memcpy(out, t, n);
    out[n] = '\0';
}

typedef void (*row_reader)(sqlite3_stmt *st, void *out);

/* The one row of a prepared query into out; CP_ERR_NOT_FOUND when none. */
static cp_status row_get(directory *d, sqlite3_stmt *st, row_reader read, void *out,
                         const char *what, cp_error *err)
{
    int rc = sqlite3_step(st);
    cp_status s = CP_OK;

    if (rc == SQLITE_ROW)
        read(st, out);
    else if (rc == SQLITE_DONE)
        s = cp_error_set(err, CP_ERR_NOT_FOUND, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                         "%s not found", what);
    else
        s = db_fail(d, rc, what, err);
    sqlite3_finalize(st);
    return s;
}

/* Every row of a prepared query into a new array of elem-sized items. */
static cp_status rows_collect(directory *d, sqlite3_stmt *st, row_reader read, size_t elem,
                              void **items, size_t *count, cp_error *err)
{
    unsigned char *arr = NULL;
    size_t cap = 0, n = 0;
    cp_status s = CP_OK;
    int rc;

    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        s = cp_array_grow(&arr, &cap, n, elem, 16, DIRECTORY_ROWS_MAX);
        if (s != CP_OK) {
            s = cp_error_set(err, s, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                             "directory listing of more than %u rows", DIRECTORY_ROWS_MAX);
            break;
        }
        read(st, arr + n * elem);
        n++;
    }
    if (s == CP_OK && rc != SQLITE_DONE)
        s = db_fail(d, rc, "list", err);
    sqlite3_finalize(st);
    if (s != CP_OK) {
        cp_free(arr);
        return s;
    }
    *items = arr;
    *count = n;
    return CP_OK;
}

static void read_institution(sqlite3_stmt *st, void *out)
{
    directory_institution *i = out;

    memset(i, 0, sizeof *i);
    i->id = sqlite3_column_int64(st, 0);
    i->parent_id = sqlite3_column_int64(st, 1);
    i->kind = (directory_institution_kind)sqlite3_column_int(st, 2);
    col_text(st, 3, i->code, sizeof i->code);
    col_text(st, 4, i->name, sizeof i->name);
    i->disabled = sqlite3_column_int(st, 5) != 0;
    i->created_us = sqlite3_column_int64(st, 6);
}

static void read_user(sqlite3_stmt *st, void *out)
{
    directory_user *u = out;

    memset(u, 0, sizeof *u);
    u->id = sqlite3_column_int64(st, 0);
    col_text(st, 1, u->username, sizeof u->username);
    col_text(st, 2, u->display_name, sizeof u->display_name);
    u->institution_id = sqlite3_column_int64(st, 3);
    u->roles = (unsigned)sqlite3_column_int64(st, 4) & ROLE_ALL;
    u->title = sqlite3_column_int(st, 5);
    u->may_self_approve = sqlite3_column_int(st, 6) != 0;
    u->disabled = sqlite3_column_int(st, 7) != 0;
    u->totp_enabled = sqlite3_column_int(st, 8) != 0;
    u->profile_version = sqlite3_column_int64(st, 9);
    u->created_us = sqlite3_column_int64(st, 10);
    u->password_changed_us = sqlite3_column_int64(st, 11);
}

static void read_contract(sqlite3_stmt *st, void *out)
{
    directory_contract *c = out;

    memset(c, 0, sizeof *c);
    c->id = sqlite3_column_int64(st, 0);
    c->user_id = sqlite3_column_int64(st, 1);
    c->requesting_id = sqlite3_column_int64(st, 2);
    c->reading_id = sqlite3_column_int64(st, 3);
    col_text(st, 4, c->start_date, sizeof c->start_date);
    col_text(st, 5, c->end_date, sizeof c->end_date);
    col_text(st, 6, c->modalities, sizeof c->modalities);
    col_text(st, 7, c->body_parts, sizeof c->body_parts);
    c->revoked = sqlite3_column_int(st, 8) != 0;
}

static void read_token(sqlite3_stmt *st, void *out)
{
    directory_api_token *t = out;

    memset(t, 0, sizeof *t);
    t->id = sqlite3_column_int64(st, 0);
    col_text(st, 1, t->name, sizeof t->name);
    t->institution_id = sqlite3_column_int64(st, 2);
    t->roles = (unsigned)sqlite3_column_int64(st, 3) & ROLE_ALL;
    t->created_us = sqlite3_column_int64(st, 4);
    t->expires_us = sqlite3_column_int64(st, 5);
    t->revoked = sqlite3_column_int(st, 6) != 0;
}

static void read_ae(sqlite3_stmt *st, void *out)
{
    directory_ae *a = out;

    memset(a, 0, sizeof *a);
    col_text(st, 0, a->title, sizeof a->title);
    a->institution_id = sqlite3_column_int64(st, 1);
    col_text(st, 2, a->host, sizeof a->host);
    a->port = sqlite3_column_int(st, 3);
    col_text(st, 4, a->allow, sizeof a->allow);
}

static void read_qualification(sqlite3_stmt *st, void *out)
{
    directory_qualification *q = out;

    memset(q, 0, sizeof *q);
    col_text(st, 0, q->modality, sizeof q->modality);
    col_text(st, 1, q->body_part, sizeof q->body_part);
}

static cp_status institution_exists(directory *d, int64_t id, const char *what, cp_error *err)
{
    int64_t one = 0;

    if (id <= 0)
        return cp_error_set(err, CP_ERR_NOT_FOUND, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "%s %lld not found", what, (long long)id);
    return stmt_int(d, err, &one, what, "SELECT 1 FROM institution WHERE id = ?", "i", id);
}

static cp_status bump_user(directory *d, int64_t user_id, cp_error *err)
{
    int64_t changed = 0;
    cp_status st;

    st = stmt_run(d, err, &changed, "bump profile version",
                  "UPDATE app_user SET profile_version = profile_version + 1 WHERE id = ?",
                  "i", user_id);
    if (st == CP_OK && changed == 0)
        st = cp_error_set(err, CP_ERR_NOT_FOUND, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                          "user %lld not found", (long long)user_id);
    return st;
}

static cp_status bump_everyone(directory *d, cp_error *err)
{
    return stmt_run(d, err, NULL, "bump profile versions",
                    "UPDATE app_user SET profile_version = profile_version + 1", "");
}

/* --- opening ------------------------------------------------------------------------- */

/*
 * Applies each missing migration in a transaction of its own; the version
 * is read inside it, so two processes opening the file at once apply each
 * migration once.
 */
static cp_status migrate(directory *d, cp_error *err)
{
    cp_status st;

    st = db_exec(d, "CREATE TABLE IF NOT EXISTS auth_schema_version("
                    "version INTEGER NOT NULL)", "create auth_schema_version", err);
    for (int next = 1; st == CP_OK && next <= MIGRATION_COUNT; next++) {
        int64_t version = 0;

        st = tx_begin(d, err);
        if (st != CP_OK)
            break;
        st = stmt_int(d, err, &version, "schema version",
                      "SELECT coalesce(max(version), 0) FROM auth_schema_version", "");
        if (st == CP_OK && version > MIGRATION_COUNT)
            st = cp_error_set(err, CP_ERR_UNSUPPORTED, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                              "directory schema %lld is newer than this build (%d)",
                              (long long)version, MIGRATION_COUNT);
        if (st == CP_OK && version < next) {
            st = db_exec(d, migrations[next - 1], "migrate", err);
            if (st == CP_OK)
                st = stmt_run(d, err, NULL, "migrate",
                              "INSERT INTO auth_schema_version VALUES(?)", "i",
                              (int64_t)next);
        }
        st = tx_end(d, st, err);
    }
    return st;
}

cp_status directory_open_sqlite(const char *path, directory **out, cp_error *err)
{
    directory *d;
    cp_status st;
    int rc;

    if (path == NULL || out == NULL)
        return cp_error_set(err, CP_ERR_INVALID, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "no directory path");
    if (credential_init() != CP_OK)
        return cp_error_set(err, CP_ERR_UNAVAILABLE, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "directory: libsodium could not start");
    d = cp_calloc(1, sizeof *d);
    if (d == NULL)
        return cp_error_set(err, CP_ERR_NOMEM, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "directory");
    if (pthread_mutex_init(&d->lock, NULL) != 0) {
        cp_free(d);
        return cp_error_set(err, CP_ERR_NOMEM, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "directory lock");
    }

    rc = sqlite3_open_v2(path, &d->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                         SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        st = cp_error_set(err, CP_ERR_IO, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                          "directory: open %s: %s", path,
                          d->db != NULL ? sqlite3_errmsg(d->db) : sqlite3_errstr(rc));
        goto fail;
    }
    sqlite3_extended_result_codes(d->db, 1);
    sqlite3_busy_timeout(d->db, DIRECTORY_BUSY_TIMEOUT_MS);

    /* Every commit fsynced: a created user or a revoked token must survive a crash. */
    st = db_exec(d, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
                    " PRAGMA foreign_keys=ON;", "configure", err);
    if (st == CP_OK)
        st = migrate(d, err);
    if (st != CP_OK)
        goto fail;
    *out = d;
    return CP_OK;

fail:
    directory_close(d);
    return st;
}

void directory_close(directory *d)
{
    if (d == NULL)
        return;
    sqlite3_close_v2(d->db);
    sodium_memzero(d->key, sizeof d->key);
    pthread_mutex_destroy(&d->lock);
    cp_free(d);
}

void directory_set_seal_key(directory *d, const uint8_t key[32])
{
    pthread_mutex_lock(&d->lock);
    memcpy(d->key, key, sizeof d->key);
    d->has_key = true;
    pthread_mutex_unlock(&d->lock);
}

/* --- institutions ------------------------------------------------------------------------- */

static cp_status check_institution(const directory_institution *inst, cp_error *err)
{
    if (directory_kind_name(inst->kind) == NULL)
        return cp_error_set(err, CP_ERR_INVALID, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "unknown institution kind %d", (int)inst->kind);
    if (!valid_text(inst->name, DIRECTORY_NAME_MAX, false))
        return invalid(err, "institution name", inst->name);
    if (inst->parent_id < 0)
        return cp_error_set(err, CP_ERR_NOT_FOUND, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "parent institution %lld not found", (long long)inst->parent_id);
    return CP_OK;
}

cp_status directory_institution_create(directory *d, directory_institution *inst,
                                       cp_error *err)
{
    int64_t now = now_us(), id = 0;
    cp_status st;

    if (d == NULL || inst == NULL)
        return CP_ERR_INVALID;
    if (!valid_word(inst->code, DIRECTORY_CODE_MAX, "_-"))
        return invalid(err, "institution code", inst->code);
    if ((st = check_institution(inst, err)) != CP_OK)
        return st;

    pthread_mutex_lock(&d->lock);
    st = tx_begin(d, err);
    if (st == CP_OK && inst->parent_id != 0)
        st = institution_exists(d, inst->parent_id, "parent institution", err);
    if (st == CP_OK)
        st = stmt_run(d, err, NULL, "institution code",
                      "INSERT INTO institution(parent_id, kind, code, name, disabled, created)"
                      " VALUES(?, ?, ?, ?, ?, ?)", "nittii", inst->parent_id,
                      (int64_t)inst->kind, inst->code, inst->name, (int64_t)inst->disabled,
                      now);
    if (st == CP_OK) {
        id = sqlite3_last_insert_rowid(d->db);

        /* A new child widens the subtree of everyone above it. */
        st = bump_everyone(d, err);
    }
    st = tx_end(d, st, err);
    pthread_mutex_unlock(&d->lock);

    if (st == CP_OK) {
        inst->id = id;
        inst->created_us = now;
    }
    return st;
}

cp_status directory_institution_update(directory *d, const directory_institution *inst,
                                       cp_error *err)
{
    int64_t inside = 0, changed = 0;
    cp_status st;

    if (d == NULL || inst == NULL)
        return CP_ERR_INVALID;
    if ((st = check_institution(inst, err)) != CP_OK)
        return st;

    pthread_mutex_lock(&d->lock);
    st = tx_begin(d, err);
    if (st == CP_OK)
        st = institution_exists(d, inst->id, "institution", err);
    if (st == CP_OK && inst->parent_id != 0)
        st = institution_exists(d, inst->parent_id, "parent institution", err);

    /* The new parent must not be the institution itself or below it. */
    if (st == CP_OK && inst->parent_id != 0)
        st = stmt_int(d, err, &inside, "cycle check",
                      "WITH RECURSIVE sub(id) AS (SELECT ?1 UNION"
                      " SELECT i.id FROM institution i JOIN sub ON i.parent_id = sub.id)"
                      " SELECT count(*) FROM sub WHERE id = ?2", "ii", inst->id,
                      inst->parent_id);
    if (st == CP_OK && inside > 0)
        st = cp_error_set(err, CP_ERR_INVALID, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                          "institution %lld cannot be placed under itself or its subtree",
                          (long long)inst->id);
    if (st == CP_OK)
        st = stmt_run(d, err, &changed, "update institution",
                      "UPDATE institution SET parent_id = ?, kind = ?, name = ?, disabled = ?"
                      " WHERE id = ?", "nitii", inst->parent_id, (int64_t)inst->kind,
                      inst->name, (int64_t)inst->disabled, inst->id);
    if (st == CP_OK)
        st = bump_everyone(d, err);
    st = tx_end(d, st, err);
    pthread_mutex_unlock(&d->lock);
    return st;
}

cp_status directory_institution_get(directory *d, int64_t id, directory_institution *out,
                                    cp_error *err)
{
    sqlite3_stmt *q = NULL;
    cp_status st;

    if (d == NULL || out == NULL)
        return CP_ERR_INVALID;
    pthread_mutex_lock(&d->lock);
    st = stmt_open(d, &q, err, "SELECT " INST_COLS " FROM institution WHERE id = ?", "i", id);
    if (st == CP_OK)
        st = row_get(d, q, read_institution, out, "institution", err);
    pthread_mutex_unlock(&d->lock);
    return st;
}

cp_status directory_institution_by_code(directory *d, const char *code,
                                        directory_institution *out, cp_error *err)
{
    sqlite3_stmt *q = NULL;
    cp_status st;

    if (d == NULL || out == NULL)
        return CP_ERR_INVALID;
    if (!valid_word(code, DIRECTORY_CODE_MAX, "_-"))
        return cp_error_set(err, CP_ERR_NOT_FOUND, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "institution \"%.64s\" not found", code != NULL ? code : "");
    pthread_mutex_lock(&d->lock);
    st = stmt_open(d, &q, err, "SELECT " INST_COLS " FROM institution WHERE code = ?", "t",
                   code);
    if (st == CP_OK)
        st = row_get(d, q, read_institution, out, "institution", err);
    pthread_mutex_unlock(&d->lock);
    return st;
}

cp_status directory_institution_list(directory *d, directory_institution_fn fn, void *ctx,
                                     cp_error *err)
{
    directory_institution *items = NULL;
    sqlite3_stmt *q = NULL;
    size_t count = 0;
    cp_status st;

    if (d == NULL || fn == NULL)
        return CP_ERR_INVALID;
    pthread_mutex_lock(&d->lock);
    st = stmt_open(d, &q, err,
                   "WITH RECURSIVE tree(id, depth) AS ("
                   " SELECT id, 0 FROM institution WHERE parent_id IS NULL UNION ALL"
                   " SELECT i.id, t.depth + 1 FROM institution i JOIN tree t"
                   " ON i.parent_id = t.id WHERE t.depth < ?)"
                   " SELECT " INST_COLS " FROM tree JOIN institution USING (id)"
                   " ORDER BY tree.depth, id", "i", (int64_t)DIRECTORY_DEPTH_MAX);
    if (st == CP_OK)
        st = rows_collect(d, q, read_institution, sizeof *items, (void **)&items, &count,
                          err);
    pthread_mutex_unlock(&d->lock);

    for (size_t i = 0; st == CP_OK && i < count; i++)
        st = fn(ctx, &items[i]);
    cp_free(items);
    return st;
}

static void read_id(sqlite3_stmt *st, void *out)
{
    *(int64_t *)out = sqlite3_column_int64(st, 0);
}

cp_status directory_institution_subtree(directory *d, int64_t root_id, int64_t **ids,
                                        size_t *count, cp_error *err)
{
    sqlite3_stmt *q = NULL;
    int64_t *items = NULL;
    size_t n = 0;
    cp_status st;

    if (d == NULL || ids == NULL || count == NULL)
        return CP_ERR_INVALID;
    pthread_mutex_lock(&d->lock);
    st = stmt_open(d, &q, err,
                   "WITH RECURSIVE sub(id, depth) AS ("
                   " SELECT id, 0 FROM institution WHERE id = ?1 UNION ALL"
                   " SELECT i.id, s.depth + 1 FROM institution i JOIN sub s"
                   " ON i.parent_id = s.id WHERE s.depth < ?2)"
                   " SELECT id FROM sub ORDER BY depth, id", "ii", root_id,
                   (int64_t)DIRECTORY_DEPTH_MAX);
    if (st == CP_OK)
        st = rows_collect(d, q, read_id, sizeof *items, (void **)&items, &n, err);
    pthread_mutex_unlock(&d->lock);

    if (st == CP_OK && n == 0)
        st = cp_error_set(err, CP_ERR_NOT_FOUND, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                          "institution %lld not found", (long long)root_id);
    if (st != CP_OK) {
        cp_free(items);
        return st;
    }
    *ids = items;
    *count = n;
    return CP_OK;
}

/* --- users ------------------------------------------------------------------------------- */

static cp_status check_user(const directory_user *u, cp_error *err)
{
    if (!valid_text(u->display_name, DIRECTORY_NAME_MAX, true))
        return invalid(err, "display name", u->display_name);
    if (u->title < 0 || u->title > USER_TITLE_MAX)
        return cp_error_set(err, CP_ERR_INVALID, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "title %d is not 0 to %d", u->title, USER_TITLE_MAX);
    return CP_OK;
}

static cp_status bad_hash(cp_error *err)
{
    return cp_error_set(err, CP_ERR_INVALID, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                        "a password hash must be an Argon2id string");
}

cp_status directory_user_create(directory *d, directory_user *user, const char *password_hash,
                                cp_error *err)
{
    int64_t now = now_us(), id = 0;
    cp_status st;

    if (d == NULL || user == NULL)
        return CP_ERR_INVALID;
    if (!valid_word(user->username, DIRECTORY_USERNAME_MAX, "._@-"))
        return invalid(err, "username", user->username);
    if ((st = check_user(user, err)) != CP_OK ||
        (st = check_roles(user->roles, false, err)) != CP_OK)
        return st;
    if (!valid_hash(password_hash))
        return bad_hash(err);

    pthread_mutex_lock(&d->lock);
    st = tx_begin(d, err);
    if (st == CP_OK)
        st = institution_exists(d, user->institution_id, "institution", err);
    if (st == CP_OK)
        st = stmt_run(d, err, NULL, "username",
                      "INSERT INTO app_user(username, display_name, institution_id, roles,"
                      " title, may_self_approve, disabled, password_hash, profile_version,"
                      " created, password_changed) VALUES(?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?)",
                      "ttiiiiitii", user->username, user->display_name, user->institution_id,
                      (int64_t)user->roles, (int64_t)user->title,
                      (int64_t)user->may_self_approve, (int64_t)user->disabled, password_hash,
                      now, now);
    if (st == CP_OK)
        id = sqlite3_last_insert_rowid(d->db);
    st = tx_end(d, st, err);
    pthread_mutex_unlock(&d->lock);

    if (st == CP_OK) {
        user->id = id;
        user->created_us = now;
        user->password_changed_us = now;
        user->profile_version = 1;
        user->totp_enabled = false;
    }
    return st;
}

/* Runs one UPDATE of a user's row and bumps the version; NOT_FOUND for no such user. */
static cp_status user_change(directory *d, int64_t user_id, cp_error *err, const char *what,
                             const char *sql, const char *types, ...)
{
    sqlite3_stmt *q = NULL;
    va_list ap;
    cp_status st;
    int rc;

    st = tx_begin(d, err);
    if (st != CP_OK)
        return st;

    va_start(ap, types);
    st = stmt_vopen(d, &q, err, sql, types, ap);
    va_end(ap);
    if (st == CP_OK) {
        rc = sqlite3_step(q);
        if (rc != SQLITE_DONE)
            st = db_fail(d, rc, what, err);
        sqlite3_finalize(q);
    }
    if (st == CP_OK)
        st = bump_user(d, user_id, err);
    return tx_end(d, st, err);
}

cp_status directory_user_update(directory *d, const directory_user *user, cp_error *err)
{
    cp_status st;

    if (d == NULL || user == NULL)
        return CP_ERR_INVALID;
    if ((st = check_user(user, err)) != CP_OK)
        return st;

    pthread_mutex_lock(&d->lock);
    st = institution_exists(d, user->institution_id, "institution", err);
    if (st == CP_OK)
        st = user_change(d, user->id, err, "update user",
                         "UPDATE app_user SET display_name = ?, institution_id = ?, title = ?,"
                         " may_self_approve = ?, disabled = ? WHERE id = ?", "tiiiii",
                         user->display_name, user->institution_id, (int64_t)user->title,
                         (int64_t)user->may_self_approve, (int64_t)user->disabled, user->id);
    pthread_mutex_unlock(&d->lock);
    return st;
}

cp_status directory_user_set_roles(directory *d, int64_t user_id, unsigned roles,
                                   cp_error *err)
{
    cp_status st;

    if (d == NULL)
        return CP_ERR_INVALID;
    if ((st = check_roles(roles, false, err)) != CP_OK)
        return st;

    pthread_mutex_lock(&d->lock);
    st = user_change(d, user_id, err, "set roles", "UPDATE app_user SET roles = ? WHERE id = ?",
                     "ii", (int64_t)roles, user_id);
    pthread_mutex_unlock(&d->lock);
    return st;
}

cp_status directory_user_set_password(directory *d, int64_t user_id, const char *password_hash,
                                      cp_error *err)
{
    cp_status st;

    if (d == NULL)
        return CP_ERR_INVALID;
    if (!valid_hash(password_hash))
        return bad_hash(err);

    pthread_mutex_lock(&d->lock);
    st = user_change(d, user_id, err, "set password",
                     "UPDATE app_user SET password_hash = ?, password_changed = ? WHERE id = ?",
                     "tii", password_hash, now_us(), user_id);
    pthread_mutex_unlock(&d->lock);
    return st;
}

/* One text column of a user's row into out; CP_ERR_LIMIT when it does not fit. */
static cp_status user_text(directory *d, int64_t user_id, const char *sql, char *out,
                           size_t cap, cp_error *err)
{
    sqlite3_stmt *q = NULL;
    cp_status st;
    int rc;

    st = stmt_open(d, &q, err, sql, "i", user_id);
    if (st != CP_OK)
        return st;
    rc = sqlite3_step(q);
    if (rc == SQLITE_ROW) {
        size_t n = (size_t)sqlite3_column_bytes(q, 0);

        if (n + 1 > cap)
            st = cp_error_set(err, CP_ERR_LIMIT, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                              "buffer of %zu bytes for %zu", cap, n + 1);
        else
            col_text(q, 0, out, cap);
    } else if (rc == SQLITE_DONE) {
        st = cp_error_set(err, CP_ERR_NOT_FOUND, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                          "user %lld not found", (long long)user_id);
    } else {
        st = db_fail(d, rc, "read user", err);
    }
    sqlite3_finalize(q);
    return st;
}

cp_status directory_user_password(directory *d, int64_t user_id, char *hash, size_t cap,
                                  cp_error *err)
{
    cp_status st;

    if (d == NULL || hash == NULL)
        return CP_ERR_INVALID;
    pthread_mutex_lock(&d->lock);
    st = user_text(d, user_id, "SELECT password_hash FROM app_user WHERE id = ?", hash, cap,
                   err);
    pthread_mutex_unlock(&d->lock);
    return st;
}

static cp_status no_key(cp_error *err)
{
    return cp_error_set(err, CP_ERR_CONFIG, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                        "no seal key set for TOTP secrets");
}

cp_status directory_user_set_totp(directory *d, int64_t user_id, const char *secret_base32,
                                  cp_error *err)
{
    char sealed[CRED_SEAL_TEXT_MAX + 1] = "";
    char probe[8];
    cp_status st;

    if (d == NULL || secret_base32 == NULL)
        return CP_ERR_INVALID;
    if (secret_base32[0] != '\0' &&
        (strnlen(secret_base32, DIRECTORY_SECRET_MAX + 1) > DIRECTORY_SECRET_MAX ||
         credential_totp_code(secret_base32, 0, probe, sizeof probe) != CP_OK))
        return cp_error_set(err, CP_ERR_INVALID, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "a TOTP secret must be base32 of at most %d characters",
                            DIRECTORY_SECRET_MAX);

    pthread_mutex_lock(&d->lock);
    st = d->has_key ? CP_OK : no_key(err);
    if (st == CP_OK && secret_base32[0] != '\0' &&
        credential_seal(d->key, secret_base32, sealed, sizeof sealed) != CP_OK)
        st = cp_error_set(err, CP_ERR_NOMEM, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                          "TOTP secret could not be sealed");
    if (st == CP_OK)
        st = user_change(d, user_id, err, "set totp",
                         "UPDATE app_user SET totp_sealed = ? WHERE id = ?", "ti", sealed,
                         user_id);
    pthread_mutex_unlock(&d->lock);
    sodium_memzero(probe, sizeof probe);
    return st;
}

cp_status directory_user_totp(directory *d, int64_t user_id, char *secret_base32, size_t cap,
                              cp_error *err)
{
    char sealed[CRED_SEAL_TEXT_MAX + 1];
    cp_status st;

    if (d == NULL || secret_base32 == NULL)
        return CP_ERR_INVALID;

    pthread_mutex_lock(&d->lock);
    st = d->has_key ? CP_OK : no_key(err);
    if (st == CP_OK)
        st = user_text(d, user_id, "SELECT totp_sealed FROM app_user WHERE id = ?", sealed,
                       sizeof sealed, err);
    if (st == CP_OK && sealed[0] == '\0')
        st = cp_error_set(err, CP_ERR_NOT_FOUND, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                          "user %lld has no second factor", (long long)user_id);
    if (st == CP_OK) {
        st = credential_unseal(d->key, sealed, secret_base32, cap);
        if (st != CP_OK)
            st = cp_error_set(err, st, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                              "the TOTP secret of user %lld could not be unsealed",
                              (long long)user_id);
    }
    pthread_mutex_unlock(&d->lock);
    return st;
}

cp_status directory_user_get(directory *d, int64_t id, directory_user *out, cp_error *err)
{
    sqlite3_stmt *q = NULL;
    cp_status st;

    if (d == NULL || out == NULL)
        return CP_ERR_INVALID;
    pthread_mutex_lock(&d->lock);
    st = stmt_open(d, &q, err, "SELECT " USER_COLS " FROM app_user WHERE id = ?", "i", id);
    if (st == CP_OK)
        st = row_get(d, q, read_user, out, "user", err);
    pthread_mutex_unlock(&d->lock);
    return st;
}

cp_status directory_user_by_name(directory *d, const char *username, directory_user *out,
                                 cp_error *err)
{
    sqlite3_stmt *q = NULL;
    cp_status st;

    if (d == NULL || out == NULL)
        return CP_ERR_INVALID;
    if (!valid_word(username, DIRECTORY_USERNAME_MAX, "._@-"))
        return cp_error_set(err, CP_ERR_NOT_FOUND, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "user not found");
    pthread_mutex_lock(&d->lock);
    st = stmt_open(d, &q, err, "SELECT " USER_COLS " FROM app_user WHERE username = ?", "t",
                   username);
    if (st == CP_OK)
        st = row_get(d, q, read_user, out, "user", err);
    pthread_mutex_unlock(&d->lock);
    return st;
}

/* The SQL of a user listing, filtered on `count` institutions when filtered. */
static cp_status user_list_sql(cp_buf *sql, bool filtered, size_t count)
{
    cp_status st = cp_buf_append_str(sql, "SELECT " USER_COLS " FROM app_user");

    if (st == CP_OK && filtered) {
        st = cp_buf_append_str(sql, " WHERE institution_id IN (");
        for (size_t i = 0; st == CP_OK && i < count; i++)
            st = cp_buf_append_str(sql, i == 0 ? "?" : ",?");
        if (st == CP_OK)
            st = cp_buf_append_str(sql, ")");
    }
    if (st == CP_OK)
        st = cp_buf_append_str(sql, " ORDER BY id");
    return st;
}

cp_status directory_user_list(directory *d, const int64_t *institutions, size_t count,
                              directory_user_fn fn, void *ctx, cp_error *err)
{
    directory_user *items = NULL;
    sqlite3_stmt *q = NULL;
    cp_buf sql = CP_BUF_INIT;
    size_t n = 0;
    cp_status st;
    int rc;

    if (d == NULL || fn == NULL)
        return CP_ERR_INVALID;
    if (institutions != NULL && count == 0)
        return CP_OK;
    if (institutions != NULL && count > DIRECTORY_FILTER_IDS_MAX)
        return cp_error_set(err, CP_ERR_LIMIT, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "%zu institutions in one user listing (at most %d)", count,
                            DIRECTORY_FILTER_IDS_MAX);
    if (user_list_sql(&sql, institutions != NULL, count) != CP_OK)
        return cp_error_set(err, CP_ERR_NOMEM, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "user listing");

    pthread_mutex_lock(&d->lock);
    st = stmt_open(d, &q, err, (const char *)sql.data, "");
    for (size_t i = 0; st == CP_OK && institutions != NULL && i < count; i++) {
        rc = sqlite3_bind_int64(q, (int)i + 1, institutions[i]);
        if (rc != SQLITE_OK) {
            st = db_fail(d, rc, "bind", err);
            sqlite3_finalize(q);
        }
    }
    if (st == CP_OK)
        st = rows_collect(d, q, read_user, sizeof *items, (void **)&items, &n, err);
    pthread_mutex_unlock(&d->lock);
    cp_buf_free(&sql);

    for (size_t i = 0; st == CP_OK && i < n; i++)
        st = fn(ctx, &items[i]);
    cp_free(items);
    return st;
}

cp_status directory_user_profile_version(directory *d, int64_t user_id, int64_t *version,
                                         cp_error *err)
{
    cp_status st;

    if (d == NULL || version == NULL)
        return CP_ERR_INVALID;
    pthread_mutex_lock(&d->lock);
    st = stmt_int(d, err, version, "user",
                  "SELECT profile_version FROM app_user WHERE id = ?", "i", user_id);
    pthread_mutex_unlock(&d->lock);
    return st;
}

/* --- qualifications and contracts ------------------------------------------------------------ */

/* A modality or body part, upper-cased into out: [A-Za-z0-9_ ] or "*". */
static bool qual_item(const char *in, char out[QUAL_ITEM_MAX + 1])
{
    size_t n = strnlen(in, QUAL_ITEM_MAX + 1);

    if (n == 0 || n > QUAL_ITEM_MAX)
        return false;
    if (strcmp(in, "*") == 0) {
        memcpy(out, "*", 2);
        return true;
    }
    for (size_t i = 0; i < n; i++) {
        char c = in[i];

        if (c >= 'a' && c <= 'z')
            c = (char)(c - 'a' + 'A');
        if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == ' '))
            return false;
        out[i] = c;
    }
    out[n] = '\0';
    return true;
}

static cp_status user_exists(directory *d, int64_t user_id, int64_t *roles, cp_error *err)
{
    int64_t r = 0;
    cp_status st;

    st = stmt_int(d, err, &r, "user", "SELECT roles FROM app_user WHERE id = ?", "i", user_id);
    if (st == CP_OK && roles != NULL)
        *roles = r;
    return st;
}

cp_status directory_qualifications_set(directory *d, int64_t user_id,
                                       const directory_qualification *q, size_t count,
                                       cp_error *err)
{
    cp_status st;

    if (d == NULL || (q == NULL && count > 0))
        return CP_ERR_INVALID;
    if (count > DIRECTORY_QUALIFICATIONS_MAX)
        return cp_error_set(err, CP_ERR_LIMIT, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "%zu qualifications (at most %d)", count,
                            DIRECTORY_QUALIFICATIONS_MAX);
    for (size_t i = 0; i < count; i++) {
        char m[QUAL_ITEM_MAX + 1], b[QUAL_ITEM_MAX + 1];

        if (!qual_item(q[i].modality, m) || !qual_item(q[i].body_part, b))
            return cp_error_set(err, CP_ERR_INVALID, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                                "invalid qualification \"%.16s:%.16s\"", q[i].modality,
                                q[i].body_part);
    }

    pthread_mutex_lock(&d->lock);
    st = tx_begin(d, err);
    if (st == CP_OK)
        st = user_exists(d, user_id, NULL, err);
    if (st == CP_OK)
        st = stmt_run(d, err, NULL, "clear qualifications",
                      "DELETE FROM qualification WHERE user_id = ?", "i", user_id);
    for (size_t i = 0; st == CP_OK && i < count; i++) {
        char m[QUAL_ITEM_MAX + 1], b[QUAL_ITEM_MAX + 1];

        qual_item(q[i].modality, m);
        qual_item(q[i].body_part, b);
        st = stmt_run(d, err, NULL, "add qualification",
                      "INSERT OR IGNORE INTO qualification(user_id, modality, body_part)"
                      " VALUES(?, ?, ?)", "itt", user_id, m, b);
    }
    if (st == CP_OK)
        st = bump_user(d, user_id, err);
    st = tx_end(d, st, err);
    pthread_mutex_unlock(&d->lock);
    return st;
}

cp_status directory_qualifications_get(directory *d, int64_t user_id,
                                       directory_qualification **out, size_t *count,
                                       cp_error *err)
{
    directory_qualification *items = NULL;
    sqlite3_stmt *q = NULL;
    size_t n = 0;
    cp_status st;

    if (d == NULL || out == NULL || count == NULL)
        return CP_ERR_INVALID;
    pthread_mutex_lock(&d->lock);
    st = user_exists(d, user_id, NULL, err);
    if (st == CP_OK)
        st = stmt_open(d, &q, err, "SELECT modality, body_part FROM qualification"
                       " WHERE user_id = ? ORDER BY modality, body_part", "i", user_id);
    if (st == CP_OK)
        st = rows_collect(d, q, read_qualification, sizeof *items, (void **)&items, &n, err);
    pthread_mutex_unlock(&d->lock);

    if (st != CP_OK)
        return st;
    *out = items;
    *count = n;
    return CP_OK;
}

static cp_status check_contract(const directory_contract *c, cp_error *err)
{
    if (!valid_date(c->start_date) || !valid_date(c->end_date))
        return cp_error_set(err, CP_ERR_INVALID, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "contract dates must be YYYYMMDD or empty");
    if (c->start_date[0] != '\0' && c->end_date[0] != '\0' &&
        strcmp(c->end_date, c->start_date) < 0)
        return cp_error_set(err, CP_ERR_INVALID, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "contract ends (%s) before it starts (%s)", c->end_date,
                            c->start_date);
    if (!valid_code_list(c->modalities))
        return invalid(err, "modality list", c->modalities);
    if (!valid_code_list(c->body_parts))
        return invalid(err, "body part list", c->body_parts);
    return CP_OK;
}

/* The institutions of a contract exist, and its user reads (radiologist or reviewer). */
static cp_status contract_parties(directory *d, const directory_contract *c, cp_error *err)
{
    int64_t roles = 0;
    cp_status st;

    st = user_exists(d, c->user_id, &roles, err);
    if (st == CP_OK && (roles & (ROLE_RADIOLOGIST | ROLE_REVIEWER)) == 0)
        st = cp_error_set(err, CP_ERR_INVALID, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                          "user %lld is neither radiologist nor reviewer",
                          (long long)c->user_id);
    if (st == CP_OK)
        st = institution_exists(d, c->requesting_id, "requesting institution", err);
    if (st == CP_OK)
        st = institution_exists(d, c->reading_id, "reading institution", err);
    return st;
}

cp_status directory_contract_create(directory *d, directory_contract *c, cp_error *err)
{
    int64_t id = 0;
    cp_status st;

    if (d == NULL || c == NULL)
        return CP_ERR_INVALID;
    if ((st = check_contract(c, err)) != CP_OK)
        return st;

    pthread_mutex_lock(&d->lock);
    st = tx_begin(d, err);
    if (st == CP_OK)
        st = contract_parties(d, c, err);
    if (st == CP_OK)
        st = stmt_run(d, err, NULL, "create contract",
                      "INSERT INTO contract(user_id, requesting_id, reading_id, start_date,"
                      " end_date, modalities, body_parts, revoked)"
                      " VALUES(?, ?, ?, ?, ?, ?, ?, ?)", "iiitttti", c->user_id,
                      c->requesting_id, c->reading_id, c->start_date, c->end_date,
                      c->modalities, c->body_parts, (int64_t)c->revoked);
    if (st == CP_OK) {
        id = sqlite3_last_insert_rowid(d->db);
        st = bump_user(d, c->user_id, err);
    }
    st = tx_end(d, st, err);
    pthread_mutex_unlock(&d->lock);

    if (st == CP_OK)
        c->id = id;
    return st;
}

cp_status directory_contract_update(directory *d, const directory_contract *c, cp_error *err)
{
    directory_contract cur;
    sqlite3_stmt *q = NULL;
    cp_status st;

    if (d == NULL || c == NULL)
        return CP_ERR_INVALID;
    if ((st = check_contract(c, err)) != CP_OK)
        return st;

    /* The reader of a contract stays: a contract for someone else is a new one. */
    pthread_mutex_lock(&d->lock);
    st = tx_begin(d, err);
    if (st == CP_OK)
        st = stmt_open(d, &q, err, "SELECT " CONTRACT_COLS " FROM contract WHERE id = ?", "i",
                       c->id);
    if (st == CP_OK)
        st = row_get(d, q, read_contract, &cur, "contract", err);
    if (st == CP_OK && c->user_id != 0 && c->user_id != cur.user_id)
        st = cp_error_set(err, CP_ERR_INVALID, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                          "the user of contract %lld cannot change", (long long)c->id);
    if (st == CP_OK)
        st = institution_exists(d, c->requesting_id, "requesting institution", err);
    if (st == CP_OK)
        st = institution_exists(d, c->reading_id, "reading institution", err);
    if (st == CP_OK)
        st = stmt_run(d, err, NULL, "update contract",
                      "UPDATE contract SET requesting_id = ?, reading_id = ?, start_date = ?,"
                      " end_date = ?, modalities = ?, body_parts = ?, revoked = ?"
                      " WHERE id = ?", "iittttii", c->requesting_id, c->reading_id,
                      c->start_date, c->end_date, c->modalities, c->body_parts,
                      (int64_t)c->revoked, c->id);
    if (st == CP_OK)
        st = bump_user(d, cur.user_id, err);
    st = tx_end(d, st, err);
    pthread_mutex_unlock(&d->lock);
    return st;
}

cp_status directory_contract_get(directory *d, int64_t id, directory_contract *out,
                                 cp_error *err)
{
    sqlite3_stmt *q = NULL;
    cp_status st;

    if (d == NULL || out == NULL)
        return CP_ERR_INVALID;
    pthread_mutex_lock(&d->lock);
    st = stmt_open(d, &q, err, "SELECT " CONTRACT_COLS " FROM contract WHERE id = ?", "i", id);
    if (st == CP_OK)
        st = row_get(d, q, read_contract, out, "contract", err);
    pthread_mutex_unlock(&d->lock);
    return st;
}

cp_status directory_contract_list(directory *d, int64_t user_id, int64_t institution_id,
                                  directory_contract_fn fn, void *ctx, cp_error *err)
{
    directory_contract *items = NULL;
    sqlite3_stmt *q = NULL;
    size_t n = 0;
    cp_status st;

    if (d == NULL || fn == NULL)
        return CP_ERR_INVALID;

    /* A filter of 0 matches everything. */
    pthread_mutex_lock(&d->lock);
    st = stmt_open(d, &q, err,
                   "SELECT " CONTRACT_COLS " FROM contract WHERE (?1 = 0 OR user_id = ?1)"
                   " AND (?2 = 0 OR requesting_id = ?2 OR reading_id = ?2) ORDER BY id",
                   "ii", user_id > 0 ? user_id : 0, institution_id > 0 ? institution_id : 0);
    if (st == CP_OK)
        st = rows_collect(d, q, read_contract, sizeof *items, (void **)&items, &n, err);
    pthread_mutex_unlock(&d->lock);

    for (size_t i = 0; st == CP_OK && i < n; i++)
        st = fn(ctx, &items[i]);
    cp_free(items);
    return st;
}

/* --- API tokens -------------------------------------------------------------------------- */

cp_status directory_token_create(directory *d, directory_api_token *t, char *token_out,
                                 size_t cap, cp_error *err)
{
    char token[64], hash[65];
    int64_t now = now_us(), id = 0;
    cp_status st;

    if (d == NULL || t == NULL || token_out == NULL)
        return CP_ERR_INVALID;
    if (cap < sizeof token)
        return cp_error_set(err, CP_ERR_LIMIT, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "token buffer of %zu bytes (at least %zu)", cap, sizeof token);
    if (!valid_text(t->name, DIRECTORY_NAME_MAX, false))
        return invalid(err, "token name", t->name);
    if ((st = check_roles(t->roles, true, err)) != CP_OK)
        return st;
    if (t->expires_us < 0)
        return cp_error_set(err, CP_ERR_INVALID, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "token expiry before 1970");
    if (credential_token("cpat_", token, sizeof token) != CP_OK)
        return cp_error_set(err, CP_ERR_LIMIT, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "token");
    credential_token_hash(token, hash);

    pthread_mutex_lock(&d->lock);
    st = tx_begin(d, err);
    if (st == CP_OK)
        st = institution_exists(d, t->institution_id, "institution", err);
    if (st == CP_OK)
        st = stmt_run(d, err, NULL, "create token",
                      "INSERT INTO api_token(name, institution_id, roles, token_hash, created,"
                      " expires, revoked) VALUES(?, ?, ?, ?, ?, ?, 0)", "tiitii", t->name,
                      t->institution_id, (int64_t)t->roles, hash, now, t->expires_us);
    if (st == CP_OK)
        id = sqlite3_last_insert_rowid(d->db);
    st = tx_end(d, st, err);
    pthread_mutex_unlock(&d->lock);

    if (st == CP_OK) {
        t->id = id;
        t->created_us = now;
        t->revoked = false;
        memcpy(token_out, token, strlen(token) + 1);
    }
    sodium_memzero(token, sizeof token);
    return st;
}

static cp_status unauthenticated(cp_error *err)
{
    return cp_error_set(err, CP_ERR_UNAUTHENTICATED, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                        "unknown, revoked or expired API token");
}

cp_status directory_token_check(directory *d, const char *token_text, directory_api_token *out,
                                cp_error *err)
{
    directory_api_token t;
    sqlite3_stmt *q = NULL;
    char hash[65];
    cp_status st;

    if (d == NULL)
        return CP_ERR_INVALID;
    if (token_text == NULL || token_text[0] == '\0' ||
        strnlen(token_text, DIRECTORY_TOKEN_TEXT_MAX + 1) > DIRECTORY_TOKEN_TEXT_MAX)
        return unauthenticated(err);
    credential_token_hash(token_text, hash);

    pthread_mutex_lock(&d->lock);
    st = stmt_open(d, &q, err, "SELECT " TOKEN_COLS " FROM api_token WHERE token_hash = ?",
                   "t", hash);
    if (st == CP_OK)
        st = row_get(d, q, read_token, &t, "token", NULL);
    pthread_mutex_unlock(&d->lock);

    if (st == CP_ERR_NOT_FOUND ||
        (st == CP_OK && (t.revoked || (t.expires_us != 0 && t.expires_us <= now_us()))))
        return unauthenticated(err);
    if (st != CP_OK)
        return cp_error_set(err, st, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "directory: token lookup failed");
    if (out != NULL)
        *out = t;
    return CP_OK;
}

cp_status directory_token_revoke(directory *d, int64_t id, cp_error *err)
{
    int64_t changed = 0;
    cp_status st;

    if (d == NULL)
        return CP_ERR_INVALID;
    pthread_mutex_lock(&d->lock);
    st = stmt_run(d, err, &changed, "revoke token",
                  "UPDATE api_token SET revoked = 1 WHERE id = ?", "i", id);
    pthread_mutex_unlock(&d->lock);
    if (st == CP_OK && changed == 0)
        st = cp_error_set(err, CP_ERR_NOT_FOUND, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                          "token %lld not found", (long long)id);
    return st;
}

cp_status directory_token_list(directory *d, directory_token_fn fn, void *ctx, cp_error *err)
{
    directory_api_token *items = NULL;
    sqlite3_stmt *q = NULL;
    size_t n = 0;
    cp_status st;

    if (d == NULL || fn == NULL)
        return CP_ERR_INVALID;
    pthread_mutex_lock(&d->lock);
    st = stmt_open(d, &q, err, "SELECT " TOKEN_COLS " FROM api_token ORDER BY id", "");
    if (st == CP_OK)
        st = rows_collect(d, q, read_token, sizeof *items, (void **)&items, &n, err);
    pthread_mutex_unlock(&d->lock);

    for (size_t i = 0; st == CP_OK && i < n; i++)
        st = fn(ctx, &items[i]);
    cp_free(items);
    return st;
}

/* --- application entities --------------------------------------------------------------- */

/* A host name or address: letters, digits and . - : _ ("" any host). */
static bool valid_host(const char *s)
{
    size_t n = strnlen(s, 64);

    if (n >= 64)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];

        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '-' || c == ':' || c == '_'))
            return false;
    }
    return true;
}

cp_status directory_ae_put(directory *d, const directory_ae *ae, cp_error *err)
{
    cp_status st;

    if (d == NULL || ae == NULL)
        return CP_ERR_INVALID;
    if (!valid_ae_title(ae->title))
        return invalid(err, "AE title", ae->title);
    if (!valid_host(ae->host))
        return invalid(err, "host", ae->host);
    if (ae->port < 0 || ae->port > 65535)
        return cp_error_set(err, CP_ERR_INVALID, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "port %d is not 0 to 65535", ae->port);
    if (!valid_allow(ae->allow))
        return invalid(err, "allow list (store, query, retrieve)", ae->allow);

    pthread_mutex_lock(&d->lock);
    st = institution_exists(d, ae->institution_id, "institution", err);
    if (st == CP_OK)
        st = stmt_run(d, err, NULL, "put AE",
                      "INSERT INTO dicom_ae(title, institution_id, host, port, allow)"
                      " VALUES(?1, ?2, ?3, ?4, ?5) ON CONFLICT(title) DO UPDATE SET"
                      " institution_id = ?2, host = ?3, port = ?4, allow = ?5", "titit",
                      ae->title, ae->institution_id, ae->host, (int64_t)ae->port, ae->allow);
    pthread_mutex_unlock(&d->lock);
    return st;
}

cp_status directory_ae_get(directory *d, const char *title, directory_ae *out, cp_error *err)
{
    sqlite3_stmt *q = NULL;
    cp_status st;

    if (d == NULL || title == NULL || out == NULL)
        return CP_ERR_INVALID;
    pthread_mutex_lock(&d->lock);
    st = stmt_open(d, &q, err, "SELECT " AE_COLS " FROM dicom_ae WHERE title = ?", "t", title);
    if (st == CP_OK)
        st = row_get(d, q, read_ae, out, "AE", err);
    pthread_mutex_unlock(&d->lock);
    return st;
}

cp_status directory_ae_delete(directory *d, const char *title, cp_error *err)
{
    int64_t changed = 0;
    cp_status st;

    if (d == NULL || title == NULL)
        return CP_ERR_INVALID;
    pthread_mutex_lock(&d->lock);
    st = stmt_run(d, err, &changed, "delete AE", "DELETE FROM dicom_ae WHERE title = ?", "t",
                  title);
    pthread_mutex_unlock(&d->lock);
    if (st == CP_OK && changed == 0)
        st = cp_error_set(err, CP_ERR_NOT_FOUND, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                          "AE \"%.16s\" not found", title);
    return st;
}

cp_status directory_ae_list(directory *d, directory_ae_fn fn, void *ctx, cp_error *err)
{
    directory_ae *items = NULL;
    sqlite3_stmt *q = NULL;
    size_t n = 0;
    cp_status st;

    if (d == NULL || fn == NULL)
        return CP_ERR_INVALID;
    pthread_mutex_lock(&d->lock);
    st = stmt_open(d, &q, err, "SELECT " AE_COLS " FROM dicom_ae ORDER BY title", "");
    if (st == CP_OK)
        st = rows_collect(d, q, read_ae, sizeof *items, (void **)&items, &n, err);
    pthread_mutex_unlock(&d->lock);

    for (size_t i = 0; st == CP_OK && i < n; i++)
        st = fn(ctx, &items[i]);
    cp_free(items);
    return st;
}
