/*
 * test_archive.c - the ingest pipeline (archive.h): Part 10 files and bare
 * C-STORE data sets streamed in chunks of random sizes, duplicates under each
 * policy, refusals that leave nothing behind, character sets, patient
 * identity per source, crash repair, and the memory bound on a 200 MB
 * instance.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "archive/archive.h"
#include "core/alloc.h"
#include "core/buf.h"
#include "core/limits.h"
#include "dicom/dataset.h"
#include "dicom/ts.h"
#include "dicom/writer.h"

#define CT_CLASS "1.2.840.10008.5.1.4.1.1.2"

typedef struct fixture {
    char root[256];
    char blobs[300];
    char index_path[300];
    store *st;
    index_db *idx;
    archive *arc;
    archive_config cfg;
    archive_source sources[2];
} fixture;

/* --- building data sets ------------------------------------------------------- */

static void put16(cp_buf *b, uint16_t v)
{
    uint8_t x[2] = { (uint8_t)v, (uint8_t)(v >> 8) };

    assert_int_equal(cp_buf_append(b, x, 2), CP_OK);
}

static void put32(cp_buf *b, uint32_t v)
{
    put16(b, (uint16_t)v);
    put16(b, (uint16_t)(v >> 16));
}

/* One element in Explicit VR Little Endian (or implicit), padded to even length. */
static void el(cp_buf *b, bool explicit_vr, uint16_t g, uint16_t e, const char *vr,
               const void *val, size_t len)
{
    size_t padded = len + (len & 1);
    bool longvr = strcmp(vr, "OB") == 0 || strcmp(vr, "OW") == 0 || strcmp(vr, "SQ") == 0 ||
                  strcmp(vr, "UN") == 0 || strcmp(vr, "UT") == 0;

    put16(b, g);
    put16(b, e);
    if (explicit_vr) {
        assert_int_equal(cp_buf_append(b, vr, 2), CP_OK);
        if (longvr) {
            put16(b, 0);
            put32(b, (uint32_t)padded);
        } else {
            put16(b, (uint16_t)padded);
        }
    } else {
        put32(b, (uint32_t)padded);
    }
    if (len > 0)
        assert_int_equal(cp_buf_append(b, val, len), CP_OK);
    if (len & 1)
        assert_int_equal(cp_buf_append_byte(b, strcmp(vr, "UI") == 0 ? 0 : ' '), CP_OK);
}

static void els(cp_buf *b, bool ex, uint16_t g, uint16_t e, const char *vr, const char *s)
{
    el(b, ex, g, e, vr, s, strlen(s));
}

typedef struct inst_spec {
    const char *charset;
    const char *patient_name;
    const char *patient_id;
    const char *issuer;
    const char *study;
    const char *series;
    const char *sop;
    const char *description;
    uint32_t pixel_bytes;           /* 0: no pixel data */
} inst_spec;

/* A data set (without pixel data bytes, but with the Pixel Data header when asked). */
static void dataset(cp_buf *b, bool ex, const inst_spec *s, bool pixel_header_only)
{
    uint16_t rows = 16;

    if (s->charset != NULL)
        els(b, ex, 0x0008, 0x0005, "CS", s->charset);
    els(b, ex, 0x0008, 0x0016, "UI", CT_CLASS);
    els(b, ex, 0x0008, 0x0018, "UI", s->sop);
    els(b, ex, 0x0008, 0x0020, "DA", "20240131");
    els(b, ex, 0x0008, 0x0060, "CS", "CT");
    if (s->description != NULL)
        els(b, ex, 0x0008, 0x1030, "LO", s->description);
    els(b, ex, 0x0010, 0x0010, "PN", s->patient_name != NULL ? s->patient_name : "Doe^John");
    els(b, ex, 0x0010, 0x0020, "LO", s->patient_id != NULL ? s->patient_id : "P1");
    if (s->issuer != NULL)
        els(b, ex, 0x0010, 0x0021, "LO", s->issuer);
    els(b, ex, 0x0020, 0x000D, "UI", s->study);
    els(b, ex, 0x0020, 0x000E, "UI", s->series);
    els(b, ex, 0x0020, 0x0013, "IS", "7");
    el(b, ex, 0x0028, 0x0010, "US", &rows, 2);
    el(b, ex, 0x0028, 0x0011, "US", &rows, 2);
    if (s->pixel_bytes > 0) {
        put16(b, 0x7FE0);
        put16(b, 0x0010);
        if (ex) {
            assert_int_equal(cp_buf_append(b, "OW", 2), CP_OK);
            put16(b, 0);
        }
        put32(b, s->pixel_bytes);
        if (!pixel_header_only)
            for (uint32_t i = 0; i < s->pixel_bytes; i++)
                assert_int_equal(cp_buf_append_byte(b, (uint8_t)(i * 7)), CP_OK);
    }
}

/* A Part 10 file in Explicit VR Little Endian. */
static void part10(cp_buf *b, const inst_spec *s)
{
    uint8_t preamble[128] = { 0 };

    assert_int_equal(cp_buf_append(b, preamble, sizeof preamble), CP_OK);
    assert_int_equal(cp_buf_append(b, "DICM", 4), CP_OK);
    assert_int_equal(dcm_write_meta_group(CT_CLASS, strlen(CT_CLASS), s->sop, strlen(s->sop),
                                          &dcm_ts_explicit_le, b), CP_OK);
    dataset(b, true, s, false);
}

/* --- plumbing ------------------------------------------------------------------- */

static void open_archive(fixture *f)
{
    assert_int_equal(store_open_fs(f->blobs, &f->st, NULL), CP_OK);
    assert_int_equal(index_open_sqlite(f->index_path, &f->idx, NULL), CP_OK);
    assert_int_equal(archive_create(f->st, f->idx, &f->cfg, &f->arc, NULL), CP_OK);
}

static void close_archive(fixture *f)
{
    archive_destroy(f->arc);
    index_destroy(f->idx);
    store_destroy(f->st);
    f->arc = NULL;
    f->idx = NULL;
    f->st = NULL;
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);

    snprintf(f->root, sizeof f->root, "/tmp/cp-test-archive-XXXXXX");
    if (mkdtemp(f->root) == NULL)
        return -1;
    snprintf(f->blobs, sizeof f->blobs, "%s/blobs", f->root);
    snprintf(f->index_path, sizeof f->index_path, "%s/index.sqlite", f->root);
    f->cfg.duplicate_policy = ARCHIVE_DUP_KEEP;
    f->cfg.default_source.name = "import";
    f->cfg.default_source.charset.detect = true;
    f->sources[0] = (archive_source){ .name = "CLINIC_A", .institution_id = 1,
                                      .default_issuer = "ISSUER-A",
                                      .charset = { .detect = true } };
    f->sources[1] = (archive_source){ .name = "CLINIC_B", .institution_id = 2,
                                      .charset = { .detect = true } };
    f->cfg.sources = f->sources;
    f->cfg.source_count = 2;
    f->cfg.fs_root = f->blobs;
    open_archive(f);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    char cmd[400];

    close_archive(f);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->root);
    if (system(cmd) != 0)
        return -1;
    free(f);
    return 0;
}

/* Streams bytes in chunks of random sizes (1 byte to 64 KiB). */
static archive_outcome ingest(fixture *f, const archive_source_info *info, const uint8_t *data,
                              size_t len, archive_result *res)
{
    archive_ingest *in;
    size_t off = 0;

    assert_int_equal(archive_ingest_begin(f->arc, info, &in), CP_OK);
    while (off < len) {
        size_t n = 1 + (size_t)(rand() % (64 * 1024));

        if (n > len - off)
            n = len - off;
        archive_ingest_write(in, data + off, n);
        off += n;
    }
    assert_int_equal(archive_ingest_finish(in, res), CP_OK);
    return res->outcome;
}

static void read_blob(fixture *f, const char *key, cp_buf *out)
{
    store_reader *r;
    uint8_t buf[4096];
    size_t got;

    assert_int_equal(store_open(f->st, key, &r, NULL), CP_OK);
    do {
        assert_int_equal(store_read(r, buf, sizeof buf, &got, NULL), CP_OK);
        assert_int_equal(cp_buf_append(out, buf, got), CP_OK);
    } while (got == sizeof buf);
    store_close(r);
}

typedef struct rows {
    int count;
    index_row last;
    index_row all[4];
} rows;

static cp_status collect(void *ctx, const index_row *row)
{
    rows *r = ctx;

    if (r->count < 4)
        r->all[r->count] = *row;
    r->last = *row;
    r->count++;
    return CP_OK;
}

static int query(fixture *f, index_level level, const char *attr, const char *value, rows *out)
{
    index_term t = { attr, value };
    index_query_spec q = { .level = level, .terms = &t, .term_count = attr != NULL ? 1 : 0 };

    memset(out, 0, sizeof *out);
    assert_int_equal(index_query(f->idx, &q, collect, out, NULL), CP_OK);
    return out->count;
}

/* Files under dir (recursively), hidden ones included. */
static int count_files(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;

    if (d == NULL)
        return 0;
    while ((e = readdir(d)) != NULL) {
        char p[1024];
        struct stat sb;

        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        if (lstat(p, &sb) != 0)
            continue;
        n += S_ISDIR(sb.st_mode) ? count_files(p) : 1;
    }
    closedir(d);
    return n;
}

static const inst_spec base_spec = {
    .study = "1.2.3.4", .series = "1.2.3.4.5", .sop = "1.2.3.4.5.6", .pixel_bytes = 512,
};

/* --- tests ---------------------------------------------------------------------- */

static void test_part10_stored_byte_for_byte(void **state)
{
    fixture *f = *state;
    cp_buf file = CP_BUF_INIT, blob = CP_BUF_INIT;
    archive_source_info info = { .source = "import" };
    archive_result res;
    rows r;

    part10(&file, &base_spec);
    assert_int_equal(ingest(f, &info, file.data, file.len, &res), ARCHIVE_STORED);
    assert_string_equal(res.sop_instance_uid, "1.2.3.4.5.6");
    assert_non_null(strstr(res.blob_key, "/1.2.3.4/1.2.3.4.5/1.2.3.4.5.6.dcm"));
    read_blob(f, res.blob_key, &blob);
    assert_int_equal(blob.len, file.len);
    assert_memory_equal(blob.data, file.data, file.len);

    assert_int_equal(query(f, INDEX_LEVEL_INSTANCE, "SOPInstanceUID", "1.2.3.4.5.6", &r), 1);
    assert_string_equal(r.last.rec.instance.blob_key, res.blob_key);
    assert_int_equal(r.last.rec.instance.size, file.len);
    assert_int_equal(r.last.rec.instance.rows, 16);
    assert_int_equal(r.last.rec.instance.number, 7);
    assert_string_equal(r.last.rec.study.date, "20240131");
    assert_string_equal(r.last.rec.patient.name.alphabetic, "Doe^John");
    /* No issuer in the file, none configured, no institution: the source. */
    assert_string_equal(r.last.rec.patient.issuer, "import");
    cp_buf_free(&file);
    cp_buf_free(&blob);
}

static void test_bare_dataset_cstore(void **state)
{
    fixture *f = *state;
    cp_buf ds = CP_BUF_INIT, blob = CP_BUF_INIT;
    archive_source_info info = { .source = "CLINIC_A", .transfer_syntax = &dcm_ts_implicit_le,
                                 .sop_class_uid = CT_CLASS, .sop_instance_uid = "1.2.3.4.5.6" };
    archive_result res;
    dcm_file *file;
    char path[1200];

    dataset(&ds, false, &base_spec, false);
    for (int round = 0; round < 3; round++) {
        assert_int_equal(ingest(f, &info, ds.data, ds.len, &res),
                         round == 0 ? ARCHIVE_STORED : ARCHIVE_DUPLICATE);
    }
    read_blob(f, res.blob_key, &blob);
    assert_true(blob.len > ds.len + 132);
    assert_memory_equal(blob.data + 128, "DICM", 4);
    assert_memory_equal(blob.data + blob.len - ds.len, ds.data, ds.len);

    snprintf(path, sizeof path, "%s/%s", f->blobs, res.blob_key);
    assert_int_equal(dcm_file_read_path(path, NULL, &file, NULL), CP_OK);
    assert_non_null(file->meta);
    assert_string_equal(file->transfer_syntax->uid, dcm_ts_implicit_le.uid);
    assert_int_equal(file->dataset_offset, blob.len - ds.len);
    dcm_file_destroy(file);

    /* A command that names another instance than the data set is refused. */
    info.sop_instance_uid = "9.9.9";
    assert_int_equal(ingest(f, &info, ds.data, ds.len, &res), ARCHIVE_REJECTED);
    assert_int_equal(res.reason, ARCHIVE_REASON_UID_MISMATCH);
    assert_int_equal(archive_result_dimse_status(&res), 0xA900);
    cp_buf_free(&ds);
    cp_buf_free(&blob);
}

/* The same instance by C-STORE and as a file: same data set, same hash. */
static void test_same_dataset_two_paths(void **state)
{
    fixture *f = *state;
    cp_buf ds = CP_BUF_INIT, file = CP_BUF_INIT;
    archive_source_info cstore = { .source = "import", .transfer_syntax = &dcm_ts_explicit_le,
                                   .sop_class_uid = CT_CLASS, .sop_instance_uid = "1.2.3.4.5.6" };
    archive_source_info imp = { .source = "import" };
    archive_result res;

    dataset(&ds, true, &base_spec, false);
    part10(&file, &base_spec);
    assert_int_equal(ingest(f, &cstore, ds.data, ds.len, &res), ARCHIVE_STORED);
    assert_int_equal(ingest(f, &imp, file.data, file.len, &res), ARCHIVE_DUPLICATE);
    cp_buf_free(&ds);
    cp_buf_free(&file);
}

static void duplicate_case(fixture *f, archive_dup_policy policy, archive_outcome want)
{
    cp_buf a = CP_BUF_INIT, b = CP_BUF_INIT, blob = CP_BUF_INIT;
    inst_spec other = base_spec;
    archive_source_info info = { .source = "import" };
    archive_result res, first;
    rows r;

    close_archive(f);
    f->cfg.duplicate_policy = policy;
    open_archive(f);
    other.description = "changed";
    part10(&a, &base_spec);
    part10(&b, &other);
    assert_int_equal(ingest(f, &info, a.data, a.len, &first), ARCHIVE_STORED);
    assert_int_equal(ingest(f, &info, a.data, a.len, &res), ARCHIVE_DUPLICATE);
    assert_int_equal(ingest(f, &info, b.data, b.len, &res), want);

    assert_int_equal(query(f, INDEX_LEVEL_INSTANCE, "SOPInstanceUID", base_spec.sop, &r), 1);
    read_blob(f, r.last.rec.instance.blob_key, &blob);
    if (want == ARCHIVE_REPLACED) {
        assert_memory_equal(blob.data, b.data, b.len);
        assert_string_not_equal(r.last.rec.instance.blob_key, first.blob_key);
        uint64_t size;

        assert_int_equal(store_stat(f->st, first.blob_key, &size, NULL), CP_ERR_NOT_FOUND);
    } else {
        assert_memory_equal(blob.data, a.data, a.len);
        assert_string_equal(r.last.rec.instance.blob_key, first.blob_key);
    }
    if (want == ARCHIVE_REJECTED) {
        assert_int_equal(res.reason, ARCHIVE_REASON_DUPLICATE);
        assert_int_equal(archive_result_dimse_status(&res), 0x0111);
    }
    if (want == ARCHIVE_KEPT)
        assert_int_equal(archive_result_dimse_status(&res), 0xB000);
    /* One blob for the instance whatever happened, and no temporaries. */
    assert_int_equal(count_files(f->blobs), 1);
    cp_buf_free(&a);
    cp_buf_free(&b);
    cp_buf_free(&blob);
}

static void test_duplicate_keep(void **state)
{
    duplicate_case(*state, ARCHIVE_DUP_KEEP, ARCHIVE_KEPT);
}

static void test_duplicate_reject(void **state)
{
    duplicate_case(*state, ARCHIVE_DUP_REJECT, ARCHIVE_REJECTED);
}

static void test_duplicate_overwrite(void **state)
{
    duplicate_case(*state, ARCHIVE_DUP_OVERWRITE, ARCHIVE_REPLACED);
}

static void test_not_dicom_leaves_nothing(void **state)
{
    fixture *f = *state;
    archive_source_info info = { .source = "import" };
    archive_result res;
    uint8_t junk[100000];
    rows r;

    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (uint8_t)("hello, this is not DICOM\n"[i % 25]);
    assert_int_equal(ingest(f, &info, junk, sizeof junk, &res), ARCHIVE_REJECTED);
    assert_int_equal(res.reason, ARCHIVE_REASON_NOT_DICOM);
    assert_int_equal(count_files(f->blobs), 0);
    assert_int_equal(query(f, INDEX_LEVEL_INSTANCE, NULL, NULL, &r), 0);

    /* A few bytes only. */
    assert_int_equal(ingest(f, &info, junk, 5, &res), ARCHIVE_REJECTED);
    assert_int_equal(res.reason, ARCHIVE_REASON_NOT_DICOM);
}

static void test_truncated_rejected(void **state)
{
    fixture *f = *state;
    cp_buf file = CP_BUF_INIT;
    archive_source_info info = { .source = "import" };
    archive_result res;
    rows r;
    size_t cuts[3];

    part10(&file, &base_spec);
    cuts[0] = file.len - 100;       /* inside Pixel Data */
    cuts[1] = 200;                  /* inside the meta group or the header */
    cuts[2] = file.len - 512 - 6;   /* inside the Pixel Data element header */
    for (int i = 0; i < 3; i++) {
        assert_int_equal(ingest(f, &info, file.data, cuts[i], &res), ARCHIVE_REJECTED);
        assert_int_equal(res.reason, ARCHIVE_REASON_MALFORMED);
        assert_int_equal(archive_result_dimse_status(&res), 0xC000);
    }
    assert_int_equal(count_files(f->blobs), 0);
    assert_int_equal(query(f, INDEX_LEVEL_INSTANCE, NULL, NULL, &r), 0);
    cp_buf_free(&file);
}

static void test_gb18030_names(void **state)
{
    fixture *f = *state;
    /* Wang^XiaoDong=王^小东= in GB18030. */
    static const char name[] = "Wang^XiaoDong=\xCD\xF5^\xD0\xA1\xB6\xAB=";
    inst_spec s = base_spec;
    cp_buf file = CP_BUF_INIT;
    archive_source_info info = { .source = "import" };
    archive_result res;
    rows r;

    s.charset = "GB18030";
    s.patient_name = name;
    part10(&file, &s);
    assert_int_equal(ingest(f, &info, file.data, file.len, &res), ARCHIVE_STORED);
    assert_int_equal(query(f, INDEX_LEVEL_INSTANCE, "SOPInstanceUID", s.sop, &r), 1);
    assert_string_equal(r.last.rec.patient.name.alphabetic, "Wang^XiaoDong");
    assert_string_equal(r.last.rec.patient.name.ideographic, "王^小东");
    assert_string_equal(r.last.rec.patient.name.phonetic, "");
    assert_true(r.last.rec.instance.charset_flags & INDEX_CHARSET_NON_ASCII);
    cp_buf_free(&file);
}

static void test_issuer_and_patients_per_source(void **state)
{
    fixture *f = *state;
    inst_spec a = base_spec, b = base_spec, c = base_spec;
    cp_buf fa = CP_BUF_INIT, fb = CP_BUF_INIT, fc = CP_BUF_INIT;
    archive_source_info ia = { .source = "CLINIC_A" }, ib = { .source = "CLINIC_B" };
    archive_result res;
    rows r;

    b.study = "1.2.3.7";
    b.series = "1.2.3.7.1";
    b.sop = "1.2.3.7.1.1";
    c.study = "1.2.3.8";
    c.series = "1.2.3.8.1";
    c.sop = "1.2.3.8.1.1";
    c.issuer = "SENT-ISSUER";
    part10(&fa, &a);
    part10(&fb, &b);
    part10(&fc, &c);
    assert_int_equal(ingest(f, &ia, fa.data, fa.len, &res), ARCHIVE_STORED);
    assert_non_null(strstr(res.blob_key, "dicom/1/"));
    assert_int_equal(ingest(f, &ib, fb.data, fb.len, &res), ARCHIVE_STORED);
    assert_non_null(strstr(res.blob_key, "dicom/2/"));
    assert_int_equal(ingest(f, &ib, fc.data, fc.len, &res), ARCHIVE_STORED);

    assert_int_equal(query(f, INDEX_LEVEL_STUDY, "PatientID", "P1", &r), 3);
    assert_int_equal(query(f, INDEX_LEVEL_STUDY, "IssuerOfPatientID", "ISSUER-A", &r), 1);
    assert_string_equal(r.last.rec.study.uid, a.study);
    assert_int_equal(r.last.institution_id, 1);
    assert_int_equal(query(f, INDEX_LEVEL_STUDY, "IssuerOfPatientID", "INSTITUTION-2", &r), 1);
    assert_string_equal(r.last.rec.study.uid, b.study);
    assert_int_equal(query(f, INDEX_LEVEL_STUDY, "IssuerOfPatientID", "SENT-ISSUER", &r), 1);
    cp_buf_free(&fa);
    cp_buf_free(&fb);
    cp_buf_free(&fc);
}

static void test_not_storage_class(void **state)
{
    fixture *f = *state;
    cp_buf ds = CP_BUF_INIT;
    archive_source_info info = { .source = "import" };
    archive_result res;

    els(&ds, false, 0x0008, 0x0016, "UI", "1.2.840.10008.1.1");   /* Verification */
    els(&ds, false, 0x0008, 0x0018, "UI", "1.2.3");
    els(&ds, false, 0x0020, 0x000D, "UI", "1.2");
    els(&ds, false, 0x0020, 0x000E, "UI", "1.2.4");
    assert_int_equal(ingest(f, &info, ds.data, ds.len, &res), ARCHIVE_REJECTED);
    assert_int_equal(res.reason, ARCHIVE_REASON_NOT_STORAGE);
    assert_int_equal(archive_result_dimse_status(&res), 0x0122);
    assert_int_equal(count_files(f->blobs), 0);
    cp_buf_free(&ds);
}

/* (a) the blob is committed, then the process "dies" before the index commit. */
static void test_crash_after_blob_commit(void **state)
{
    fixture *f = *state;
    cp_buf file = CP_BUF_INIT;
    archive_source_info info = { .source = "CLINIC_A" };
    archive_ingest *in;
    archive_result res;
    archive_repair_report rep;
    rows r;

    close_archive(f);
    f->cfg.test_flags = ARCHIVE_TEST_STOP_AFTER_BLOB;
    open_archive(f);
    part10(&file, &base_spec);
    assert_int_equal(archive_ingest_begin(f->arc, &info, &in), CP_OK);
    assert_int_equal(archive_ingest_write(in, file.data, file.len), CP_OK);
    assert_int_equal(archive_ingest_finish(in, &res), CP_ERR_STOPPED);
    assert_int_equal(count_files(f->blobs), 1);
    assert_int_equal(query(f, INDEX_LEVEL_INSTANCE, NULL, NULL, &r), 0);

    close_archive(f);
    f->cfg.test_flags = 0;
    open_archive(f);
    assert_int_equal(archive_repair(f->arc, 0, NULL, NULL, &rep, NULL), CP_OK);
    assert_int_equal(rep.blobs_reindexed, 1);
    assert_int_equal(query(f, INDEX_LEVEL_INSTANCE, "SOPInstanceUID", base_spec.sop, &r), 1);
    assert_string_equal(r.last.rec.instance.blob_key, res.blob_key);
    assert_string_equal(r.last.rec.patient.issuer, "ISSUER-A");
    assert_int_equal(r.last.rec.instance.institution_id, 1);

    /* The sender, never acknowledged, resends: an idempotent duplicate. */
    assert_int_equal(ingest(f, &info, file.data, file.len, &res), ARCHIVE_DUPLICATE);
    assert_int_equal(archive_repair(f->arc, 0, NULL, NULL, &rep, NULL), CP_OK);
    assert_int_equal(rep.blobs_reindexed + rep.blobs_orphaned + rep.rows_missing_blob, 0);
    assert_int_equal(rep.blobs_checked, 1);
    cp_buf_free(&file);
}

/* (b) a temporary left by a write that never committed. */
static void test_crash_temporary_left(void **state)
{
    fixture *f = *state;
    archive_repair_report rep;
    char path[1200];
    int fd;

    snprintf(path, sizeof path, "%s/dicom", f->blobs);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/dicom/.tmp-1.2.3.dcm-AbCdEf", f->blobs);
    fd = open(path, O_WRONLY | O_CREAT, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "partial", 7), 7);
    close(fd);
    assert_int_equal(archive_repair(f->arc, 0, NULL, NULL, &rep, NULL), CP_OK);
    assert_int_equal(rep.store.temporaries_removed, 1);
    assert_int_equal(count_files(f->blobs), 0);
}

typedef struct seen {
    int calls;
    char what[32];
    char sop[INDEX_UID_MAX + 1];
} seen;

static void note(void *ctx, const char *what, const char *sop_uid, const char *blob_key)
{
    seen *s = ctx;

    (void)blob_key;
    s->calls++;
    snprintf(s->what, sizeof s->what, "%s", what);
    snprintf(s->sop, sizeof s->sop, "%s", sop_uid);
}

static cp_status last_change(void *ctx, const index_change *c)
{
    *(index_change *)ctx = *c;
    return CP_OK;
}

/* (c) an index row whose blob is gone. */
static void test_row_without_blob(void **state)
{
    fixture *f = *state;
    cp_buf file = CP_BUF_INIT;
    archive_source_info info = { .source = "import" };
    archive_result res;
    archive_repair_report rep;
    index_change ch;
    seen s = { 0 };
    rows r;
    char path[1200];

    part10(&file, &base_spec);
    assert_int_equal(ingest(f, &info, file.data, file.len, &res), ARCHIVE_STORED);
    snprintf(path, sizeof path, "%s/%s", f->blobs, res.blob_key);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(archive_repair(f->arc, 0, note, &s, &rep, NULL), CP_OK);
    assert_int_equal(rep.rows_missing_blob, 1);
    assert_int_equal(s.calls, 1);
    assert_string_equal(s.what, "row_removed");
    assert_string_equal(s.sop, base_spec.sop);
    assert_int_equal(query(f, INDEX_LEVEL_INSTANCE, NULL, NULL, &r), 0);
    assert_int_equal(index_changes_since(f->idx, 0, 0, last_change, &ch, NULL), CP_OK);
    assert_int_equal(ch.kind, INDEX_CHANGE_DELETED);
    assert_string_equal(ch.sop_uid, base_spec.sop);
    cp_buf_free(&file);
}

/* A superseded blob (crash after REPLACED, before the old blob went) is removed. */
static void test_orphan_blob_removed(void **state)
{
    fixture *f = *state;
    cp_buf file = CP_BUF_INIT;
    archive_source_info info = { .source = "import" };
    archive_result res;
    archive_repair_report rep;
    char src[1200], dst[1300];
    cp_buf blob = CP_BUF_INIT;
    uint64_t size;
    FILE *fp;

    part10(&file, &base_spec);
    assert_int_equal(ingest(f, &info, file.data, file.len, &res), ARCHIVE_STORED);
    snprintf(src, sizeof src, "%s/%s", f->blobs, res.blob_key);
    snprintf(dst, sizeof dst, "%.*s_0123456789abcdef.dcm", (int)strlen(src) - 4, src);
    read_blob(f, res.blob_key, &blob);
    fp = fopen(dst, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(blob.data, 1, blob.len, fp), blob.len);
    fclose(fp);
    assert_int_equal(count_files(f->blobs), 2);
    assert_int_equal(archive_repair(f->arc, 0, NULL, NULL, &rep, NULL), CP_OK);
    assert_int_equal(rep.blobs_orphaned, 1);
    assert_int_equal(count_files(f->blobs), 1);
    assert_int_equal(store_stat(f->st, res.blob_key, &size, NULL), CP_OK);
    cp_buf_free(&file);
    cp_buf_free(&blob);
}

/* Two ingests of one instance at once: one stores it, the other is a duplicate. */
static void test_concurrent_same_instance(void **state)
{
    fixture *f = *state;
    cp_buf file = CP_BUF_INIT;
    archive_source_info info = { .source = "import" };
    archive_ingest *a, *b;
    archive_result ra, rb;
    rows r;

    for (int order = 0; order < 2; order++) {
        inst_spec spec = base_spec;

        /* Each round a new instance; the second finishes the later ingest first. */
        spec.sop = order == 0 ? "1.2.3.4.5.6" : "1.2.3.4.5.7";
        /* Large enough for the header to be read, and the key taken, before finish. */
        spec.pixel_bytes = 4 * ARCHIVE_HEADER_FIRST_TRY;
        cp_buf_reset(&file);
        part10(&file, &spec);
        assert_int_equal(archive_ingest_begin(f->arc, &info, &a), CP_OK);
        assert_int_equal(archive_ingest_begin(f->arc, &info, &b), CP_OK);
        assert_int_equal(archive_ingest_write(a, file.data, file.len), CP_OK);
        assert_int_equal(archive_ingest_write(b, file.data, file.len), CP_OK);
        assert_int_equal(archive_ingest_finish(order == 0 ? a : b, order == 0 ? &ra : &rb),
                         CP_OK);
        assert_int_equal(archive_ingest_finish(order == 0 ? b : a, order == 0 ? &rb : &ra),
                         CP_OK);
        if (order == 0) {
            assert_int_equal(ra.outcome, ARCHIVE_STORED);
            assert_int_equal(rb.outcome, ARCHIVE_DUPLICATE);
            assert_string_equal(rb.blob_key, ra.blob_key);
        } else {
            /* The later ingest had a key of its own; it is the one indexed. */
            assert_int_equal(rb.outcome, ARCHIVE_STORED);
            assert_non_null(strstr(rb.blob_key, "1.2.3.4.5.7_"));
            assert_int_equal(ra.outcome, ARCHIVE_DUPLICATE);
            assert_string_equal(ra.blob_key, rb.blob_key);
        }
        assert_int_equal(count_files(f->blobs), order + 1);
        assert_int_equal(query(f, INDEX_LEVEL_INSTANCE, NULL, NULL, &r), order + 1);
    }
    cp_buf_free(&file);
}

/* A header larger than ARCHIVE_HEADER_MAX: indexed from its first part, stored whole. */
static void test_header_over_the_limit(void **state)
{
    fixture *f = *state;
    cp_buf file = CP_BUF_INIT, blob = CP_BUF_INIT;
    inst_spec s = base_spec;
    archive_source_info info = { .source = "import" };
    archive_result res;
    uint8_t *big = calloc(1, ARCHIVE_HEADER_MAX + 4096);
    uint8_t pixels[64] = { 0 };
    rows r;

    s.pixel_bytes = 0;
    part10(&file, &s);
    /* A private value after the indexed groups, then Pixel Data. */
    el(&file, true, 0x0029, 0x0010, "LO", "BIG CREATOR", 11);
    el(&file, true, 0x0029, 0x1010, "OB", big, ARCHIVE_HEADER_MAX + 4096);
    el(&file, true, 0x7FE0, 0x0010, "OW", pixels, sizeof pixels);
    assert_int_equal(ingest(f, &info, file.data, file.len, &res), ARCHIVE_STORED);
    assert_true(res.header_peak <= ARCHIVE_HEADER_MAX);
    read_blob(f, res.blob_key, &blob);
    assert_int_equal(blob.len, file.len);
    assert_memory_equal(blob.data, file.data, file.len);
    assert_int_equal(query(f, INDEX_LEVEL_INSTANCE, "SOPInstanceUID", s.sop, &r), 1);
    assert_int_equal(r.last.rec.instance.rows, 16);
    free(big);
    cp_buf_free(&file);
    cp_buf_free(&blob);
}

/* 200 MB of pixel data, generated as it is written: the header kept stays small. */
static void test_memory_bound_200mb(void **state)
{
    fixture *f = *state;
    inst_spec s = base_spec;
    cp_buf head = CP_BUF_INIT;
    const uint32_t pixels = 200u * 1024 * 1024;
    archive_source_info info = { .source = "import" };
    archive_ingest *in;
    archive_result res;
    uint8_t *chunk = malloc(1024 * 1024);
    uint64_t left = pixels, size;
    rows r;

    s.pixel_bytes = pixels;
    {
        uint8_t preamble[128] = { 0 };

        cp_buf_append(&head, preamble, sizeof preamble);
        cp_buf_append(&head, "DICM", 4);
        dcm_write_meta_group(CT_CLASS, strlen(CT_CLASS), s.sop, strlen(s.sop),
                             &dcm_ts_explicit_le, &head);
    }
    dataset(&head, true, &s, true);
    assert_int_equal(archive_ingest_begin(f->arc, &info, &in), CP_OK);
    assert_int_equal(archive_ingest_write(in, head.data, head.len), CP_OK);
    while (left > 0) {
        size_t n = 1 + (size_t)(rand() % (1024 * 1024));

        if (n > left)
            n = (size_t)left;
        memset(chunk, (int)(left & 0xFF), n);
        assert_int_equal(archive_ingest_write(in, chunk, n), CP_OK);
        left -= n;
    }
    assert_int_equal(archive_ingest_finish(in, &res), CP_OK);
    assert_int_equal(res.outcome, ARCHIVE_STORED);
    assert_true(res.header_peak <= ARCHIVE_HEADER_MAX);
    /* Only the elements before Pixel Data were kept: a few kilobytes at most. */
    assert_true(res.header_peak <= 64 * 1024);
    assert_int_equal(res.stored_bytes, head.len + pixels);
    assert_int_equal(store_stat(f->st, res.blob_key, &size, NULL), CP_OK);
    assert_int_equal(size, head.len + pixels);
    assert_int_equal(query(f, INDEX_LEVEL_INSTANCE, "SOPInstanceUID", s.sop, &r), 1);
    assert_int_equal(r.last.rec.instance.size, size);
    free(chunk);
    cp_buf_free(&head);
}

static void test_blob_key_layout(void **state)
{
    char key[STORE_KEY_MAX + 1];

    (void)state;
    assert_int_equal(archive_blob_key(3, "1.2", "1.2.3", "1.2.3.4", key, sizeof key), CP_OK);
    assert_int_equal(strncmp(key, "dicom/3/", 8), 0);
    assert_true(store_key_is_valid(key));
    assert_int_equal(strlen(key), strlen("dicom/3/ab/cd/1.2/1.2.3/1.2.3.4.dcm"));
    assert_int_equal(archive_blob_key(3, "1.2/..", "1.2.3", "1.2.3.4", key, sizeof key),
                     CP_ERR_INVALID);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_blob_key_layout),
        cmocka_unit_test_setup_teardown(test_part10_stored_byte_for_byte, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bare_dataset_cstore, setup, teardown),
        cmocka_unit_test_setup_teardown(test_same_dataset_two_paths, setup, teardown),
        cmocka_unit_test_setup_teardown(test_duplicate_keep, setup, teardown),
        cmocka_unit_test_setup_teardown(test_duplicate_reject, setup, teardown),
        cmocka_unit_test_setup_teardown(test_duplicate_overwrite, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_dicom_leaves_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncated_rejected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gb18030_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_issuer_and_patients_per_source, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_storage_class, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crash_after_blob_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crash_temporary_left, setup, teardown),
        cmocka_unit_test_setup_teardown(test_row_without_blob, setup, teardown),
        cmocka_unit_test_setup_teardown(test_orphan_blob_removed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_same_instance, setup, teardown),
        cmocka_unit_test_setup_teardown(test_header_over_the_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_memory_bound_200mb, setup, teardown),
    };

    srand(12345);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
