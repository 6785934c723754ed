/*
 * test_ingest_intake.c - one intake source (ingest/intake.h) over a local
 * folder and a real archive in a temporary data directory: files taken
 * once, non-DICOM skipped once, nothing taken again after the source is
 * made anew (a restart), and after = delete removing only what was taken.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "archive/archive.h"
#include "core/config.h"
#include "index/index.h"
#include "ingest/intake.h"
#include "ingest/ledger.h"
#include "store/store.h"

#define CT_SMALL "/usr/lib/python3/dist-packages/pydicom/data/test_files/CT_small.dcm"
#define MR_SMALL "/usr/lib/python3/dist-packages/pydicom/data/test_files/MR_small.dcm"

typedef struct fixture {
    char dir[64];
    char drop[96];
    char data[96];
    store *st;
    index_db *idx;
    archive *arc;
} fixture;

static void copy_file(const char *from, const char *to)
{
    char buf[8192];
    FILE *in = fopen(from, "rb");
    FILE *out = fopen(to, "wb");
    size_t n;

    assert_non_null(in);
    assert_non_null(out);
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        assert_int_equal(fwrite(buf, 1, n, out), n);
    fclose(in);
    fclose(out);
}

static void write_text(const char *path, const char *text)
{
    FILE *out = fopen(path, "w");

    assert_non_null(out);
    fputs(text, out);
    fclose(out);
}

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);
    char path[160];
    archive_config acfg;

    snprintf(fx->dir, sizeof fx->dir, "/tmp/cloudpacs-intake-XXXXXX");
    if (mkdtemp(fx->dir) == NULL)
        return -1;
    snprintf(fx->drop, sizeof fx->drop, "%s/drop", fx->dir);
    snprintf(fx->data, sizeof fx->data, "%s/data", fx->dir);
    if (mkdir(fx->drop, 0755) != 0 || mkdir(fx->data, 0755) != 0)
        return -1;
    snprintf(path, sizeof path, "%s/blobs", fx->data);
    if (store_open_fs(path, &fx->st, NULL) != CP_OK)
        return -1;
    snprintf(path, sizeof path, "%s/index.sqlite", fx->data);
    if (index_open_sqlite(path, &fx->idx, NULL) != CP_OK)
        return -1;
    memset(&acfg, 0, sizeof acfg);
    acfg.default_source.charset.detect = true;
    if (archive_create(fx->st, fx->idx, &acfg, &fx->arc, NULL) != CP_OK)
        return -1;
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    char cmd[128];

    archive_destroy(fx->arc);
    index_destroy(fx->idx);
    store_destroy(fx->st);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", fx->dir);
    if (system(cmd) != 0)
        return -1;
    free(fx);
    return 0;
}

static intake *make_source(fixture *fx, const char *after, cp_config **cfg)
{
    char text[512];
    ingest_env env;
    intake *in = NULL;
    cp_error err;

    cp_error_clear(&err);
    snprintf(text, sizeof text, "[intake.t]\nurl = %s\nafter = %s\nstable_seconds = 0\n"
             "jobs = 2\n", fx->drop, after);
    assert_int_equal(cp_config_parse(text, strlen(text), cfg, NULL), CP_OK);
    memset(&env, 0, sizeof env);
    env.cfg = *cfg;
    env.arc = fx->arc;
    env.idx = fx->idx;
    env.st = fx->st;
    env.data_dir = fx->data;
    if (intake_create(&env, "intake.t", &in, &err) != CP_OK)
        fail_msg("intake_create: %s", err.detail);
    return in;
}

static cp_status count_stored(void *ctx, const index_change *c)
{
    if (c->kind == INDEX_CHANGE_STORED)
        ++*(int64_t *)ctx;
    return CP_OK;
}

/* Instances stored, by the change log: a second store of one would show. */
static int64_t stored(fixture *fx)
{
    int64_t n = 0;

    assert_int_equal(index_changes_since(fx->idx, 0, 0, count_stored, &n, NULL), CP_OK);
    return n;
}

static json_t *status_of(fixture *fx)
{
    char path[160];
    ledger *lg = NULL;
    json_t *root = NULL, *src;

    snprintf(path, sizeof path, "%s/index.sqlite", fx->data);
    assert_int_equal(ledger_open(path, &lg, NULL), CP_OK);
    assert_int_equal(ledger_status_json(lg, &root, NULL), CP_OK);
    ledger_close(lg);
    src = json_incref(json_array_get(json_object_get(root, "sources"), 0));
    json_decref(root);
    assert_non_null(src);
    return src;
}

static int64_t field(json_t *o, const char *key)
{
    return (int64_t)json_integer_value(json_object_get(o, key));
}

static void test_taken_once_across_restart(void **state)
{
    fixture *fx = *state;
    char path[160];
    cp_config *cfg = NULL;
    intake *in;
    int64_t wait = 0;
    json_t *st;

    snprintf(path, sizeof path, "%s/ct.dcm", fx->drop);
    copy_file(CT_SMALL, path);
    snprintf(path, sizeof path, "%s/sub", fx->drop);
    assert_int_equal(mkdir(path, 0755), 0);
    snprintf(path, sizeof path, "%s/sub/mr.dcm", fx->drop);
    copy_file(MR_SMALL, path);
    snprintf(path, sizeof path, "%s/sub/notes.txt", fx->drop);
    write_text(path, "not DICOM");

    in = make_source(fx, "keep", &cfg);
    assert_int_equal(intake_pass(in, &wait, NULL), CP_OK);
    assert_int_equal(stored(fx), 2);
    assert_int_equal(intake_pass(in, &wait, NULL), CP_OK);
    assert_int_equal(intake_pass(in, &wait, NULL), CP_OK);
    intake_destroy(in);
    cp_config_destroy(cfg);

    /* A restart: a new source over the same ledger takes nothing again. */
    in = make_source(fx, "keep", &cfg);
    assert_int_equal(intake_pass(in, &wait, NULL), CP_OK);
    assert_int_equal(intake_pass(in, &wait, NULL), CP_OK);
    intake_destroy(in);
    cp_config_destroy(cfg);
    assert_int_equal(stored(fx), 2);

    st = status_of(fx);
    assert_int_equal(field(st, "seen"), 3);
    assert_int_equal(field(st, "stored"), 2);
    assert_int_equal(field(st, "duplicates"), 0);
    assert_int_equal(field(st, "skipped"), 1);
    assert_string_equal(json_string_value(json_object_get(st, "state")), "up");
    json_decref(st);
}

static void test_after_delete(void **state)
{
    fixture *fx = *state;
    char dcm[160], txt[160];
    cp_config *cfg = NULL;
    intake *in;
    int64_t wait = 0;

    snprintf(dcm, sizeof dcm, "%s/ct.dcm", fx->drop);
    copy_file(CT_SMALL, dcm);
    snprintf(txt, sizeof txt, "%s/readme.txt", fx->drop);
    write_text(txt, "left alone");
    in = make_source(fx, "delete", &cfg);
    assert_int_equal(intake_pass(in, &wait, NULL), CP_OK);
    assert_int_equal(access(dcm, F_OK), -1);
    assert_int_equal(access(txt, F_OK), 0);

    /* The same file again (same bytes, a new mtime): a duplicate, deleted too. */
    copy_file(CT_SMALL, dcm);
    assert_int_equal(intake_pass(in, &wait, NULL), CP_OK);
    assert_int_equal(access(dcm, F_OK), -1);
    assert_int_equal(stored(fx), 1);
    intake_destroy(in);
    cp_config_destroy(cfg);
}

static void test_config_errors(void **state)
{
    fixture *fx = *state;
    static const char *const bad[] = {
        "[intake.t]\nurl = relative\n",
        "[intake.t]\nurl = /tmp\nafter = shred\n",
        "[intake.t]\nurl = /tmp\ninstitution = NOPE\n",
        "[intake.t]\nurl = smb://host\n",
        "[intake.t]\nurl = smb://u:p@host/share\n",
        "[intake.t]\nurl = /tmp\njobs = 0\n",
        "[intake.t]\nurl = /tmp\ndone_dir = ../x\n",
    };

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cp_config *cfg = NULL;
        ingest_env env;
        intake *in = NULL;
        cp_error err;

        cp_error_clear(&err);
        assert_int_equal(cp_config_parse(bad[i], strlen(bad[i]), &cfg, NULL), CP_OK);
        memset(&env, 0, sizeof env);
        env.cfg = cfg;
        env.arc = fx->arc;
        env.data_dir = fx->data;
        assert_int_equal(intake_create(&env, "intake.t", &in, &err), CP_ERR_CONFIG);
        assert_null(in);
        assert_non_null(strstr(err.detail, "intake.t"));
        cp_config_destroy(cfg);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_taken_once_across_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_after_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config_errors, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
