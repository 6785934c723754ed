/*
 * test_ingest_zipwalk.c - ZIP walking (ingest/zipwalk.h) over small
 * archives made here with libzip: every file entry visited in order with
 * its bytes, folders left out, a damaged archive refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zip.h>

#include <cmocka.h>

#include "ingest/zipwalk.h"

typedef struct walked {
    size_t count;
    char names[8][64];
    char bytes[8][4096];
    size_t lens[8];
} walked;

static cp_status on_entry(void *ctx, const zipwalk_entry *e, zipwalk_reader *r)
{
    walked *w = ctx;
    size_t got;
    char buf[7];    /* small on purpose: entries come in several reads */

    if (w->count == 8)
        return CP_ERR_LIMIT;
    snprintf(w->names[w->count], sizeof w->names[0], "%s", e->name);
    do {
        cp_status st = zipwalk_read(r, buf, sizeof buf, &got, NULL);

        if (st != CP_OK)
            return st;
        if (w->lens[w->count] + got > sizeof w->bytes[0])
            return CP_ERR_LIMIT;
        memcpy(w->bytes[w->count] + w->lens[w->count], buf, got);
        w->lens[w->count] += got;
    } while (got > 0);
    w->count++;
    return CP_OK;
}

static void add(zip_t *za, const char *name, const char *text)
{
    zip_source_t *src = zip_source_buffer(za, text, strlen(text), 0);

    assert_non_null(src);
    assert_true(zip_file_add(za, name, src, ZIP_FL_OVERWRITE) >= 0);
}

static void make_zip(const char *path)
{
    int zerr = 0;
    zip_t *za = zip_open(path, ZIP_CREATE | ZIP_TRUNCATE, &zerr);
    static char big[3000];

    assert_non_null(za);
    memset(big, 'x', sizeof big - 1);
    add(za, "DICOMDIR", "dir");
    assert_true(zip_dir_add(za, "IMAGES", 0) >= 0);
    add(za, "IMAGES/IM1", "first image bytes");
    add(za, "IMAGES/IM2", big);
    assert_int_equal(zip_close(za), 0);
}

static void test_walk(void **state)
{
    char path[] = "/tmp/cloudpacs-zipwalk-XXXXXX";
    int fd = mkstemp(path);
    walked *w = calloc(1, sizeof *w);

    (void)state;
    assert_true(fd >= 0);
    close(fd);
    make_zip(path);
    assert_int_equal(zipwalk_file(path, on_entry, w, NULL), CP_OK);
    assert_int_equal(w->count, 3);
    assert_string_equal(w->names[0], "DICOMDIR");
    assert_string_equal(w->names[1], "IMAGES/IM1");
    assert_string_equal(w->names[2], "IMAGES/IM2");
    assert_int_equal(w->lens[1], strlen("first image bytes"));
    assert_memory_equal(w->bytes[1], "first image bytes", w->lens[1]);
    assert_int_equal(w->lens[2], 2999);
    unlink(path);
    free(w);
}

static void test_not_zip(void **state)
{
    char path[] = "/tmp/cloudpacs-zipwalk-XXXXXX";
    int fd = mkstemp(path);
    walked *w = calloc(1, sizeof *w);
    static const char junk[] = "PK\003\004 but nothing after it";

    (void)state;
    assert_true(fd >= 0);
    assert_int_equal(write(fd, junk, sizeof junk), (ssize_t)sizeof junk);
    close(fd);
    assert_true(zipwalk_is_zip(junk, sizeof junk));
    assert_false(zipwalk_is_zip("DICM", 4));
    assert_false(zipwalk_is_zip("PK", 2));
    assert_int_equal(zipwalk_file(path, on_entry, w, NULL), CP_ERR_MALFORMED);
    assert_int_equal(w->count, 0);
    unlink(path);
    free(w);
}

static cp_status stop_at_first(void *ctx, const zipwalk_entry *e, zipwalk_reader *r)
{
    (void)e;
    (void)r;
    ++*(int *)ctx;
    return CP_ERR_STOPPED;
}

static void test_stop(void **state)
{
    char path[] = "/tmp/cloudpacs-zipwalk-XXXXXX";
    int fd = mkstemp(path);
    int calls = 0;

    (void)state;
    close(fd);
    make_zip(path);
    assert_int_equal(zipwalk_file(path, stop_at_first, &calls, NULL), CP_ERR_STOPPED);
    assert_int_equal(calls, 1);
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_walk),
        cmocka_unit_test(test_not_zip),
        cmocka_unit_test(test_stop),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
