/*
 * test_film_zipstream.c - the streaming ZIP writer: the CRC-32, the bytes
 * of the headers, archives read back by Python's zipfile (testzip, names,
 * contents) and `unzip -t` when installed, the ZIP64 forms forced by a low
 * test threshold, bad names, misuse and a failing sink.
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

#include "core/buf.h"
#include "film/zipstream.h"

typedef struct fixture {
    char root[64];
    char path[128];
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);

    snprintf(f->root, sizeof f->root, "/tmp/cp-test-zip-XXXXXX");
    if (mkdtemp(f->root) == NULL)
        return -1;
    snprintf(f->path, sizeof f->path, "%s/a.zip", f->root);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    char cmd[128];

    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->root);
    free(f);
    return system(cmd) == 0 ? 0 : -1;
}

static cp_status buf_write(void *ctx, const void *data, size_t len)
{
    return cp_buf_append(ctx, data, len);
}

static cp_status failing_write(void *ctx, const void *data, size_t len)
{
    size_t *left = ctx;

    (void)data;
    if (len > *left)
        return CP_ERR_IO;
    *left -= len;
    return CP_OK;
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void save(const fixture *f, const cp_buf *b)
{
    FILE *out = fopen(f->path, "wb");

    assert_non_null(out);
    assert_int_equal(fwrite(b->data, 1, b->len, out), b->len);
    assert_int_equal(fclose(out), 0);
}

/* Python's zipfile: testzip passes, and each entry has its expected size and first byte. */
static void python_check(const fixture *f, const char *expect)
{
    char cmd[1024];

    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 -c 'import sys, zipfile\n"
             "z = zipfile.ZipFile(sys.argv[1])\n"
             "assert z.testzip() is None\n"
             "got = \";\".join(\"%%s:%%d\" %% (i.filename, i.file_size) for i in z.infolist())\n"
             "assert got == sys.argv[2], got\n"
             "for i in z.infolist():\n"
             "    k = len(i.filename.encode())\n"
             "    assert all(b == (n * 7 + k) %% 251 for n, b in enumerate(z.read(i)))\n"
             "' '%s' '%s'",
             f->path, expect);
    assert_int_equal(system(cmd), 0);
}

static void unzip_check(const fixture *f)
{
    char cmd[256];

    if (access("/usr/bin/unzip", X_OK) != 0)
        return;
    snprintf(cmd, sizeof cmd, "/usr/bin/unzip -tq '%s' > /dev/null", f->path);
    assert_int_equal(system(cmd), 0);
}

/* An entry of size bytes, each (n * 7 + strlen(name)) % 251, written in chunks of step. */
static void add(film_zip *z, const char *name, size_t size, size_t step, uint64_t hint)
{
    uint8_t chunk[4096];
    size_t done = 0;

    assert_int_equal(film_zip_begin(z, name, hint, NULL), CP_OK);
    while (done < size) {
        size_t n = size - done < step ? size - done : step;

        for (size_t i = 0; i < n; i++)
            chunk[i] = (uint8_t)(((done + i) * 7 + strlen(name)) % 251);
        assert_int_equal(film_zip_write(z, chunk, n, NULL), CP_OK);
        done += n;
    }
    assert_int_equal(film_zip_end(z, NULL), CP_OK);
}

static void make(const fixture *f, uint64_t limit, cp_buf *b)
{
    film_zip_sink sink = { buf_write, b };
    film_zip_options o = { .zip64_limit = limit, .mtime_s = 1764806400 };
    film_zip *z;

    assert_int_equal(film_zip_open(&sink, &o, &z, NULL), CP_OK);
    add(z, "DICOM/PAT00001/STU00001/SER00001/IMG00001", 10000, 4096, 10000);
    add(z, "DICOM/PAT00001/STU00001/SER00001/IMG00002", 0, 1, 0);
    add(z, "报告/REPORT.PDF", 3001, 1000, UINT64_MAX);
    add(z, "DICOMDIR", 777, 777, 777);
    assert_int_equal(film_zip_count(z), 4);
    assert_int_equal(film_zip_finish(z, NULL), CP_OK);
    assert_int_equal(film_zip_offset(z), b->len);
    film_zip_free(z);
    save(f, b);
}

static const char expected[] = "DICOM/PAT00001/STU00001/SER00001/IMG00001:10000;"
                               "DICOM/PAT00001/STU00001/SER00001/IMG00002:0;"
                               "报告/REPORT.PDF:3001;DICOMDIR:777";

static void test_crc32(void **state)
{
    (void)state;
    assert_int_equal(film_zip_crc32(0, "123456789", 9), 0xCBF43926u);
    assert_int_equal(film_zip_crc32(film_zip_crc32(0, "1234", 4), "56789", 5), 0xCBF43926u);
    assert_int_equal(film_zip_crc32(0, "", 0), 0);
}

static void test_plain_archive(void **state)
{
    fixture *f = *state;
    cp_buf b = CP_BUF_INIT;
    const uint8_t *end;

    make(f, 0, &b);
    /* A local header first, flags bit 3 and 11, stored; the end record last, no ZIP64. */
    assert_int_equal(get32(b.data), 0x04034b50u);
    assert_int_equal(b.data[6] | b.data[7] << 8, (1 << 3) | (1 << 11));
    assert_int_equal(b.data[8] | b.data[9] << 8, 0);
    end = b.data + b.len - 22;
    assert_int_equal(get32(end), 0x06054b50u);
    assert_int_equal(end[10] | end[11] << 8, 4);
    assert_null(memmem(b.data, b.len, "PK\x06\x06", 4));
    python_check(f, expected);
    unzip_check(f);
    cp_buf_free(&b);
}

static void test_zip64_forced(void **state)
{
    fixture *f = *state;
    cp_buf b = CP_BUF_INIT;
    const uint8_t *end;

    /* Every size, offset and count at or above 16 goes to ZIP64 fields. */
    make(f, 16, &b);
    end = b.data + b.len - 22;
    assert_int_equal(get32(end), 0x06054b50u);
    assert_int_equal(get32(end + 16), 0xFFFFFFFFu);
    assert_int_equal(get32(end - 20), 0x07064b50u);
    assert_int_equal(get32(end - 20 - 56), 0x06064b50u);
    /* The first local header had the ZIP64 extra (its hint was past 16). */
    assert_int_equal(get32(b.data + 18), 0xFFFFFFFFu);
    python_check(f, expected);
    unzip_check(f);
    cp_buf_free(&b);
}

static void test_many_entries(void **state)
{
    fixture *f = *state;
    cp_buf b = CP_BUF_INIT;
    film_zip_sink sink = { buf_write, &b };
    film_zip_options o = { .zip64_limit = 100 };
    char name[32], cmd[512];
    film_zip *z;

    /* 150 entries with a limit of 100: the count alone asks for the ZIP64 end records. */
    assert_int_equal(film_zip_open(&sink, &o, &z, NULL), CP_OK);
    for (int i = 0; i < 150; i++) {
        snprintf(name, sizeof name, "F%05d", i);
        add(z, name, (size_t)i % 7, 3, 50);
    }
    assert_int_equal(film_zip_finish(z, NULL), CP_OK);
    film_zip_free(z);
    save(f, &b);
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 -c 'import sys, zipfile\n"
             "z = zipfile.ZipFile(sys.argv[1])\n"
             "assert z.testzip() is None and len(z.infolist()) == 150\n"
             "' '%s'", f->path);
    assert_int_equal(system(cmd), 0);
    unzip_check(f);
    cp_buf_free(&b);
}

static void test_bad_names_and_misuse(void **state)
{
    static const char *const bad[] = { "", "/abs", "a/../b", "..", "a//b", "a/", "a\\b",
                                       "./a", "a\nb" };
    cp_buf b = CP_BUF_INIT;
    film_zip_sink sink = { buf_write, &b };
    film_zip *z;
    cp_error err;

    (void)state;
    cp_error_clear(&err);
    assert_int_equal(film_zip_open(&sink, NULL, &z, NULL), CP_OK);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(film_zip_begin(z, bad[i], 0, &err), CP_ERR_INVALID);
    assert_int_equal(film_zip_write(z, "x", 1, NULL), CP_ERR_INVALID);
    assert_int_equal(film_zip_end(z, NULL), CP_ERR_INVALID);
    assert_int_equal(film_zip_begin(z, "a", 1, NULL), CP_OK);
    assert_int_equal(film_zip_begin(z, "b", 1, NULL), CP_ERR_INVALID);
    assert_int_equal(film_zip_finish(z, NULL), CP_ERR_INVALID);
    assert_int_equal(film_zip_end(z, NULL), CP_OK);
    assert_int_equal(film_zip_finish(z, NULL), CP_OK);
    assert_int_equal(film_zip_finish(z, NULL), CP_ERR_INVALID);
    film_zip_free(z);
    cp_buf_free(&b);
}

static void test_sink_failure_sticks(void **state)
{
    size_t left = 40;
    film_zip_sink sink = { failing_write, &left };
    film_zip *z;

    (void)state;
    assert_int_equal(film_zip_open(&sink, NULL, &z, NULL), CP_OK);
    assert_int_equal(film_zip_begin(z, "abc", 100, NULL), CP_OK);
    assert_int_equal(film_zip_write(z, "0123456789", 10, NULL), CP_ERR_IO);
    left = 1000;
    assert_int_equal(film_zip_write(z, "0", 1, NULL), CP_ERR_IO);
    assert_int_equal(film_zip_end(z, NULL), CP_ERR_IO);
    film_zip_free(z);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc32),
        cmocka_unit_test_setup_teardown(test_plain_archive, setup, teardown),
        cmocka_unit_test_setup_teardown(test_zip64_forced, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_entries, setup, teardown),
        cmocka_unit_test(test_bad_names_and_misuse),
        cmocka_unit_test(test_sink_failure_sticks),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
