/*
 * test_dicom_ts.c - transfer syntax lookup and properties (PS3.5 Annex A).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "dicom/ts.h"

static void test_native_syntaxes(void **state)
{
    const dcm_transfer_syntax *ts;

    (void)state;
    ts = dcm_ts_lookup("1.2.840.10008.1.2", 17);
    assert_ptr_equal(ts, &dcm_ts_implicit_le);
    assert_false(ts->explicit_vr);
    ts = dcm_ts_lookup("1.2.840.10008.1.2.1\0", 20);
    assert_ptr_equal(ts, &dcm_ts_explicit_le);
    ts = dcm_ts_lookup("1.2.840.10008.1.2.2 ", 20);
    assert_true(ts->big_endian && ts->explicit_vr && ts->retired);
    ts = dcm_ts_lookup("1.2.840.10008.1.2.1.99", 22);
    assert_true(ts->deflated);
}

static void test_encapsulated_syntaxes(void **state)
{
    const dcm_transfer_syntax *ts;

    (void)state;
    ts = dcm_ts_lookup("1.2.840.10008.1.2.4.70", 22);
    assert_non_null(ts);
    assert_true(ts->encapsulated && ts->explicit_vr && !ts->lossy);
    ts = dcm_ts_lookup("1.2.840.10008.1.2.4.50", 22);
    assert_true(ts->lossy);
    ts = dcm_ts_lookup("1.2.840.10008.1.2.4.201", 23);
    assert_non_null(ts);
    assert_false(ts->lossy);
    assert_null(dcm_ts_lookup("1.2.840.10008.1.2.4", 19));
    assert_null(dcm_ts_lookup("", 0));
}

static void test_table_is_consistent(void **state)
{
    (void)state;
    assert_true(dcm_ts_count() > 30);
    for (size_t i = 0; i < dcm_ts_count(); i++) {
        const dcm_transfer_syntax *ts = dcm_ts_at(i);

        assert_ptr_equal(dcm_ts_lookup(ts->uid, strlen(ts->uid)), ts);
    }
    assert_null(dcm_ts_at(dcm_ts_count()));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_native_syntaxes),
        cmocka_unit_test(test_encapsulated_syntaxes),
        cmocka_unit_test(test_table_is_consistent),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
