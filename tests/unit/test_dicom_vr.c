/*
 * test_dicom_vr.c - Value Representation properties (PS3.5 table 6.2-1).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "dicom/vr.h"

static void test_every_vr_round_trips_through_its_name(void **state)
{
    (void)state;
    for (int vr = DCM_VR_NONE + 1; vr < DCM_VR_COUNT; vr++) {
        const char *name = dcm_vr_name((dcm_vr)vr);

        assert_int_equal(strlen(name), 2);
        assert_int_equal(dcm_vr_from_bytes((uint8_t)name[0], (uint8_t)name[1]), vr);
    }
    assert_int_equal(dcm_vr_from_bytes('X', 'X'), DCM_VR_NONE);
    assert_int_equal(dcm_vr_from_bytes(0, 0), DCM_VR_NONE);
    assert_int_equal(dcm_vr_from_bytes('p', 'n'), DCM_VR_NONE);
    assert_string_equal(dcm_vr_name((dcm_vr)200), "??");
}

static void test_long_length_headers(void **state)
{
    static const dcm_vr long_vrs[] = {
        DCM_VR_OB, DCM_VR_OD, DCM_VR_OF, DCM_VR_OL, DCM_VR_OV, DCM_VR_OW, DCM_VR_SQ,
        DCM_VR_SV, DCM_VR_UC, DCM_VR_UN, DCM_VR_UR, DCM_VR_UT, DCM_VR_UV,
    };
    size_t count = 0;

    (void)state;
    for (size_t i = 0; i < sizeof long_vrs / sizeof long_vrs[0]; i++)
        assert_true(dcm_vr_has_long_length(long_vrs[i]));
    for (int vr = DCM_VR_NONE + 1; vr < DCM_VR_COUNT; vr++)
        count += dcm_vr_has_long_length((dcm_vr)vr);
    assert_int_equal(count, sizeof long_vrs / sizeof long_vrs[0]);
}

static void test_swap_units_and_numeric_sizes(void **state)
{
    (void)state;
    assert_int_equal(dcm_vr_swap_unit(DCM_VR_US), 2);
    assert_int_equal(dcm_vr_swap_unit(DCM_VR_OW), 2);
    assert_int_equal(dcm_vr_swap_unit(DCM_VR_AT), 2);
    assert_int_equal(dcm_vr_swap_unit(DCM_VR_OF), 4);
    assert_int_equal(dcm_vr_swap_unit(DCM_VR_OV), 8);
    assert_int_equal(dcm_vr_swap_unit(DCM_VR_OB), 1);
    assert_int_equal(dcm_vr_swap_unit(DCM_VR_PN), 1);
    assert_int_equal(dcm_vr_numeric_size(DCM_VR_AT), 4);
    assert_int_equal(dcm_vr_numeric_size(DCM_VR_SV), 8);
    assert_int_equal(dcm_vr_numeric_size(DCM_VR_OW), 0);
}

static void test_text_properties(void **state)
{
    (void)state;
    assert_int_equal(dcm_vr_padding(DCM_VR_UI), '\0');
    assert_int_equal(dcm_vr_padding(DCM_VR_OB), '\0');
    assert_int_equal(dcm_vr_padding(DCM_VR_PN), ' ');
    assert_true(dcm_vr_uses_charset(DCM_VR_PN));
    assert_true(dcm_vr_uses_charset(DCM_VR_UC));
    assert_false(dcm_vr_uses_charset(DCM_VR_CS));
    assert_false(dcm_vr_uses_charset(DCM_VR_UR));
    assert_true(dcm_vr_is_multi_valued_string(DCM_VR_CS));
    assert_false(dcm_vr_is_multi_valued_string(DCM_VR_LT));
    assert_false(dcm_vr_is_multi_valued_string(DCM_VR_UR));
    assert_true(dcm_vr_is_bulk(DCM_VR_UN));
    assert_false(dcm_vr_is_bulk(DCM_VR_SQ));
    assert_true(dcm_vr_is_string(DCM_VR_UR));
    assert_false(dcm_vr_is_string(DCM_VR_AT));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_vr_round_trips_through_its_name),
        cmocka_unit_test(test_long_length_headers),
        cmocka_unit_test(test_swap_units_and_numeric_sizes),
        cmocka_unit_test(test_text_properties),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
