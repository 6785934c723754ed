/*
 * test_ingest_ledger.c - the intake ledger and export state
 * (ingest/ledger.h) in a SQLite file of a temporary directory: a file is
 * recognised by (source, path, size, mtime), also after the database is
 * closed and opened again, as after a restart; export positions and jobs;
 * released orders read from a reading_order table and queued once per
 * release; a database of schema 1 migrated with its jobs.
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
#include <sqlite3.h>

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

static void sql(const char *path, const char *text)
{
    sqlite3 *db = NULL;

    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, text, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
}

typedef struct seen_releases {
    size_t count;
    ledger_release rows[8];
} seen_releases;

static cp_status on_release(void *ctx, const ledger_release *r)
{
    seen_releases *s = ctx;

    if (s->count < 8)
        s->rows[s->count++] = *r;
    return CP_OK;
}

static void test_releases(void **state)
{
    fixture *fx = *state;
    ledger *l = NULL;
    seen_releases rel;
    seen_jobs s;
    bool added = false;

    assert_int_equal(ledger_open(fx->path, &l, NULL), CP_OK);
    /* No consult service yet: no table, no orders, no error. */
    memset(&rel, 0, sizeof rel);
    assert_int_equal(ledger_released_orders(l, 0, 0, 8, on_release, &rel, NULL), CP_OK);
    assert_int_equal(rel.count, 0);

    /* The columns of consult/order.c's table that the scan reads; 8 is released. */
    sql(fx->path, "CREATE TABLE reading_order (id INTEGER PRIMARY KEY, state INTEGER, "
                  "study_uid TEXT, released INTEGER, requesting_id INTEGER);"
                  "INSERT INTO reading_order VALUES (1, 8, '1.2.1', 500, 7);"
                  "INSERT INTO reading_order VALUES (2, 4, '1.2.2', 0, 7);"
                  "INSERT INTO reading_order VALUES (3, 8, '1.2.3', 500, 9);"
                  "INSERT INTO reading_order VALUES (4, 8, '1.2.4', 400, 7);");
    assert_int_equal(ledger_released_orders(l, 0, 0, 8, on_release, &rel, NULL), CP_OK);
    assert_int_equal(rel.count, 3);
    assert_int_equal(rel.rows[0].order_id, 4);
    assert_int_equal(rel.rows[1].order_id, 1);
    assert_int_equal(rel.rows[2].order_id, 3);
    assert_string_equal(rel.rows[1].study_uid, "1.2.1");
    assert_int_equal(rel.rows[1].institution_id, 7);
    /* Paging by (release time, id). */
    memset(&rel, 0, sizeof rel);
    assert_int_equal(ledger_released_orders(l, 500, 1, 8, on_release, &rel, NULL), CP_OK);
    assert_int_equal(rel.count, 1);
    assert_int_equal(rel.rows[0].order_id, 3);

    /* Queued once per release, however often the scan sees it. */
    assert_int_equal(ledger_release_add(l, "rel", 1, "1.2.1", 500, 600, 550, &added, NULL),
                     CP_OK);
    assert_true(added);
    assert_int_equal(ledger_release_add(l, "rel", 1, "1.2.1", 500, 600, 560, &added, NULL),
                     CP_OK);
    assert_false(added);
    memset(&s, 0, sizeof s);
    assert_int_equal(ledger_jobs_due(l, "rel", 599, 10, on_job, &s, NULL), CP_OK);
    assert_int_equal(s.count, 0);
    assert_int_equal(ledger_jobs_due(l, "rel", 600, 10, on_job, &s, NULL), CP_OK);
    assert_int_equal(s.count, 1);
    assert_int_equal(s.jobs[0].order_id, 1);
    assert_int_equal(s.jobs[0].released_us, 500);
    s.jobs[0].attempts = 1;
    snprintf(s.jobs[0].state, sizeof s.jobs[0].state, "%s", LEDGER_JOB_DONE);
    assert_int_equal(ledger_job_update(l, &s.jobs[0], 700, NULL), CP_OK);
    assert_int_equal(ledger_release_add(l, "rel", 1, "1.2.1", 500, 600, 800, &added, NULL),
                     CP_OK);
    assert_false(added);
    /* A study complete job of the same study is another job. */
    assert_int_equal(ledger_job_add(l, "rel", "1.2.1", 800, NULL), CP_OK);
    memset(&s, 0, sizeof s);
    assert_int_equal(ledger_jobs_due(l, "rel", 900, 10, on_job, &s, NULL), CP_OK);
    assert_int_equal(s.count, 1);
    assert_int_equal(s.jobs[0].order_id, 0);
    /* Released again (another release time): exported again. */
    assert_int_equal(ledger_release_add(l, "rel", 1, "1.2.1", 900, 900, 900, &added, NULL),
                     CP_OK);
    assert_true(added);
    ledger_close(l);
}

static void test_migrate_schema_1(void **state)
{
    fixture *fx = *state;
    ledger *l = NULL;
    seen_jobs s;

    sql(fx->path,
        "CREATE TABLE ingest_schema_version (version INTEGER NOT NULL);"
        "INSERT INTO ingest_schema_version VALUES (1);"
        "CREATE TABLE intake_ledger (source TEXT NOT NULL, path TEXT NOT NULL,"
        " size INTEGER NOT NULL, mtime INTEGER NOT NULL, outcome TEXT NOT NULL,"
        " sop_instance_uid TEXT, detail TEXT, time INTEGER NOT NULL,"
        " PRIMARY KEY (source, path, size, mtime));"
        "CREATE TABLE intake_source (source TEXT PRIMARY KEY, state TEXT NOT NULL,"
        " last_error TEXT, last_success INTEGER NOT NULL DEFAULT 0, updated INTEGER NOT NULL);"
        "CREATE TABLE export_position (rule TEXT PRIMARY KEY, seq INTEGER NOT NULL);"
        "CREATE TABLE export_job (rule TEXT NOT NULL, study_uid TEXT NOT NULL,"
        " state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT,"
        " next_try INTEGER NOT NULL, created INTEGER NOT NULL, updated INTEGER NOT NULL,"
        " PRIMARY KEY (rule, study_uid));"
        "INSERT INTO export_job VALUES ('hosp', '1.2.3', 'retrying', 3, 'down', 50, 1, 2);");
    assert_int_equal(ledger_open(fx->path, &l, NULL), CP_OK);
    memset(&s, 0, sizeof s);
    assert_int_equal(ledger_jobs_due(l, "hosp", 100, 10, on_job, &s, NULL), CP_OK);
    assert_int_equal(s.count, 1);
    assert_string_equal(s.jobs[0].study_uid, "1.2.3");
    assert_int_equal(s.jobs[0].attempts, 3);
    assert_int_equal(s.jobs[0].order_id, 0);
    assert_string_equal(s.jobs[0].last_error, "down");
    ledger_close(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_taken_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_export_state, setup, teardown),
        cmocka_unit_test_setup_teardown(test_releases, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migrate_schema_1, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
