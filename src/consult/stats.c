/*
 * stats.c - reading statistics over the order tables (reading_order and
 * order_event, written by order.c) in one read-only snapshot: counts are
 * grouped by SQL; the durations behind the medians and percentiles are
 * fetched in pages of STATS_PAGE and sorted here. CSV follows RFC 4180.
 * No part of the DICOM standard is implemented here.
 */
#include "consult/stats.h"

#include <inttypes.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "consult/order.h"
#include "core/alloc.h"
#include "core/limits.h"

#define FAIL(err, st, ...) cp_error_set((err), (st), CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG, \
                                        __VA_ARGS__)

#define DAY_US INT64_C(86400000000)
#define DEFAULT_WEIGHTS "CR:1,DX:1,DR:1,MG:2,CT:3,MR:4,*:2"

/* The durations of one group, kept until its percentiles are taken. */
typedef struct durations {
    int64_t *v;
    size_t n;
    size_t cap;
} durations;

typedef struct acc {
    stats_row *rows;
    durations *tat;
    durations *write;
    size_t count;
    size_t cap;
    size_t fetched;                     /* reads whose durations are held */
} acc;

static const char *const group_names[] = { "total", "doctor", "requesting", "reading", "day" };

const char *stats_group_name(stats_group g)
{
    if ((unsigned)g < sizeof group_names / sizeof group_names[0])
        return group_names[g];
    return "unknown";
}

int stats_group_parse(const char *name)
{
    for (size_t i = 0; name != NULL && i < sizeof group_names / sizeof group_names[0]; i++)
        if (strcmp(name, group_names[i]) == 0)
            return (int)i;
    return -1;
}

unsigned stats_weight(const char *weights, const char *modality)
{
    const char *p = weights != NULL ? weights : DEFAULT_WEIGHTS;
    size_t mlen = modality != NULL ? strlen(modality) : 0;
    unsigned fallback = 1;

    while (*p != '\0') {
        const char *colon = strchr(p, ':');
        const char *end = strchr(p, ',');
        size_t klen;
        unsigned long w;

        if (end == NULL)
            end = p + strlen(p);
        if (colon == NULL || colon > end)
            break;
        klen = (size_t)(colon - p);
        w = strtoul(colon + 1, NULL, 10);
        if (klen == 1 && p[0] == '*')
            fallback = (unsigned)w;
        else if (klen == mlen && mlen > 0 && strncmp(p, modality, mlen) == 0)
            return (unsigned)w;
        p = *end == ',' ? end + 1 : end;
    }
    return fallback;
}

/* --- groups ------------------------------------------------------------------------- */

static void acc_free(acc *a)
{
    for (size_t i = 0; i < a->count; i++) {
        cp_free(a->tat[i].v);
        cp_free(a->write[i].v);
    }
    cp_free(a->tat);
    cp_free(a->write);
    cp_free(a->rows);
}

static void row_init(stats_row *r, stats_group g, int64_t key)
{
    memset(r, 0, sizeof *r);
    r->group = g;
    r->key = key;
    if (g == STATS_BY_DAY) {
        time_t t = (time_t)(key * 86400);
        struct tm tm;

        gmtime_r(&t, &tm);
        strftime(r->day, sizeof r->day, "%Y-%m-%d", &tm);
    }
}

/* The index of the group with key, added in key order when new; -1 when out of room. */
static long group_at(acc *a, stats_group g, int64_t key)
{
    size_t lo = 0;
    size_t hi = a->count;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;

        if (a->rows[mid].key == key)
            return (long)mid;
        if (a->rows[mid].key < key)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (a->count == STATS_GROUPS_MAX)
        return -1;
    if (a->count == a->cap) {
        size_t cap = a->cap == 0 ? 16 : a->cap * 2;
        stats_row *rows = cp_realloc(a->rows, cap * sizeof *rows);
        durations *tat;
        durations *write;

        if (rows == NULL)
            return -1;
        a->rows = rows;
        tat = cp_realloc(a->tat, cap * sizeof *tat);
        if (tat == NULL)
            return -1;
        a->tat = tat;
        write = cp_realloc(a->write, cap * sizeof *write);
        if (write == NULL)
            return -1;
        a->write = write;
        a->cap = cap;
    }
    memmove(&a->rows[lo + 1], &a->rows[lo], (a->count - lo) * sizeof *a->rows);
    memmove(&a->tat[lo + 1], &a->tat[lo], (a->count - lo) * sizeof *a->tat);
    memmove(&a->write[lo + 1], &a->write[lo], (a->count - lo) * sizeof *a->write);
    row_init(&a->rows[lo], g, key);
    memset(&a->tat[lo], 0, sizeof a->tat[lo]);
    memset(&a->write[lo], 0, sizeof a->write[lo]);
    a->count++;
    return (long)lo;
}

static cp_status durations_add(durations *d, int64_t v)
{
    if (d->n == d->cap) {
        size_t cap = d->cap == 0 ? 64 : d->cap * 2;
        int64_t *grown = cp_realloc(d->v, cap * sizeof *grown);

        if (grown == NULL)
            return CP_ERR_NOMEM;
        d->v = grown;
        d->cap = cap;
    }
    d->v[d->n++] = v;
    return CP_OK;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a;
    int64_t y = *(const int64_t *)b;

    return (x > y) - (x < y);
}

static void percentiles(durations *d, int64_t *median, int64_t *p95)
{
    size_t rank;

    if (d->n == 0) {
        *median = -1;
        *p95 = -1;
        return;
    }
    qsort(d->v, d->n, sizeof *d->v, cmp_i64);
    if (d->n % 2 == 1)
        *median = d->v[d->n / 2];
    else
        *median = d->v[d->n / 2 - 1] + (d->v[d->n / 2] - d->v[d->n / 2 - 1]) / 2;
    rank = (d->n * 95 + 99) / 100;                  /* ceil(0.95 n), nearest rank */
    *p95 = d->v[rank - 1];
}

static double rate(uint64_t num, uint64_t den)
{
    return den == 0 ? -1.0 : (double)num / (double)den;
}

/* --- queries ------------------------------------------------------------------------ */

/* The group key of a read (reading_order) and of an event (order_event e, order o). */
static const char *read_key(stats_group g)
{
    switch (g) {
    case STATS_BY_DOCTOR:
        return "doctor_id";
    case STATS_BY_REQUESTING:
        return "requesting_id";
    case STATS_BY_READING:
        return "reading_id";
    case STATS_BY_DAY:
        return "released / 86400000000";
    case STATS_TOTAL:
        break;
    }
    return "0";
}

/*
 * A lapse is written by cloudpacs (actor 0): its doctor is the one whose
 * claim began it, the actor of the last event that moved the order to
 * claimed before it.
 */
static const char *event_key(stats_group g)
{
    switch (g) {
    case STATS_BY_DOCTOR:
        return "coalesce(nullif(e.actor, 0), (SELECT c.actor FROM order_event c"
               " WHERE c.order_id = e.order_id AND c.seq < e.seq AND c.to_state = 4"
               " ORDER BY c.seq DESC LIMIT 1), 0)";
    case STATS_BY_REQUESTING:
        return "o.requesting_id";
    case STATS_BY_READING:
        return "o.reading_id";
    case STATS_BY_DAY:
        return "e.time / 86400000000";
    case STATS_TOTAL:
        break;
    }
    return "0";
}

static cp_status db_fail(sqlite3 *db, cp_error *err, const char *what)
{
    return FAIL(err, CP_ERR_IO, "stats: %s: %s", what, sqlite3_errmsg(db));
}

static cp_status prepare(sqlite3 *db, const char *sql, int64_t from, int64_t to,
                         sqlite3_stmt **stmt, cp_error *err)
{
    if (sqlite3_prepare_v2(db, sql, -1, stmt, NULL) != SQLITE_OK)
        return db_fail(db, err, "prepare");
    sqlite3_bind_int64(*stmt, 1, from);
    sqlite3_bind_int64(*stmt, 2, to);
    return CP_OK;
}

static cp_status add_reads(sqlite3 *db, const stats_query *q, int64_t from, int64_t to, acc *a,
                           cp_error *err)
{
    char sql[768];
    sqlite3_stmt *stmt = NULL;
    cp_status st;
    int rc;

    snprintf(sql, sizeof sql,
             "SELECT %s AS k, modality, count(*),"
             " sum(deadline = 0 OR released <= deadline),"
             " sum(reviewer_id <> 0 AND reviewer_id <> doctor_id), sum(rejections)"
             " FROM reading_order WHERE state = %d AND released >= ?1 AND released < ?2"
             " GROUP BY k, modality ORDER BY k",
             read_key(q->group), (int)ORDER_RELEASED);
    st = prepare(db, sql, from, to, &stmt, err);
    while (st == CP_OK && (rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        long i = group_at(a, q->group, sqlite3_column_int64(stmt, 0));
        const unsigned char *modality = sqlite3_column_text(stmt, 1);
        uint64_t reads = (uint64_t)sqlite3_column_int64(stmt, 2);
        stats_row *r;

        if (i < 0) {
            st = FAIL(err, CP_ERR_LIMIT, "stats: more than %d groups", STATS_GROUPS_MAX);
            break;
        }
        r = &a->rows[i];
        r->released += reads;
        r->on_time += (uint64_t)sqlite3_column_int64(stmt, 3);
        r->reviewed_by_other += (uint64_t)sqlite3_column_int64(stmt, 4);
        r->rejections += (uint64_t)sqlite3_column_int64(stmt, 5);
        r->versions += reads + (uint64_t)sqlite3_column_int64(stmt, 5);
        r->pay_units += reads * stats_weight(q->weights, (const char *)modality);
    }
    if (st == CP_OK && rc != SQLITE_DONE)
        st = db_fail(db, err, "reads");
    sqlite3_finalize(stmt);
    return st;
}

/* The durations of the reads, a page at a time (keyset paging on the order id). */
static cp_status add_durations(sqlite3 *db, const stats_query *q, int64_t from, int64_t to,
                               acc *a, cp_error *err)
{
    char sql[768];
    sqlite3_stmt *stmt = NULL;
    int64_t after = 0;
    size_t got;
    cp_status st;

    snprintf(sql, sizeof sql,
             "SELECT id, %s, released - pooled,"
             " CASE WHEN claimed > 0 AND reported >= claimed THEN reported - claimed"
             " ELSE -1 END"
             " FROM reading_order WHERE state = %d AND released >= ?1 AND released < ?2"
             " AND id > ?3 ORDER BY id LIMIT %d",
             read_key(q->group), (int)ORDER_RELEASED, STATS_PAGE);
    st = prepare(db, sql, from, to, &stmt, err);
    do {
        int rc;

        got = 0;
        if (st != CP_OK)
            break;
        sqlite3_reset(stmt);
        sqlite3_bind_int64(stmt, 3, after);
        while (st == CP_OK && (rc = sqlite3_step(stmt)) == SQLITE_ROW) {
            long i = group_at(a, q->group, sqlite3_column_int64(stmt, 1));
            int64_t write = sqlite3_column_int64(stmt, 3);

            after = sqlite3_column_int64(stmt, 0);
            got++;
            if (i < 0 || ++a->fetched > STATS_ORDERS_MAX) {
                st = FAIL(err, CP_ERR_LIMIT, "stats: more than %d reads or %d groups",
                          STATS_ORDERS_MAX, STATS_GROUPS_MAX);
                break;
            }
            st = durations_add(&a->tat[i], sqlite3_column_int64(stmt, 2));
            if (st == CP_OK && write >= 0)
                st = durations_add(&a->write[i], write);
        }
        if (st == CP_OK && rc != SQLITE_DONE)
            st = db_fail(db, err, "durations");
    } while (st == CP_OK && got == STATS_PAGE);
    sqlite3_finalize(stmt);
    return st;
}

static cp_status add_events(sqlite3 *db, const stats_query *q, int64_t from, int64_t to,
                            acc *a, cp_error *err)
{
    char sql[768];
    sqlite3_stmt *stmt = NULL;
    cp_status st;
    int rc;

    snprintf(sql, sizeof sql,
             "SELECT %s AS k, e.event, count(*) FROM order_event e"
             " JOIN reading_order o ON o.id = e.order_id"
             " WHERE e.event IN ('given_back', 'lapsed') AND e.time >= ?1 AND e.time < ?2"
             " GROUP BY k, e.event ORDER BY k",
             event_key(q->group));
    st = prepare(db, sql, from, to, &stmt, err);
    while (st == CP_OK && (rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        long i = group_at(a, q->group, sqlite3_column_int64(stmt, 0));
        const char *event = (const char *)sqlite3_column_text(stmt, 1);
        uint64_t n = (uint64_t)sqlite3_column_int64(stmt, 2);

        if (i < 0) {
            st = FAIL(err, CP_ERR_LIMIT, "stats: more than %d groups", STATS_GROUPS_MAX);
            break;
        }
        if (event != NULL && strcmp(event, "lapsed") == 0)
            a->rows[i].lapses += n;
        else
            a->rows[i].give_backs += n;
    }
    if (st == CP_OK && rc != SQLITE_DONE)
        st = db_fail(db, err, "events");
    sqlite3_finalize(stmt);
    return st;
}

static void finish_rows(acc *a)
{
    for (size_t i = 0; i < a->count; i++) {
        stats_row *r = &a->rows[i];

        percentiles(&a->tat[i], &r->tat_median_us, &r->tat_p95_us);
        percentiles(&a->write[i], &r->write_median_us, &r->write_p95_us);
        r->on_time_rate = rate(r->on_time, r->released);
        r->review_rate = rate(r->reviewed_by_other, r->released);
        r->returned_rate = rate(r->rejections, r->versions);
    }
}

cp_status stats_compute(const char *db_path, const stats_query *q, stats_row **rows,
                        size_t *count, cp_error *err)
{
    sqlite3 *db = NULL;
    acc a = { 0 };
    int64_t from;
    int64_t to;
    cp_status st;

    *rows = NULL;
    *count = 0;
    if (db_path == NULL || q == NULL || stats_group_parse(stats_group_name(q->group)) < 0)
        return FAIL(err, CP_ERR_INVALID, "stats: no database or an unknown grouping");
    from = q->from_us;
    to = q->to_us > 0 ? q->to_us : INT64_MAX;

    if (sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL) !=
        SQLITE_OK) {
        st = FAIL(err, CP_ERR_IO, "stats: cannot open the database");
        goto done;
    }
    sqlite3_busy_timeout(db, REPORT_BUSY_TIMEOUT_MS);

    /* One read transaction: the counts and the durations see the same orders. */
    if (sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK) {
        st = db_fail(db, err, "begin");
        goto done;
    }
    if (q->group == STATS_TOTAL && group_at(&a, q->group, 0) < 0) {
        st = FAIL(err, CP_ERR_NOMEM, "stats: groups");
        goto done;
    }
    st = add_reads(db, q, from, to, &a, err);
    if (st == CP_OK)
        st = add_durations(db, q, from, to, &a, err);
    if (st == CP_OK)
        st = add_events(db, q, from, to, &a, err);
    sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    if (st != CP_OK)
        goto done;

    finish_rows(&a);
    *rows = a.rows;
    *count = a.count;
    a.rows = NULL;

done:
    acc_free(&a);
    sqlite3_close_v2(db);
    return st;
}

void stats_free(stats_row *rows)
{
    cp_free(rows);
}

/* --- output --------------------------------------------------------------------------- */

static json_t *seconds_or_null(int64_t us)
{
    return us < 0 ? json_null() : json_real((double)us / 1e6);
}

static json_t *rate_or_null(double r)
{
    return r < 0 ? json_null() : json_real(r);
}

static json_t *row_json(const stats_row *r)
{
    return json_pack("{s:s, s:I, s:s?, s:I, s:o, s:o, s:o, s:o, s:I, s:o, s:I, s:o,"
                     " s:I, s:I, s:o, s:I, s:I, s:I}",
                     "group", stats_group_name(r->group),
                     "key", (json_int_t)r->key,
                     "day", r->day[0] != '\0' ? r->day : NULL,
                     "released", (json_int_t)r->released,
                     "tat_median_s", seconds_or_null(r->tat_median_us),
                     "tat_p95_s", seconds_or_null(r->tat_p95_us),
                     "write_median_s", seconds_or_null(r->write_median_us),
                     "write_p95_s", seconds_or_null(r->write_p95_us),
                     "on_time", (json_int_t)r->on_time,
                     "on_time_rate", rate_or_null(r->on_time_rate),
                     "reviewed_by_other", (json_int_t)r->reviewed_by_other,
                     "review_rate", rate_or_null(r->review_rate),
                     "versions", (json_int_t)r->versions,
                     "rejections", (json_int_t)r->rejections,
                     "returned_rate", rate_or_null(r->returned_rate),
                     "give_backs", (json_int_t)r->give_backs,
                     "lapses", (json_int_t)r->lapses,
                     "pay_units", (json_int_t)r->pay_units);
}

cp_status stats_to_json(const stats_row *rows, size_t count, json_t **out)
{
    json_t *array = json_array();

    if (array == NULL)
        return CP_ERR_NOMEM;
    for (size_t i = 0; i < count; i++) {
        json_t *o = row_json(&rows[i]);

        if (o == NULL || json_array_append_new(array, o) != 0) {
            json_decref(array);
            return CP_ERR_NOMEM;
        }
    }
    *out = array;
    return CP_OK;
}

/* A field quoted when it holds a comma, a quote or a line end (RFC 4180 2.6, 2.7). */
static cp_status csv_field(cp_buf *out, const char *value, bool last)
{
    cp_status st = CP_OK;

    if (strpbrk(value, ",\"\r\n") != NULL) {
        st = cp_buf_append_byte(out, '"');
        for (const char *p = value; st == CP_OK && *p; p++)
            st = *p == '"' ? cp_buf_append_str(out, "\"\"") : cp_buf_append_byte(out, *p);
        if (st == CP_OK)
            st = cp_buf_append_byte(out, '"');
    } else {
        st = cp_buf_append_str(out, value);
    }
    if (st == CP_OK)
        st = cp_buf_append_str(out, last ? "\r\n" : ",");
    return st;
}

static void fmt_seconds(char *out, size_t cap, int64_t us)
{
    if (us < 0)
        out[0] = '\0';
    else
        snprintf(out, cap, "%" PRId64 ".%06" PRId64, us / 1000000, us % 1000000);
}

static void fmt_rate(char *out, size_t cap, double r)
{
    if (r < 0)
        out[0] = '\0';
    else
        snprintf(out, cap, "%.4f", r);
}

static void fmt_u(char *out, size_t cap, uint64_t v)
{
    snprintf(out, cap, "%" PRIu64, v);
}

#define CSV_COLUMNS 18

static const char *const csv_header[CSV_COLUMNS] = {
    "group", "key", "day", "released", "tat_median_s", "tat_p95_s", "write_median_s",
    "write_p95_s", "on_time", "on_time_rate", "reviewed_by_other", "review_rate",
    "versions", "rejections", "returned_rate", "give_backs", "lapses", "pay_units",
};

cp_status stats_to_csv(const stats_row *rows, size_t count, cp_buf *out)
{
    char f[CSV_COLUMNS][32];
    cp_status st = CP_OK;

    for (size_t c = 0; st == CP_OK && c < CSV_COLUMNS; c++)
        st = csv_field(out, csv_header[c], c + 1 == CSV_COLUMNS);
    for (size_t i = 0; st == CP_OK && i < count; i++) {
        const stats_row *r = &rows[i];

        snprintf(f[0], sizeof f[0], "%s", stats_group_name(r->group));
        snprintf(f[1], sizeof f[1], "%" PRId64, r->key);
        snprintf(f[2], sizeof f[2], "%s", r->day);
        fmt_u(f[3], sizeof f[3], r->released);
        fmt_seconds(f[4], sizeof f[4], r->tat_median_us);
        fmt_seconds(f[5], sizeof f[5], r->tat_p95_us);
        fmt_seconds(f[6], sizeof f[6], r->write_median_us);
        fmt_seconds(f[7], sizeof f[7], r->write_p95_us);
        fmt_u(f[8], sizeof f[8], r->on_time);
        fmt_rate(f[9], sizeof f[9], r->on_time_rate);
        fmt_u(f[10], sizeof f[10], r->reviewed_by_other);
        fmt_rate(f[11], sizeof f[11], r->review_rate);
        fmt_u(f[12], sizeof f[12], r->versions);
        fmt_u(f[13], sizeof f[13], r->rejections);
        fmt_rate(f[14], sizeof f[14], r->returned_rate);
        fmt_u(f[15], sizeof f[15], r->give_backs);
        fmt_u(f[16], sizeof f[16], r->lapses);
        fmt_u(f[17], sizeof f[17], r->pay_units);
        for (size_t c = 0; st == CP_OK && c < CSV_COLUMNS; c++)
            st = csv_field(out, f[c], c + 1 == CSV_COLUMNS);
    }
    return st;
}
