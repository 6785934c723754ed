/*
 * test_net_qr.c - query/retrieve identifiers (net/qr.h, PS3.4 C.4): an
 * identifier taken apart into index terms (levels, unique keys, matching
 * values, the query's character set) and a match encoded back as a
 * response identifier in the query's character set (GB18030 included).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/buf.h"
#include "dicom/dataset.h"
#include "dicom/io.h"
#include "dicom/tag.h"
#include "net/dimse.h"
#include "net/qr.h"

#define STUDY_FIND "1.2.840.10008.5.1.4.1.2.2.1"
#define STUDY_MOVE "1.2.840.10008.5.1.4.1.2.2.2"
#define PATIENT_FIND "1.2.840.10008.5.1.4.1.2.1.1"
#define EXPLICIT_LE "1.2.840.10008.1.2.1"
#define IMPLICIT_LE "1.2.840.10008.1.2"

/* Appends one Explicit VR Little Endian element with a short header. */
static void put(cp_buf *b, uint16_t group, uint16_t element, const char *vr, const char *value)
{
    size_t len = strlen(value);
    size_t padded = len + (len & 1);
    uint8_t h[8] = { (uint8_t)group, (uint8_t)(group >> 8), (uint8_t)element,
                     (uint8_t)(element >> 8), (uint8_t)vr[0], (uint8_t)vr[1],
                     (uint8_t)padded, (uint8_t)(padded >> 8) };

    assert_int_equal(cp_buf_append(b, h, sizeof h), CP_OK);
    assert_int_equal(cp_buf_append(b, value, len), CP_OK);
    if (padded != len)
        assert_int_equal(cp_buf_append_byte(b, strcmp(vr, "UI") == 0 ? 0 : ' '), CP_OK);
}

static const char *term(const qr_query *q, const char *attribute)
{
    for (size_t i = 0; i < q->term_count; i++) {
        if (strcmp(q->terms[i].attribute, attribute) == 0)
            return q->terms[i].value;
    }
    return NULL;
}

static cp_status parse(const char *sop_class, const cp_buf *b, qr_query *q, uint16_t *status)
{
    cp_error err;

    cp_error_clear(&err);
    return qr_query_parse(sop_class, b->data, b->len, EXPLICIT_LE, q, status, &err);
}

static void study_query_maps_to_terms(void **state)
{
    cp_buf b = CP_BUF_INIT;
    qr_query q;
    uint16_t status;

    (void)state;
    put(&b, 0x0008, 0x0020, "DA", "20200101-20201231");
    put(&b, 0x0008, 0x0052, "CS", "STUDY");
    put(&b, 0x0008, 0x0061, "CS", "");
    put(&b, 0x0010, 0x0010, "PN", "Wang*");
    put(&b, 0x0020, 0x000D, "UI", "");
    assert_int_equal(parse(STUDY_FIND, &b, &q, &status), CP_OK);
    assert_int_equal(q.level, QR_LEVEL_STUDY);
    assert_int_equal(q.model, QR_MODEL_STUDY_ROOT);
    assert_int_equal(q.key_count, 4);
    assert_int_equal(q.term_count, 2);
    assert_string_equal(term(&q, "StudyDate"), "20200101-20201231");
    assert_string_equal(term(&q, "PatientName"), "Wang*");
    assert_null(term(&q, "StudyInstanceUID"));
    assert_false(q.unsupported);
    assert_int_equal(qr_index_level(q.level), INDEX_LEVEL_STUDY);
    qr_query_free(&q);
    cp_buf_free(&b);
}

static void unsupported_key_flags_ff01(void **state)
{
    cp_buf b = CP_BUF_INIT;
    qr_query q;
    uint16_t status;

    (void)state;
    put(&b, 0x0008, 0x0052, "CS", "STUDY");
    put(&b, 0x0010, 0x1010, "AS", "042Y");      /* PatientAge: not indexed */
    assert_int_equal(parse(STUDY_FIND, &b, &q, &status), CP_OK);
    assert_true(q.unsupported);
    assert_int_equal(q.term_count, 0);
    qr_query_free(&q);
    cp_buf_free(&b);
}

static void unique_keys_are_required(void **state)
{
    cp_buf b = CP_BUF_INIT;
    qr_query q;
    uint16_t status = 0;

    (void)state;
    /* Study Root, SERIES level: the study's UID must be given, single. */
    put(&b, 0x0008, 0x0052, "CS", "SERIES");
    put(&b, 0x0020, 0x000D, "UI", "1.2.3\\1.2.4");
    assert_int_not_equal(parse(STUDY_FIND, &b, &q, &status), CP_OK);
    assert_int_equal(status, DIMSE_DATA_SET_MISMATCH);
    cp_buf_reset(&b);

    /* Patient Root, STUDY level: the PatientID must be given. */
    put(&b, 0x0008, 0x0052, "CS", "STUDY");
    put(&b, 0x0020, 0x000D, "UI", "");
    assert_int_not_equal(parse(PATIENT_FIND, &b, &q, &status), CP_OK);
    assert_int_equal(status, DIMSE_DATA_SET_MISMATCH);
    cp_buf_reset(&b);

    /* PATIENT level does not exist in the Study Root model. */
    put(&b, 0x0008, 0x0052, "CS", "PATIENT");
    assert_int_not_equal(parse(STUDY_FIND, &b, &q, &status), CP_OK);
    assert_int_equal(status, DIMSE_DATA_SET_MISMATCH);
    cp_buf_reset(&b);

    /* A C-MOVE names what it moves: a list of study UIDs is fine. */
    put(&b, 0x0008, 0x0052, "CS", "STUDY");
    assert_int_not_equal(parse(STUDY_MOVE, &b, &q, &status), CP_OK);
    assert_int_equal(status, DIMSE_DATA_SET_MISMATCH);
    put(&b, 0x0020, 0x000D, "UI", "1.2.3\\1.2.4");
    assert_int_equal(parse(STUDY_MOVE, &b, &q, &status), CP_OK);
    assert_string_equal(term(&q, "StudyInstanceUID"), "1.2.3\\1.2.4");
    qr_query_free(&q);
    cp_buf_free(&b);
}

static void bad_bytes_answer_c000(void **state)
{
    static const uint8_t junk[] = { 0x08, 0x00, 0x52, 0x00, 'C', 'S', 0xFF, 0x7F, 'S' };
    qr_query q;
    uint16_t status = 0;
    cp_error err;

    (void)state;
    cp_error_clear(&err);
    assert_int_not_equal(qr_query_parse(STUDY_FIND, junk, sizeof junk, EXPLICIT_LE, &q,
                                        &status, &err), CP_OK);
    assert_true(status == DIMSE_CANNOT_UNDERSTAND || status == DIMSE_DATA_SET_MISMATCH);
}

/* The response read back: the value of tag as bytes, or NULL. */
static const dcm_element *read_back(const cp_buf *out, dcm_file **file, uint32_t tag,
                                    const char *ts)
{
    dcm_read_options opts = { 0 };
    dcm_source *src = dcm_source_from_memory(out->data, out->len);
    cp_error err;

    opts.no_meta = true;
    opts.assume_ts = dcm_ts_lookup(ts, strlen(ts));
    cp_error_clear(&err);
    assert_int_equal(dcm_file_read(src, &opts, file, &err), CP_OK);
    dcm_source_destroy(src);
    return dcm_dataset_get((*file)->dataset, tag);
}

static void fill_row(index_row *row)
{
    memset(row, 0, sizeof *row);
    row->level = INDEX_LEVEL_STUDY;
    strcpy(row->rec.patient.id, "P4");
    strcpy(row->rec.patient.name.alphabetic, "Zhang^San");
    strcpy(row->rec.patient.name.ideographic, "\xE5\xBC\xA0^\xE4\xB8\x89");   /* 张^三 */
    strcpy(row->rec.study.uid, "1.2.3");
    strcpy(row->rec.study.date, "20220202");
    strcpy(row->modalities_in_study, "CT\\MR");
    row->study_instances = 7;
}

static void gb18030_query_gets_gb18030_answer(void **state)
{
    /* 张* in GB18030: D5 C5 then '*'. */
    cp_buf b = CP_BUF_INIT, out = CP_BUF_INIT;
    dcm_file *file = NULL;
    const dcm_element *el;
    index_row row;
    qr_query q;
    uint16_t status;

    (void)state;
    put(&b, 0x0008, 0x0005, "CS", "GB18030");
    put(&b, 0x0008, 0x0052, "CS", "STUDY");
    put(&b, 0x0008, 0x0061, "CS", "");
    put(&b, 0x0010, 0x0010, "PN", "\xD5\xC5*");
    put(&b, 0x0020, 0x000D, "UI", "");
    put(&b, 0x0020, 0x1208, "IS", "");
    assert_int_equal(parse(STUDY_FIND, &b, &q, &status), CP_OK);
    assert_string_equal(q.charset, "GB18030");
    assert_string_equal(term(&q, "PatientName"), "\xE5\xBC\xA0*");

    fill_row(&row);
    assert_int_equal(qr_encode_row(&q, &row, 0, "CP", IMPLICIT_LE, &out), CP_OK);
    el = read_back(&out, &file, DCM_TAG_SPECIFIC_CHARACTER_SET, IMPLICIT_LE);
    assert_non_null(el);
    assert_memory_equal(el->value, "GB18030", 7);
    el = dcm_dataset_get(file->dataset, DCM_TAG(0x0010, 0x0010));
    assert_non_null(el);
    /* Zhang^San=张^三 with 张 D5C5 and 三 C8FD in GB18030. */
    assert_int_equal(el->value_length, 16);
    assert_memory_equal(el->value, "Zhang^San=\xD5\xC5^\xC8\xFD ", 16);
    el = dcm_dataset_get(file->dataset, DCM_TAG(0x0008, 0x0061));
    assert_memory_equal(el->value, "CT\\MR ", 6);
    el = dcm_dataset_get(file->dataset, DCM_TAG(0x0020, 0x1208));
    assert_memory_equal(el->value, "7 ", 2);
    el = dcm_dataset_get(file->dataset, DCM_TAG(0x0008, 0x0052));
    assert_memory_equal(el->value, "STUDY ", 6);
    dcm_file_destroy(file);
    qr_query_free(&q);
    cp_buf_free(&b);
    cp_buf_free(&out);
}

static void no_charset_non_ascii_answer_is_utf8(void **state)
{
    cp_buf b = CP_BUF_INIT, out = CP_BUF_INIT;
    dcm_file *file = NULL;
    const dcm_element *el;
    index_row row;
    qr_query q;
    uint16_t status;

    (void)state;
    put(&b, 0x0008, 0x0052, "CS", "STUDY");
    put(&b, 0x0010, 0x0010, "PN", "");
    put(&b, 0x0010, 0x0020, "LO", "P4");
    assert_int_equal(parse(STUDY_FIND, &b, &q, &status), CP_OK);
    fill_row(&row);
    assert_int_equal(qr_encode_row(&q, &row, 0, "CP", EXPLICIT_LE, &out), CP_OK);
    el = read_back(&out, &file, DCM_TAG_SPECIFIC_CHARACTER_SET, EXPLICIT_LE);
    assert_non_null(el);
    assert_memory_equal(el->value, "ISO_IR 192", 10);
    el = dcm_dataset_get(file->dataset, DCM_TAG(0x0010, 0x0010));
    assert_memory_equal(el->value, "Zhang^San=\xE5\xBC\xA0^\xE4\xB8\x89", 16);
    dcm_file_destroy(file);

    /* A set that cannot hold the name (Latin-1) falls back to UTF-8. */
    qr_query_free(&q);
    cp_buf_reset(&b);
    cp_buf_reset(&out);
    put(&b, 0x0008, 0x0005, "CS", "ISO_IR 100");
    put(&b, 0x0008, 0x0052, "CS", "STUDY");
    put(&b, 0x0010, 0x0010, "PN", "");
    assert_int_equal(parse(STUDY_FIND, &b, &q, &status), CP_OK);
    assert_int_equal(qr_encode_row(&q, &row, 0, "CP", EXPLICIT_LE, &out), CP_OK);
    el = read_back(&out, &file, DCM_TAG_SPECIFIC_CHARACTER_SET, EXPLICIT_LE);
    assert_memory_equal(el->value, "ISO_IR 192", 10);
    dcm_file_destroy(file);
    qr_query_free(&q);
    cp_buf_free(&b);
    cp_buf_free(&out);
}

static void patient_level_counts(void **state)
{
    cp_buf b = CP_BUF_INIT, out = CP_BUF_INIT;
    dcm_file *file = NULL;
    const dcm_element *el;
    index_row row;
    qr_query q;
    uint16_t status;

    (void)state;
    put(&b, 0x0008, 0x0052, "CS", "PATIENT");
    put(&b, 0x0010, 0x0020, "LO", "P*");
    put(&b, 0x0020, 0x1200, "IS", "");
    assert_int_equal(parse(PATIENT_FIND, &b, &q, &status), CP_OK);
    assert_int_equal(q.level, QR_LEVEL_PATIENT);
    assert_string_equal(term(&q, "PatientID"), "P*");
    fill_row(&row);
    assert_int_equal(qr_encode_row(&q, &row, 3, "CP", EXPLICIT_LE, &out), CP_OK);
    el = read_back(&out, &file, DCM_TAG(0x0020, 0x1200), EXPLICIT_LE);
    assert_non_null(el);
    assert_memory_equal(el->value, "3 ", 2);
    dcm_file_destroy(file);
    qr_query_free(&q);
    cp_buf_free(&b);
    cp_buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(study_query_maps_to_terms),
        cmocka_unit_test(unsupported_key_flags_ff01),
        cmocka_unit_test(unique_keys_are_required),
        cmocka_unit_test(bad_bytes_answer_c000),
        cmocka_unit_test(gb18030_query_gets_gb18030_answer),
        cmocka_unit_test(no_charset_non_ascii_answer_is_utf8),
        cmocka_unit_test(patient_level_counts),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
