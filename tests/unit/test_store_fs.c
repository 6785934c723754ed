/*
 * test_store_fs.c - the filesystem blob store: durable commit, abort, keys,
 * no-replace, reading back, and repair of what a crash leaves behind.
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

#include "store/store.h"

typedef struct fixture {
    char root[64];
    store *st;
} fixture;

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);

    snprintf(fx->root, sizeof fx->root, "/tmp/cloudpacs-store-XXXXXX");
    if (mkdtemp(fx->root) == NULL)
        return -1;
    if (store_open_fs(fx->root, &fx->st, NULL) != CP_OK)
        return -1;
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    char cmd[128];

    store_destroy(fx->st);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", fx->root);
    if (system(cmd) != 0)
        return -1;
    free(fx);
    return 0;
}

static void put(store *st, const char *key, const char *text)
{
    store_writer *w;

    assert_int_equal(store_begin(st, key, 0, &w, NULL), CP_OK);
    assert_int_equal(store_write(w, text, strlen(text), NULL), CP_OK);
    assert_int_equal(store_commit(w, NULL), CP_OK);
}

static void test_commit_then_read_back(void **state)
{
    fixture *fx = *state;
    store_writer *w;
    store_reader *r;
    char buf[64];
    size_t got;

    assert_int_equal(store_begin(fx->st, "studies/1.2.3/4.5.6.dcm", 0, &w, NULL), CP_OK);
    assert_int_equal(store_write(w, "hello ", 6, NULL), CP_OK);
    assert_int_equal(store_write(w, "world", 5, NULL), CP_OK);
    assert_int_equal(store_stat(fx->st, "studies/1.2.3/4.5.6.dcm", &(uint64_t){ 0 }, NULL),
                     CP_ERR_NOT_FOUND);
    assert_int_equal(store_commit(w, NULL), CP_OK);

    assert_int_equal(store_open(fx->st, "studies/1.2.3/4.5.6.dcm", &r, NULL), CP_OK);
    assert_int_equal(store_reader_size(r), 11);
    assert_true(store_reader_fd(r) >= 0);
    assert_int_equal(store_read(r, buf, sizeof buf, &got, NULL), CP_OK);
    assert_int_equal(got, 11);
    assert_memory_equal(buf, "hello world", 11);
    assert_int_equal(store_pread(r, 6, buf, 3, &got, NULL), CP_OK);
    assert_int_equal(got, 3);
    assert_memory_equal(buf, "wor", 3);
    store_close(r);
    assert_string_equal(store_backend_name(fx->st), "fs");
}

static void test_abort_leaves_nothing(void **state)
{
    fixture *fx = *state;
    store_writer *w;
    store_repair_report report = { 0, 0 };

    assert_int_equal(store_begin(fx->st, "a/b.dcm", 0, &w, NULL), CP_OK);
    assert_int_equal(store_write(w, "partial", 7, NULL), CP_OK);
    store_abort(w);
    assert_int_equal(store_stat(fx->st, "a/b.dcm", &(uint64_t){ 0 }, NULL), CP_ERR_NOT_FOUND);
    assert_int_equal(store_repair(fx->st, 0, &report, NULL), CP_OK);
    assert_int_equal(report.temporaries_removed, 0);
}

static void test_replace_and_no_replace(void **state)
{
    fixture *fx = *state;
    store_writer *w;
    store_reader *r;
    cp_error err;
    char buf[16];
    size_t got;

    put(fx->st, "k.dcm", "one");
    put(fx->st, "k.dcm", "two!");

    cp_error_clear(&err);
    assert_int_equal(store_begin(fx->st, "k.dcm", STORE_NO_REPLACE, &w, NULL), CP_OK);
    assert_int_equal(store_write(w, "three", 5, NULL), CP_OK);
    assert_int_equal(store_commit(w, &err), CP_ERR_EXISTS);

    assert_int_equal(store_open(fx->st, "k.dcm", &r, NULL), CP_OK);
    assert_int_equal(store_read(r, buf, sizeof buf, &got, NULL), CP_OK);
    assert_int_equal(got, 4);
    assert_memory_equal(buf, "two!", 4);
    store_close(r);
}

static void test_keys_are_checked(void **state)
{
    fixture *fx = *state;
    store_writer *w;
    static const char *const bad[] = {
        "", "/abs", "a//b", "a/../b", "..", "a/.", "sp ace", "a\\b", "trailing/",
        "\xe5\xbc\xa0",
    };

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_false(store_key_is_valid(bad[i]));
        assert_int_equal(store_begin(fx->st, bad[i], 0, &w, NULL), CP_ERR_INVALID);
        assert_null(w);
    }
    assert_true(store_key_is_valid("studies/1.2.840.113619/x_y-z.dcm"));
}

static void test_remove_and_missing(void **state)
{
    fixture *fx = *state;
    store_reader *r;
    cp_error err;

    put(fx->st, "x/y.dcm", "data");
    assert_int_equal(store_remove(fx->st, "x/y.dcm", NULL), CP_OK);
    cp_error_clear(&err);
    assert_int_equal(store_open(fx->st, "x/y.dcm", &r, &err), CP_ERR_NOT_FOUND);
    assert_int_equal(store_remove(fx->st, "x/y.dcm", NULL), CP_ERR_NOT_FOUND);
    assert_int_equal(store_open(fx->st, "x", &r, NULL), CP_ERR_NOT_FOUND);
}

static void test_repair_removes_crash_leftovers(void **state)
{
    fixture *fx = *state;
    char path[256];
    FILE *f;
    store_repair_report report = { 0, 0 };

    put(fx->st, "s/keep.dcm", "kept");

    /* What a crash between write and rename leaves: a temporary beside the blob. */
    snprintf(path, sizeof path, "%s/s/.tmp-lost.dcm-abcdef", fx->root);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs("half", f);
    fclose(f);

    assert_int_equal(store_repair(fx->st, 3600, &report, NULL), CP_OK);
    assert_int_equal(report.temporaries_removed, 0);
    assert_int_equal(store_repair(fx->st, 0, &report, NULL), CP_OK);
    assert_int_equal(report.temporaries_removed, 1);
    assert_int_equal(report.bytes_freed, 4);
    assert_int_equal(access(path, F_OK), -1);
    assert_int_equal(store_stat(fx->st, "s/keep.dcm", &(uint64_t){ 0 }, NULL), CP_OK);
}

static void test_large_blob_streams(void **state)
{
    fixture *fx = *state;
    store_writer *w;
    uint64_t size;
    static uint8_t chunk[1 << 16];

    memset(chunk, 0xA5, sizeof chunk);
    assert_int_equal(store_begin(fx->st, "big.bin", 0, &w, NULL), CP_OK);
    for (int i = 0; i < 64; i++)
        assert_int_equal(store_write(w, chunk, sizeof chunk, NULL), CP_OK);
    assert_int_equal(store_commit(w, NULL), CP_OK);
    assert_int_equal(store_stat(fx->st, "big.bin", &size, NULL), CP_OK);
    assert_int_equal(size, 64u * sizeof chunk);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_commit_then_read_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_abort_leaves_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replace_and_no_replace, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keys_are_checked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_remove_and_missing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_repair_removes_crash_leftovers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_large_blob_streams, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
