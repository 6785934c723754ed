/*
 * dataset.h - DICOM data sets read into memory (PS3.5 section 7), and the
 * Part 10 file that holds one (PS3.10 section 7).
 *
 * The reader builds a tree: a data set is an ordered array of elements; a
 * sequence element holds its items, each a data set; encapsulated pixel data
 * holds its fragments. Values are kept exactly as they were in the input,
 * in the data set's byte order and with their padding, so that a writer can
 * give back the same bytes. Values longer than a threshold are not loaded:
 * the element records their offset in the source, and they are read when
 * needed (dcm_element_read_value), so the header of a 2 GB multi-frame costs
 * kilobytes.
 *
 * Everything a dcm_file holds (data sets, elements, values) is owned by it and
 * freed by dcm_file_destroy. The tree is read-only once built.
 */
#ifndef DCM_DATASET_H
#define DCM_DATASET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/status.h"
#include "dicom/io.h"
#include "dicom/tag.h"
#include "dicom/ts.h"
#include "dicom/vr.h"

typedef struct dcm_dataset dcm_dataset;

/* One item of encapsulated pixel data (PS3.5 A.4); fragment 0 is the Basic Offset Table. */
typedef struct dcm_fragment {
    uint64_t offset;        /* offset of the fragment's bytes in the source */
    uint32_t length;
    const uint8_t *data;    /* the bytes when loaded, else NULL */
} dcm_fragment;

enum {
    /* The value was declared with undefined length (SQ, items, encapsulated pixel data, UN). */
    DCM_ELEMENT_UNDEFINED_LENGTH = 1u << 0,
    /* The VR came from the dictionary (implicit VR, or UN resolved), not from the stream. */
    DCM_ELEMENT_VR_FROM_DICTIONARY = 1u << 1,
    /* The value is not in memory: read it with dcm_element_read_value. */
    DCM_ELEMENT_NOT_LOADED = 1u << 2,
    /* The value was cut short by the end of the input (partial data set after an error). */
    DCM_ELEMENT_TRUNCATED = 1u << 3,
    /* Encapsulated pixel data: see fragments. */
    DCM_ELEMENT_ENCAPSULATED = 1u << 4,
    /* Explicit VR stream said UN; the element's vr is what the dictionary gave. */
    DCM_ELEMENT_WAS_UN = 1u << 5,
    /*
     * Read from a deflated data set: the value is always loaded, and its
     * offset counts inflated bytes, which no byte range of the file holds.
     */
    DCM_ELEMENT_INFLATED = 1u << 6,
};

typedef struct dcm_element {
    uint32_t tag;
    dcm_vr vr;
    uint32_t flags;             /* DCM_ELEMENT_* */
    uint32_t length;            /* declared length; DCM_UNDEFINED_LENGTH when undefined */
    uint64_t offset;            /* offset of the value (after the header) in the source */
    uint64_t value_length;      /* bytes of the value (for SQ and encapsulated data: as parsed) */
    const uint8_t *value;       /* value_length bytes, or NULL when not loaded or SQ */
    dcm_dataset **items;        /* SQ: the items, in order */
    uint32_t item_count;
    dcm_fragment *fragments;    /* encapsulated pixel data: the items, BOT first */
    uint32_t fragment_count;
} dcm_element;

/* Number of elements of a data set, and the i-th in stream order. */
size_t dcm_dataset_count(const dcm_dataset *ds);
const dcm_element *dcm_dataset_at(const dcm_dataset *ds, size_t i);

/* The element with `tag` directly in ds (not in its items), or NULL. */
const dcm_element *dcm_dataset_get(const dcm_dataset *ds, uint32_t tag);

/* The data set holding the sequence this item belongs to; NULL at the top. */
const dcm_dataset *dcm_dataset_parent(const dcm_dataset *ds);

/* The item's own length as declared (DCM_UNDEFINED_LENGTH if undefined); 0 at the top. */
uint32_t dcm_dataset_item_length(const dcm_dataset *ds);

/* Whether the values of ds are big endian (Explicit VR Big Endian). */
bool dcm_dataset_big_endian(const dcm_dataset *ds);

/*
 * The raw value of Specific Character Set (0008,0005) that applies to ds: its
 * own, or the nearest enclosing data set's (PS3.5 C.12.1.1.2). Sets *value to
 * NULL and *len to 0 when none applies.
 */
void dcm_dataset_charset(const dcm_dataset *ds, const uint8_t **value, size_t *len);

/*
 * The index-th value of a numeric element (US, SS, UL, SL, FL, FD, SV, UV, AT,
 * and OB/OW/OL/OF/OD/OV taken as arrays), converted from the data set's byte
 * order. CP_ERR_NOT_FOUND when there is no such value; CP_ERR_INVALID when the
 * VR is not numeric.
 */
cp_status dcm_element_get_uint(const dcm_dataset *ds, const dcm_element *el, size_t index,
                               uint64_t *out);
cp_status dcm_element_get_int(const dcm_dataset *ds, const dcm_element *el, size_t index,
                              int64_t *out);
cp_status dcm_element_get_double(const dcm_dataset *ds, const dcm_element *el, size_t index,
                                 double *out);

/*
 * The index-th value of a string element, without its separators and with
 * the padding the standard lets be dropped removed (trailing spaces and NULs
 * for all; leading spaces too except for LT, ST, UT, UR). The bytes are not
 * decoded: charset.h turns them into UTF-8. *text points into the element.
 */
cp_status dcm_element_get_string(const dcm_element *el, size_t index, const char **text,
                                 size_t *len);

/* The number of values of a string element (1 + the count of `\`; 0 when empty). */
size_t dcm_element_string_count(const dcm_element *el);

/*
 * Convenience for the very common case: the first value of the string
 * element `tag` of ds, copied into out (at most size - 1 bytes, NUL
 * terminated). CP_ERR_NOT_FOUND when ds has no such element or it is empty.
 */
cp_status dcm_dataset_get_string(const dcm_dataset *ds, uint32_t tag, char *out, size_t size);

/*
 * Reads the value of an element that was not loaded (or was), from src (the
 * source the file was read from) into out, in the data set's byte order.
 * Values above DCM_VALUE_LOAD_MAX fail with CP_ERR_LIMIT: stream those with
 * dcm_source_pread in pieces.
 */
cp_status dcm_element_read_value(const dcm_element *el, dcm_source *src, cp_buf *out,
                                 cp_error *err);

enum {
    /* The file had no preamble and no File Meta Information (a bare data set). */
    DCM_FILE_NO_META = 1u << 0,
    /* The input ended or broke before the data set was complete; the tree holds what was read. */
    DCM_FILE_PARTIAL = 1u << 1,
    /* Reading stopped at options.stop_before. */
    DCM_FILE_STOPPED = 1u << 2,
    /*
     * The meta group declared a transfer syntax the data set was not in; the
     * reader followed the bytes.
     */
    DCM_FILE_TS_MISMATCH = 1u << 3,
    /* The meta group had a preamble but no "DICM" (or "DICM" without a preamble). */
    DCM_FILE_NO_PREAMBLE = 1u << 4,
    /*
     * Added for the reader: item or sequence delimiters stood where nothing
     * was open for them to close (a known writer bug); they were skipped.
     */
    DCM_FILE_STRAY_DELIMITER = 1u << 5,
};

typedef struct dcm_file {
    uint8_t preamble[128];
    uint32_t flags;                             /* DCM_FILE_* */
    dcm_dataset *meta;                          /* group 0002, or NULL when absent */
    dcm_dataset *dataset;                       /* the data set (never NULL once read) */
    const dcm_transfer_syntax *transfer_syntax; /* of the data set */
    uint64_t dataset_offset;                    /* offset of the data set's first byte */
} dcm_file;

typedef struct dcm_read_options {
    /*
     * 0 reads everything. Otherwise reading stops before the first top-level
     * element whose tag is >= stop_before (DCM_TAG_PIXEL_DATA to skip the
     * pixels); the file gets DCM_FILE_STOPPED and the source is left at that
     * element's first byte.
     */
    uint32_t stop_before;
    /*
     * Values longer than this are kept as references (DCM_ELEMENT_NOT_LOADED)
     * when the source can pread; 0 means DCM_BULK_THRESHOLD_DEFAULT and
     * UINT32_MAX loads everything (up to DCM_VALUE_LOAD_MAX).
     */
    uint32_t bulk_threshold;
    /*
     * When no meta group is present, the transfer syntax to assume; NULL
     * guesses between implicit and explicit VR little endian from the bytes.
     */
    const dcm_transfer_syntax *assume_ts;
    /* Read a bare data set: do not look for a preamble or meta group. */
    bool no_meta;
} dcm_read_options;

/*
 * Reads a Part 10 file or a bare data set from src.
 *
 * On success *out is a new file to free with dcm_file_destroy. On failure
 * the status says why and err where (offset, tag, detail); *out is still set
 * to what was read before the error, flagged DCM_FILE_PARTIAL, unless
 * nothing could be read (then NULL). opts may be NULL for the defaults.
 */
cp_status dcm_file_read(dcm_source *src, const dcm_read_options *opts, dcm_file **out,
                        cp_error *err);

/* Opens and reads the file at path (a convenience over dcm_file_read). */
cp_status dcm_file_read_path(const char *path, const dcm_read_options *opts, dcm_file **out,
                             cp_error *err);

/*
 * Added for directory walks: dcm_file_read_path with path relative to the
 * directory open as dirfd (see dcm_source_open_file_at).
 */
cp_status dcm_file_read_path_at(int dirfd, const char *path, const dcm_read_options *opts,
                                dcm_file **out, cp_error *err);

void dcm_file_destroy(dcm_file *file);

#endif
