/*
 * test_ingest_pattern.c - export file names (ingest/pattern.h): field
 * sanitising for Windows and POSIX shares, pattern checks, expansion.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/limits.h"
#include "ingest/pattern.h"

static void check(const char *in, const char *want)
{
    char out[INGEST_FIELD_MAX + 2];

    pattern_sanitize(in, out, sizeof out);
    assert_string_equal(out, want);
}

static void test_sanitize(void **state)
{
    (void)state;
    check("PAT001", "PAT001");
    check("", "_");
    check("a/b\\c", "a_b_c");
    check("..", "__");
    check("../../etc/passwd", "______etc_passwd");
    check("x..y", "x__y");
    check("a<b>c:d\"e|f?g*h", "a_b_c_d_e_f_g_h");
    check("tab\there\nnl\x7f", "tab_here_nl_");
    check("trailing. ", "trailing");
    check("CON", "_CON");
    check("nul.txt", "_nul.txt");
    check("COM1", "_COM1");
    check("LPT9.dcm", "_LPT9.dcm");
    check("COM0", "COM0");
    check("CONSOLE", "CONSOLE");
    check("张^伟", "张^伟");
    check(".", "_");
}

static void test_sanitize_length(void **state)
{
    char in[400], out[INGEST_FIELD_MAX + 2];
    size_t n;

    (void)state;
    memset(in, 'a', sizeof in - 1);
    in[sizeof in - 1] = '\0';
    n = pattern_sanitize(in, out, sizeof out);
    assert_int_equal(n, INGEST_FIELD_MAX);
    assert_int_equal(strlen(out), INGEST_FIELD_MAX);

    /* A UTF-8 sequence is never cut in the middle. */
    memset(in, 'a', INGEST_FIELD_MAX - 1);
    strcpy(in + INGEST_FIELD_MAX - 1, "张张");
    n = pattern_sanitize(in, out, sizeof out);
    assert_int_equal(n, INGEST_FIELD_MAX - 1);
}

static void test_check(void **state)
{
    (void)state;
    assert_int_equal(pattern_check(PATTERN_DEFAULT, NULL), CP_OK);
    assert_int_equal(pattern_check("{PatientID}/{AccessionNumber}_{StudyDate}/"
                                   "{SeriesNumber}/{SOPInstanceUID}.dcm", NULL), CP_OK);
    assert_int_equal(pattern_check("/abs/{SOPInstanceUID}", NULL), CP_ERR_CONFIG);
    assert_int_equal(pattern_check("../{SOPInstanceUID}", NULL), CP_ERR_CONFIG);
    assert_int_equal(pattern_check("a/./{SOPInstanceUID}", NULL), CP_ERR_CONFIG);
    assert_int_equal(pattern_check("a//{SOPInstanceUID}", NULL), CP_ERR_CONFIG);
    assert_int_equal(pattern_check("a\\{SOPInstanceUID}", NULL), CP_ERR_CONFIG);
    assert_int_equal(pattern_check("{Nope}.dcm", NULL), CP_ERR_CONFIG);
    assert_int_equal(pattern_check("{PatientID", NULL), CP_ERR_CONFIG);
    assert_int_equal(pattern_check("x}", NULL), CP_ERR_CONFIG);
    assert_int_equal(pattern_check("dir/", NULL), CP_ERR_CONFIG);
    assert_int_equal(pattern_check("", NULL), CP_ERR_CONFIG);
}

static void test_expand(void **state)
{
    index_row row;
    char out[512];

    (void)state;
    memset(&row, 0, sizeof row);
    strcpy(row.rec.patient.id, "../P1");
    strcpy(row.rec.study.date, "20240102");
    strcpy(row.rec.instance.sop_uid, "1.2.3.4");
    row.rec.series.number = 7;
    row.rec.instance.number = INDEX_NUMBER_NONE;
    assert_int_equal(pattern_expand("{PatientID}/{AccessionNumber}_{StudyDate}/"
                                    "{SeriesNumber}/{SOPInstanceUID}.dcm", &row, out,
                                    sizeof out, NULL), CP_OK);
    assert_string_equal(out, "___P1/__20240102/7/1.2.3.4.dcm");
    assert_int_equal(pattern_expand("{InstanceNumber}", &row, out, sizeof out, NULL), CP_OK);
    assert_string_equal(out, "_");
    assert_int_equal(pattern_expand("{SOPInstanceUID}.dcm", &row, out, 6, NULL),
                     CP_ERR_LIMIT);
}

static void test_order_id(void **state)
{
    index_row row;
    char out[512];

    (void)state;
    memset(&row, 0, sizeof row);
    strcpy(row.rec.patient.id, "P1");
    assert_int_equal(pattern_check(PATTERN_PDF_DEFAULT, NULL), CP_OK);
    assert_int_equal(pattern_expand_order("{PatientID}/report-{OrderID}.pdf", &row, 42, out,
                                          sizeof out, NULL), CP_OK);
    assert_string_equal(out, "P1/report-42.pdf");
    assert_int_equal(pattern_expand("{OrderID}", &row, out, sizeof out, NULL), CP_OK);
    assert_string_equal(out, "_");
    assert_true(pattern_uses("{PatientID}/{OrderID}.pdf", "OrderID"));
    assert_false(pattern_uses("{PatientID}/{OrderIDx}.pdf", "OrderID"));
    assert_false(pattern_uses("{PatientID}/OrderID.pdf", "OrderID"));
    assert_false(pattern_instance_level(PATTERN_PDF_DEFAULT));
    assert_true(pattern_instance_level("{PatientID}/{SeriesNumber}.pdf"));
    assert_true(pattern_instance_level(PATTERN_DEFAULT));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sanitize),
        cmocka_unit_test(test_sanitize_length),
        cmocka_unit_test(test_check),
        cmocka_unit_test(test_expand),
        cmocka_unit_test(test_order_id),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
