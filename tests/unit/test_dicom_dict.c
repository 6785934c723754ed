/*
 * test_dicom_dict.c - the data dictionary and UID registry of PS3.6 (dict.c,
 * uid.c and their generated tables) and the UID syntax of PS3.5 9.1.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "dicom/dict.h"
#include "dicom/dict_table.h"
#include "dicom/dict_tags.h"
#include "dicom/uid.h"

#define S(literal) literal, sizeof(literal) - 1

static void test_public_tags(void **state)
{
    const dcm_dict_entry *e;

    (void)state;
    e = dcm_dict_lookup(DCM_TAG(0x0010, 0x0010));
    assert_non_null(e);
    assert_int_equal(e->vr, DCM_VR_PN);
    assert_int_equal(e->vr_alt, DCM_VR_NONE);
    assert_string_equal(e->vm, "1");
    assert_string_equal(e->keyword, "PatientName");
    assert_string_equal(e->name, "Patient's Name");
    assert_false(e->retired);
    assert_int_equal(DCM_PatientName, DCM_TAG(0x0010, 0x0010));

    e = dcm_dict_lookup(DCM_TAG_PIXEL_DATA);
    assert_non_null(e);
    assert_int_equal(e->vr, DCM_VR_OB);
    assert_int_equal(e->vr_alt, DCM_VR_OW);
    assert_string_equal(e->keyword, "PixelData");

    e = dcm_dict_lookup(DCM_TAG(0x0028, 0x0106));
    assert_non_null(e);
    assert_int_equal(e->vr, DCM_VR_US);
    assert_int_equal(e->vr_alt, DCM_VR_SS);

    /* "US or SS or OW" keeps the first two. */
    e = dcm_dict_lookup(DCM_TAG(0x0028, 0x1200));
    assert_non_null(e);
    assert_int_equal(e->vr, DCM_VR_US);
    assert_int_equal(e->vr_alt, DCM_VR_SS);
    assert_true(e->retired);

    e = dcm_dict_lookup(DCM_TAG_ITEM);
    assert_non_null(e);
    assert_int_equal(e->vr, DCM_VR_NONE);
    assert_string_equal(e->keyword, "Item");

    e = dcm_dict_lookup(DCM_TAG(0x0008, 0x1140));
    assert_non_null(e);
    assert_int_equal(e->vr, DCM_VR_SQ);
    assert_string_equal(e->keyword, "ReferencedImageSequence");
}

static void test_repeating_groups(void **state)
{
    const dcm_dict_entry *e;

    (void)state;
    e = dcm_dict_lookup(DCM_TAG(0x6002, 0x3000));
    assert_non_null(e);
    assert_string_equal(e->keyword, "OverlayData");
    assert_int_equal(e->tag, 0x60003000u);
    assert_int_equal(e->mask, 0xFF00FFFFu);
    assert_int_equal(e->vr, DCM_VR_OB);
    assert_int_equal(e->vr_alt, DCM_VR_OW);

    e = dcm_dict_lookup(DCM_TAG(0x5010, 0x0010));
    assert_non_null(e);
    assert_string_equal(e->keyword, "NumberOfPoints");
    assert_int_equal(e->vr, DCM_VR_US);
    assert_true(e->retired);

    e = dcm_dict_lookup(DCM_TAG(0x501E, 0x3000));
    assert_non_null(e);
    assert_string_equal(e->keyword, "CurveData");

    e = dcm_dict_lookup(DCM_TAG(0x7F02, 0x0010));
    assert_non_null(e);
    assert_string_equal(e->keyword, "VariablePixelData");

    /* Element masks: 1000 xxx2, (0020,31xx), (0028,04x1), 1010 xxxx. */
    e = dcm_dict_lookup(DCM_TAG(0x1000, 0x1232));
    assert_non_null(e);
    assert_string_equal(e->keyword, "HuffmanTableSize");
    e = dcm_dict_lookup(DCM_TAG(0x0020, 0x3105));
    assert_non_null(e);
    assert_string_equal(e->keyword, "SourceImageIDs");
    e = dcm_dict_lookup(DCM_TAG(0x0028, 0x0431));
    assert_non_null(e);
    assert_string_equal(e->keyword, "ColumnsForNthOrderCoefficients");
    e = dcm_dict_lookup(DCM_TAG(0x1010, 0x0ABC));
    assert_non_null(e);
    assert_string_equal(e->keyword, "ZonalMap");

    /* Odd groups are private, not repetitions of 60xx. */
    assert_null(dcm_dict_lookup(DCM_TAG(0x6001, 0x3000)));
}

static void test_group_length_and_unknown(void **state)
{
    const dcm_dict_entry *e;

    (void)state;
    e = dcm_dict_lookup(DCM_TAG(0x0028, 0x0000));
    assert_non_null(e);
    assert_int_equal(e->vr, DCM_VR_UL);
    assert_string_equal(e->vm, "1");
    assert_string_equal(e->keyword, "GenericGroupLength");

    e = dcm_dict_lookup(DCM_TAG_FILE_META_GROUP_LENGTH);
    assert_non_null(e);
    assert_string_equal(e->keyword, "FileMetaInformationGroupLength");

    e = dcm_dict_lookup(DCM_TAG(0x6000, 0x0000));
    assert_non_null(e);
    assert_string_equal(e->keyword, "GenericGroupLength");

    assert_null(dcm_dict_lookup(DCM_TAG(0x0010, 0x0011)));
    assert_null(dcm_dict_lookup(DCM_TAG(0x0008, 0xFFFF)));
    assert_null(dcm_dict_lookup(DCM_TAG(0x0029, 0x1010)));
    assert_null(dcm_dict_lookup(DCM_TAG(0x0029, 0x0010)));
    assert_null(dcm_dict_lookup(DCM_TAG(0xFFFF, 0xFFFF)));
}

static void test_keywords(void **state)
{
    const dcm_dict_entry *e;
    const char padded[] = "PatientNameXYZ";

    (void)state;
    e = dcm_dict_lookup_keyword(S("PatientName"));
    assert_non_null(e);
    assert_int_equal(e->tag, DCM_TAG(0x0010, 0x0010));
    assert_ptr_equal(e, dcm_dict_lookup(e->tag));

    /* The key is `len` bytes, not a C string. */
    e = dcm_dict_lookup_keyword(padded, strlen("PatientName"));
    assert_non_null(e);
    assert_int_equal(e->tag, DCM_PatientName);

    e = dcm_dict_lookup_keyword(S("OverlayData"));
    assert_non_null(e);
    assert_int_equal(e->mask, 0xFF00FFFFu);

    e = dcm_dict_lookup_keyword(S("GenericGroupLength"));
    assert_non_null(e);
    assert_int_equal(e->vr, DCM_VR_UL);

    assert_null(dcm_dict_lookup_keyword(S("patientname")));
    assert_null(dcm_dict_lookup_keyword(S("PatientNam")));
    assert_null(dcm_dict_lookup_keyword(S("PatientNames")));
    assert_null(dcm_dict_lookup_keyword(S("")));
    assert_null(dcm_dict_lookup_keyword("Patient\0Name", 12));

    /* Every public keyword leads back to its own entry. */
    for (size_t i = 0; i < dcm_dict_public_count; i++) {
        const dcm_dict_entry *p = &dcm_dict_public[i];

        if (p->keyword[0] == '\0')
            continue;
        assert_ptr_equal(dcm_dict_lookup_keyword(p->keyword, strlen(p->keyword)), p);
        assert_ptr_equal(dcm_dict_lookup(p->tag), p);
    }
}

static void test_private_tags(void **state)
{
    const dcm_dict_entry *e;

    (void)state;
    e = dcm_dict_lookup_private(S("SIEMENS CSA HEADER"), DCM_TAG(0x0029, 0x1010));
    assert_non_null(e);
    assert_int_equal(e->vr, DCM_VR_OB);
    assert_string_equal(e->name, "CSA Image Header Info");

    /* Any block, and the creator's space or NUL padding. */
    e = dcm_dict_lookup_private(S("SIEMENS CSA HEADER  "), DCM_TAG(0x0029, 0x1120));
    assert_non_null(e);
    assert_string_equal(e->name, "CSA Series Header Info");
    e = dcm_dict_lookup_private("SIEMENS CSA HEADER\0", 19, DCM_TAG(0x0029, 0x2008));
    assert_non_null(e);
    assert_int_equal(e->vr, DCM_VR_CS);

    assert_null(dcm_dict_lookup_private(S("SIEMENS CSA HEADER"),
                                        DCM_TAG(0x0029, 0x10FF)));
    assert_null(dcm_dict_lookup_private(S("SIEMENS CSA HEADER"),
                                        DCM_TAG(0x0029, 0x0010)));
    assert_null(dcm_dict_lookup_private(S("SIEMENS CSA HEADE"),
                                        DCM_TAG(0x0029, 0x1010)));
    assert_null(dcm_dict_lookup_private(S("NO SUCH CREATOR"),
                                        DCM_TAG(0x0029, 0x1010)));
    assert_null(dcm_dict_lookup_private(S("SIEMENS CSA HEADER"),
                                        DCM_TAG(0x0028, 0x1010)));
    assert_null(dcm_dict_lookup_private(S(""), DCM_TAG(0x0029, 0x1010)));
}

static void test_tables_are_sorted(void **state)
{
    (void)state;
    for (size_t i = 1; i < dcm_dict_public_count; i++)
        assert_true(dcm_dict_public[i - 1].tag < dcm_dict_public[i].tag);

    for (size_t i = 1; i < dcm_dict_keyword_count; i++) {
        const uint16_t *k = dcm_dict_keyword_index;
        const char *a = k[i - 1] < dcm_dict_public_count
            ? dcm_dict_public[k[i - 1]].keyword
            : dcm_dict_repeaters[k[i - 1] - dcm_dict_public_count].keyword;
        const char *b = k[i] < dcm_dict_public_count
            ? dcm_dict_public[k[i]].keyword
            : dcm_dict_repeaters[k[i] - dcm_dict_public_count].keyword;

        assert_true(strcmp(a, b) < 0);
    }

    for (size_t i = 1; i < dcm_dict_creators_count; i++)
        assert_true(strcmp(dcm_dict_creators[i - 1].creator,
                           dcm_dict_creators[i].creator) < 0);

    for (size_t i = 1; i < dcm_uid_table_count; i++)
        assert_true(strcmp(dcm_uid_table[i - 1].entry.uid,
                           dcm_uid_table[i].entry.uid) < 0);
}

static void test_uid_lookup(void **state)
{
    const dcm_uid_entry *u;

    (void)state;
    u = dcm_uid_lookup("1.2.840.10008.5.1.4.1.1.2\0", 26);
    assert_non_null(u);
    assert_string_equal(u->uid, "1.2.840.10008.5.1.4.1.1.2");
    assert_string_equal(u->keyword, "CTImageStorage");
    assert_string_equal(u->name, "CT Image Storage");
    assert_int_equal(u->type, DCM_UID_SOP_CLASS);
    assert_false(u->retired);

    u = dcm_uid_lookup(S("1.2.840.10008.1.2.1"));
    assert_non_null(u);
    assert_int_equal(u->type, DCM_UID_TRANSFER_SYNTAX);
    assert_string_equal(u->keyword, "ExplicitVRLittleEndian");

    u = dcm_uid_lookup(S("1.2.840.10008.1.2.1 "));
    assert_non_null(u);
    assert_string_equal(u->uid, "1.2.840.10008.1.2.1");

    u = dcm_uid_lookup(S("1.2.840.10008.1.2.2"));
    assert_non_null(u);
    assert_true(u->retired);

    u = dcm_uid_lookup(S("1.2.840.10008.3.1.1.1"));
    assert_non_null(u);
    assert_int_equal(u->type, DCM_UID_APPLICATION_CONTEXT);

    u = dcm_uid_lookup(S("1.2.840.10008.1.20.1.1"));
    assert_non_null(u);
    assert_int_equal(u->type, DCM_UID_WELL_KNOWN_INSTANCE);

    u = dcm_uid_lookup(S("1.2.840.10008.3.1.2.1.4"));
    assert_non_null(u);
    assert_int_equal(u->type, DCM_UID_META_SOP_CLASS);

    assert_null(dcm_uid_lookup(S("1.2.840.10008.5.1.4.1.1")));
    assert_null(dcm_uid_lookup(S("1.2.840.10008.5.1.4.1.1.2.9")));
    assert_null(dcm_uid_lookup(S("")));
    assert_null(dcm_uid_lookup("\0\0", 2));
}

static void test_uid_is_valid(void **state)
{
    char long_uid[DCM_UID_MAX + 2];

    (void)state;
    assert_true(dcm_uid_is_valid(S("1.2.840.10008.5.1.4.1.1.2")));
    assert_true(dcm_uid_is_valid("1.2.840.10008.1.2\0", 18));
    assert_true(dcm_uid_is_valid(S("0")));
    assert_true(dcm_uid_is_valid(S("1.0.3")));
    assert_true(dcm_uid_is_valid(S("2.25.329800735698586629295641978511506172918")));

    assert_false(dcm_uid_is_valid(S("1.02.3")));
    assert_false(dcm_uid_is_valid(S("01.2")));
    assert_false(dcm_uid_is_valid(S("1.2.840.1a")));
    assert_false(dcm_uid_is_valid(S("1..2")));
    assert_false(dcm_uid_is_valid(S(".1.2")));
    assert_false(dcm_uid_is_valid(S("1.2.")));
    assert_false(dcm_uid_is_valid(S("1.2 ")));
    assert_false(dcm_uid_is_valid(S("1.2\0003")));
    assert_false(dcm_uid_is_valid(S("")));
    assert_false(dcm_uid_is_valid("\0", 1));

    /* 64 bytes are allowed, 65 are not. */
    memset(long_uid, '1', sizeof long_uid);
    long_uid[1] = '.';
    assert_true(dcm_uid_is_valid(long_uid, DCM_UID_MAX));
    assert_false(dcm_uid_is_valid(long_uid, DCM_UID_MAX + 1));
}

static void test_storage_classes(void **state)
{
    (void)state;
    assert_true(dcm_uid_is_storage_sop_class(S("1.2.840.10008.5.1.4.1.1.2")));
    assert_true(dcm_uid_is_storage_sop_class("1.2.840.10008.5.1.4.1.1.4\0", 26));
    assert_true(dcm_uid_is_storage_sop_class(S("1.2.840.10008.5.1.4.1.1.1.1")));
    assert_true(dcm_uid_is_storage_sop_class(S("1.2.840.10008.5.1.4.1.1.88.11")));
    assert_true(dcm_uid_is_storage_sop_class(S("1.2.840.10008.5.1.4.1.1.6")));
    assert_true(dcm_uid_is_storage_sop_class(S("1.2.840.10008.1.3.10")));

    assert_false(dcm_uid_is_storage_sop_class(S("1.2.840.10008.1.1")));
    assert_false(dcm_uid_is_storage_sop_class(S("1.2.840.10008.1.20.1")));
    assert_false(dcm_uid_is_storage_sop_class(S("1.2.840.10008.1.2.1")));
    assert_false(dcm_uid_is_storage_sop_class(S("1.2.840.10008.5.1.4.1.2.1.1")));
    assert_false(dcm_uid_is_storage_sop_class(S("1.2.3.4")));
    assert_false(dcm_uid_is_storage_sop_class(S("")));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_public_tags),
        cmocka_unit_test(test_repeating_groups),
        cmocka_unit_test(test_group_length_and_unknown),
        cmocka_unit_test(test_keywords),
        cmocka_unit_test(test_private_tags),
        cmocka_unit_test(test_tables_are_sorted),
        cmocka_unit_test(test_uid_lookup),
        cmocka_unit_test(test_uid_is_valid),
        cmocka_unit_test(test_storage_classes),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
