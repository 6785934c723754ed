/*
 * test_core_log.c - one line per event, levels, and the thread's context.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "core/log.h"

static char *capture(FILE *stream)
{
    static char text[8192];
    size_t n;

    fflush(stream);
    rewind(stream);
    n = fread(text, 1, sizeof text - 1, stream);
    text[n] = '\0';
    return text;
}

static void test_line_has_time_level_event_and_fields(void **state)
{
    FILE *stream = tmpfile();
    char *text;

    (void)state;
    cp_log_set_stream(stream);
    cp_log_set_level(CP_LOG_INFO);
    cp_log_info("dicom.store", "assoc=%d sop_instance_uid=%s", 12, "1.2.3");
    text = capture(stream);
    assert_non_null(
        strstr(text, " level=info event=dicom.store assoc=12 sop_instance_uid=1.2.3\n"));
    assert_true(text[4] == '-' && text[10] == 'T');
    assert_int_equal(strchr(text, '\n') - text + 1, (long)strlen(text));
    cp_log_set_stream(NULL);
    fclose(stream);
}

static void test_levels_filter(void **state)
{
    FILE *stream = tmpfile();
    cp_log_level level;

    (void)state;
    cp_log_set_stream(stream);
    cp_log_set_level(CP_LOG_WARN);
    cp_log_info("ignored", "a=1");
    cp_log_debug("ignored", "a=1");
    cp_log_error("kept", "a=2");
    assert_null(strstr(capture(stream), "ignored"));
    assert_non_null(strstr(capture(stream), "event=kept"));
    assert_int_equal(cp_log_parse_level("debug", &level), 0);
    assert_int_equal(level, CP_LOG_DEBUG);
    assert_int_equal(cp_log_parse_level("loud", &level), -1);
    cp_log_set_level(CP_LOG_INFO);
    cp_log_set_stream(NULL);
    fclose(stream);
}

static void test_context_is_appended(void **state)
{
    FILE *stream = tmpfile();

    (void)state;
    cp_log_set_stream(stream);
    cp_log_context_set("assoc=7 calling_ae=CT1");
    cp_log_warn("dicom.reject", "reason=%s", "unknown_sop_class");
    cp_log_context_set(NULL);
    cp_log_warn("after", NULL);
    assert_non_null(strstr(capture(stream),
                           "event=dicom.reject reason=unknown_sop_class assoc=7 calling_ae=CT1\n"));
    assert_non_null(strstr(capture(stream), "event=after\n"));
    cp_log_set_stream(NULL);
    fclose(stream);
}

static void test_long_lines_are_cut_but_terminated(void **state)
{
    FILE *stream = tmpfile();
    char big[5000];
    char *text;

    (void)state;
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    cp_log_set_stream(stream);
    cp_log_info("big", "v=%s", big);
    text = capture(stream);
    assert_true(strlen(text) <= 2048);
    assert_int_equal(text[strlen(text) - 1], '\n');
    cp_log_set_stream(NULL);
    fclose(stream);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_line_has_time_level_event_and_fields),
        cmocka_unit_test(test_levels_filter),
        cmocka_unit_test(test_context_is_appended),
        cmocka_unit_test(test_long_lines_are_cut_but_terminated),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
