/*
 * test_core_config.c - the configuration file and its environment overrides.
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

#include "core/config.h"

static const char sample[] =
    "# cloudpacs.conf\n"
    "data_dir = /var/lib/cloudpacs\n"
    "\n"
    "[dicom]\n"
    "ae_title = CLOUDPACS\n"
    "port=11112\n"
    "; a comment\n"
    "[http]\n"
    "  port = 8042  \n"
    "banner = \"  spaced  \"\n"
    "[tls]\n"
    "enabled = yes\n";

static cp_config *parse_sample(void)
{
    cp_config *cfg = NULL;
    cp_error err;

    cp_error_clear(&err);
    assert_int_equal(cp_config_parse(sample, sizeof sample - 1, &cfg, &err), CP_OK);
    return cfg;
}

static void test_sections_and_keys(void **state)
{
    cp_config *cfg = parse_sample();

    (void)state;
    assert_string_equal(cp_config_get(cfg, "core", "data_dir", NULL), "/var/lib/cloudpacs");
    assert_string_equal(cp_config_get(cfg, "dicom", "ae_title", NULL), "CLOUDPACS");
    assert_string_equal(cp_config_get(cfg, "http", "port", NULL), "8042");
    assert_string_equal(cp_config_get(cfg, "http", "banner", NULL), "  spaced  ");
    assert_string_equal(cp_config_get(cfg, "http", "missing", "dflt"), "dflt");
    cp_config_destroy(cfg);
}

static void test_typed_getters(void **state)
{
    cp_config *cfg = parse_sample();
    cp_error err;
    int64_t port;
    bool on;

    (void)state;
    cp_error_clear(&err);
    assert_int_equal(cp_config_get_int(cfg, "dicom", "port", 104, 1, 65535, &port, &err), CP_OK);
    assert_int_equal(port, 11112);
    assert_int_equal(cp_config_get_int(cfg, "dicom", "none", 104, 1, 65535, &port, &err), CP_OK);
    assert_int_equal(port, 104);
    assert_int_equal(cp_config_get_int(cfg, "dicom", "ae_title", 0, 0, 10, &port, &err),
                     CP_ERR_CONFIG);
    assert_non_null(strstr(err.detail, "dicom.ae_title"));
    assert_int_equal(cp_config_get_bool(cfg, "tls", "enabled", false, &on, NULL), CP_OK);
    assert_true(on);
    assert_int_equal(cp_config_get_bool(cfg, "http", "port", false, &on, NULL), CP_ERR_CONFIG);
    cp_config_destroy(cfg);
}

static void test_environment_overrides(void **state)
{
    cp_config *cfg = parse_sample();

    (void)state;
    setenv("CLOUDPACS_DICOM_PORT", "4242", 1);
    assert_string_equal(cp_config_get(cfg, "dicom", "port", NULL), "4242");
    unsetenv("CLOUDPACS_DICOM_PORT");

    setenv("CLOUDPACS_AE_TITLE", "SHORTNAME", 1);
    assert_string_equal(cp_config_get(cfg, "dicom", "ae_title", NULL), "SHORTNAME");
    setenv("CLOUDPACS_DICOM_AE_TITLE", "LONGNAME", 1);
    assert_string_equal(cp_config_get(cfg, "dicom", "ae_title", NULL), "LONGNAME");
    unsetenv("CLOUDPACS_DICOM_AE_TITLE");
    unsetenv("CLOUDPACS_AE_TITLE");

    setenv("CLOUDPACS_DATA_DIR", "/tmp/x", 1);
    assert_string_equal(cp_config_get(NULL, "core", "data_dir", NULL), "/tmp/x");
    unsetenv("CLOUDPACS_DATA_DIR");
    cp_config_destroy(cfg);
}

static void test_syntax_errors_name_the_line(void **state)
{
    static const char bad[] = "[ok]\nkey = 1\nthis line has no equals\n";
    static const char bad_section[] = "[unterminated\n";
    cp_config *cfg = NULL;
    cp_error err;

    (void)state;
    cp_error_clear(&err);
    assert_int_equal(cp_config_parse(bad, sizeof bad - 1, &cfg, &err), CP_ERR_CONFIG);
    assert_null(cfg);
    assert_int_equal(err.offset, 3);
    assert_non_null(strstr(err.detail, "line 3"));

    cp_error_clear(&err);
    assert_int_equal(cp_config_parse(bad_section, sizeof bad_section - 1, &cfg, &err),
                     CP_ERR_CONFIG);
}

static void test_load_from_file(void **state)
{
    char path[] = "/tmp/cloudpacs-config-XXXXXX";
    int fd = mkstemp(path);
    cp_config *cfg = NULL;
    cp_error err;

    (void)state;
    assert_true(fd >= 0);
    assert_int_equal(write(fd, sample, sizeof sample - 1), (ssize_t)(sizeof sample - 1));
    close(fd);
    cp_error_clear(&err);
    assert_int_equal(cp_config_load(path, &cfg, &err), CP_OK);
    assert_string_equal(cp_config_get(cfg, "dicom", "port", NULL), "11112");
    cp_config_destroy(cfg);
    unlink(path);

    cp_error_clear(&err);
    assert_int_equal(cp_config_load(path, &cfg, &err), CP_ERR_IO);
    assert_non_null(strstr(err.detail, path));
}

static void test_set_replaces(void **state)
{
    cp_config *cfg = cp_config_create();

    (void)state;
    assert_int_equal(cp_config_set(cfg, "a", "b", "1"), CP_OK);
    assert_int_equal(cp_config_set(cfg, "a", "b", "2"), CP_OK);
    assert_string_equal(cp_config_get(cfg, "a", "b", NULL), "2");
    cp_config_destroy(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sections_and_keys),
        cmocka_unit_test(test_typed_getters),
        cmocka_unit_test(test_environment_overrides),
        cmocka_unit_test(test_syntax_errors_name_the_line),
        cmocka_unit_test(test_load_from_file),
        cmocka_unit_test(test_set_replaces),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
