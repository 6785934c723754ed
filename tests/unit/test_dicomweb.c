/*
 * test_dicomweb.c - the parts of DICOMweb (PS3.18) that need no server:
 * QIDO-RS parameters turned into index terms (8.3.4), the JSON result of
 * an index row (10.6.3, F.2), the STOW-RS response module (Annex I) and its
 * status (Table 10.5.3-1), WADO-RS frame lists and transfer syntax choice.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "dicom/ts.h"
#include "dicomweb/dicomweb.h"
#include "dicomweb/qido.h"
#include "dicomweb/stow.h"
#include "dicomweb/wado.h"

#define ROOT "http://pacs.example/dicom-web"

static json_t *parse_json(const cp_buf *b)
{
    json_error_t jerr;
    json_t *j = json_loadb((const char *)b->data, b->len, 0, &jerr);

    if (j == NULL)
        fail_msg("invalid JSON: %s: %.*s", jerr.text, (int)b->len, (const char *)b->data);
    return j;
}

static const char *first_string(json_t *ds, const char *tag)
{
    json_t *v = json_array_get(json_object_get(json_object_get(ds, tag), "Value"), 0);

    return json_string_value(v);
}

static void test_parse_terms(void **state)
{
    dweb_param p[] = {
        { "PatientName", "Doe*" },
        { "00100020", "ID1" },
        { "StudyDate", "20200101-20201231" },
        { "limit", "10" },
        { "offset", "5" },
        { "fuzzymatching", "true" },
        { "includefield", "StudyDescription,00081030" },
        { "includefield", "all" },
    };
    dweb_qido q;
    cp_error err;

    (void)state;
    assert_int_equal(dweb_qido_parse(INDEX_LEVEL_STUDY, NULL, NULL, p, 8, &q, &err), CP_OK);
    assert_int_equal(q.term_count, 3);
    assert_string_equal(q.terms[0].attribute, "PatientName");
    assert_string_equal(q.terms[0].value, "Doe*");
    assert_string_equal(q.terms[1].attribute, "00100020");
    assert_string_equal(q.terms[2].value, "20200101-20201231");
    assert_int_equal(q.limit, 10);
    assert_int_equal(q.offset, 5);
    assert_true(q.flags & INDEX_QUERY_FUZZY);
    assert_true(q.all_fields);
    assert_false(q.study_fixed);
}

static void test_parse_path_and_ignored(void **state)
{
    dweb_param p[] = { { "Modality", "CT" }, { "ReferencedStudySequence.x", "1" },
                       { "PatientComments", "x" } };
    dweb_qido q;

    (void)state;
    assert_int_equal(dweb_qido_parse(INDEX_LEVEL_INSTANCE, "1.2.3", "1.2.3.4", p, 3, &q, NULL),
                     CP_OK);
    assert_int_equal(q.term_count, 3);
    assert_string_equal(q.terms[0].attribute, "StudyInstanceUID");
    assert_string_equal(q.terms[0].value, "1.2.3");
    assert_string_equal(q.terms[1].attribute, "SeriesInstanceUID");
    assert_string_equal(q.terms[2].attribute, "Modality");
    assert_true(q.study_fixed && q.series_fixed);
    assert_non_null(strstr(q.ignored, "PatientComments"));
    assert_non_null(strstr(q.ignored, "ReferencedStudySequence.x"));
}

static void test_parse_errors(void **state)
{
    static const dweb_param bad[][1] = {
        { { "limit", "-1" } },
        { { "limit", "ten" } },
        { { "offset", "" } },
        { { "fuzzymatching", "yes" } },
        { { "nosuchthing", "1" } },
        { { "includefield", "NotAKeyword" } },
    };
    dweb_qido q;
    cp_error err;

    (void)state;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cp_error_clear(&err);
        assert_int_not_equal(dweb_qido_parse(INDEX_LEVEL_STUDY, NULL, NULL, bad[i], 1, &q,
                                             &err), CP_OK);
        assert_true(err.detail[0] != '\0');
    }
    assert_int_equal(dweb_qido_parse(INDEX_LEVEL_SERIES, "1.2.x", NULL, NULL, 0, &q, NULL),
                     CP_ERR_INVALID);
}

static void fill_row(index_row *row)
{
    memset(row, 0, sizeof *row);
    row->level = INDEX_LEVEL_STUDY;
    strcpy(row->rec.patient.id, "PID\"1");
    strcpy(row->rec.patient.name.alphabetic, "Yamada^Tarou");
    strcpy(row->rec.patient.name.ideographic, "山田^太郎");
    strcpy(row->rec.study.uid, "1.2.3");
    strcpy(row->rec.study.date, "20200102");
    strcpy(row->rec.series.uid, "1.2.3.4");
    strcpy(row->rec.series.modality, "CT");
    row->rec.series.number = 7;
    row->rec.instance.number = INDEX_NUMBER_NONE;
    strcpy(row->modalities_in_study, "CT\\MR");
    row->study_series = 2;
    row->study_instances = 30;
}

static void test_row_json_study(void **state)
{
    dweb_qido q;
    index_row row;
    cp_buf b = CP_BUF_INIT;
    json_t *j, *pn, *mods;
    const char *key, *prev = "";
    json_t *v;

    (void)state;
    fill_row(&row);
    assert_int_equal(dweb_qido_parse(INDEX_LEVEL_STUDY, NULL, NULL, NULL, 0, &q, NULL), CP_OK);
    assert_int_equal(dweb_qido_row_json(&q, &row, ROOT, &b), CP_OK);
    j = parse_json(&b);

    json_object_foreach(j, key, v) {
        assert_true(strcmp(prev, key) < 0);
        prev = key;
    }
    assert_string_equal(first_string(j, "00100020"), "PID\"1");
    pn = json_array_get(json_object_get(json_object_get(j, "00100010"), "Value"), 0);
    assert_string_equal(json_string_value(json_object_get(pn, "Alphabetic")), "Yamada^Tarou");
    assert_string_equal(json_string_value(json_object_get(pn, "Ideographic")), "山田^太郎");
    assert_null(json_object_get(pn, "Phonetic"));
    mods = json_object_get(json_object_get(j, "00080061"), "Value");
    assert_int_equal(json_array_size(mods), 2);
    assert_string_equal(json_string_value(json_array_get(mods, 1)), "MR");
    assert_int_equal(json_integer_value(json_array_get(
                         json_object_get(json_object_get(j, "00201208"), "Value"), 0)), 30);
    assert_string_equal(first_string(j, "00081190"), ROOT "/studies/1.2.3");
    assert_null(json_object_get(j, "0020000E"));
    assert_null(json_object_get(j, "00081030"));
    assert_non_null(json_object_get(json_object_get(j, "00080050"), "vr"));
    assert_null(json_object_get(json_object_get(j, "00080050"), "Value"));
    json_decref(j);
    cp_buf_free(&b);
}

static void test_row_json_series_in_study(void **state)
{
    dweb_param p[] = { { "includefield", "SeriesDate" } };
    dweb_qido q;
    index_row row;
    cp_buf b = CP_BUF_INIT;
    json_t *j;

    (void)state;
    fill_row(&row);
    row.level = INDEX_LEVEL_SERIES;
    row.series_instances = 12;
    assert_int_equal(dweb_qido_parse(INDEX_LEVEL_SERIES, "1.2.3", NULL, p, 1, &q, NULL), CP_OK);
    assert_int_equal(dweb_qido_row_json(&q, &row, ROOT, &b), CP_OK);
    j = parse_json(&b);
    /* The study is in the path: its attributes are not repeated, its UID is. */
    assert_null(json_object_get(j, "00100010"));
    assert_string_equal(first_string(j, "0020000D"), "1.2.3");
    assert_string_equal(first_string(j, "0020000E"), "1.2.3.4");
    assert_non_null(json_object_get(j, "00080021"));
    assert_null(json_object_get(j, "00201208"));
    assert_int_equal(json_integer_value(json_array_get(
                         json_object_get(json_object_get(j, "00200011"), "Value"), 0)), 7);
    assert_string_equal(first_string(j, "00081190"), ROOT "/studies/1.2.3/series/1.2.3.4");
    json_decref(j);
    cp_buf_free(&b);
}

static void test_stow_status(void **state)
{
    dweb_stow_item items[2];

    (void)state;
    memset(items, 0, sizeof items);
    assert_int_equal(dweb_stow_status(items, 0), 400);
    items[0].stored = items[1].stored = true;
    assert_int_equal(dweb_stow_status(items, 2), 200);
    items[1].stored = false;
    assert_int_equal(dweb_stow_status(items, 2), 202);
    items[0].stored = false;
    assert_int_equal(dweb_stow_status(items, 2), 409);
}

static void test_stow_response(void **state)
{
    dweb_stow_item items[2];
    cp_buf b = CP_BUF_INIT;
    json_t *j, *ok, *bad;

    (void)state;
    memset(items, 0, sizeof items);
    items[0].stored = true;
    strcpy(items[0].sop_class_uid, "1.2.840.10008.5.1.4.1.1.2");
    strcpy(items[0].sop_instance_uid, "1.2.3.4.5");
    strcpy(items[0].study_uid, "1.2.3");
    strcpy(items[0].series_uid, "1.2.3.4");
    items[1].failure = DWEB_FAIL_MISMATCH;
    strcpy(items[1].sop_instance_uid, "9.9");
    assert_int_equal(dweb_stow_response_json(items, 2, ROOT, "1.2.3", &b), CP_OK);
    j = parse_json(&b);
    assert_string_equal(first_string(j, "00081190"), ROOT "/studies/1.2.3");
    ok = json_array_get(json_object_get(json_object_get(j, "00081199"), "Value"), 0);
    bad = json_array_get(json_object_get(json_object_get(j, "00081198"), "Value"), 0);
    assert_string_equal(first_string(ok, "00081155"), "1.2.3.4.5");
    assert_string_equal(first_string(ok, "00081190"),
                        ROOT "/studies/1.2.3/series/1.2.3.4/instances/1.2.3.4.5");
    assert_string_equal(first_string(bad, "00081155"), "9.9");
    assert_null(json_object_get(json_object_get(bad, "00081150"), "Value"));
    assert_int_equal(json_integer_value(json_array_get(
                         json_object_get(json_object_get(bad, "00081197"), "Value"), 0)),
                     0xA900);
    json_decref(j);
    cp_buf_free(&b);
}

static void test_frames_and_syntax(void **state)
{
    uint32_t f[4];
    size_t n;
    const dcm_transfer_syntax *jpeg = dcm_ts_lookup("1.2.840.10008.1.2.4.50", 22);

    (void)state;
    assert_int_equal(dweb_wado_parse_frames("1,3,12", f, 4, &n), CP_OK);
    assert_int_equal(n, 3);
    assert_int_equal(f[2], 12);
    assert_int_equal(dweb_wado_parse_frames("0", f, 4, &n), CP_ERR_INVALID);
    assert_int_equal(dweb_wado_parse_frames("1,,2", f, 4, &n), CP_ERR_INVALID);
    assert_int_equal(dweb_wado_parse_frames("", f, 4, &n), CP_ERR_INVALID);
    assert_int_equal(dweb_wado_parse_frames("1,2,3,4,5", f, 4, &n), CP_ERR_LIMIT);

    assert_ptr_equal(dweb_wado_pick_syntax(&dcm_ts_implicit_le, "*"), &dcm_ts_implicit_le);
    assert_ptr_equal(dweb_wado_pick_syntax(&dcm_ts_implicit_le, NULL), &dcm_ts_implicit_le);
    assert_ptr_equal(dweb_wado_pick_syntax(&dcm_ts_implicit_le, "1.2.840.10008.1.2.1"),
                     &dcm_ts_explicit_le);
    assert_non_null(jpeg);
    assert_ptr_equal(dweb_wado_pick_syntax(jpeg, "1.2.840.10008.1.2.4.50"), jpeg);
    assert_null(dweb_wado_pick_syntax(jpeg, "1.2.840.10008.1.2.1"));
    assert_null(dweb_wado_pick_syntax(&dcm_ts_explicit_le, "1.2.840.10008.1.2"));
}

static void test_json_string(void **state)
{
    cp_buf b = CP_BUF_INIT;

    (void)state;
    assert_int_equal(dweb_json_string(&b, "a\"b\\c\n\x01"), CP_OK);
    assert_int_equal(b.len, strlen("\"a\\\"b\\\\c\\u000a\\u0001\""));
    assert_memory_equal(b.data, "\"a\\\"b\\\\c\\u000a\\u0001\"", b.len);
    cp_buf_free(&b);
    assert_true(dweb_uid_is_valid("1.2.840.10008"));
    assert_false(dweb_uid_is_valid("1.2.a"));
    assert_false(dweb_uid_is_valid(""));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_terms),
        cmocka_unit_test(test_parse_path_and_ignored),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_row_json_study),
        cmocka_unit_test(test_row_json_series_in_study),
        cmocka_unit_test(test_stow_status),
        cmocka_unit_test(test_stow_response),
        cmocka_unit_test(test_frames_and_syntax),
        cmocka_unit_test(test_json_string),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
