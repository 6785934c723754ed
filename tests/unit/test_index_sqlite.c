/*
 * test_index_sqlite.c - the SQLite metadata index: migrations, the outcomes
 * of a put, counts and ModalitiesInStudy through puts and deletes, the
 * change log, quiet studies, C-FIND matching (PS3.4 C.2.2.2) at every
 * level, patient identity per issuer, and concurrent writers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>

#include <cmocka.h>

#include "core/alloc.h"
#include "index/index.h"

typedef struct fixture {
    char dir[64];
    char path[96];
    index_db *idx;
} fixture;

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);

    snprintf(fx->dir, sizeof fx->dir, "/tmp/cloudpacs-index-XXXXXX");
    if (mkdtemp(fx->dir) == NULL)
        return -1;
    snprintf(fx->path, sizeof fx->path, "%s/index.db", fx->dir);
    if (index_open_sqlite(fx->path, &fx->idx, NULL) != CP_OK)
        return -1;
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    char cmd[128];

    index_destroy(fx->idx);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", fx->dir);
    if (system(cmd) != 0)
        return -1;
    free(fx);
    return 0;
}

static void set(char *dst, size_t size, const char *src)
{
    snprintf(dst, size, "%s", src);
}

#define SET(field, value) set((field), sizeof(field), (value))

/* A record for one instance; the hash is `hash` repeated. */
static void rec_init(index_instance_record *r, const char *pid, const char *study,
                     const char *series, const char *sop, const char *modality, uint8_t hash)
{
    memset(r, 0, sizeof *r);
    SET(r->patient.id, pid);
    SET(r->patient.issuer, "CLINIC-A");
    SET(r->patient.name.alphabetic, "Doe^Jane");
    SET(r->patient.sex, "F");
    SET(r->study.uid, study);
    SET(r->study.date, "20200615");
    SET(r->study.time, "101500");
    SET(r->series.uid, series);
    SET(r->series.modality, modality);
    r->series.number = 1;
    SET(r->instance.sop_uid, sop);
    SET(r->instance.sop_class_uid, "1.2.840.10008.5.1.4.1.1.2");
    r->instance.number = 1;
    snprintf(r->instance.blob_key, sizeof r->instance.blob_key, "b/%s.dcm", sop);
    memset(r->instance.hash, hash, sizeof r->instance.hash);
    SET(r->instance.source, "CT1");
    r->instance.institution_id = 1;
    r->instance.received_us = 1000;
}

static index_outcome put(index_db *idx, const index_instance_record *r, unsigned flags)
{
    index_put_result res;

    assert_int_equal(index_put_instance(idx, r, flags, &res, NULL), CP_OK);
    return res.outcome;
}

static void put_simple(index_db *idx, const char *pid, const char *study, const char *series,
                       const char *sop, const char *modality)
{
    index_instance_record r;

    rec_init(&r, pid, study, series, sop, modality, 1);
    assert_int_equal(put(idx, &r, 0), INDEX_STORED_NEW);
}

/* What the tests look at in result rows. */
typedef struct got_row {
    char study_uid[INDEX_UID_MAX + 1];
    char series_uid[INDEX_UID_MAX + 1];
    char sop_uid[INDEX_UID_MAX + 1];
    char modalities[INDEX_MODALITIES_MAX + 1];
    char patient_id[INDEX_LO_MAX + 1];
    char issuer[INDEX_LO_MAX + 1];
    uint32_t study_series, study_instances, series_instances;
    int64_t last_arrival;
    uint8_t hash0;
} got_row;

typedef struct got {
    size_t count;
    got_row rows[64];
} got;

static cp_status collect(void *ctx, const index_row *row)
{
    got *g = ctx;
    got_row *r;

    if (g->count == 64)
        return CP_ERR_LIMIT;
    r = &g->rows[g->count++];
    SET(r->study_uid, row->rec.study.uid);
    SET(r->series_uid, row->rec.series.uid);
    SET(r->sop_uid, row->rec.instance.sop_uid);
    SET(r->modalities, row->modalities_in_study);
    SET(r->patient_id, row->rec.patient.id);
    SET(r->issuer, row->rec.patient.issuer);
    r->study_series = row->study_series;
    r->study_instances = row->study_instances;
    r->series_instances = row->series_instances;
    r->last_arrival = row->study_last_arrival_us;
    r->hash0 = row->rec.instance.hash[0];
    return CP_OK;
}

/* Runs a query with up to 4 terms given as keyword, value pairs. */
static size_t query(index_db *idx, index_level level, unsigned flags, got *g, size_t nterms,
                    ...)
{
    index_term terms[4];
    index_query_spec q = { .level = level, .terms = terms, .term_count = nterms,
                           .flags = flags };
    va_list ap;

    va_start(ap, nterms);
    for (size_t i = 0; i < nterms; i++) {
        terms[i].attribute = va_arg(ap, const char *);
        terms[i].value = va_arg(ap, const char *);
    }
    va_end(ap);
    memset(g, 0, sizeof *g);
    assert_int_equal(index_query(idx, &q, collect, g, NULL), CP_OK);
    return g->count;
}

static got_row study_row(index_db *idx, const char *uid)
{
    got g;

    assert_int_equal(query(idx, INDEX_LEVEL_STUDY, 0, &g, 1, "StudyInstanceUID", uid), 1);
    return g.rows[0];
}

/* --- migrations and outcomes ------------------------------------------------ */

static void test_migrations_and_reopen(void **state)
{
    fixture *fx = *state;
    int v1, v2;
    got g;

    assert_string_equal(index_backend_name(fx->idx), "sqlite");
    assert_int_equal(index_schema_version(fx->idx, &v1, NULL), CP_OK);
    assert_true(v1 >= 1);
    put_simple(fx->idx, "P1", "1.1", "1.1.1", "1.1.1.1", "CT");

    index_destroy(fx->idx);
    assert_int_equal(index_open_sqlite(fx->path, &fx->idx, NULL), CP_OK);
    assert_int_equal(index_schema_version(fx->idx, &v2, NULL), CP_OK);
    assert_int_equal(v1, v2);
    assert_int_equal(query(fx->idx, INDEX_LEVEL_STUDY, 0, &g, 0), 1);
}

static void test_put_outcomes(void **state)
{
    fixture *fx = *state;
    index_instance_record r;
    index_put_result res;
    got g;

    rec_init(&r, "P1", "1.1", "1.1.1", "1.1.1.1", "CT", 1);
    assert_int_equal(index_put_instance(fx->idx, &r, 0, &res, NULL), CP_OK);
    assert_int_equal(res.outcome, INDEX_STORED_NEW);
    assert_true(res.change_seq > 0);

    assert_int_equal(index_put_instance(fx->idx, &r, 0, &res, NULL), CP_OK);
    assert_int_equal(res.outcome, INDEX_SAME);
    assert_int_equal(res.change_seq, 0);
    assert_string_equal(res.old_blob_key, "b/1.1.1.1.dcm");

    memset(r.instance.hash, 2, INDEX_HASH_SIZE);
    SET(r.instance.blob_key, "b/new.dcm");
    assert_int_equal(put(fx->idx, &r, 0), INDEX_DIFFERENT);
    query(fx->idx, INDEX_LEVEL_INSTANCE, 0, &g, 0);
    assert_int_equal(g.count, 1);
    assert_int_equal(g.rows[0].hash0, 1);

    assert_int_equal(index_put_instance(fx->idx, &r, INDEX_PUT_REPLACE, &res, NULL), CP_OK);
    assert_int_equal(res.outcome, INDEX_REPLACED);
    assert_string_equal(res.old_blob_key, "b/1.1.1.1.dcm");
    query(fx->idx, INDEX_LEVEL_INSTANCE, 0, &g, 0);
    assert_int_equal(g.count, 1);
    assert_int_equal(g.rows[0].hash0, 2);
    assert_int_equal(g.rows[0].study_instances, 1);
    assert_int_equal(g.rows[0].series_instances, 1);
    assert_int_equal(g.rows[0].study_series, 1);
}

static void test_replace_moves_series(void **state)
{
    fixture *fx = *state;
    index_instance_record r;
    got g;

    put_simple(fx->idx, "P1", "1.1", "1.1.1", "1.1.1.1", "CT");
    put_simple(fx->idx, "P1", "1.1", "1.1.1", "1.1.1.2", "CT");
    rec_init(&r, "P1", "1.1", "1.1.2", "1.1.1.2", "MR", 9);
    assert_int_equal(put(fx->idx, &r, INDEX_PUT_REPLACE), INDEX_REPLACED);

    got_row s = study_row(fx->idx, "1.1");
    assert_int_equal(s.study_series, 2);
    assert_int_equal(s.study_instances, 2);
    assert_string_equal(s.modalities, "CT\\MR");
    assert_int_equal(query(fx->idx, INDEX_LEVEL_SERIES, 0, &g, 1, "SeriesInstanceUID",
                           "1.1.1"), 1);
    assert_int_equal(g.rows[0].series_instances, 1);
}

static void test_record_checks(void **state)
{
    fixture *fx = *state;
    index_instance_record r;
    index_put_result res;

    rec_init(&r, "P1", "1.1", "1.1.1", "", "CT", 1);
    assert_int_equal(index_put_instance(fx->idx, &r, 0, &res, NULL), CP_ERR_INVALID);

    rec_init(&r, "P1", "1.1", "1.1.1", "1.1.1.1", "CT", 1);
    SET(r.patient.name.alphabetic, "Bad\xff");
    assert_int_equal(index_put_instance(fx->idx, &r, 0, &res, NULL), CP_ERR_CHARSET);

    rec_init(&r, "P1", "1.1", "1.1.1", "1.1.1.1", "CT", 1);
    memset(r.study.description, 'x', sizeof r.study.description);
    assert_int_equal(index_put_instance(fx->idx, &r, 0, &res, NULL), CP_ERR_LIMIT);
}

/* --- counts, deletes and the change log ----------------------------------------- */

typedef struct deleted {
    int count;
    char last_key[INDEX_BLOB_KEY_MAX + 1];
} deleted;

static void on_deleted(void *ctx, const char *sop_uid, const char *blob_key)
{
    deleted *d = ctx;

    (void)sop_uid;
    d->count++;
    SET(d->last_key, blob_key);
}

static void test_counts_through_puts_and_deletes(void **state)
{
    fixture *fx = *state;
    deleted d = { 0, "" };
    got g;

    put_simple(fx->idx, "P1", "1.1", "1.1.1", "1.1.1.1", "CT");
    put_simple(fx->idx, "P1", "1.1", "1.1.1", "1.1.1.2", "CT");
    put_simple(fx->idx, "P1", "1.1", "1.1.1", "1.1.1.3", "CT");
    put_simple(fx->idx, "P1", "1.1", "1.1.2", "1.1.2.1", "MR");
    put_simple(fx->idx, "P1", "1.1", "1.1.2", "1.1.2.2", "MR");
    put_simple(fx->idx, "P1", "1.1", "1.1.3", "1.1.3.1", "SR");

    got_row s = study_row(fx->idx, "1.1");
    assert_int_equal(s.study_series, 3);
    assert_int_equal(s.study_instances, 6);
    assert_string_equal(s.modalities, "CT\\MR\\SR");

    assert_int_equal(index_delete_series(fx->idx, "1.1.2", on_deleted, &d, NULL), CP_OK);
    assert_int_equal(d.count, 2);
    s = study_row(fx->idx, "1.1");
    assert_int_equal(s.study_series, 2);
    assert_int_equal(s.study_instances, 4);
    assert_string_equal(s.modalities, "CT\\SR");

    assert_int_equal(index_delete_instance(fx->idx, "1.1.1.2", on_deleted, &d, NULL), CP_OK);
    assert_string_equal(d.last_key, "b/1.1.1.2.dcm");
    assert_int_equal(index_delete_instance(fx->idx, "1.1.3.1", NULL, NULL, NULL), CP_OK);
    s = study_row(fx->idx, "1.1");
    assert_int_equal(s.study_series, 1);
    assert_int_equal(s.study_instances, 2);
    assert_string_equal(s.modalities, "CT");
    assert_int_equal(query(fx->idx, INDEX_LEVEL_SERIES, 0, &g, 1, "SeriesInstanceUID",
                           "1.1.1"), 1);
    assert_int_equal(g.rows[0].series_instances, 2);

    assert_int_equal(index_delete_instance(fx->idx, "9.9", NULL, NULL, NULL),
                     CP_ERR_NOT_FOUND);
    assert_int_equal(index_delete_study(fx->idx, "1.1", on_deleted, &d, NULL), CP_OK);
    assert_int_equal(d.count, 5);
    assert_int_equal(query(fx->idx, INDEX_LEVEL_STUDY, 0, &g, 0), 0);
    assert_int_equal(index_delete_study(fx->idx, "1.1", NULL, NULL, NULL), CP_ERR_NOT_FOUND);

    /* The patient went with its last study: a new study starts afresh. */
    put_simple(fx->idx, "P1", "1.2", "1.2.1", "1.2.1.1", "US");
    assert_int_equal(query(fx->idx, INDEX_LEVEL_STUDY, 0, &g, 1, "PatientID", "P1"), 1);
}

typedef struct changes {
    int count;
    index_change list[16];
} changes;

static cp_status on_change(void *ctx, const index_change *ch)
{
    changes *c = ctx;

    if (c->count == 16)
        return CP_ERR_LIMIT;
    c->list[c->count++] = *ch;
    return CP_OK;
}

static void test_change_log(void **state)
{
    fixture *fx = *state;
    index_instance_record r;
    changes c = { 0 };
    int64_t last;

    assert_int_equal(index_last_change(fx->idx, &last, NULL), CP_OK);
    assert_int_equal(last, 0);
    put_simple(fx->idx, "P1", "1.1", "1.1.1", "1.1.1.1", "CT");
    put_simple(fx->idx, "P1", "1.1", "1.1.1", "1.1.1.2", "CT");
    rec_init(&r, "P1", "1.1", "1.1.1", "1.1.1.1", "CT", 1);
    assert_int_equal(put(fx->idx, &r, 0), INDEX_SAME);
    rec_init(&r, "P1", "1.1", "1.1.1", "1.1.1.2", "CT", 7);
    assert_int_equal(put(fx->idx, &r, INDEX_PUT_REPLACE), INDEX_REPLACED);
    assert_int_equal(index_delete_instance(fx->idx, "1.1.1.1", NULL, NULL, NULL), CP_OK);

    assert_int_equal(index_changes_since(fx->idx, 0, 0, on_change, &c, NULL), CP_OK);
    assert_int_equal(c.count, 4);
    assert_int_equal(c.list[0].kind, INDEX_CHANGE_STORED);
    assert_string_equal(c.list[0].sop_uid, "1.1.1.1");
    assert_int_equal(c.list[1].kind, INDEX_CHANGE_STORED);
    assert_int_equal(c.list[2].kind, INDEX_CHANGE_REPLACED);
    assert_string_equal(c.list[2].sop_uid, "1.1.1.2");
    assert_int_equal(c.list[3].kind, INDEX_CHANGE_DELETED);
    assert_string_equal(c.list[3].study_uid, "1.1");
    assert_string_equal(c.list[3].series_uid, "1.1.1");
    for (int i = 1; i < 4; i++)
        assert_true(c.list[i].seq > c.list[i - 1].seq);
    assert_int_equal(index_last_change(fx->idx, &last, NULL), CP_OK);
    assert_int_equal(last, c.list[3].seq);

    /* From a position, with a limit. */
    int64_t pos = c.list[1].seq;
    memset(&c, 0, sizeof c);
    assert_int_equal(index_changes_since(fx->idx, pos, 1, on_change, &c, NULL), CP_OK);
    assert_int_equal(c.count, 1);
    assert_int_equal(c.list[0].kind, INDEX_CHANGE_REPLACED);
}

static void test_quiet_studies(void **state)
{
    fixture *fx = *state;
    index_instance_record r;
    got g = { 0 };

    rec_init(&r, "P1", "1.1", "1.1.1", "1.1.1.1", "CT", 1);
    r.instance.received_us = 100;
    put(fx->idx, &r, 0);
    rec_init(&r, "P2", "2.1", "2.1.1", "2.1.1.1", "CT", 1);
    r.instance.received_us = 200;
    put(fx->idx, &r, 0);

    assert_int_equal(index_studies_quiet_since(fx->idx, 150, 0, collect, &g, NULL), CP_OK);
    assert_int_equal(g.count, 1);
    assert_string_equal(g.rows[0].study_uid, "1.1");
    assert_int_equal(g.rows[0].last_arrival, 100);
    assert_int_equal(index_mark_study_complete(fx->idx, "1.1", 100, NULL), CP_OK);

    memset(&g, 0, sizeof g);
    assert_int_equal(index_studies_quiet_since(fx->idx, 150, 0, collect, &g, NULL), CP_OK);
    assert_int_equal(g.count, 0);

    /* A late instance makes the study eligible again; a stale mark is refused. */
    rec_init(&r, "P1", "1.1", "1.1.1", "1.1.1.2", "CT", 1);
    r.instance.received_us = 300;
    put(fx->idx, &r, 0);
    assert_int_equal(index_studies_quiet_since(fx->idx, 400, 0, collect, &g, NULL), CP_OK);
    assert_int_equal(g.count, 2);
    assert_string_equal(g.rows[0].study_uid, "2.1");
    assert_string_equal(g.rows[1].study_uid, "1.1");
    assert_int_equal(index_mark_study_complete(fx->idx, "1.1", 100, NULL), CP_ERR_AGAIN);
    assert_int_equal(index_mark_study_complete(fx->idx, "1.1", 300, NULL), CP_OK);
    assert_int_equal(index_mark_study_complete(fx->idx, "3.1", 300, NULL), CP_ERR_NOT_FOUND);
}

/* Each announcement is one STUDY_COMPLETE change; marking again logs nothing. */
static void test_complete_on_change_log(void **state)
{
    fixture *fx = *state;
    index_instance_record r;
    changes c = { 0 };
    int64_t last = 0;

    rec_init(&r, "P1", "1.1", "1.1.1", "1.1.1.1", "CT", 1);
    r.instance.received_us = 100;
    r.instance.institution_id = 5;
    put(fx->idx, &r, 0);
    assert_int_equal(index_mark_study_complete(fx->idx, "1.1", 100, NULL), CP_OK);
    assert_int_equal(index_mark_study_complete(fx->idx, "1.1", 100, NULL), CP_OK);

    assert_int_equal(index_changes_since(fx->idx, 0, 0, on_change, &c, NULL), CP_OK);
    assert_int_equal(c.count, 2);
    assert_int_equal(c.list[0].kind, INDEX_CHANGE_STORED);
    assert_int_equal(c.list[1].kind, INDEX_CHANGE_STUDY_COMPLETE);
    assert_string_equal(c.list[1].study_uid, "1.1");
    assert_string_equal(c.list[1].sop_uid, "");
    assert_int_equal(c.list[1].institution_id, 5);
    assert_int_equal(index_last_change(fx->idx, &last, NULL), CP_OK);
    assert_int_equal(last, c.list[1].seq);

    /* A late instance, then a second announcement. */
    rec_init(&r, "P1", "1.1", "1.1.1", "1.1.1.2", "CT", 1);
    r.instance.received_us = 300;
    r.instance.institution_id = 5;
    put(fx->idx, &r, 0);
    assert_int_equal(index_mark_study_complete(fx->idx, "1.1", 300, NULL), CP_OK);
    memset(&c, 0, sizeof c);
    assert_int_equal(index_changes_since(fx->idx, last, 0, on_change, &c, NULL), CP_OK);
    assert_int_equal(c.count, 2);
    assert_int_equal(c.list[0].kind, INDEX_CHANGE_STORED);
    assert_int_equal(c.list[1].kind, INDEX_CHANGE_STUDY_COMPLETE);
}

/* --- matching ------------------------------------------------------------------- */

static void put_study(index_db *idx, const char *pid, const char *study, const char *date,
                      const char *alpha, const char *ideo, int64_t institution)
{
    index_instance_record r;
    char series[INDEX_UID_MAX + 1], sop[INDEX_UID_MAX + 1];

    snprintf(series, sizeof series, "%s.1", study);
    snprintf(sop, sizeof sop, "%s.1.1", study);
    rec_init(&r, pid, study, series, sop, "CT", 1);
    SET(r.study.date, date);
    SET(r.patient.name.alphabetic, alpha);
    SET(r.patient.name.ideographic, ideo);
    SET(r.study.description, pid);
    r.instance.institution_id = institution;
    assert_int_equal(put(idx, &r, 0), INDEX_STORED_NEW);
}

static void test_match_text_and_escaping(void **state)
{
    fixture *fx = *state;
    got g;

    put_study(fx->idx, "ab%c_d", "1.1", "20200101", "A", "", 1);
    put_study(fx->idx, "abXcYd", "1.2", "20200101", "B", "", 1);
    put_study(fx->idx, "a[1]*", "1.3", "20200101", "C", "", 1);

    assert_int_equal(query(fx->idx, INDEX_LEVEL_STUDY, 0, &g, 1, "PatientID", "ab%c_d"), 1);
    assert_string_equal(g.rows[0].study_uid, "1.1");
    assert_int_equal(query(fx->idx, INDEX_LEVEL_STUDY, 0, &g, 1, "PatientID", "ab%*"), 1);
    assert_int_equal(query(fx->idx, INDEX_LEVEL_STUDY, 0, &g, 1, "PatientID", "*_d"), 1);
    assert_int_equal(query(fx->idx, INDEX_LEVEL_STUDY, 0, &g, 1, "PatientID", "ab?c?d"), 2);
    assert_int_equal(query(fx->idx, INDEX_LEVEL_STUDY, 0, &g, 1, "00100020", "ab*"), 2);
    assert_int_equal(query(fx->idx, INDEX_LEVEL_STUDY, 0, &g, 1, "PatientID", "a[1]*"), 1);
    assert_string_equal(g.rows[0].study_uid, "1.3");
    assert_int_equal(query(fx->idx, INDEX_LEVEL_STUDY, 0, &g, 1, "PatientID", "a[*"), 1);
    assert_int_equal(query(fx->idx, INDEX_LEVEL_STUDY, 0, &g, 1, "PatientID", "AB*"), 0);
    assert_int_equal(query(fx->idx, INDEX_LEVEL_STUDY, 0, &g, 1, "PatientID", "*"), 3);
    assert_int_equal(query(fx->idx, INDEX_LEVEL_STUDY, 0, &g, 1, "PatientID", ""), 3);
    assert_int_equal(query(fx->idx, INDEX_LEVEL_STUDY, 0, &g, 1, "StudyDescription",
                           "abXcYd"), 1);
}

static void test_match_dates_and_uid_lists(void **state)
{
    fixture *fx = *state;
    got g;

    put_study(fx->idx, "P1", "1.1", "20190101", "A", "", 1);
    put_study(fx->idx, "P2", "1.2", "20200615", "B", "", 1);
    put_study(fx->idx, "P3", "1.3", "20201231", "C", "", 1);
    put_study(fx->idx, "P4", "1.4", "20210101", "D", "", 1);
    put_study(fx->idx, "P5", "1.5", "", "E", "", 1);

    assert_int_equal(query(fx->idx, INDEX_LEVEL_STUDY, 0, &g, 1, "StudyDate",
                           "20200101-20201231"), 2);
    assert_int_equal(query(fx->idx, INDEX_LEVEL_STUDY, 0, &g, 1, "StudyDate", "-20191231"),
                     1);
    assert_int_equal(query(fx->idx, INDEX_LEVEL_STUDY, 0, &g, 1, "StudyDate", "20210101-"),
                     1);
    assert_int_equal(query(fx->idx, INDEX_LEVEL_STUDY, 0, &g, 1, "StudyDate", "2020-"), 3);
    assert_int_equal(query(fx->idx, INDEX_LEVEL_STUDY, 0, &g, 1, "StudyDate", "-2020"), 3);
    assert_int_equal(query(fx->idx, INDEX_LEVEL_STUDY, 0, &g, 1, "StudyDate", "20200615"), 1);
    assert_int_equal(query(fx->idx, INDEX_LEVEL_STUDY, 0, &g, 1, "StudyDate", ""), 5);

    assert_int_equal(query(fx->idx, INDEX_LEVEL_STUDY, 0, &g, 1, "StudyInstanceUID",
                           "1.1\\1.3\\9.9"), 2);
    assert_string_equal(g.rows[0].study_uid, "1.1");
    assert_string_equal(g.rows[1].study_uid, "1.3");

    index_term bad = { "StudyDate", "2020x" };
    index_query_spec q = { .level = INDEX_LEVEL_STUDY, .terms = &bad, .term_count = 1 };
    assert_int_equal(index_query(fx->idx, &q, collect, &g, NULL), CP_ERR_INVALID);
    bad = (index_term){ "StudyInstanceUID", "1.*" };
    assert_int_equal(index_query(fx->idx, &q, collect, &g, NULL), CP_ERR_INVALID);
    bad = (index_term){ "Modality", "CT" };
    assert_int_equal(index_query(fx->idx, &q, collect, &g, NULL), CP_ERR_UNSUPPORTED);
    assert_false(index_attribute_supported("Modality", INDEX_LEVEL_STUDY));
    assert_true(index_attribute_supported("Modality", INDEX_LEVEL_SERIES));
}

static void test_match_person_names(void **state)
{
    fixture *fx = *state;
    got g;

    put_study(fx->idx, "P1", "1.1", "20200101", "Wang^XiaoMing", "王^小明", 1);
    put_study(fx->idx, "P2", "1.2", "20200101", "SMITH^John", "", 1);
    put_study(fx->idx, "P3", "1.3", "20200101", "Müller^Jürgen", "", 1);
    put_study(fx->idx, "P4", "1.4", "20200101", "Li^Na", "李^娜", 1);

    assert_int_equal(query(fx->idx, INDEX_LEVEL_STUDY, 0, &g, 1, "PatientName", "王^小明"), 1);
    assert_string_equal(g.rows[0].study_uid, "1.1");
    assert_int_equal(query(fx->idx, INDEX_LEVEL_STUDY, 0, &g, 1, "PatientName", "王*"), 1);
    assert_int_equal(query(fx->idx, INDEX_LEVEL_STUDY, 0, &g, 1, "PatientName", "李?娜"), 1);
    assert_int_equal(query(fx->idx, INDEX_LEVEL_STUDY, 0, &g, 1, "PatientName", "smith*"), 1);
    assert_int_equal(query(fx->idx, INDEX_LEVEL_STUDY, 0, &g, 1, "PatientName",
                           "smith^JOHN"), 1);
    assert_int_equal(query(fx->idx, INDEX_LEVEL_STUDY, 0, &g, 1, "PatientName", "MÜLLER*"),
                     1);
    assert_string_equal(g.rows[0].study_uid, "1.3");
    assert_int_equal(query(fx->idx, INDEX_LEVEL_STUDY, 0, &g, 1, "PatientName",
                           "WANG^XIAOMING=王^小明"), 1);
    assert_int_equal(query(fx->idx, INDEX_LEVEL_STUDY, 0, &g, 1, "PatientName",
                           "WANG*=李*"), 0);
    assert_int_equal(query(fx->idx, INDEX_LEVEL_STUDY, 0, &g, 1, "PatientName", "Smith"), 0);

    assert_int_equal(query(fx->idx, INDEX_LEVEL_STUDY, INDEX_QUERY_FUZZY, &g, 1,
                           "PatientName", "joh"), 1);
    assert_string_equal(g.rows[0].study_uid, "1.2");
    assert_int_equal(query(fx->idx, INDEX_LEVEL_STUDY, INDEX_QUERY_FUZZY, &g, 1,
                           "PatientName", "jo smi"), 1);
    assert_int_equal(query(fx->idx, INDEX_LEVEL_STUDY, INDEX_QUERY_FUZZY, &g, 1,
                           "PatientName", "小"), 1);
    assert_string_equal(g.rows[0].study_uid, "1.1");
    assert_int_equal(query(fx->idx, INDEX_LEVEL_STUDY, INDEX_QUERY_FUZZY, &g, 1,
                           "PatientName", "xiao"), 1);
    assert_int_equal(query(fx->idx, INDEX_LEVEL_STUDY, INDEX_QUERY_FUZZY, &g, 1,
                           "PatientName", "ming"), 0);
    assert_int_equal(query(fx->idx, INDEX_LEVEL_STUDY, INDEX_QUERY_FUZZY, &g, 1,
                           "PatientName", "*ing"), 1);
}

static void test_match_referring_physician(void **state)
{
    fixture *fx = *state;
    index_instance_record r;
    got g;

    put_simple(fx->idx, "P2", "2.1", "2.1.1", "2.1.1.1", "CT");
    rec_init(&r, "P1", "1.1", "1.1.1", "1.1.1.1", "CT", 1);
    SET(r.study.referring.alphabetic, "House^Gregory^^Dr.");
    SET(r.study.referring.ideographic, "豪斯^格雷戈里");
    put(fx->idx, &r, 0);

    assert_int_equal(query(fx->idx, INDEX_LEVEL_STUDY, 0, &g, 1, "ReferringPhysicianName",
                           "HOUSE*"), 1);
    assert_int_equal(query(fx->idx, INDEX_LEVEL_STUDY, INDEX_QUERY_FUZZY, &g, 1,
                           "ReferringPhysicianName", "greg"), 1);
    assert_int_equal(query(fx->idx, INDEX_LEVEL_STUDY, INDEX_QUERY_FUZZY, &g, 1,
                           "ReferringPhysicianName", "格雷"), 1);
    assert_int_equal(query(fx->idx, INDEX_LEVEL_STUDY, INDEX_QUERY_FUZZY, &g, 1,
                           "ReferringPhysicianName", "wilson"), 0);

    /* Deleting the study takes its words: a new study reusing its row does not
     * inherit them. */
    assert_int_equal(index_delete_study(fx->idx, "1.1", NULL, NULL, NULL), CP_OK);
    put_simple(fx->idx, "P1", "1.1", "1.1.1", "1.1.1.1", "CT");
    assert_int_equal(query(fx->idx, INDEX_LEVEL_STUDY, INDEX_QUERY_FUZZY, &g, 1,
                           "ReferringPhysicianName", "greg"), 0);
}

static void test_limit_offset_and_institutions(void **state)
{
    fixture *fx = *state;
    int64_t allowed[] = { 2 };
    index_query_spec q = { .level = INDEX_LEVEL_STUDY, .limit = 3 };
    got g = { 0 };

    for (int i = 0; i < 10; i++) {
        char uid[16];

        snprintf(uid, sizeof uid, "1.%d", i);
        put_study(fx->idx, "P", uid, "20200101", "A", "", i < 4 ? 2 : 1);
    }
    assert_int_equal(index_query(fx->idx, &q, collect, &g, NULL), CP_OK);
    assert_int_equal(g.count, 3);
    assert_string_equal(g.rows[0].study_uid, "1.0");
    memset(&g, 0, sizeof g);
    q.offset = 9;
    assert_int_equal(index_query(fx->idx, &q, collect, &g, NULL), CP_OK);
    assert_int_equal(g.count, 1);
    assert_string_equal(g.rows[0].study_uid, "1.9");

    memset(&g, 0, sizeof g);
    q.offset = 0;
    q.limit = 0;
    q.institutions = allowed;
    q.institution_count = 1;
    assert_int_equal(index_query(fx->idx, &q, collect, &g, NULL), CP_OK);
    assert_int_equal(g.count, 4);
    memset(&g, 0, sizeof g);
    q.institution_count = 0;
    assert_int_equal(index_query(fx->idx, &q, collect, &g, NULL), CP_OK);
    assert_int_equal(g.count, 0);
}

static void test_series_and_instance_levels(void **state)
{
    fixture *fx = *state;
    got g;

    put_simple(fx->idx, "P1", "1.1", "1.1.1", "1.1.1.1", "CT");
    put_simple(fx->idx, "P1", "1.1", "1.1.1", "1.1.1.2", "CT");
    put_simple(fx->idx, "P1", "1.1", "1.1.2", "1.1.2.1", "MR");
    put_simple(fx->idx, "P2", "2.1", "2.1.1", "2.1.1.1", "CT");

    assert_int_equal(query(fx->idx, INDEX_LEVEL_SERIES, 0, &g, 1, "StudyInstanceUID", "1.1"),
                     2);
    assert_string_equal(g.rows[0].series_uid, "1.1.1");
    assert_int_equal(g.rows[0].series_instances, 2);
    assert_int_equal(g.rows[0].study_instances, 3);
    assert_int_equal(query(fx->idx, INDEX_LEVEL_SERIES, 0, &g, 2, "StudyInstanceUID", "1.1",
                           "Modality", "MR"), 1);
    assert_int_equal(query(fx->idx, INDEX_LEVEL_SERIES, 0, &g, 1, "Modality", "CT\\MR"), 3);
    assert_int_equal(query(fx->idx, INDEX_LEVEL_INSTANCE, 0, &g, 1, "SeriesInstanceUID",
                           "1.1.1"), 2);
    assert_string_equal(g.rows[1].sop_uid, "1.1.1.2");
    assert_int_equal(query(fx->idx, INDEX_LEVEL_INSTANCE, 0, &g, 2, "StudyInstanceUID",
                           "1.1", "InstanceNumber", "1"), 3);
    assert_int_equal(query(fx->idx, INDEX_LEVEL_STUDY, 0, &g, 1, "ModalitiesInStudy", "MR"),
                     1);
    assert_string_equal(g.rows[0].study_uid, "1.1");
    assert_int_equal(query(fx->idx, INDEX_LEVEL_STUDY, 0, &g, 1, "ModalitiesInStudy",
                           "CT\\US"), 2);
}

static void test_patient_identity_per_issuer(void **state)
{
    fixture *fx = *state;
    index_instance_record r;
    got g;

    rec_init(&r, "12345", "1.1", "1.1.1", "1.1.1.1", "CT", 1);
    put(fx->idx, &r, 0);
    rec_init(&r, "12345", "2.1", "2.1.1", "2.1.1.1", "CT", 1);
    SET(r.patient.issuer, "CLINIC-B");
    SET(r.patient.name.alphabetic, "Other^Person");
    put(fx->idx, &r, 0);
    rec_init(&r, "12345", "3.1", "3.1.1", "3.1.1.1", "CT", 1);
    r.patient.issuer[0] = '\0';
    SET(r.instance.source, "MR7");
    put(fx->idx, &r, 0);

    assert_int_equal(query(fx->idx, INDEX_LEVEL_STUDY, 0, &g, 1, "PatientID", "12345"), 3);
    assert_string_equal(g.rows[0].issuer, "CLINIC-A");
    assert_string_equal(g.rows[1].issuer, "CLINIC-B");
    assert_string_equal(g.rows[2].issuer, "MR7");
    assert_int_equal(query(fx->idx, INDEX_LEVEL_STUDY, 0, &g, 2, "PatientID", "12345",
                           "IssuerOfPatientID", "CLINIC-B"), 1);
    assert_string_equal(g.rows[0].study_uid, "2.1");
    assert_int_equal(query(fx->idx, INDEX_LEVEL_STUDY, 0, &g, 1, "PatientName", "doe*"), 2);
}

static cp_status count_rows(void *ctx, const index_row *row)
{
    (void)row;
    (*(size_t *)ctx)++;
    return CP_OK;
}

/* Every allocation of a put, a query and a delete may fail: NOMEM, no leak. */
static void test_out_of_memory(void **state)
{
    fixture *fx = *state;
    index_term terms[] = { { "PatientName", "doe*" }, { "StudyDate", "2020-" } };
    index_query_spec q = { .level = INDEX_LEVEL_INSTANCE, .terms = terms, .term_count = 2,
                           .flags = INDEX_QUERY_FUZZY };
    index_instance_record r;
    index_put_result res;
    cp_status st;

    for (long n = 0; n < 40; n++) {
        char sop[32];
        size_t rows = 0;

        snprintf(sop, sizeof sop, "1.1.1.%ld", n);
        rec_init(&r, "P1", "1.1", "1.1.1", sop, "CT", 1);
        cp_alloc_fail_after(n);
        st = index_put_instance(fx->idx, &r, 0, &res, NULL);
        cp_alloc_fail_after(-1);
        assert_true(st == CP_OK || st == CP_ERR_NOMEM);

        cp_alloc_fail_after(n);
        st = index_query(fx->idx, &q, count_rows, &rows, NULL);
        cp_alloc_fail_after(-1);
        assert_true(st == CP_OK || st == CP_ERR_NOMEM);

        cp_alloc_fail_after(n);
        st = index_delete_instance(fx->idx, sop, NULL, NULL, NULL);
        cp_alloc_fail_after(-1);
        assert_true(st == CP_OK || st == CP_ERR_NOMEM || st == CP_ERR_NOT_FOUND);
    }
}

/* --- concurrency ------------------------------------------------------------------ */

#define THREADS 4
#define PER_THREAD 100

typedef struct worker {
    index_db *idx;
    int id;
    int failures;
} worker;

static void *worker_main(void *arg)
{
    worker *w = arg;
    index_instance_record r;
    index_put_result res;

    for (int i = 0; i < PER_THREAD; i++) {
        char series[32], sop[48];

        /* Half into a series every thread shares, half into the thread's own. */
        snprintf(series, sizeof series, "9.1.%d", i % 2 == 0 ? 0 : w->id + 1);
        snprintf(sop, sizeof sop, "9.1.%d.%d", w->id, i);
        rec_init(&r, "P9", "9.1", series, sop, i % 2 == 0 ? "CT" : "PT", 1);
        if (index_put_instance(w->idx, &r, 0, &res, NULL) != CP_OK ||
            res.outcome != INDEX_STORED_NEW)
            w->failures++;
    }
    return NULL;
}

static void test_concurrent_puts(void **state)
{
    fixture *fx = *state;
    pthread_t threads[THREADS];
    worker workers[THREADS];
    got g;

    for (int i = 0; i < THREADS; i++) {
        workers[i] = (worker){ fx->idx, i, 0 };
        assert_int_equal(pthread_create(&threads[i], NULL, worker_main, &workers[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(threads[i], NULL);
        assert_int_equal(workers[i].failures, 0);
    }

    got_row s = study_row(fx->idx, "9.1");
    assert_int_equal(s.study_instances, THREADS * PER_THREAD);
    assert_int_equal(s.study_series, THREADS + 1);
    assert_string_equal(s.modalities, "CT\\PT");
    assert_int_equal(query(fx->idx, INDEX_LEVEL_SERIES, 0, &g, 1, "SeriesInstanceUID",
                           "9.1.0"), 1);
    assert_int_equal(g.rows[0].series_instances, THREADS * PER_THREAD / 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_migrations_and_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_put_outcomes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replace_moves_series, setup, teardown),
        cmocka_unit_test_setup_teardown(test_record_checks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_counts_through_puts_and_deletes, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_change_log, setup, teardown),
        cmocka_unit_test_setup_teardown(test_quiet_studies, setup, teardown),
        cmocka_unit_test_setup_teardown(test_complete_on_change_log, setup, teardown),
        cmocka_unit_test_setup_teardown(test_match_text_and_escaping, setup, teardown),
        cmocka_unit_test_setup_teardown(test_match_dates_and_uid_lists, setup, teardown),
        cmocka_unit_test_setup_teardown(test_match_person_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_match_referring_physician, setup, teardown),
        cmocka_unit_test_setup_teardown(test_limit_offset_and_institutions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_series_and_instance_levels, setup, teardown),
        cmocka_unit_test_setup_teardown(test_patient_identity_per_issuer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_out_of_memory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_puts, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
