/*
 * kiosk.c - the print record of the self-service kiosks (kiosk.h).
 */
#include "film/kiosk.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include <sqlite3.h>

#include "core/limits.h"

#define FAIL(err, st, ...) cp_error_set((err), (st), CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG, \
                                        __VA_ARGS__)

/* Migration n (1-based) is migrations[n - 1]. Append only. */
static const char *const migrations[] = {
    "CREATE TABLE IF NOT EXISTS kiosk_print("
    " id INTEGER PRIMARY KEY,"
    " institution_id INTEGER NOT NULL,"
    " kiosk_kind INTEGER NOT NULL,"
    " kiosk_id INTEGER NOT NULL,"
    " kiosk_name TEXT NOT NULL,"
    " order_id INTEGER NOT NULL,"
    " what TEXT NOT NULL,"
    " pages INTEGER NOT NULL,"
    " time_us INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS kiosk_print_order ON kiosk_print(order_id);"
    "CREATE INDEX IF NOT EXISTS kiosk_print_time ON kiosk_print(time_us);",
};

#define MIGRATION_COUNT ((int)(sizeof migrations / sizeof migrations[0]))

static int64_t now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static cp_status db_fail(sqlite3 *db, cp_error *err, const char *what)
{
    return FAIL(err, CP_ERR_IO, "kiosk: %s: %s", what, db ? sqlite3_errmsg(db) : "no database");
}

/* Opens the database and brings kiosk_print up to date; *db is closed by the caller. */
static cp_status kiosk_open(const char *db_path, sqlite3 **db, cp_error *err)
{
    sqlite3_stmt *stmt = NULL;
    int have = 0;
    cp_status st = CP_OK;

    *db = NULL;
    if (db_path == NULL)
        return FAIL(err, CP_ERR_INVALID, "kiosk: no database");
    if (sqlite3_open_v2(db_path, db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                        SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK)
        return db_fail(*db, err, "open");
    sqlite3_busy_timeout(*db, SHARE_BUSY_TIMEOUT_MS);
    if (sqlite3_exec(*db, "CREATE TABLE IF NOT EXISTS kiosk_schema_version("
                     "version INTEGER PRIMARY KEY)", NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(*db, "SELECT coalesce(max(version), 0) FROM kiosk_schema_version",
                           -1, &stmt, NULL) != SQLITE_OK)
        return db_fail(*db, err, "schema");
    if (sqlite3_step(stmt) == SQLITE_ROW)
        have = sqlite3_column_int(stmt, 0);
    sqlite3_finalize(stmt);
    for (int n = have + 1; st == CP_OK && n <= MIGRATION_COUNT; n++) {
        char sql[96];

        snprintf(sql, sizeof sql, "INSERT OR IGNORE INTO kiosk_schema_version VALUES(%d)", n);
        if (sqlite3_exec(*db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK ||
            sqlite3_exec(*db, migrations[n - 1], NULL, NULL, NULL) != SQLITE_OK ||
            sqlite3_exec(*db, sql, NULL, NULL, NULL) != SQLITE_OK ||
            sqlite3_exec(*db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
            st = db_fail(*db, err, "migrate");
            sqlite3_exec(*db, "ROLLBACK", NULL, NULL, NULL);
        }
    }
    return st;
}

cp_status film_kiosk_record(const char *db_path, film_kiosk_print *p, cp_error *err)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *stmt = NULL;
    cp_status st;

    if (p == NULL || p->order_id <= 0 || p->pages < 1 || p->pages > FILM_KIOSK_PAGES_MAX)
        return FAIL(err, CP_ERR_INVALID, "kiosk: an order and 1 to %d pages",
                    FILM_KIOSK_PAGES_MAX);
    if (p->time_us == 0)
        p->time_us = now_us();
    st = kiosk_open(db_path, &db, err);
    if (st == CP_OK &&
        sqlite3_prepare_v2(db, "INSERT INTO kiosk_print(institution_id, kiosk_kind, kiosk_id,"
                           " kiosk_name, order_id, what, pages, time_us)"
                           " VALUES(?, ?, ?, ?, ?, ?, ?, ?)", -1, &stmt, NULL) != SQLITE_OK)
        st = db_fail(db, err, "prepare");
    if (st == CP_OK) {
        sqlite3_bind_int64(stmt, 1, p->institution_id);
        sqlite3_bind_int(stmt, 2, p->kiosk_kind);
        sqlite3_bind_int64(stmt, 3, p->kiosk_id);
        sqlite3_bind_text(stmt, 4, p->kiosk, -1, SQLITE_STATIC);
        sqlite3_bind_int64(stmt, 5, p->order_id);
        sqlite3_bind_text(stmt, 6, p->film ? "film" : "report", -1, SQLITE_STATIC);
        sqlite3_bind_int(stmt, 7, p->pages);
        sqlite3_bind_int64(stmt, 8, p->time_us);
        if (sqlite3_step(stmt) != SQLITE_DONE)
            st = db_fail(db, err, "insert");
        else
            p->id = sqlite3_last_insert_rowid(db);
    }
    sqlite3_finalize(stmt);
    sqlite3_close(db);
    return st;
}

cp_status film_kiosk_count(const char *db_path, int64_t order_id, int64_t *count,
                           cp_error *err)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *stmt = NULL;
    cp_status st;

    *count = 0;
    st = kiosk_open(db_path, &db, err);
    if (st == CP_OK &&
        sqlite3_prepare_v2(db, "SELECT count(*) FROM kiosk_print WHERE order_id = ?", -1,
                           &stmt, NULL) != SQLITE_OK)
        st = db_fail(db, err, "prepare");
    if (st == CP_OK) {
        sqlite3_bind_int64(stmt, 1, order_id);
        if (sqlite3_step(stmt) == SQLITE_ROW)
            *count = sqlite3_column_int64(stmt, 0);
        else
            st = db_fail(db, err, "count");
    }
    sqlite3_finalize(stmt);
    sqlite3_close(db);
    return st;
}

static void column_text(sqlite3_stmt *stmt, int col, char *out, size_t cap)
{
    const unsigned char *t = sqlite3_column_text(stmt, col);

    snprintf(out, cap, "%s", t ? (const char *)t : "");
}

cp_status film_kiosk_days(const char *db_path, int64_t from_us, int64_t to_us,
                          film_kiosk_day_fn fn, void *ctx, cp_error *err)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *stmt = NULL;
    cp_status st;
    int rc = SQLITE_DONE;

    st = kiosk_open(db_path, &db, err);
    /* The newest name: SQLite takes the bare column from the row of max(id). */
    if (st == CP_OK &&
        sqlite3_prepare_v2(db, "SELECT date(time_us / 1000000, 'unixepoch') AS day,"
                           " institution_id, kiosk_kind, kiosk_id, max(id), kiosk_name,"
                           " sum(what = 'report'), sum(what = 'film'), sum(pages)"
                           " FROM kiosk_print WHERE (?1 = 0 OR time_us >= ?1)"
                           " AND (?2 = 0 OR time_us < ?2)"
                           " GROUP BY day, institution_id, kiosk_kind, kiosk_id"
                           " ORDER BY day, institution_id, kiosk_kind, kiosk_id", -1, &stmt,
                           NULL) != SQLITE_OK)
        st = db_fail(db, err, "prepare");
    if (st == CP_OK) {
        sqlite3_bind_int64(stmt, 1, from_us);
        sqlite3_bind_int64(stmt, 2, to_us);
    }
    while (st == CP_OK && (rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        film_kiosk_day d;

        memset(&d, 0, sizeof d);
        column_text(stmt, 0, d.day, sizeof d.day);
        d.institution_id = sqlite3_column_int64(stmt, 1);
        d.kiosk_kind = sqlite3_column_int(stmt, 2);
        d.kiosk_id = sqlite3_column_int64(stmt, 3);
        column_text(stmt, 5, d.kiosk, sizeof d.kiosk);
        d.reports = sqlite3_column_int64(stmt, 6);
        d.films = sqlite3_column_int64(stmt, 7);
        d.pages = sqlite3_column_int64(stmt, 8);
        st = fn(ctx, &d);
    }
    if (st == CP_OK && rc != SQLITE_DONE)
        st = db_fail(db, err, "list");
    sqlite3_finalize(stmt);
    sqlite3_close(db);
    return st == CP_ERR_STOPPED ? CP_OK : st;
}
