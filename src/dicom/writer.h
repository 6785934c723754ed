/*
 * writer.h - writes data sets and Part 10 files (PS3.10 section 7) in the
 * uncompressed transfer syntaxes: Implicit VR Little Endian, Explicit VR
 * Little Endian, Explicit VR Big Endian and Deflated Explicit VR Little
 * Endian. Encapsulated pixel data is written as it was read, so a file in a
 * compressed syntax is written back in the same syntax.
 *
 * Reading then writing an unmodified file in its own transfer syntax gives
 * the same bytes: lengths (defined or undefined), padding and item structure
 * are kept as read. Values kept as references are streamed from the source.
 */
#ifndef DCM_WRITER_H
#define DCM_WRITER_H

#include "core/status.h"
#include "dicom/dataset.h"
#include "dicom/io.h"
#include "dicom/ts.h"

typedef struct dcm_write_options {
    /* The source the file was read from, for values not loaded; NULL if all are loaded. */
    dcm_source *source;
    /*
     * The transfer syntax to write the data set in; NULL keeps the file's own.
     * Changing between uncompressed syntaxes is allowed; to or from an
     * encapsulated syntax is CP_ERR_UNSUPPORTED (the pixel layer transcodes).
     */
    const dcm_transfer_syntax *transfer_syntax;
} dcm_write_options;

/*
 * Writes file as Part 10: its preamble, "DICM", its meta group (with the
 * group length and Transfer Syntax UID updated when the syntax changes) and
 * its data set. When file->meta is NULL, a meta group is built from the data
 * set (SOP Class and Instance UIDs) with cloudpacs's implementation UID.
 */
cp_status dcm_write_file(const dcm_file *file, const dcm_write_options *opts,
                         const dcm_sink *sink, cp_error *err);

/* Writes a bare data set (no preamble or meta group) in transfer syntax ts. */
cp_status dcm_write_dataset(const dcm_dataset *ds, const dcm_transfer_syntax *ts,
                            dcm_source *source, const dcm_sink *sink, cp_error *err);

#endif
