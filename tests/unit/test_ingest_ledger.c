/*
 * test_ingest_ledger.c - the intake ledger and export state
 * (ingest/ledger.h) in a SQLite file of a temporary directory: a file is
 * recognised by (source, path, size, mtime), also after the database is
 * closed and opened again, as after a restart; export positions and jobs.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "ingest/ledger.h"

typedef struct fixture {
    char dir[64];
    char path[96];
} fixture;

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);

    snprintf(fx->dir, sizeof fx->dir, "/tmp/cloudpacs-ledger-XXXXXX");
    if (fx == NULL || mkdtemp(fx->dir) == NULL)
        return -1;
    snprintf(fx->path, sizeof fx->path, "%s/index.sqlite", fx->dir);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    char cmd[128];

    snprintf(cmd, sizeof cmd, "rm -rf '%s'", fx->dir);
    if (system(cmd) != 0)
        return -1;
    free(fx);
    return 0;
}

static bool known(ledger *l, const char *path, uint64_t size, int64_t mtime, char *outcome)
{
    bool found = true;

    assert_int_equal(ledger_lookup(l, "src", path, size, mtime, &found, outcome, NULL), CP_OK);
    return found;
}

static void test_taken_once(void **state)
{
    fixture *fx = *state;
    ledger *l = NULL;
    char outcome[16];

    assert_int_equal(ledger_open(fx->path, &l, NULL), CP_OK);
    assert_false(known(l, "a/1.dcm", 10, 100, outcome));
    assert_int_equal(ledger_record(l, "src", "a/1.dcm", 10, 100, LEDGER_STORED, "1.2.3",
                                   NULL, 5, NULL), CP_OK);
    assert_true(known(l, "a/1.dcm", 10, 100, outcome));
    assert_string_equal(outcome, LEDGER_STORED);

    /* The same path with other bytes (a new file of the same name) is new. */
    assert_false(known(l, "a/1.dcm", 11, 100, outcome));
    assert_false(known(l, "a/1.dcm", 10, 101, outcome));
    /* Another source's file of the same name is not this one. */
    {
        bool found = true;

        assert_int_equal(ledger_lookup(l, "other", "a/1.dcm", 10, 100, &found, outcome, NULL),
                         CP_OK);
        assert_false(found);
    }
    /* Recording again replaces, it does not add. */
    assert_int_equal(ledger_record(l, "src", "a/1.dcm", 10, 100, LEDGER_DUPLICATE, "1.2.3",
                                   NULL, 6, NULL), CP_OK);
    assert_int_equal(ledger_record(l, "src", "b.txt", 3, 100, LEDGER_SKIPPED, NULL,
                                   "not_dicom", 6, NULL), CP_OK);
    ledger_close(l);

    /* After a restart: still known, with the status counting each once. */
    assert_int_equal(ledger_open(fx->path, &l, NULL), CP_OK);
    assert_true(known(l, "a/1.dcm", 10, 100, outcome));
    assert_string_equal(outcome, LEDGER_DUPLICATE);
    assert_true(known(l, "b.txt", 3, 100, outcome));
    assert_string_equal(outcome, LEDGER_SKIPPED);
    assert_int_equal(ledger_source_state(l, "src", "down", "opendir failed", 0, 7, NULL),
                     CP_OK);
    {
        json_t *root = NULL, *src;

        assert_int_equal(ledger_status_json(l, &root, NULL), CP_OK);
        src = json_array_get(json_object_get(root, "sources"), 0);
        assert_non_null(src);
        assert_string_equal(json_string_value(json_object_get(src, "name")), "src");
        assert_string_equal(json_string_value(json_object_get(src, "state")), "down");
        assert_string_equal(json_string_value(json_object_get(src, "last_error")),
                            "opendir failed");
        assert_int_equal(json_integer_value(json_object_get(src, "seen")), 2);
        assert_int_equal(json_integer_value(json_object_get(src, "duplicates")), 1);
        assert_int_equal(json_integer_value(json_object_get(src, "skipped")), 1);
        json_decref(root);
    }
    ledger_close(l);
}

typedef struct seen_jobs {
    size_t count;
    ledger_job jobs[4];
} seen_jobs;

static cp_status on_job(void *ctx, const ledger_job *job)
{
    seen_jobs *s = ctx;

    if (s->count < 4)
        s->jobs[s->count++] = *job;
    return CP_OK;
}

static void test_export_state(void **state)
{
    fixture *fx = *state;
    ledger *l = NULL;
    seen_jobs s;
    ledger_job job;
    int64_t seq = -1;

    assert_int_equal(ledger_open(fx->path, &l, NULL), CP_OK);
    assert_int_equal(ledger_position(l, "hosp", &seq, NULL), CP_OK);
    assert_int_equal(seq, 0);
    assert_int_equal(ledger_set_position(l, "hosp", 42, NULL), CP_OK);
    assert_int_equal(ledger_job_add(l, "hosp", "1.2.3", 100, NULL), CP_OK);
    ledger_close(l);

    assert_int_equal(ledger_open(fx->path, &l, NULL), CP_OK);
    assert_int_equal(ledger_position(l, "hosp", &seq, NULL), CP_OK);
    assert_int_equal(seq, 42);
    memset(&s, 0, sizeof s);
    assert_int_equal(ledger_jobs_due(l, "hosp", 100, 10, on_job, &s, NULL), CP_OK);
    assert_int_equal(s.count, 1);
    assert_string_equal(s.jobs[0].study_uid, "1.2.3");

    /* A failed attempt waits for its next try, and is not dropped. */
    job = s.jobs[0];
    job.attempts = 1;
    snprintf(job.state, sizeof job.state, "%s", LEDGER_JOB_RETRY);
    snprintf(job.last_error, sizeof job.last_error, "share down");
    job.next_try_us = 200;
    assert_int_equal(ledger_job_update(l, &job, 101, NULL), CP_OK);
    memset(&s, 0, sizeof s);
    assert_int_equal(ledger_jobs_due(l, "hosp", 150, 10, on_job, &s, NULL), CP_OK);
    assert_int_equal(s.count, 0);
    assert_int_equal(ledger_jobs_due(l, "hosp", 200, 10, on_job, &s, NULL), CP_OK);
    assert_int_equal(s.count, 1);
    assert_int_equal(s.jobs[0].attempts, 1);
    assert_string_equal(s.jobs[0].last_error, "share down");

    job.attempts = 2;
    snprintf(job.state, sizeof job.state, "%s", LEDGER_JOB_DONE);
    job.last_error[0] = '\0';
    assert_int_equal(ledger_job_update(l, &job, 201, NULL), CP_OK);
    memset(&s, 0, sizeof s);
    assert_int_equal(ledger_jobs_due(l, "hosp", 1000, 10, on_job, &s, NULL), CP_OK);
    assert_int_equal(s.count, 0);

    /* The study completes again (a late instance): exported again. */
    assert_int_equal(ledger_job_add(l, "hosp", "1.2.3", 300, NULL), CP_OK);
    assert_int_equal(ledger_jobs_due(l, "hosp", 1000, 10, on_job, &s, NULL), CP_OK);
    assert_int_equal(s.count, 1);
    assert_int_equal(s.jobs[0].attempts, 0);
    ledger_close(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_taken_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_export_state, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
