/*
 * test_film_deident.c - the Basic Application Level Confidentiality Profile
 * on a Part 10 file with a patient's name (in UTF-8 too), IDs, dates, an
 * institution, a device serial number, private elements, nested sequences
 * and references by UID: none of those values is left in any byte of the
 * output; UIDs are replaced alike within a key and differently between
 * keys; the pixel data (larger than the reader keeps in memory) comes out
 * byte for byte; the output reads back with cloudpacs's reader, with
 * pydicom and, no worse than the input, with dciodvfy.
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

#include "core/alloc.h"
#include "core/buf.h"
#include "dicom/dataset.h"
#include "dicom/io.h"
#include "dicom/ts.h"
#include "dicom/writer.h"
#include "film/deident.h"

#include "dicom_bytes.h"

#define SOP_CLASS_CT "1.2.840.10008.5.1.4.1.1.2"
#define SOP_UID "1.2.826.0.1.3680043.99.1.1"
#define REF_UID "1.2.826.0.1.3680043.99.1.2"
#define SRC_UID "1.2.826.0.1.3680043.99.1.3"
#define STUDY_UID "1.2.826.0.1.3680043.99.7"
#define SERIES_UID "1.2.826.0.1.3680043.99.8"
#define FOR_UID "1.2.826.0.1.3680043.99.9"
#define NAME_UTF8 "Zhang^San=\xE5\xBC\xA0^\xE4\xB8\x89"
#define PIXEL_ROWS 512
#define PIXEL_COLS 512
#define PIXEL_BYTES (PIXEL_ROWS * PIXEL_COLS * 2)
#define PSEUDONYM "ANON-1A2B3C4D"

/* Values that must not be found anywhere in the output. */
static const char *const identifying[] = {
    "Zhang", "\xE5\xBC\xA0", "PID778899", "ACC12345", "Sunshine", "19800517", "20240105",
    "101010", "Referrer", "secret-zhang", "SERIAL-XYZ", "STUDYID42", "RPID-ZHANG",
    "OTHERID55", "ACME", "Chest CT for", SOP_UID, REF_UID, SRC_UID, STUDY_UID, SERIES_UID,
    FOR_UID, "Ward 7", "CT-ROOM-3",
};

typedef struct fixture {
    char dir[64];
    char path[128];
    uint8_t *pixels;
} fixture;

static void pixel_pattern(uint8_t *p)
{
    for (size_t i = 0; i < PIXEL_BYTES; i++)
        p[i] = (uint8_t)((i * 7 + (i >> 9)) & 0x3F);
}

static void us(bytes *b, uint16_t element, uint64_t v)
{
    el_nums(b, 0x0028, element, "US", 2, &v, 1);
}

/* The data set before the pixel data, explicit VR little endian. */
static void build_dataset(bytes *b)
{
    el_str(b, 0x0008, 0x0005, "CS", "ISO_IR 192");
    el_str(b, 0x0008, 0x0016, "UI", SOP_CLASS_CT);
    el_str(b, 0x0008, 0x0018, "UI", SOP_UID);
    el_str(b, 0x0008, 0x0020, "DA", "20240105");
    el_str(b, 0x0008, 0x0030, "TM", "101010");
    el_str(b, 0x0008, 0x0050, "SH", "ACC12345");
    el_str(b, 0x0008, 0x0060, "CS", "CT");
    el_str(b, 0x0008, 0x0080, "LO", "Sunshine Hospital");
    el_str(b, 0x0008, 0x0090, "PN", "Dr^Referrer");
    el_str(b, 0x0008, 0x1010, "SH", "CT-ROOM-3");
    el_str(b, 0x0008, 0x1030, "LO", "Chest CT for Zhang");
    el_str(b, 0x0008, 0x1040, "LO", "Ward 7");
    /* Referenced Image Sequence (kept), its item nesting Source Image Sequence. */
    seq_begin(b, 0x0008, 0x1140);
    item_begin(b);
    el_str(b, 0x0008, 0x0080, "LO", "Sunshine Hospital");
    el_str(b, 0x0008, 0x1150, "UI", SOP_CLASS_CT);
    el_str(b, 0x0008, 0x1155, "UI", REF_UID);
    seq_begin(b, 0x0008, 0x2112);
    item_begin(b);
    el_str(b, 0x0008, 0x1150, "UI", SOP_CLASS_CT);
    el_str(b, 0x0008, 0x1155, "UI", SRC_UID);
    el_str(b, 0x0010, 0x0010, "PN", "Zhang^San");
    item_end(b);
    seq_end(b);
    el_str(b, 0x0009, 0x0010, "LO", "ACME");
    el_str(b, 0x0009, 0x1001, "LO", "secret-zhang nested");
    item_end(b);
    seq_end(b);
    el_str(b, 0x0009, 0x0010, "LO", "ACME");
    el_str(b, 0x0009, 0x1001, "LO", "secret-zhang");
    el_str(b, 0x0010, 0x0010, "PN", NAME_UTF8);
    el_str(b, 0x0010, 0x0020, "LO", "PID778899");
    el_str(b, 0x0010, 0x0030, "DA", "19800517");
    el_str(b, 0x0010, 0x0040, "CS", "M");
    el_str(b, 0x0010, 0x1000, "LO", "OTHERID55");
    el_str(b, 0x0018, 0x0050, "DS", "1.25");
    el_str(b, 0x0018, 0x1000, "LO", "SERIAL-XYZ-1");
    el_str(b, 0x0020, 0x000D, "UI", STUDY_UID);
    el_str(b, 0x0020, 0x000E, "UI", SERIES_UID);
    el_str(b, 0x0020, 0x0010, "SH", "STUDYID42");
    el_str(b, 0x0020, 0x0011, "IS", "3");
    el_str(b, 0x0020, 0x0013, "IS", "1");
    el_str(b, 0x0020, 0x0052, "UI", FOR_UID);
    us(b, 0x0002, 1);
    el_str(b, 0x0028, 0x0004, "CS", "MONOCHROME2");
    us(b, 0x0010, PIXEL_ROWS);
    us(b, 0x0011, PIXEL_COLS);
    us(b, 0x0100, 16);
    us(b, 0x0101, 16);
    us(b, 0x0102, 15);
    us(b, 0x0103, 0);
    /* Request Attributes Sequence: removed whole. */
    seq_begin(b, 0x0040, 0x0275);
    item_begin(b);
    el_str(b, 0x0040, 0x1001, "SH", "RPID-ZHANG");
    item_end(b);
    seq_end(b);
    header(b, 0x7FE0, 0x0010, "OW", PIXEL_BYTES);
}

/* Writes the test file: preamble, meta group, data set, then the pixels. */
static void write_input(fixture *f)
{
    static const uint8_t preamble[128];
    static bytes ds;
    cp_buf meta = CP_BUF_INIT;
    const dcm_transfer_syntax *ts = dcm_ts_lookup("1.2.840.10008.1.2.1", 19);
    FILE *out = fopen(f->path, "wb");

    assert_non_null(out);
    assert_non_null(ts);
    memset(&ds, 0, sizeof ds);
    build_dataset(&ds);
    assert_int_equal(dcm_write_meta_group(SOP_CLASS_CT, strlen(SOP_CLASS_CT), SOP_UID,
                                          strlen(SOP_UID), ts, &meta), CP_OK);
    assert_int_equal(fwrite(preamble, 1, sizeof preamble, out), sizeof preamble);
    assert_int_equal(fwrite("DICM", 1, 4, out), 4);
    assert_int_equal(fwrite(meta.data, 1, meta.len, out), meta.len);
    assert_int_equal(fwrite(ds.data, 1, ds.len, out), ds.len);
    assert_int_equal(fwrite(f->pixels, 1, PIXEL_BYTES, out), PIXEL_BYTES);
    assert_int_equal(fclose(out), 0);
    cp_buf_free(&meta);
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);

    assert_non_null(f);
    snprintf(f->dir, sizeof f->dir, "/tmp/cp-deident-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof f->path, "%s/in.dcm", f->dir);
    f->pixels = malloc(PIXEL_BYTES);
    assert_non_null(f->pixels);
    pixel_pattern(f->pixels);
    write_input(f);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    char cmd[160];

    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f->pixels);
    free(f);
    return 0;
}

static void key_of(uint8_t key[FILM_DEIDENT_KEY_BYTES], uint8_t seed)
{
    for (size_t i = 0; i < FILM_DEIDENT_KEY_BYTES; i++)
        key[i] = (uint8_t)(seed + i * 13);
}

static film_deident *open_ctx(uint8_t seed)
{
    uint8_t key[FILM_DEIDENT_KEY_BYTES];
    film_deident *d = NULL;
    cp_error err;

    key_of(key, seed);
    cp_error_clear(&err);
    assert_int_equal(film_deident_open(key, PSEUDONYM, &d, &err), CP_OK);
    return d;
}

static void deidentify(const fixture *f, const film_deident *d, cp_buf *out)
{
    dcm_sink sink = dcm_sink_to_buf(out);
    cp_error err;

    cp_error_clear(&err);
    assert_int_equal(film_deident_file(d, f->path, &sink, &err), CP_OK);
}

static void assert_uid(const film_deident *d, const char *original, const char *got)
{
    char want[FILM_DEIDENT_UID_MAX + 1];
    cp_error err;

    cp_error_clear(&err);
    assert_int_equal(film_deident_uid(d, original, want, &err), CP_OK);
    assert_string_equal(got, want);
}

/* No private group and no element the profile removes, at any depth. */
static void assert_clean(const dcm_dataset *ds)
{
    static const uint32_t removed[] = {
        DCM_TAG(0x0008, 0x1030), DCM_TAG(0x0008, 0x1040), DCM_TAG(0x0010, 0x1000),
        DCM_TAG(0x0040, 0x0275),
    };

    for (size_t i = 0; i < dcm_dataset_count(ds); i++) {
        const dcm_element *el = dcm_dataset_at(ds, i);

        assert_int_equal(DCM_TAG_GROUP(el->tag) & 1, 0);
        for (size_t j = 0; j < sizeof removed / sizeof removed[0]; j++)
            assert_int_not_equal(el->tag, removed[j]);
        for (uint32_t k = 0; k < el->item_count; k++)
            assert_clean(el->items[k]);
    }
}

static void test_nothing_identifying_left(void **state)
{
    fixture *f = *state;
    film_deident *d = open_ctx(1);
    cp_buf out = CP_BUF_INIT;

    deidentify(f, d, &out);
    assert_true(out.len > PIXEL_BYTES);
    for (size_t i = 0; i < sizeof identifying / sizeof identifying[0]; i++) {
        const char *needle = identifying[i];

        if (memmem(out.data, out.len, needle, strlen(needle)) != NULL)
            fail_msg("the output still holds \"%s\"", needle);
    }
    assert_non_null(memmem(out.data, out.len, PSEUDONYM, strlen(PSEUDONYM)));
    cp_buf_free(&out);
    film_deident_close(d);
}

static void test_reads_back(void **state)
{
    fixture *f = *state;
    film_deident *d = open_ctx(2);
    cp_buf out = CP_BUF_INIT;
    dcm_read_options ro = { .bulk_threshold = UINT32_MAX };
    dcm_source *src;
    dcm_file *file = NULL;
    const dcm_element *el, *ref, *srcseq;
    char text[128];
    cp_error err;

    deidentify(f, d, &out);
    src = dcm_source_from_memory(out.data, out.len);
    assert_non_null(src);
    cp_error_clear(&err);
    assert_int_equal(dcm_file_read(src, &ro, &file, &err), CP_OK);
    assert_int_equal(file->flags & (DCM_FILE_PARTIAL | DCM_FILE_NO_META), 0);
    assert_string_equal(file->transfer_syntax->uid, "1.2.840.10008.1.2.1");

    assert_int_equal(dcm_dataset_get_string(file->dataset, DCM_TAG(0x0010, 0x0010), text,
                                            sizeof text), CP_OK);
    assert_string_equal(text, PSEUDONYM);
    assert_int_equal(dcm_dataset_get_string(file->dataset, DCM_TAG(0x0010, 0x0020), text,
                                            sizeof text), CP_OK);
    assert_string_equal(text, PSEUDONYM);
    assert_int_equal(dcm_dataset_get_string(file->dataset, DCM_TAG(0x0012, 0x0062), text,
                                            sizeof text), CP_OK);
    assert_string_equal(text, "YES");
    assert_int_equal(dcm_dataset_get_string(file->dataset, DCM_TAG(0x0012, 0x0063), text,
                                            sizeof text), CP_OK);
    assert_non_null(strstr(text, "Basic Application Level Confidentiality Profile"));
    el = dcm_dataset_get(file->dataset, DCM_TAG(0x0012, 0x0064));
    assert_non_null(el);
    assert_int_equal(el->item_count, 1);
    assert_int_equal(dcm_dataset_get_string(el->items[0], DCM_TAG(0x0008, 0x0100), text,
                                            sizeof text), CP_OK);
    assert_string_equal(text, "113100");
    assert_int_equal(dcm_dataset_get_string(file->dataset, DCM_TAG(0x0008, 0x0005), text,
                                            sizeof text), CP_OK);
    assert_string_equal(text, "ISO_IR 192");
    assert_int_equal(dcm_dataset_get_string(file->dataset, DCM_TAG(0x0008, 0x0016), text,
                                            sizeof text), CP_OK);
    assert_string_equal(text, SOP_CLASS_CT);

    /*
     * Emptied, not removed: dates, accession, institution, referring physician
     * (Z), station name and device serial number (X/Z/D taken as Z).
     */
    for (size_t i = 0; i < 7; i++) {
        static const uint32_t empty[] = {
            DCM_TAG(0x0008, 0x0020), DCM_TAG(0x0008, 0x0050), DCM_TAG(0x0008, 0x0080),
            DCM_TAG(0x0008, 0x0090), DCM_TAG(0x0010, 0x0030), DCM_TAG(0x0008, 0x1010),
            DCM_TAG(0x0018, 0x1000),
        };

        el = dcm_dataset_get(file->dataset, empty[i]);
        assert_non_null(el);
        assert_int_equal(el->value_length, 0);
    }

    /* UIDs replaced consistently, the meta group's too, nested ones too. */
    assert_int_equal(dcm_dataset_get_string(file->dataset, DCM_TAG(0x0020, 0x000D), text,
                                            sizeof text), CP_OK);
    assert_uid(d, STUDY_UID, text);
    assert_int_equal(strncmp(text, "2.25.", 5), 0);
    assert_int_equal(dcm_dataset_get_string(file->dataset, DCM_TAG(0x0008, 0x0018), text,
                                            sizeof text), CP_OK);
    assert_uid(d, SOP_UID, text);
    assert_int_equal(dcm_dataset_get_string(file->meta, DCM_TAG(0x0002, 0x0003), text,
                                            sizeof text), CP_OK);
    assert_uid(d, SOP_UID, text);
    ref = dcm_dataset_get(file->dataset, DCM_TAG(0x0008, 0x1140));
    assert_non_null(ref);
    assert_int_equal(ref->item_count, 1);
    assert_int_equal(dcm_dataset_get_string(ref->items[0], DCM_TAG(0x0008, 0x1155), text,
                                            sizeof text), CP_OK);
    assert_uid(d, REF_UID, text);
    assert_int_equal(dcm_dataset_get_string(ref->items[0], DCM_TAG(0x0008, 0x1150), text,
                                            sizeof text), CP_OK);
    assert_string_equal(text, SOP_CLASS_CT);
    srcseq = dcm_dataset_get(ref->items[0], DCM_TAG(0x0008, 0x2112));
    assert_non_null(srcseq);
    assert_int_equal(srcseq->item_count, 1);
    assert_int_equal(dcm_dataset_get_string(srcseq->items[0], DCM_TAG(0x0008, 0x1155), text,
                                            sizeof text), CP_OK);
    assert_uid(d, SRC_UID, text);
    assert_int_equal(dcm_dataset_get_string(srcseq->items[0], DCM_TAG(0x0010, 0x0010), text,
                                            sizeof text), CP_OK);
    assert_string_equal(text, PSEUDONYM);
    assert_clean(file->dataset);

    /* Clinical values kept; the pixels byte for byte. */
    assert_int_equal(dcm_dataset_get_string(file->dataset, DCM_TAG(0x0018, 0x0050), text,
                                            sizeof text), CP_OK);
    assert_string_equal(text, "1.25");
    el = dcm_dataset_get(file->dataset, DCM_TAG(0x7FE0, 0x0010));
    assert_non_null(el);
    assert_int_equal(el->value_length, PIXEL_BYTES);
    assert_non_null(el->value);
    assert_memory_equal(el->value, f->pixels, PIXEL_BYTES);

    dcm_file_destroy(file);
    dcm_source_destroy(src);
    cp_buf_free(&out);
    film_deident_close(d);
}

static void test_uids_keyed(void **state)
{
    fixture *f = *state;
    film_deident *a = open_ctx(3), *b = open_ctx(3), *c = open_ctx(4);
    char ua[FILM_DEIDENT_UID_MAX + 1], ub[FILM_DEIDENT_UID_MAX + 1];
    char uc[FILM_DEIDENT_UID_MAX + 1];
    cp_buf oa = CP_BUF_INIT, ob = CP_BUF_INIT, oc = CP_BUF_INIT;
    cp_error err;

    cp_error_clear(&err);
    assert_int_equal(film_deident_uid(a, STUDY_UID, ua, &err), CP_OK);
    assert_int_equal(film_deident_uid(b, STUDY_UID "\0", ub, &err), CP_OK);
    assert_string_equal(ua, ub);
    assert_int_equal(film_deident_uid(b, STUDY_UID " ", ub, &err), CP_OK);
    assert_string_equal(ua, ub);
    assert_int_equal(film_deident_uid(c, STUDY_UID, uc, &err), CP_OK);
    assert_string_not_equal(ua, uc);
    assert_int_equal(film_deident_uid(a, SERIES_UID, ub, &err), CP_OK);
    assert_string_not_equal(ua, ub);

    /* "2.25." and a decimal without a leading zero, within 64 characters. */
    assert_int_equal(strncmp(ua, "2.25.", 5), 0);
    assert_true(strlen(ua) <= 44 && strlen(ua) > 6);
    assert_true(ua[5] != '0');
    assert_int_equal(strspn(ua + 5, "0123456789"), strlen(ua + 5));

    assert_int_equal(film_deident_uid(a, "", ua, &err), CP_ERR_INVALID);
    assert_int_equal(film_deident_uid(a, "  ", ua, &err), CP_ERR_INVALID);

    /* The same key gives the same file; another key another one. */
    deidentify(f, a, &oa);
    deidentify(f, b, &ob);
    deidentify(f, c, &oc);
    assert_int_equal(oa.len, ob.len);
    assert_memory_equal(oa.data, ob.data, oa.len);
    assert_true(oa.len != oc.len || memcmp(oa.data, oc.data, oa.len) != 0);
    assert_string_equal(film_deident_pseudonym(a), PSEUDONYM);

    cp_buf_free(&oa);
    cp_buf_free(&ob);
    cp_buf_free(&oc);
    film_deident_close(a);
    film_deident_close(b);
    film_deident_close(c);
}

static void test_refusals(void **state)
{
    fixture *f = *state;
    uint8_t key[FILM_DEIDENT_KEY_BYTES];
    film_deident *d = NULL;
    cp_buf out = CP_BUF_INIT;
    dcm_sink sink = dcm_sink_to_buf(&out);
    char bad[160];
    FILE *fp;
    cp_error err;

    key_of(key, 5);
    cp_error_clear(&err);
    assert_int_equal(film_deident_open(key, "", &d, &err), CP_ERR_INVALID);
    assert_null(d);
    assert_int_equal(film_deident_open(key, "A^B", &d, &err), CP_ERR_INVALID);
    assert_int_equal(film_deident_open(key, "X\\Y", &d, &err), CP_ERR_INVALID);
    d = open_ctx(5);

    snprintf(bad, sizeof bad, "%s/bad.dcm", f->dir);
    fp = fopen(bad, "wb");
    assert_non_null(fp);
    fputs("this is not DICOM at all, not even a little", fp);
    fclose(fp);
    cp_error_clear(&err);
    assert_int_equal(film_deident_file(d, bad, &sink, &err), CP_ERR_MALFORMED);
    snprintf(bad, sizeof bad, "%s/absent.dcm", f->dir);
    cp_error_clear(&err);
    assert_int_equal(film_deident_file(d, bad, &sink, &err), CP_ERR_MALFORMED);

    cp_buf_free(&out);
    film_deident_close(d);
}

/* Reads the file at path (everything loaded) into *out; its source into *src. */
static void read_all(const char *path, dcm_file **out, dcm_source **src)
{
    dcm_read_options ro = { .bulk_threshold = UINT32_MAX };
    cp_error err;

    cp_error_clear(&err);
    assert_int_equal(dcm_source_open_file(path, src, &err), CP_OK);
    assert_int_equal(dcm_file_read(*src, &ro, out, &err), CP_OK);
}

static void read_buf(const cp_buf *b, dcm_file **out, dcm_source **src)
{
    dcm_read_options ro = { .bulk_threshold = UINT32_MAX };
    cp_error err;

    *src = dcm_source_from_memory(b->data, b->len);
    assert_non_null(*src);
    cp_error_clear(&err);
    assert_int_equal(dcm_file_read(*src, &ro, out, &err), CP_OK);
    assert_int_equal((*out)->flags & DCM_FILE_PARTIAL, 0);
}

/*
 * The same file in Implicit VR Little Endian, Explicit VR Big Endian and
 * Deflated Explicit VR Little Endian (transcoded by the writer) comes out
 * in its own syntax, clean, with the pixels as they were in it.
 */
static void test_transfer_syntaxes(void **state)
{
    static const char *const uids[] = {
        "1.2.840.10008.1.2", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99",
    };
    fixture *f = *state;
    film_deident *d = open_ctx(8);

    for (size_t t = 0; t < sizeof uids / sizeof uids[0]; t++) {
        fixture g = *f;
        dcm_write_options wo = { 0 };
        dcm_file *in = NULL, *out = NULL;
        dcm_source *in_src = NULL, *out_src = NULL;
        const dcm_element *pa, *pb;
        cp_buf transcoded = CP_BUF_INIT, result = CP_BUF_INIT;
        dcm_sink sink = dcm_sink_to_buf(&transcoded);
        char text[128];
        FILE *fp;
        cp_error err;

        read_all(f->path, &in, &in_src);
        wo.source = in_src;
        wo.transfer_syntax = dcm_ts_lookup(uids[t], strlen(uids[t]));
        assert_non_null(wo.transfer_syntax);
        cp_error_clear(&err);
        assert_int_equal(dcm_write_file(in, &wo, &sink, &err), CP_OK);
        dcm_file_destroy(in);
        dcm_source_destroy(in_src);

        snprintf(g.path, sizeof g.path, "%s/ts%zu.dcm", f->dir, t);
        fp = fopen(g.path, "wb");
        assert_non_null(fp);
        assert_int_equal(fwrite(transcoded.data, 1, transcoded.len, fp), transcoded.len);
        assert_int_equal(fclose(fp), 0);

        deidentify(&g, d, &result);
        if (!wo.transfer_syntax->deflated)
            for (size_t i = 0; i < sizeof identifying / sizeof identifying[0]; i++)
                if (memmem(result.data, result.len, identifying[i],
                           strlen(identifying[i])) != NULL)
                    fail_msg("%s: the output still holds \"%s\"", uids[t], identifying[i]);

        read_buf(&transcoded, &in, &in_src);
        read_buf(&result, &out, &out_src);
        assert_string_equal(out->transfer_syntax->uid, uids[t]);
        assert_int_equal(dcm_dataset_get_string(out->dataset, DCM_TAG(0x0010, 0x0010), text,
                                                sizeof text), CP_OK);
        assert_string_equal(text, PSEUDONYM);
        assert_int_equal(dcm_dataset_get_string(out->dataset, DCM_TAG(0x0020, 0x000D), text,
                                                sizeof text), CP_OK);
        assert_uid(d, STUDY_UID, text);
        assert_null(dcm_dataset_get(out->dataset, DCM_TAG(0x0008, 0x1030)));
        assert_clean(out->dataset);
        pa = dcm_dataset_get(in->dataset, DCM_TAG(0x7FE0, 0x0010));
        pb = dcm_dataset_get(out->dataset, DCM_TAG(0x7FE0, 0x0010));
        assert_non_null(pa);
        assert_non_null(pb);
        assert_int_equal(pa->value_length, pb->value_length);
        assert_memory_equal(pa->value, pb->value, (size_t)pa->value_length);

        dcm_file_destroy(in);
        dcm_file_destroy(out);
        dcm_source_destroy(in_src);
        dcm_source_destroy(out_src);
        cp_buf_free(&transcoded);
        cp_buf_free(&result);
    }
    film_deident_close(d);
}

/* Encapsulated pixel data (JPEG Baseline): every fragment through, the BOT too. */
static void test_encapsulated(void **state)
{
    static const char ts_uid[] = "1.2.840.10008.1.2.4.50";
    static const uint8_t preamble[128];
    static bytes ds;
    fixture *f = *state;
    film_deident *d = open_ctx(9);
    const dcm_transfer_syntax *ts = dcm_ts_lookup(ts_uid, strlen(ts_uid));
    uint8_t bot[8] = { 0, 0, 0, 0, 0x10, 0, 0, 0 };
    size_t big = 300 * 1024;
    cp_buf meta = CP_BUF_INIT, result = CP_BUF_INIT;
    dcm_file *out = NULL;
    dcm_source *out_src = NULL;
    const dcm_element *px;
    fixture g = *f;
    FILE *fp;

    memset(&ds, 0, sizeof ds);
    el_str(&ds, 0x0008, 0x0016, "UI", SOP_CLASS_CT);
    el_str(&ds, 0x0008, 0x0018, "UI", SOP_UID);
    el_str(&ds, 0x0010, 0x0010, "PN", "Zhang^San");
    el_str(&ds, 0x0020, 0x000D, "UI", STUDY_UID);
    header(&ds, 0x7FE0, 0x0010, "OB", DCM_UNDEFINED_LENGTH);
    delimiter(&ds, 0xE000, sizeof bot);
    put(&ds, bot, sizeof bot);
    delimiter(&ds, 0xE000, 16);
    put(&ds, "\xFF\xD8 fragment one\xFF\xD9", 16);
    delimiter(&ds, 0xE000, (uint32_t)big);

    snprintf(g.path, sizeof g.path, "%s/jpeg.dcm", f->dir);
    fp = fopen(g.path, "wb");
    assert_non_null(fp);
    assert_non_null(ts);
    assert_int_equal(dcm_write_meta_group(SOP_CLASS_CT, strlen(SOP_CLASS_CT), SOP_UID,
                                          strlen(SOP_UID), ts, &meta), CP_OK);
    fwrite(preamble, 1, sizeof preamble, fp);
    fwrite("DICM", 1, 4, fp);
    fwrite(meta.data, 1, meta.len, fp);
    fwrite(ds.data, 1, ds.len, fp);
    assert_int_equal(fwrite(f->pixels, 1, big, fp), big);
    memset(&ds, 0, sizeof ds);
    delimiter(&ds, 0xE0DD, 0);
    fwrite(ds.data, 1, ds.len, fp);
    assert_int_equal(fclose(fp), 0);

    deidentify(&g, d, &result);
    assert_null(memmem(result.data, result.len, "Zhang", 5));
    assert_null(memmem(result.data, result.len, SOP_UID, strlen(SOP_UID)));
    read_buf(&result, &out, &out_src);
    assert_string_equal(out->transfer_syntax->uid, ts_uid);
    px = dcm_dataset_get(out->dataset, DCM_TAG(0x7FE0, 0x0010));
    assert_non_null(px);
    assert_true(px->flags & DCM_ELEMENT_ENCAPSULATED);
    assert_int_equal(px->fragment_count, 3);
    assert_int_equal(px->fragments[0].length, sizeof bot);
    assert_memory_equal(px->fragments[0].data, bot, sizeof bot);
    assert_int_equal(px->fragments[1].length, 16);
    assert_memory_equal(px->fragments[1].data, "\xFF\xD8 fragment one\xFF\xD9", 16);
    assert_int_equal(px->fragments[2].length, big);
    assert_memory_equal(px->fragments[2].data, f->pixels, big);

    dcm_file_destroy(out);
    dcm_source_destroy(out_src);
    cp_buf_free(&meta);
    cp_buf_free(&result);
    film_deident_close(d);
}

typedef struct failing {
    size_t left;
} failing;

static cp_status failing_write(void *ctx, const void *data, size_t len)
{
    failing *fl = ctx;

    (void)data;
    if (len > fl->left)
        return CP_ERR_IO;
    fl->left -= len;
    return CP_OK;
}

/* A sink that gives up halfway through the pixels: its status comes back. */
static void test_sink_failure(void **state)
{
    fixture *f = *state;
    film_deident *d = open_ctx(6);
    failing fl = { 4096 + PIXEL_BYTES / 2 };
    dcm_sink sink = { failing_write, &fl };
    cp_error err;

    cp_error_clear(&err);
    assert_int_equal(film_deident_file(d, f->path, &sink, &err), CP_ERR_IO);
    film_deident_close(d);
}

/* The number of "Error" lines dciodvfy prints for path. */
static int dciodvfy_errors(const char *path)
{
    char cmd[256], line[1024];
    int count = 0;
    FILE *p;

    snprintf(cmd, sizeof cmd, "dciodvfy '%s' 2>&1", path);
    p = popen(cmd, "r");
    assert_non_null(p);
    while (fgets(line, sizeof line, p) != NULL)
        if (strncmp(line, "Error", 5) == 0)
            count++;
    pclose(p);
    return count;
}

/* pydicom reads the output and sees the replacements; dciodvfy finds no new error. */
static void test_other_readers(void **state)
{
    fixture *f = *state;
    film_deident *d = open_ctx(7);
    char outpath[160], cmd[1024], study[FILM_DEIDENT_UID_MAX + 1];
    cp_buf out = CP_BUF_INIT;
    FILE *fp;
    cp_error err;

    deidentify(f, d, &out);
    snprintf(outpath, sizeof outpath, "%s/out.dcm", f->dir);
    fp = fopen(outpath, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(out.data, 1, out.len, fp), out.len);
    assert_int_equal(fclose(fp), 0);
    cp_error_clear(&err);
    assert_int_equal(film_deident_uid(d, STUDY_UID, study, &err), CP_OK);

    if (access("/usr/bin/python3", X_OK) == 0 &&
        system("/usr/bin/python3 -c 'import pydicom' 2>/dev/null") == 0) {
        snprintf(cmd, sizeof cmd,
                 "/usr/bin/python3 -c \"import pydicom, sys\n"
                 "ds = pydicom.dcmread(sys.argv[1])\n"
                 "assert str(ds.PatientName) == '%s', ds.PatientName\n"
                 "assert ds.PatientID == '%s'\n"
                 "assert ds.StudyInstanceUID == '%s'\n"
                 "assert ds.PatientIdentityRemoved == 'YES'\n"
                 "assert ds.DeidentificationMethodCodeSequence[0].CodeValue == '113100'\n"
                 "assert len(ds.PixelData) == %d\n"
                 "assert not any(e.tag.is_private for e in ds.iterall())\n"
                 "\" '%s'",
                 PSEUDONYM, PSEUDONYM, study, PIXEL_BYTES, outpath);
        assert_int_equal(system(cmd), 0);
    }
    if (system("command -v dciodvfy >/dev/null 2>&1") == 0) {
        int before = dciodvfy_errors(f->path), after = dciodvfy_errors(outpath);

        print_message("dciodvfy errors: %d in the input, %d in the output\n", before, after);
        assert_true(after <= before);
    }

    cp_buf_free(&out);
    film_deident_close(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_nothing_identifying_left, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reads_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_uids_keyed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_transfer_syntaxes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_encapsulated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sink_failure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_other_readers, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
