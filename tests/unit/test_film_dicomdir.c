/*
 * test_film_dicomdir.c - the download's DICOMDIR: file IDs handed out per
 * series, the file read back by our own reader, by pydicom (FileSet walks
 * the records through their offsets and finds every instance with its
 * keys, once empty files stand where the records point), by dcmdump and
 * checked by dciodvfy (dicom3tools) when installed;
 * a Chinese patient name gets its Specific Character Set; bad input.
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

#include "core/buf.h"
#include "dicom/dataset.h"
#include "dicom/dict_tags.h"
#include "dicom/io.h"
#include "film/dicomdir.h"

#define STUDY "1.2.826.0.1.3680043.99.4242"
#define CT "1.2.840.10008.5.1.4.1.1.2"
#define SR "1.2.840.10008.5.1.4.1.1.88.22"
#define PDF "1.2.840.10008.5.1.4.1.1.104.1"
#define EXPLICIT "1.2.840.10008.1.2.1"

typedef struct fixture {
    char root[64];
    char path[128];
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);

    snprintf(f->root, sizeof f->root, "/tmp/cp-test-dicomdir-XXXXXX");
    if (mkdtemp(f->root) == NULL)
        return -1;
    snprintf(f->path, sizeof f->path, "%s/DICOMDIR", f->root);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    char cmd[128];

    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->root);
    free(f);
    return system(cmd) == 0 ? 0 : -1;
}

static const film_dicomdir_study study = {
    .patient_name = "Wang^Xiaoming=王^小明",
    .patient_id = "P-001",
    .study_uid = STUDY,
    .study_date = "20261203",
    .study_time = "101500",
    .study_description = "CT chest",
    .study_id = "1",
    .accession = "A42",
};

static void add_ct(film_dicomdir *d, int n, const char *series, char *path)
{
    char sop[64];
    film_dicomdir_file f = {
        .series_uid = series, .modality = "CT", .series_number = 2, .sop_class_uid = CT,
        .sop_uid = sop, .transfer_syntax = EXPLICIT, .instance_number = n,
    };

    snprintf(sop, sizeof sop, "%s.%d", series, n);
    assert_int_equal(film_dicomdir_add(d, &f, path, NULL), CP_OK);
}

/* Three CT images in one series, an SR and a PDF in another, the second CT series last. */
static film_dicomdir *build(void)
{
    film_dicomdir_file sr = {
        .series_uid = STUDY ".9", .modality = "SR", .series_number = INDEX_NUMBER_NONE,
        .sop_class_uid = SR, .sop_uid = STUDY ".9.1", .transfer_syntax = EXPLICIT,
        .instance_number = 1, .content_date = "20261203", .content_time = "120000",
        .completion_flag = "COMPLETE", .verification_flag = "UNVERIFIED",
        .concept_value = "18748-4", .concept_scheme = "LN",
        .concept_meaning = "Diagnostic imaging report",
    };
    film_dicomdir_file pdf = {
        .series_uid = STUDY ".9", .modality = "DOC", .sop_class_uid = PDF,
        .sop_uid = STUDY ".9.2", .transfer_syntax = EXPLICIT, .instance_number = 2,
        .document_title = "报告",
    };
    char path[FILM_DICOMDIR_PATH_MAX];
    film_dicomdir *d;

    assert_int_equal(film_dicomdir_new(&study, &d, NULL), CP_OK);
    add_ct(d, 1, STUDY ".1", path);
    assert_string_equal(path, "DICOM/PAT00001/STU00001/SER00001/IMG00001");
    add_ct(d, 2, STUDY ".1", path);
    assert_int_equal(film_dicomdir_add(d, &sr, path, NULL), CP_OK);
    assert_string_equal(path, "DICOM/PAT00001/STU00001/SER00002/IMG00001");
    add_ct(d, 3, STUDY ".1", path);
    assert_string_equal(path, "DICOM/PAT00001/STU00001/SER00001/IMG00003");
    assert_int_equal(film_dicomdir_add(d, &pdf, path, NULL), CP_OK);
    assert_string_equal(path, "DICOM/PAT00001/STU00001/SER00002/IMG00002");
    add_ct(d, 7, STUDY ".3", path);
    assert_string_equal(path, "DICOM/PAT00001/STU00001/SER00003/IMG00001");
    assert_int_equal(film_dicomdir_count(d), 6);
    return d;
}

static void write_file(const fixture *f, const film_dicomdir *d)
{
    FILE *out = fopen(f->path, "wb");
    dcm_sink sink;

    assert_non_null(out);
    sink = dcm_sink_to_file(out);
    assert_int_equal(film_dicomdir_write(d, "CLOUDPACS", &sink, NULL), CP_OK);
    assert_int_equal(fclose(out), 0);
}

static void test_read_back(void **state)
{
    fixture *f = *state;
    film_dicomdir *d = build();
    dcm_file *file = NULL;
    const dcm_element *seq;
    char text[80];

    write_file(f, d);
    film_dicomdir_free(d);
    assert_int_equal(dcm_file_read_path(f->path, NULL, &file, NULL), CP_OK);
    assert_int_equal(dcm_dataset_get_string(file->meta, DCM_MediaStorageSOPClassUID, text,
                                            sizeof text), CP_OK);
    assert_string_equal(text, FILM_DICOMDIR_SOP_CLASS);
    assert_int_equal(dcm_dataset_get_string(file->dataset, DCM_FileSetID, text, sizeof text),
                     CP_OK);
    assert_string_equal(text, "CLOUDPACS");
    seq = dcm_dataset_get(file->dataset, DCM_DirectoryRecordSequence);
    assert_non_null(seq);
    /* PATIENT, STUDY, 3 SERIES, 6 instances. */
    assert_int_equal(seq->item_count, 11);
    assert_int_equal(dcm_dataset_get_string(seq->items[0], DCM_SpecificCharacterSet, text,
                                            sizeof text), CP_OK);
    assert_string_equal(text, "ISO_IR 192");
    assert_int_equal(dcm_dataset_get_string(seq->items[4], DCM_ReferencedFileID, text,
                                            sizeof text), CP_OK);
    assert_string_equal(text, "DICOM");
    assert_int_equal(dcm_element_string_count(dcm_dataset_get(seq->items[4],
                                                               DCM_ReferencedFileID)), 5);
    dcm_file_destroy(file);
}

static void test_pydicom_fileset(void **state)
{
    fixture *f = *state;
    film_dicomdir *d = build();
    char cmd[2048];

    write_file(f, d);
    film_dicomdir_free(d);
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 -W ignore -c 'import sys\n"
             "from pydicom import dcmread\n"
             "from pydicom.fileset import FileSet\n"
             "ds = dcmread(sys.argv[1])\n"
             "import os\n"
             "for r in ds.DirectoryRecordSequence:\n"
             "    if \"ReferencedFileID\" in r:\n"
             "        p = os.path.join(os.path.dirname(sys.argv[1]), *r.ReferencedFileID)\n"
             "        os.makedirs(os.path.dirname(p), exist_ok=True)\n"
             "        open(p, \"wb\").close()\n"
             "fs = FileSet(ds)\n"
             "got = sorted((i.ReferencedSOPInstanceUIDInFile, i.path[-41:]) for i in fs)\n"
             "want = sorted([(\"%s.1.1\", \"DICOM/PAT00001/STU00001/SER00001/IMG00001\"),\n"
             "  (\"%s.1.2\", \"DICOM/PAT00001/STU00001/SER00001/IMG00002\"),\n"
             "  (\"%s.1.3\", \"DICOM/PAT00001/STU00001/SER00001/IMG00003\"),\n"
             "  (\"%s.9.1\", \"DICOM/PAT00001/STU00001/SER00002/IMG00001\"),\n"
             "  (\"%s.9.2\", \"DICOM/PAT00001/STU00001/SER00002/IMG00002\"),\n"
             "  (\"%s.3.7\", \"DICOM/PAT00001/STU00001/SER00003/IMG00001\")])\n"
             "assert got == want, got\n"
             "p = ds.patient_records[0]\n"
             "assert str(p.PatientName) == \"Wang^Xiaoming=王^小明\", p.PatientName\n"
             "st = p.children[0]\n"
             "assert st.StudyInstanceUID == \"%s\" and len(st.children) == 3\n"
             "assert [len(s.children) for s in st.children] == [3, 2, 1]\n"
             "kinds = [r.DirectoryRecordType for s in st.children for r in s.children]\n"
             "want = [\"IMAGE\"] * 3 + [\"SR DOCUMENT\", \"ENCAP DOC\", \"IMAGE\"]\n"
             "assert kinds == want, kinds\n"
             "' '%s'",
             STUDY, STUDY, STUDY, STUDY, STUDY, STUDY, STUDY, f->path);
    assert_int_equal(system(cmd), 0);
}

static void test_dcmtk_and_dciodvfy(void **state)
{
    fixture *f = *state;
    film_dicomdir *d = build();
    char cmd[512];

    write_file(f, d);
    film_dicomdir_free(d);
    if (access("/usr/bin/dcmdump", X_OK) == 0) {
        snprintf(cmd, sizeof cmd, "/usr/bin/dcmdump -q '%s' > /dev/null", f->path);
        assert_int_equal(system(cmd), 0);
    }
    if (access("/usr/bin/dciodvfy", X_OK) == 0) {
        /* Errors only; warnings (such as optional keys left out) are fine. */
        snprintf(cmd, sizeof cmd, "/usr/bin/dciodvfy '%s' 2>&1 | grep -q '^Error'", f->path);
        assert_int_not_equal(system(cmd), 0);
    }
}

static void test_bad_input(void **state)
{
    film_dicomdir_study no_uid = study;
    film_dicomdir_file f = { .series_uid = "1.2", .sop_class_uid = CT, .sop_uid = "1.2.3" };
    char path[FILM_DICOMDIR_PATH_MAX];
    cp_buf b = CP_BUF_INIT;
    dcm_sink sink = dcm_sink_to_buf(&b);
    film_dicomdir *d;

    (void)state;
    no_uid.study_uid = "";
    assert_int_equal(film_dicomdir_new(&no_uid, &d, NULL), CP_ERR_INVALID);
    assert_int_equal(film_dicomdir_new(&study, &d, NULL), CP_OK);
    /* No instance yet: nothing to write. */
    assert_int_equal(film_dicomdir_write(d, "X", &sink, NULL), CP_ERR_INVALID);
    /* No transfer syntax. */
    assert_int_equal(film_dicomdir_add(d, &f, path, NULL), CP_ERR_INVALID);
    f.transfer_syntax = EXPLICIT;
    assert_int_equal(film_dicomdir_add(d, &f, path, NULL), CP_OK);
    assert_int_equal(film_dicomdir_write(d, "lower case", &sink, NULL), CP_ERR_INVALID);
    assert_int_equal(film_dicomdir_write(d, NULL, &sink, NULL), CP_OK);
    film_dicomdir_free(d);
    cp_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_read_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pydicom_fileset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dcmtk_and_dciodvfy, setup, teardown),
        cmocka_unit_test(test_bad_input),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
