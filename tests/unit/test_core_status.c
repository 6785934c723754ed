/*
 * test_core_status.c - the result vocabulary and error details.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/status.h"

static void test_every_status_has_a_name_and_summary(void **state)
{
    (void)state;
    for (int s = 0; s < CP_STATUS_COUNT; s++) {
        assert_non_null(cp_status_name((cp_status)s));
        assert_true(strlen(cp_status_summary((cp_status)s)) > 0);
    }
    assert_string_equal(cp_status_name(CP_ERR_MALFORMED), "malformed");
    assert_string_equal(cp_status_name((cp_status)999), "unknown");
}

static void test_error_records_where(void **state)
{
    cp_error err;
    char text[300];

    (void)state;
    cp_error_clear(&err);
    assert_int_equal(cp_error_set(&err, CP_ERR_TRUNCATED, 132, 0x00100010,
                                  "value length %u exceeds the %u bytes left", 70000u, 12u),
                     CP_ERR_TRUNCATED);
    cp_error_format(&err, text, sizeof text);
    assert_string_equal(text, "data ends before its declared length at offset 132, "
                              "tag (0010,0010): value length 70000 exceeds the 12 bytes left");
}

static void test_first_error_wins(void **state)
{
    cp_error err;

    (void)state;
    cp_error_clear(&err);
    cp_error_set(&err, CP_ERR_LIMIT, 10, CP_ERROR_NO_TAG, "inner");
    cp_error_set(&err, CP_ERR_MALFORMED, 0, CP_ERROR_NO_TAG, "outer");
    assert_int_equal(err.status, CP_ERR_LIMIT);
    assert_string_equal(err.detail, "inner");
    assert_int_equal(cp_error_set(NULL, CP_ERR_IO, 0, 0, NULL), CP_ERR_IO);
}

static void test_format_without_location(void **state)
{
    cp_error err;
    char text[100];

    (void)state;
    cp_error_clear(&err);
    cp_error_set(&err, CP_ERR_CONFIG, CP_ERROR_NO_OFFSET, 0x00080005, NULL);
    assert_string_equal(cp_error_format(&err, text, sizeof text),
                        "configuration error at tag (0008,0005)");
    cp_error_format(&err, text, 8);
    assert_string_equal(text, "configu");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_status_has_a_name_and_summary),
        cmocka_unit_test(test_error_records_where),
        cmocka_unit_test(test_first_error_wins),
        cmocka_unit_test(test_format_without_location),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
