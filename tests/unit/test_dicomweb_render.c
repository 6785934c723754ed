/*
 * test_dicomweb_render.c - the request parsing of WADO-RS rendered resources
 * (PS3.18 8.3.5: window, viewport, quality) and the choice between
 * image/jpeg and image/png (8.7.4), which need no server.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/limits.h"
#include "dicomweb/render.h"

static void test_defaults(void **state)
{
    dweb_render_opts o;

    (void)state;
    dweb_render_opts_init(&o);
    assert_false(o.params.has_window);
    assert_int_equal(o.params.viewport_width, 0);
    assert_int_equal(o.quality, DWEB_RENDER_QUALITY_DEFAULT);
    assert_int_equal(o.media, DWEB_MEDIA_JPEG);
    assert_false(o.has_region);
}

static void test_window(void **state)
{
    dweb_render_opts o;

    (void)state;
    dweb_render_opts_init(&o);
    assert_int_equal(dweb_render_parse_window("40,400", &o), CP_OK);
    assert_true(o.params.has_window);
    assert_true(o.params.window_center == 40.0);
    assert_true(o.params.window_width == 400.0);
    assert_int_equal(o.params.voi_function, PX_VOI_LINEAR);
    assert_int_equal(dweb_render_parse_window("-1000.5,0.5,linear-exact", &o), CP_OK);
    assert_int_equal(o.params.voi_function, PX_VOI_LINEAR_EXACT);
    assert_true(o.params.window_center == -1000.5);
    assert_int_equal(dweb_render_parse_window("1,2,SIGMOID", &o), CP_OK);
    assert_int_equal(o.params.voi_function, PX_VOI_SIGMOID);
    assert_int_equal(dweb_render_parse_window("1, 2, linear", &o), CP_ERR_INVALID);
}

static void test_window_hostile(void **state)
{
    const char *bad[] = {
        "", "40", "40,", ",400", "40,400,", "40,400,cubic", "40,400,linear,1",
        "a,b", "40,0", "40,0.5", "40,0,sigmoid", "40,-5,linear-exact", "nan,400",
        "40,inf", "1e999,400", "40,400x", "0x10,400,linear-exactly",
        "111111111111111111111111111111111111111111111,1",
    };
    dweb_render_opts o;

    (void)state;
    dweb_render_opts_init(&o);
    assert_int_equal(dweb_render_parse_window(NULL, &o), CP_ERR_INVALID);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (dweb_render_parse_window(bad[i], &o) != CP_ERR_INVALID)
            fail_msg("window=%s accepted", bad[i]);
    }
    assert_false(o.params.has_window);
}

static void test_viewport(void **state)
{
    dweb_render_opts o;

    (void)state;
    dweb_render_opts_init(&o);
    assert_int_equal(dweb_render_parse_viewport("512,256", &o), CP_OK);
    assert_int_equal(o.params.viewport_width, 512);
    assert_int_equal(o.params.viewport_height, 256);
    assert_false(o.has_region);
    assert_int_equal(dweb_render_parse_viewport("64,64,0,10,128,100", &o), CP_OK);
    assert_true(o.has_region);
    assert_false(o.region_fraction);
    assert_true(o.region[0] == 0.0 && o.region[1] == 10.0);
    assert_true(o.region[2] == 128.0 && o.region[3] == 100.0);
}

static void test_viewport_hostile(void **state)
{
    const char *bad[] = {
        "", "10", "10,", "0,10", "10,0", "4097,10", "10,99999999999", "-1,10",
        "10,10,1", "10,10,0,0,0,5", "10,10,0,0,5,0", "10,10,-1,0,5,5", "10,10,0,0,5,5,5",
        "a,b", "10.5,10", "10,10,0,0,5,-5", " 10,10",
    };
    dweb_render_opts o;

    (void)state;
    dweb_render_opts_init(&o);
    assert_int_equal(dweb_render_parse_viewport(NULL, &o), CP_ERR_INVALID);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (dweb_render_parse_viewport(bad[i], &o) != CP_ERR_INVALID)
            fail_msg("viewport=%s accepted", bad[i]);
    }
}

static void test_quality(void **state)
{
    int q = 0;

    (void)state;
    assert_int_equal(dweb_render_parse_quality("1", &q), CP_OK);
    assert_int_equal(q, 1);
    assert_int_equal(dweb_render_parse_quality("100", &q), CP_OK);
    assert_int_equal(q, 100);
    assert_int_equal(dweb_render_parse_quality("0", &q), CP_ERR_INVALID);
    assert_int_equal(dweb_render_parse_quality("101", &q), CP_ERR_INVALID);
    assert_int_equal(dweb_render_parse_quality("-5", &q), CP_ERR_INVALID);
    assert_int_equal(dweb_render_parse_quality("50%", &q), CP_ERR_INVALID);
    assert_int_equal(dweb_render_parse_quality("", &q), CP_ERR_INVALID);
    assert_int_equal(dweb_render_parse_quality(NULL, &q), CP_ERR_INVALID);
    assert_int_equal(q, 100);
}

static void test_media(void **state)
{
    (void)state;
    assert_int_equal(dweb_render_choose_media(NULL), DWEB_MEDIA_JPEG);
    assert_int_equal(dweb_render_choose_media(""), DWEB_MEDIA_JPEG);
    assert_int_equal(dweb_render_choose_media("*/*"), DWEB_MEDIA_JPEG);
    assert_int_equal(dweb_render_choose_media("image/*"), DWEB_MEDIA_JPEG);
    assert_int_equal(dweb_render_choose_media("image/png"), DWEB_MEDIA_PNG);
    assert_int_equal(dweb_render_choose_media("image/jpeg;q=0.5, image/png"), DWEB_MEDIA_PNG);
    assert_int_equal(dweb_render_choose_media("image/png;q=0.5, image/jpeg"),
                     DWEB_MEDIA_JPEG);
    assert_int_equal(dweb_render_choose_media("image/gif"), -1);
    assert_int_equal(dweb_render_choose_media("application/dicom"), -1);
    assert_string_equal(dweb_render_media_type(DWEB_MEDIA_PNG), "image/png");
    assert_string_equal(dweb_render_media_type(DWEB_MEDIA_JPEG), "image/jpeg");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_window),
        cmocka_unit_test(test_window_hostile),
        cmocka_unit_test(test_viewport),
        cmocka_unit_test(test_viewport_hostile),
        cmocka_unit_test(test_quality),
        cmocka_unit_test(test_media),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
