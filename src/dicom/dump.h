/*
 * dump.h - a readable listing of a DICOM file, one line per element.
 *
 * The listing is for people, in the manner of DCMTK's dcmdump but in its own
 * format:
 *
 *   (0010,0010) PN [Wang^XiaoDong=王^小东=] # 24, 1 PatientName
 *   (0008,1110) SQ (Sequence with undefined length #=1) # u/l, 1 ...
 *     (FFFE,E000) na (Item with defined length #=2) # 28, 1 Item
 *       (0008,1150) UI [1.2.840.10008.5.1.4.1.1.2] # 26, 1 ReferencedSOPClassUID
 *   (FFFE,E0DD) na (SequenceDelimitationItem) # 0, 0 SequenceDelimitationItem
 *
 * Text is decoded to UTF-8 (charset.h) and shown in brackets, numbers in
 * decimal, binary values as their first few units in hex, and values longer
 * than a width are cut with "...". Delimitation items are listed where the
 * stream had them (undefined lengths, PS3.5 7.5). Libraries do not print:
 * the listing goes to a dcm_sink.
 */
#ifndef DCM_DUMP_H
#define DCM_DUMP_H

#include <stdbool.h>
#include <stddef.h>

#include "core/status.h"
#include "dicom/charset.h"
#include "dicom/dataset.h"
#include "dicom/io.h"

/* Characters of a value shown before it is cut, when the options say 0. */
#define DCM_DUMP_WIDTH_DEFAULT 64

typedef struct dcm_dump_options {
    /*
     * The source the file was read from, to show text and numbers that were
     * not loaded; NULL shows them as "(not loaded, N bytes at offset O)".
     * Binary values that were not loaded are never read.
     */
    dcm_source *source;
    /* How text is decoded; NULL: detection on, no default, no override. */
    const dcm_charset_policy *charset_policy;
    /* Characters of a value shown before "..."; 0 for DCM_DUMP_WIDTH_DEFAULT. */
    size_t max_width;
    /* List the File Meta Information elements in the header block. */
    bool show_meta;
} dcm_dump_options;

/*
 * Writes the listing of a file: a header block (the meta group when asked
 * for, the transfer syntax, the character set and how its text decoded),
 * then every element of the data set, then a note when the file was partial
 * or reading stopped early. opts may be NULL for the defaults.
 */
cp_status dcm_dump_write(const dcm_file *file, const dcm_dump_options *opts,
                         const dcm_sink *sink, cp_error *err);

/* Writes the elements of one data set (and its items), without a header. */
cp_status dcm_dump_write_dataset(const dcm_dataset *ds, const dcm_dump_options *opts,
                                 const dcm_sink *sink, cp_error *err);

/*
 * Decodes every text value of ds (items included, each with the character
 * set that applies to it) and ORs the DCM_CHARSET_* flags of the decoding
 * into *flags: whether text was guessed, mislabelled, replaced.
 */
cp_status dcm_dump_charset_flags(const dcm_dataset *ds, const dcm_dump_options *opts,
                                 unsigned *flags, cp_error *err);

/*
 * Describes DCM_CHARSET_* flags for people ("guessed, mislabelled"), into out
 * (NUL terminated, cut to size); "" when flags is 0. Returns out.
 */
char *dcm_dump_describe_charset_flags(unsigned flags, char *out, size_t size);

#endif
