/*
 * test_dicom_dump.c - the readable listing (dump.c).
 *
 * Data sets and a Part 10 file are built in memory as explicit VR little
 * endian bytes, read back, listed, and a few lines of the listing checked
 * exactly: text decoded from GB18030, numbers, binary values in hex, cut
 * values, sequences with their items and delimiters, encapsulated pixel
 * data with its fragments, and the header block.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "dicom/charset.h"
#include "dicom/dataset.h"
#include "dicom/dump.h"
#include "dicom/io.h"
#include "dicom/tag.h"
#include "dicom/ts.h"
#include "dicom_bytes.h"

static dcm_file *read_bytes(const bytes *b, bool bare)
{
    dcm_read_options ropts;
    dcm_source *src = dcm_source_from_memory(b->data, b->len);
    dcm_file *file = NULL;
    cp_error err;
    cp_status st;

    assert_non_null(src);
    memset(&ropts, 0, sizeof(ropts));
    ropts.no_meta = bare;
    ropts.assume_ts = bare ? &dcm_ts_explicit_le : NULL;
    ropts.bulk_threshold = UINT32_MAX;
    cp_error_clear(&err);
    st = dcm_file_read(src, &ropts, &file, &err);
    if (st != CP_OK) {
        char text[400];

        fail_msg("read: %s", cp_error_format(&err, text, sizeof(text)));
    }
    dcm_source_destroy(src);
    return file;
}

/*
 * The listing of b, NUL-terminated, to cp_free: of the whole file with its
 * header, or of the data set alone. `bare`: b has no preamble or meta group.
 */
static char *dump_of(const bytes *b, const dcm_dump_options *opts, bool bare,
                     bool whole_file)
{
    dcm_file *file = read_bytes(b, bare);
    cp_buf out = CP_BUF_INIT;
    dcm_sink sink = dcm_sink_to_buf(&out);
    cp_error err;
    cp_status st;
    size_t len;

    cp_error_clear(&err);
    if (whole_file)
        st = dcm_dump_write(file, opts, &sink, &err);
    else
        st = dcm_dump_write_dataset(file->dataset, opts, &sink, &err);
    assert_int_equal(st, CP_OK);
    dcm_file_destroy(file);
    cp_buf_append_byte(&out, 0);
    return (char *)cp_buf_steal(&out, &len);
}

/* Fails unless `line` (without its newline) is one of the lines of text. */
static void assert_line(const char *text, const char *line)
{
    size_t n = strlen(line);

    for (const char *p = text; *p != '\0';) {
        const char *end = strchr(p, '\n');
        size_t len = end != NULL ? (size_t)(end - p) : strlen(p);

        if (len == n && memcmp(p, line, n) == 0)
            return;
        p += len + (end != NULL);
    }
    fail_msg("line not found: \"%s\" in:\n%s", line, text);
}

static void test_text_and_numbers(void **state)
{
    static const uint8_t name[] = "Wang^XiaoDong=\xCD\xF5^\xD0\xA1\xB6\xAB=";
    static const uint8_t us[] = { 0x00, 0x02, 0x01, 0x00 };
    static const uint8_t fd[] = { 0, 0, 0, 0, 0, 0, 0xF8, 0x3F };       /* 1.5 */
    static const uint8_t ob[] = { 0x00, 0x01, 0xAB, 0xFF };
    static const uint8_t ow[] = { 0x34, 0x12, 0x78, 0x56 };
    dcm_dump_options opts = { .max_width = 16, .show_meta = true };
    bytes b = { .len = 0 };
    char *text;

    (void)state;
    el_str(&b, 0x0008, 0x0005, "CS", "GB18030");
    el_str(&b, 0x0008, 0x0008, "CS", "ORIGINAL\\PRIMARY\\AXIAL");
    el_raw(&b, 0x0010, 0x0010, "PN", name, sizeof(name) - 1);
    el_str(&b, 0x0010, 0x0020, "LO", "");
    el_raw(&b, 0x0018, 0x0088, "FD", fd, sizeof(fd));
    el_raw(&b, 0x0028, 0x0010, "US", us, sizeof(us));
    el_raw(&b, 0x0029, 0x1001, "OB", ob, sizeof(ob));
    el_raw(&b, 0x7FE0, 0x0010, "OW", ow, sizeof(ow));
    text = dump_of(&b, &opts, true, false);

    assert_line(text, "(0008,0005) CS [GB18030] # 8, 1 SpecificCharacterSet");
    assert_line(text, "(0008,0008) CS [ORIGINAL\\PRIMARY...] # 22, 3 ImageType");
    assert_line(text, "(0010,0010) PN [Wang^XiaoDong=\xE7\x8E\x8B^...] # 22, 1 PatientName");
    assert_line(text, "(0010,0020) LO (no value) # 0, 0 PatientID");
    assert_line(text, "(0018,0088) FD 1.5 # 8, 1 SpacingBetweenSlices");
    assert_line(text, "(0028,0010) US 512\\1 # 4, 2 Rows");
    assert_line(text, "(0029,1001) OB 00 01 ab ff # 4, 1 Unknown");
    assert_line(text, "(7FE0,0010) OW 1234 5678 # 4, 1 PixelData");
    cp_free(text);
}

static void test_sequences(void **state)
{
    bytes b = { .len = 0 };
    char *text;

    (void)state;
    header(&b, 0x0008, 0x1110, "SQ", DCM_UNDEFINED_LENGTH);
    delimiter(&b, 0xE000, DCM_UNDEFINED_LENGTH);
    el_str(&b, 0x0008, 0x1150, "UI", "1.2.3");
    delimiter(&b, 0xE00D, 0);
    delimiter(&b, 0xE000, 14);
    el_str(&b, 0x0008, 0x1155, "UI", "1.2.4");
    delimiter(&b, 0xE0DD, 0);
    header(&b, 0x0040, 0x0275, "SQ", 0);
    text = dump_of(&b, NULL, true, false);

    assert_string_equal(text,
        "(0008,1110) SQ (Sequence with undefined length #=2) # u/l, 1 ReferencedStudySequence\n"
        "  (FFFE,E000) na (Item with undefined length #=1) # u/l, 1 Item\n"
        "    (0008,1150) UI [1.2.3] # 6, 1 ReferencedSOPClassUID\n"
        "  (FFFE,E00D) na (ItemDelimitationItem) # 0, 0 ItemDelimitationItem\n"
        "  (FFFE,E000) na (Item with defined length #=1) # 14, 1 Item\n"
        "    (0008,1155) UI [1.2.4] # 6, 1 ReferencedSOPInstanceUID\n"
        "(FFFE,E0DD) na (SequenceDelimitationItem) # 0, 0 SequenceDelimitationItem\n"
        "(0040,0275) SQ (Sequence with defined length #=0) # 0, 1 RequestAttributesSequence\n");
    cp_free(text);
}

static void test_file_header_and_fragments(void **state)
{
    static const char ts[] = "1.2.840.10008.1.2.4.50";
    static const uint8_t version[] = { 0x00, 0x01 };
    static const uint8_t frag[] = { 0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10 };
    bytes meta = { .len = 0 };
    bytes b = { .len = 0 };
    char *text;

    (void)state;
    el_raw(&meta, 0x0002, 0x0001, "OB", version, sizeof(version));
    el_str(&meta, 0x0002, 0x0010, "UI", ts);
    memset(b.data, 0, 128);
    b.len = 128;
    put(&b, "DICM", 4);
    header(&b, 0x0002, 0x0000, "UL", 4);
    put_uint(&b, meta.len, 4);
    put(&b, meta.data, meta.len);
    el_str(&b, 0x0010, 0x0010, "PN", "Doe^John");
    header(&b, 0x7FE0, 0x0010, "OB", DCM_UNDEFINED_LENGTH);
    delimiter(&b, 0xE000, 0);
    delimiter(&b, 0xE000, sizeof(frag));
    put(&b, frag, sizeof(frag));
    delimiter(&b, 0xE0DD, 0);
    text = dump_of(&b, NULL, false, true);

    assert_line(text, "# File Meta Information");
    assert_line(text, "(0002,0000) UL 44 # 4, 1 FileMetaInformationGroupLength");
    assert_line(text, "(0002,0010) UI [1.2.840.10008.1.2.4.50] # 22, 1 TransferSyntaxUID");
    assert_line(text, "# Transfer Syntax: 1.2.840.10008.1.2.4.50 (JPEG Baseline (Process 1))");
    assert_line(text, "# Specific Character Set: none (ISO_IR 6)");
    assert_line(text, "(0010,0010) PN [Doe^John] # 8, 1 PatientName");
    assert_line(text, "(7FE0,0010) OB (PixelSequence #=2) # u/l, 1 PixelData");
    assert_line(text, "  (FFFE,E000) na (no value) # 0, 1 Item (Basic Offset Table)");
    assert_line(text, "  (FFFE,E000) na ff d8 ff e0 00 10 # 6, 1 Item (fragment 1)");
    assert_line(text, "(FFFE,E0DD) na (SequenceDelimitationItem) # 0, 0 "
                      "SequenceDelimitationItem");
    cp_free(text);
}

/* GB18030 bytes with no Specific Character Set: decoded by guessing, and said so. */
static void test_charset_flags(void **state)
{
    static const uint8_t name[] = "\xCD\xF5^\xD0\xA1\xB6\xAB ";
    bytes b = { .len = 0 };
    dcm_file *file;
    unsigned flags = 0;
    cp_error err;
    char described[256];
    char *text;

    (void)state;
    el_raw(&b, 0x0010, 0x0010, "PN", name, sizeof(name) - 1);
    file = read_bytes(&b, true);
    cp_error_clear(&err);
    assert_int_equal(dcm_dump_charset_flags(file->dataset, NULL, &flags, &err), CP_OK);
    assert_true((flags & DCM_CHARSET_GUESSED) != 0);
    dcm_dump_describe_charset_flags(flags, described, sizeof(described));
    assert_non_null(strstr(described, "guessed"));
    dcm_file_destroy(file);

    text = dump_of(&b, NULL, true, true);
    assert_line(text, "# No File Meta Information: a bare data set");
    assert_non_null(strstr(text, "# Specific Character Set: none (ISO_IR 6); text: guessed"));
    assert_line(text, "(0010,0010) PN [\xE7\x8E\x8B^\xE5\xB0\x8F\xE4\xB8\x9C] # 8, 1 "
                      "PatientName");
    cp_free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text_and_numbers),
        cmocka_unit_test(test_sequences),
        cmocka_unit_test(test_file_header_and_fragments),
        cmocka_unit_test(test_charset_flags),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
