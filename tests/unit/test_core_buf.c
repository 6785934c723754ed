/*
 * test_core_buf.c - growable buffers and arrays: appends, formatting, growth,
 * limits, failure.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/alloc.h"
#include "core/buf.h"

static void test_append_keeps_nul_terminator(void **state)
{
    cp_buf buf = CP_BUF_INIT;

    (void)state;
    assert_int_equal(cp_buf_append(&buf, "abc", 3), CP_OK);
    assert_int_equal(buf.len, 3);
    assert_string_equal((char *)buf.data, "abc");
    assert_int_equal(cp_buf_append_byte(&buf, 'd'), CP_OK);
    assert_int_equal(cp_buf_append_str(&buf, "ef"), CP_OK);
    assert_string_equal((char *)buf.data, "abcdef");
    cp_buf_free(&buf);
    assert_null(buf.data);
}

static void test_appendf_formats_and_grows(void **state)
{
    cp_buf buf = CP_BUF_INIT;

    (void)state;
    for (int i = 0; i < 1000; i++)
        assert_int_equal(cp_buf_appendf(&buf, "%04d,", i), CP_OK);
    assert_int_equal(buf.len, 5000);
    assert_memory_equal(buf.data + 4995, "0999,", 5);
    assert_true(buf.cap > buf.len);
    cp_buf_free(&buf);
}

static void test_reset_keeps_storage(void **state)
{
    cp_buf buf = CP_BUF_INIT;
    uint8_t *data;

    (void)state;
    assert_int_equal(cp_buf_append_str(&buf, "hello"), CP_OK);
    data = buf.data;
    cp_buf_reset(&buf);
    assert_int_equal(buf.len, 0);
    assert_ptr_equal(buf.data, data);
    assert_string_equal((char *)buf.data, "");
    cp_buf_free(&buf);
}

static void test_steal_hands_over_storage(void **state)
{
    cp_buf buf = CP_BUF_INIT;
    uint8_t *data;
    size_t len;

    (void)state;
    assert_int_equal(cp_buf_append_str(&buf, "xyz"), CP_OK);
    data = cp_buf_steal(&buf, &len);
    assert_int_equal(len, 3);
    assert_null(buf.data);
    assert_int_equal(buf.len, 0);
    assert_memory_equal(data, "xyz", 3);
    cp_free(data);
}

static void test_allocation_failure_is_reported(void **state)
{
    cp_buf buf = CP_BUF_INIT;

    (void)state;
    cp_alloc_fail_after(0);
    assert_int_equal(cp_buf_append_str(&buf, "x"), CP_ERR_NOMEM);
    cp_alloc_fail_after(-1);
    assert_int_equal(buf.len, 0);
    assert_int_equal(cp_buf_append_str(&buf, "x"), CP_OK);
    cp_buf_free(&buf);
}

static void test_reserve_refuses_overflow(void **state)
{
    cp_buf buf = CP_BUF_INIT;

    (void)state;
    assert_int_equal(cp_buf_append_str(&buf, "ab"), CP_OK);
    assert_int_equal(cp_buf_reserve(&buf, SIZE_MAX - 1), CP_ERR_NOMEM);
    assert_string_equal((char *)buf.data, "ab");
    cp_buf_free(&buf);
}

static void test_array_grows_to_its_limit(void **state)
{
    int *items = NULL;
    size_t cap = 0, count = 0;

    (void)state;
    for (; count < 40; count++) {
        assert_int_equal(cp_array_grow(&items, &cap, count, sizeof *items, 4, 40), CP_OK);
        assert_true(cap > count && cap <= 40);
        assert_int_equal(items[count], 0);
        items[count] = (int)count;
    }
    assert_int_equal(cap, 40);
    assert_int_equal(cp_array_grow(&items, &cap, count, sizeof *items, 4, 40), CP_ERR_LIMIT);
    for (int i = 0; i < 40; i++)
        assert_int_equal(items[i], i);
    cp_free(items);
}

static void test_array_failure_leaves_it_unchanged(void **state)
{
    int *items = NULL, *before;
    size_t cap = 0;

    (void)state;
    assert_int_equal(cp_array_grow(&items, &cap, 0, sizeof *items, 2, 100), CP_OK);
    before = items;
    cp_alloc_fail_after(0);
    assert_int_equal(cp_array_grow(&items, &cap, 2, sizeof *items, 2, 100), CP_ERR_NOMEM);
    cp_alloc_fail_after(-1);
    assert_ptr_equal(items, before);
    assert_int_equal(cap, 2);
    cp_free(items);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_append_keeps_nul_terminator),
        cmocka_unit_test(test_appendf_formats_and_grows),
        cmocka_unit_test(test_reset_keeps_storage),
        cmocka_unit_test(test_steal_hands_over_storage),
        cmocka_unit_test(test_allocation_failure_is_reported),
        cmocka_unit_test(test_reserve_refuses_overflow),
        cmocka_unit_test(test_array_grows_to_its_limit),
        cmocka_unit_test(test_array_failure_leaves_it_unchanged),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
