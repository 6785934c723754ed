/*
 * test_archive_completion.c - study completion by quiet time
 * (archive/completion.h) over a SQLite index in a temporary directory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "archive/completion.h"
#include "index/index.h"

typedef struct fixture {
    char dir[64];
    char path[96];
    index_db *idx;
} fixture;

typedef struct heard {
    size_t count;
    completion_study list[8];
} heard;

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);

    snprintf(fx->dir, sizeof fx->dir, "/tmp/cloudpacs-completion-XXXXXX");
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

static void put_instance(index_db *idx, const char *study, const char *sop, int64_t at,
                         int64_t institution)
{
    index_instance_record r;
    index_put_result res;

    memset(&r, 0, sizeof r);
    snprintf(r.patient.id, sizeof r.patient.id, "P1");
    snprintf(r.study.uid, sizeof r.study.uid, "%s", study);
    snprintf(r.series.uid, sizeof r.series.uid, "%s.1", study);
    snprintf(r.series.modality, sizeof r.series.modality, "CT");
    snprintf(r.instance.sop_uid, sizeof r.instance.sop_uid, "%s", sop);
    snprintf(r.instance.sop_class_uid, sizeof r.instance.sop_class_uid,
             "1.2.840.10008.5.1.4.1.1.2");
    snprintf(r.instance.blob_key, sizeof r.instance.blob_key, "b/%s", sop);
    snprintf(r.instance.source, sizeof r.instance.source, "CT1");
    r.instance.institution_id = institution;
    r.instance.received_us = at;
    assert_int_equal(index_put_instance(idx, &r, 0, &res, NULL), CP_OK);
}

static void on_complete(void *ctx, const completion_study *study)
{
    heard *h = ctx;

    assert_true(h->count < 8);
    h->list[h->count++] = *study;
}

typedef struct kinds {
    size_t stored;
    size_t complete;
} kinds;

static cp_status count_kind(void *ctx, const index_change *ch)
{
    kinds *k = ctx;

    if (ch->kind == INDEX_CHANGE_STORED)
        k->stored++;
    if (ch->kind == INDEX_CHANGE_STUDY_COMPLETE)
        k->complete++;
    return CP_OK;
}

/* Only studies quiet for the whole quiet time are announced, once each. */
static void test_quiet_time(void **state)
{
    fixture *fx = *state;
    heard h = { 0 };
    size_t n = 99;

    put_instance(fx->idx, "1.1", "1.1.1.1", 1000000, 7);
    put_instance(fx->idx, "1.1", "1.1.1.2", 2000000, 7);
    put_instance(fx->idx, "2.1", "2.1.1.1", 5000000, 8);

    /* At 3 s with 2 s quiet: nothing arrived after 1 s for neither. */
    assert_int_equal(completion_pass(fx->idx, 3000000, 2000000, on_complete, &h, &n, NULL),
                     CP_OK);
    assert_int_equal(n, 0);

    /* At 4.5 s: study 1.1 last grew at 2 s. */
    assert_int_equal(completion_pass(fx->idx, 4500000, 2000000, on_complete, &h, &n, NULL),
                     CP_OK);
    assert_int_equal(n, 1);
    assert_string_equal(h.list[0].study_uid, "1.1");
    assert_int_equal(h.list[0].instances, 2);
    assert_int_equal(h.list[0].institution_id, 7);

    /* Later: only 2.1 is new; 1.1 is not announced twice. */
    assert_int_equal(completion_pass(fx->idx, 9000000, 2000000, on_complete, &h, &n, NULL),
                     CP_OK);
    assert_int_equal(n, 1);
    assert_string_equal(h.list[1].study_uid, "2.1");
    assert_int_equal(completion_pass(fx->idx, 9500000, 2000000, on_complete, &h, &n, NULL),
                     CP_OK);
    assert_int_equal(n, 0);
}

/* A late instance re-opens a study; the change log carries each announcement. */
static void test_late_instance(void **state)
{
    fixture *fx = *state;
    heard h = { 0 };
    kinds k = { 0, 0 };
    size_t n = 0;

    put_instance(fx->idx, "1.1", "1.1.1.1", 1000000, 1);
    assert_int_equal(completion_pass(fx->idx, 5000000, 1000000, on_complete, &h, &n, NULL),
                     CP_OK);
    assert_int_equal(n, 1);
    put_instance(fx->idx, "1.1", "1.1.1.2", 6000000, 1);
    assert_int_equal(completion_pass(fx->idx, 6500000, 1000000, on_complete, &h, &n, NULL),
                     CP_OK);
    assert_int_equal(n, 0);
    assert_int_equal(completion_pass(fx->idx, 8000000, 1000000, on_complete, &h, &n, NULL),
                     CP_OK);
    assert_int_equal(n, 1);
    assert_int_equal(h.list[1].instances, 2);

    assert_int_equal(index_changes_since(fx->idx, 0, 0, count_kind, &k, NULL), CP_OK);
    assert_int_equal(k.stored, 2);
    assert_int_equal(k.complete, 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_quiet_time, setup, teardown),
        cmocka_unit_test_setup_teardown(test_late_instance, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
