/*
 * parser.h - a pull parser for DICOM data sets (PS3.5 sections 7 and 8,
 * Annex A.4).
 *
 * The parser is the one place that decodes element headers. It reads a data
 * set from a dcm_source and hands out one event at a time: an element and
 * its header, the beginning and end of a sequence or of encapsulated pixel
 * data, the beginning and end of an item, a fragment, the end. It keeps no
 * values: after an ELEMENT or FRAGMENT event the caller reads the value
 * (dcm_parser_read_value, in pieces if it likes), skips it, or simply asks
 * for the next event, which skips what is left. So the same parser builds
 * the in-memory tree of dataset.c and streams a C-STORE data set to disk
 * while looking at its header.
 *
 * It follows the transfer syntax it is given (implicit or explicit VR, little
 * or big endian), switches to Implicit VR Little Endian inside UN sequences
 * (PS3.5 6.2.2), takes implicit VRs from the data dictionary (private ones
 * through the Private Creator of the same data set) and enforces the limits of
 * core/limits.h on depth, items, fragments and elements. Every declared
 * length is checked against the bytes left when the source knows its size.
 */
#ifndef DCM_PARSER_H
#define DCM_PARSER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "dicom/io.h"
#include "dicom/vr.h"

typedef struct dcm_parser dcm_parser;

typedef enum {
    /* A data element that is not a sequence; its value follows. */
    DCM_EVENT_ELEMENT,
    /*
     * A sequence (SQ, or UN / unknown implicit VR with undefined length
     * parsed as one, or explicit UN the dictionary says is SQ), or
     * encapsulated pixel data (flags has DCM_ELEMENT_ENCAPSULATED).
     */
    DCM_EVENT_SEQUENCE_BEGIN,
    DCM_EVENT_SEQUENCE_END,
    /* An item of a sequence: a nested data set, ended by ITEM_END. */
    DCM_EVENT_ITEM_BEGIN,
    DCM_EVENT_ITEM_END,
    /* An item of encapsulated pixel data (the first is the Basic Offset Table). */
    DCM_EVENT_FRAGMENT,
    /* The top-level data set ended, or reading stopped (see stopped). */
    DCM_EVENT_END,
} dcm_event_type;

typedef struct dcm_event {
    dcm_event_type type;
    uint32_t tag;           /* element, item or delimiter tag; END: the tag stopped at */
    dcm_vr vr;              /* SQ for sequences; DCM_VR_NONE for items and fragments */
    uint32_t flags;         /* DCM_ELEMENT_* of dataset.h that apply */
    uint32_t length;        /* as declared; DCM_UNDEFINED_LENGTH when undefined */
    uint64_t header_offset; /* offset of the first byte of the header */
    uint64_t offset;        /* offset of the first byte of the value */
    uint64_t available;     /* ELEMENT, FRAGMENT: bytes of the value present */
    uint32_t depth;         /* sequences around the event; 0 at the top level */
    bool big_endian;        /* byte order of the values of the event's data set */
    bool stopped;           /* END: stopped at stop_before, source left at its tag */
} dcm_event;

typedef struct dcm_parser_options {
    bool explicit_vr;
    bool big_endian;
    /* 0, or stop before the first top-level element whose tag is >= this. */
    uint32_t stop_before;
    /*
     * Check the first element against the syntax: if the two bytes after
     * its tag form a VR while implicit VR was declared, or do not while
     * explicit VR was, follow the bytes (DCM_PARSER_SYNTAX_MISMATCH).
     */
    bool detect_vr;
} dcm_parser_options;

/* Bits of dcm_parser_flags. */
enum {
    /* detect_vr found the data set in the other VR form; the parser followed the bytes. */
    DCM_PARSER_SYNTAX_MISMATCH = 1u << 0,
    /* Delimiters outside any sequence or item were skipped. */
    DCM_PARSER_STRAY_DELIMITER = 1u << 1,
};

/*
 * A parser reading a data set from the current position of src, which must
 * outlive it. CP_ERR_NOMEM is the only failure.
 */
cp_status dcm_parser_create(dcm_source *src, const dcm_parser_options *opts,
                            dcm_parser **out);

void dcm_parser_destroy(dcm_parser *p);

/*
 * The next event. Skips what is left of the previous value. On failure the
 * status is also recorded in err with the offset of the header at fault,
 * its tag and a detail, and every later call fails the same way; for
 * CP_ERR_TRUNCATED, ev still describes the element cut short, and its
 * `available` bytes may be read with dcm_parser_read_value.
 */
cp_status dcm_parser_next(dcm_parser *p, dcm_event *ev, cp_error *err);

/*
 * Reads up to len bytes of the current value (ELEMENT or FRAGMENT), in the
 * stream's byte order; *got is 0 once the value is exhausted. When the
 * input ends inside the value, returns CP_ERR_TRUNCATED after the bytes
 * that were there, with err set as for dcm_parser_next.
 */
cp_status dcm_parser_read_value(dcm_parser *p, void *buf, size_t len, size_t *got,
                                cp_error *err);

/*
 * Added for the reader: takes the whole current value (nothing of it read
 * yet, at most DCM_SOURCE_TAKE_MAX bytes) with dcm_source_take: *ptr points
 * at it in the source's buffer, which the caller must then adopt with
 * dcm_source_hand_over. CP_ERR_UNSUPPORTED, with nothing consumed and no
 * error recorded, when the source cannot do that.
 */
cp_status dcm_parser_take_value(dcm_parser *p, const uint8_t **ptr, cp_error *err);

/* Skips what is left of the current value. */
cp_status dcm_parser_skip_value(dcm_parser *p, cp_error *err);

/* Bytes of the current value not yet read or skipped. */
uint64_t dcm_parser_value_left(const dcm_parser *p);

/*
 * The tag of the next header, without consuming it (after skipping what is
 * left of the current value). CP_ERR_NOT_FOUND at the end of the input.
 */
cp_status dcm_parser_peek_tag(dcm_parser *p, uint32_t *tag, cp_error *err);

/* DCM_PARSER_* bits describing what the parser met so far. */
uint32_t dcm_parser_flags(const dcm_parser *p);

/* Whether the top-level data set is being read as explicit VR (after detection). */
bool dcm_parser_explicit_vr(const dcm_parser *p);

/*
 * Guesses the syntax of a bare data set from its first bytes (at least 8):
 * explicit VR when the two bytes after the first tag spell a VR, big endian
 * when the first group reads smaller that way. Implicit VR is always little
 * endian.
 */
void dcm_parser_guess_syntax(const uint8_t *bytes, size_t len, bool *explicit_vr,
                             bool *big_endian);

#endif
